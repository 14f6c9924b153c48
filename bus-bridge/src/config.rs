//! What a bridge is made of: segments and the links joining them, ports,
//! bit timing, queue sizes, faults, capture and the tool and control ports.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bus::BabbleSetup;
use crate::capture::CaptureConfig;
use crate::error::BridgeError;
use crate::faults::{self, FaultConfig, Rule};
use crate::ids::{LinkId, PortId, SegmentId};
use crate::timing::BitTiming;

/// The longest unix socket path: `sun_path` holds 108 bytes, one is the NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// A whole bridge.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// Segment names. Segments joined by links that are up form one
    /// arbitration domain; a segment with no link is a domain of its own.
    /// Names may not contain whitespace, `<` or `>` (they name candump
    /// interfaces and socketcand channels).
    pub segments: Vec<String>,
    /// Links between segments (see [`Topology`]).
    pub links: Vec<LinkConfig>,
    /// Ports, one listening socket each. A port's index here is its index
    /// in statistics and in [`BusEvent::port`](crate::BusEvent::port).
    pub ports: Vec<PortConfig>,
    /// Bit-rate preset of every segment.
    pub timing: BitTiming,
    /// Frames take their real time on the bus (else bus time is virtual).
    pub paced: bool,
    /// Frames a port's controller holds for sending (default 4).
    pub tx_fifo_depth: usize,
    /// Frames a port's receive queue holds (default 256).
    pub rx_queue_depth: usize,
    /// Unpaced only: how long a full receive queue may hold the bus before
    /// the frame is dropped for that port as an overrun (default 500 ms).
    pub stall_timeout: Duration,
    /// Faults in force from the start, and the seed of every decision.
    pub faults: FaultConfig,
    /// Capture files.
    pub capture: CaptureConfig,
    /// A socketcand-compatible TCP server on 127.0.0.1.
    pub socketcand: Option<SocketcandConfig>,
    /// A unix socket for JSON-lines control commands.
    pub control_socket: Option<PathBuf>,
    /// The clock that drives the bus.
    pub clock: BusClock,
}

/// The clock that drives the bus.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusClock {
    /// The host's clock: frames take real time (`paced`) or none.
    #[default]
    Wall,
    /// One virtual time for the bus and every node with a clock socket
    /// ([`PortConfig::clock`]): nodes run only as far as the bridge grants,
    /// frames take their time on the wire in virtual time, and idle time
    /// is skipped. `paced` is ignored.
    Virtual(VirtualClock),
}

/// Settings of the virtual clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VirtualClock {
    /// Virtual time runs no faster than the wall clock since the start:
    /// for clients without a clock (host programs timed by the wall
    /// clock), so that their waits and the nodes' mean the same.
    pub pace_with_wall: bool,
    /// The fleet's time holds here (ns) from the start, as if
    /// [`crate::BridgeControl::pause_at`] had been asked before anything
    /// ran: for a fleet whose nodes all power on later, whose time would
    /// otherwise run ahead before the host holds it.
    /// [`crate::BridgeControl::move_pause`] or `resume` lets it go.
    pub held_at_start: Option<u64>,
}

/// A node's clock socket: its QEMU plugin connects here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortClock {
    /// Unix socket the bridge listens on for the node's plugin.
    pub socket: PathBuf,
    /// The node powers on with the bridge: virtual time waits for it.
    #[serde(default)]
    pub from_start: bool,
}

impl Default for BridgeConfig {
    /// No segments and no ports (not valid as it is), CAN FD 1M/5M,
    /// unpaced, default queue sizes.
    fn default() -> Self {
        BridgeConfig {
            segments: Vec::new(),
            ports: Vec::new(),
            timing: BitTiming::Fd1m5m,
            paced: false,
            tx_fifo_depth: 4,
            rx_queue_depth: 256,
            stall_timeout: Duration::from_millis(500),
            links: Vec::new(),
            faults: FaultConfig::default(),
            capture: CaptureConfig::default(),
            socketcand: None,
            control_socket: None,
            clock: BusClock::Wall,
        }
    }
}

impl BridgeConfig {
    /// This configuration with `topology`'s segments and links.
    pub fn with_topology(mut self, topology: Topology) -> BridgeConfig {
        self.segments = topology.segments;
        self.links = topology.links;
        self
    }
}

/// A link (a flex cable) joining two segments into one bus while it is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Unique name, used to cut and restore it.
    pub name: String,
    /// One segment.
    pub a: String,
    /// The other segment.
    pub b: String,
}

impl LinkConfig {
    /// A link called `a-b`.
    pub fn between(a: impl Into<String>, b: impl Into<String>) -> LinkConfig {
        let (a, b) = (a.into(), b.into());
        LinkConfig {
            name: format!("{a}-{b}"),
            a,
            b,
        }
    }
}

/// Segments and links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Segment names.
    pub segments: Vec<String>,
    /// Links between them.
    pub links: Vec<LinkConfig>,
}

impl Topology {
    /// The seed's tape library: the base-frame bus `base`, extension-frame
    /// buses `ext1`…`extN`, each joined to the previous one by flex cable
    /// (`base-ext1`, `ext1-ext2`, …), and, with `ha`, the HA-frame bus `ha`
    /// joined to the last extension (or to `base` without extensions).
    pub fn library(extensions: usize, ha: bool) -> Topology {
        let mut segments = vec!["base".to_owned()];
        let mut links = Vec::new();
        for i in 1..=extensions {
            let name = format!("ext{i}");
            links.push(LinkConfig::between(segments[i - 1].clone(), name.clone()));
            segments.push(name);
        }
        if ha {
            let last = segments[segments.len() - 1].clone();
            links.push(LinkConfig::between(last, "ha"));
            segments.push("ha".to_owned());
        }
        Topology { segments, links }
    }

    /// The default library: `base`, `ext1`, `ha`; links `base-ext1` and
    /// `ext1-ha`.
    pub fn default_library() -> Topology {
        Topology::library(1, true)
    }
}

/// How CAN FD frames go to socketcand clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdFormat {
    /// `< frame ID SECS.USECS DATA >` with up to 64 data bytes: what
    /// python-can's socketcand interface (4.x) parses; the FD flags are
    /// lost.
    #[default]
    Frame,
    /// `< fdframe ID FLAGS SECS.USECS DATA >`, as newer socketcand sends.
    Fdframe,
}

/// The socketcand-compatible server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketcandConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one
    /// ([`Bridge::socketcand_addr`](crate::Bridge::socketcand_addr) tells
    /// which).
    pub port: u16,
    /// Clients at once. Each is a port of its own, named `socketcandN`,
    /// on the segment its `< open CHANNEL >` names.
    pub max_clients: usize,
    /// How FD frames are written to clients.
    pub fd_format: FdFormat,
}

impl Default for SocketcandConfig {
    fn default() -> Self {
        SocketcandConfig {
            port: 0,
            max_clients: 4,
            fd_format: FdFormat::Frame,
        }
    }
}

/// Most socketcand clients at once.
pub const MAX_SOCKETCAND_CLIENTS: usize = 64;

/// The name of socketcand client port `i`.
pub fn socketcand_port_name(i: usize) -> String {
    format!("socketcand{i}")
}

/// A configuration checked and resolved to indices.
pub(crate) struct Checked {
    pub port_segment: Vec<SegmentId>,
    pub links: Vec<(SegmentId, SegmentId)>,
    pub rules: Vec<Rule>,
    pub link_down: Vec<PortId>,
    pub babble: Vec<BabbleSetup>,
    pub cut: Vec<LinkId>,
    /// All port names: configured ports, then socketcand ports.
    pub port_names: Vec<String>,
}

/// One drop on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Unique name, e.g. the node's name or `master`.
    pub name: String,
    /// Name of the segment the port is attached to.
    pub segment: String,
    /// Unix socket the bridge listens on for this port.
    pub socket: PathBuf,
    /// On the virtual clock: the node's clock socket.
    #[serde(default)]
    pub clock: Option<PortClock>,
    /// On the virtual clock: the client keeps the bus's time in-band (a
    /// host program such as a master or the supervisor). It takes part in
    /// the synchronisation: frames and freed TX places reach it stamped
    /// with their virtual time, `Until` records say how far it may act, it
    /// stamps what it sends and answers `Idle` with its next timer (see
    /// `proto::link`). Without it, a client's frames are sent at the
    /// frontier and it is never waited for.
    #[serde(default)]
    pub timed: bool,
    /// On a paced wall-clock bus: frames for this port's client are
    /// written to it at most every this many milliseconds, together (0:
    /// each as soon as the bus delivers it). A node's software takes its
    /// frames in batches anyway; for its QEMU and the host, a write (and
    /// a read, and a buffer) per frame costs more than the node's own
    /// work once tens of nodes receive.
    #[serde(default)]
    pub deliver_every_ms: u64,
    /// This port's TX FIFO depth, in frames (default: the bridge's
    /// `tx_fifo_depth`). A host program keeps a software queue in front of
    /// its controller: with a deep one, a paced bus does not idle while
    /// the host is slow to read the next frames its client already sent.
    #[serde(default)]
    pub tx_fifo_depth: Option<usize>,
}

impl PortConfig {
    /// A port named `name` on `segment`, listening at `socket`.
    pub fn new(
        name: impl Into<String>,
        segment: impl Into<String>,
        socket: impl Into<PathBuf>,
    ) -> Self {
        PortConfig {
            name: name.into(),
            segment: segment.into(),
            socket: socket.into(),
            clock: None,
            timed: false,
            deliver_every_ms: 0,
            tx_fifo_depth: None,
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> BridgeError {
    BridgeError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl BridgeConfig {
    /// Checks the configuration; returns each port's segment index.
    pub fn validate(&self) -> Result<Vec<usize>, BridgeError> {
        Ok(self.check()?.port_segment.iter().map(|s| s.0).collect())
    }

    /// Checks everything, section by section, and resolves names.
    pub(crate) fn check(&self) -> Result<Checked, BridgeError> {
        let port_segment = self.check_ports()?;
        let links = self.check_links()?;
        let port_names = self.check_socketcand()?;
        let port_index = |name: &str| port_names.iter().position(|p| p == name).map(PortId);
        let segment_index = |name: &str| self.segment_index(name);
        let f = &self.faults;
        let rules = f
            .rules
            .iter()
            .enumerate()
            .map(|(i, fault)| {
                faults::compile(fault, i as u64, port_index, segment_index).map_err(|e| {
                    let e = e.within(&format!("faults.rules[{i}]"));
                    invalid(e.field, e.reason)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let link_down = f
            .link_down
            .iter()
            .enumerate()
            .map(|(i, name)| {
                port_index(name).ok_or_else(|| {
                    invalid(
                        format!("faults.link_down[{i}]"),
                        format!("no port named {name:?}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let babble = self.check_babble(port_index)?;
        let cut = self.check_cut()?;
        self.check_capture_and_control()?;
        self.check_clocks()?;
        Ok(Checked {
            port_segment,
            links,
            rules,
            link_down,
            babble,
            cut,
            port_names,
        })
    }

    /// Clock sockets only on the virtual clock, each a usable path.
    fn check_clocks(&self) -> Result<(), BridgeError> {
        for (i, p) in self.ports.iter().enumerate() {
            if p.timed && (self.clock == BusClock::Wall || p.clock.is_some()) {
                return Err(invalid(
                    format!("ports[{i}].timed"),
                    "a timed client needs the virtual clock and no clock socket (it keeps time in-band)",
                ));
            }
            let Some(c) = &p.clock else { continue };
            if self.clock == BusClock::Wall {
                return Err(invalid(
                    format!("ports[{i}].clock"),
                    "a clock socket needs the virtual clock (clock = virtual)",
                ));
            }
            let len = c.socket.as_os_str().len();
            if len > MAX_SOCKET_PATH || c.socket == p.socket {
                return Err(invalid(
                    format!("ports[{i}].clock.socket"),
                    format!(
                        "{} is the port's own socket or longer than {MAX_SOCKET_PATH} bytes",
                        c.socket.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn segment_index(&self, name: &str) -> Option<SegmentId> {
        self.segments.iter().position(|s| s == name).map(SegmentId)
    }

    fn check_links(&self) -> Result<Vec<(SegmentId, SegmentId)>, BridgeError> {
        let mut links = Vec::with_capacity(self.links.len());
        let mut link_names = HashSet::new();
        for (i, l) in self.links.iter().enumerate() {
            if l.name.is_empty() {
                return Err(invalid(format!("links[{i}].name"), "is empty"));
            }
            if !link_names.insert(l.name.as_str()) {
                return Err(invalid(
                    format!("links[{i}].name"),
                    format!("{:?} is used twice", l.name),
                ));
            }
            let end = |field: &str, name: &str| {
                self.segment_index(name).ok_or_else(|| {
                    invalid(
                        format!("links[{i}].{field}"),
                        format!("no segment named {name:?}"),
                    )
                })
            };
            let (a, b) = (end("a", &l.a)?, end("b", &l.b)?);
            if a == b {
                return Err(invalid(
                    format!("links[{i}].b"),
                    format!("joins {:?} to itself", l.a),
                ));
            }
            links.push((a, b));
        }
        Ok(links)
    }

    /// Checks the socketcand server; returns every port name, the
    /// socketcand ports' after the configured ones.
    fn check_socketcand(&self) -> Result<Vec<String>, BridgeError> {
        let mut port_names: Vec<String> = self.ports.iter().map(|p| p.name.clone()).collect();
        let Some(sc) = &self.socketcand else {
            return Ok(port_names);
        };
        if sc.max_clients == 0 || sc.max_clients > MAX_SOCKETCAND_CLIENTS {
            return Err(invalid(
                "socketcand.max_clients",
                format!(
                    "{} is not between 1 and {MAX_SOCKETCAND_CLIENTS}",
                    sc.max_clients
                ),
            ));
        }
        for i in 0..sc.max_clients {
            let name = socketcand_port_name(i);
            if port_names.contains(&name) {
                return Err(invalid(
                    "socketcand",
                    format!("port name {name:?} is taken by a configured port"),
                ));
            }
            port_names.push(name);
        }
        Ok(port_names)
    }

    fn check_babble(
        &self,
        port_index: impl Fn(&str) -> Option<PortId>,
    ) -> Result<Vec<BabbleSetup>, BridgeError> {
        let mut babble = Vec::new();
        for (name, b) in &self.faults.babble {
            let field = format!("faults.babble.{name}");
            let port = port_index(name)
                .ok_or_else(|| invalid(field.clone(), format!("no port named {name:?}")))?;
            let check = |e: faults::Invalid| {
                let e = e.within(&field);
                invalid(e.field, e.reason)
            };
            let frame = b.frame().map_err(check)?;
            if !self.timing.carries(&frame) {
                return Err(invalid(
                    format!("{field}.fd"),
                    format!("a {} bus carries no FD frames", self.timing),
                ));
            }
            babble.push(BabbleSetup {
                port,
                frame,
                period_ns: b.period_ns().map_err(check)?,
                count: b.count,
            });
        }
        Ok(babble)
    }

    fn check_cut(&self) -> Result<Vec<LinkId>, BridgeError> {
        self.faults
            .cut
            .iter()
            .enumerate()
            .map(|(i, name)| {
                self.links
                    .iter()
                    .position(|l| l.name == *name)
                    .map(LinkId)
                    .ok_or_else(|| {
                        invalid(
                            format!("faults.cut[{i}]"),
                            format!("no link named {name:?}"),
                        )
                    })
            })
            .collect()
    }

    fn check_capture_and_control(&self) -> Result<(), BridgeError> {
        if let (Some(a), Some(b)) = (&self.capture.pcap, &self.capture.candump)
            && a == b
        {
            return Err(invalid(
                "capture.candump",
                format!("{} is also the pcap file", b.display()),
            ));
        }
        if let Some(path) = &self.control_socket {
            let len = path.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(invalid(
                    "control_socket",
                    format!("{} is {len} bytes, the limit is 107", path.display()),
                ));
            }
            if let Some(p) = self.ports.iter().find(|p| p.socket == *path) {
                return Err(invalid(
                    "control_socket",
                    format!("{} is port {:?}'s socket", path.display(), p.name),
                ));
            }
        }
        Ok(())
    }

    fn check_ports(&self) -> Result<Vec<SegmentId>, BridgeError> {
        if self.segments.is_empty() {
            return Err(BridgeError::NoSegments);
        }
        let mut names = HashSet::new();
        for (index, name) in self.segments.iter().enumerate() {
            if name.is_empty() {
                return Err(BridgeError::EmptySegmentName { index });
            }
            if !names.insert(name.as_str()) {
                return Err(BridgeError::DuplicateSegment(name.clone()));
            }
            if name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
            {
                return Err(invalid(
                    format!("segments[{index}]"),
                    format!("{name:?} contains whitespace, a control character, '<' or '>'"),
                ));
            }
        }
        if self.tx_fifo_depth == 0 {
            return Err(BridgeError::ZeroDepth {
                field: "tx_fifo_depth",
            });
        }
        if self.rx_queue_depth == 0 {
            return Err(BridgeError::ZeroDepth {
                field: "rx_queue_depth",
            });
        }
        let mut port_names = HashSet::new();
        let mut segment_of = Vec::with_capacity(self.ports.len());
        for (index, port) in self.ports.iter().enumerate() {
            if port.name.is_empty() {
                return Err(BridgeError::EmptyPortName { index });
            }
            if !port_names.insert(port.name.as_str()) {
                return Err(BridgeError::DuplicatePortName(port.name.clone()));
            }
            if port.tx_fifo_depth == Some(0) {
                return Err(invalid(
                    format!("ports[{index}] ({}).tx_fifo_depth", port.name),
                    "must be at least 1",
                ));
            }
            let segment =
                self.segment_index(&port.segment)
                    .ok_or_else(|| BridgeError::UnknownSegment {
                        port: port.name.clone(),
                        segment: port.segment.clone(),
                    })?;
            segment_of.push(segment);
            let len = port.socket.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(BridgeError::SocketPathTooLong {
                    port: port.name.clone(),
                    path: port.socket.clone(),
                    len,
                });
            }
            if let Some(first) = self.ports[..index].iter().find(|p| p.socket == port.socket) {
                return Err(BridgeError::DuplicateSocket {
                    first: first.name.clone(),
                    second: port.name.clone(),
                    path: port.socket.clone(),
                });
            }
        }
        Ok(segment_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_topology_chains_extension_frames() {
        let t = Topology::default_library();
        assert_eq!(t.segments, ["base", "ext1", "ha"]);
        let links: Vec<(&str, &str, &str)> = t
            .links
            .iter()
            .map(|l| (l.name.as_str(), l.a.as_str(), l.b.as_str()))
            .collect();
        assert_eq!(
            links,
            [("base-ext1", "base", "ext1"), ("ext1-ha", "ext1", "ha")]
        );
        let names = |t: Topology| t.links.into_iter().map(|l| l.name).collect::<Vec<_>>();
        assert_eq!(names(Topology::library(0, true)), ["base-ha"]);
        assert_eq!(
            names(Topology::library(3, false)),
            ["base-ext1", "ext1-ext2", "ext2-ext3"]
        );
        assert_eq!(Topology::library(0, false).segments, ["base"]);
        let c = BridgeConfig::default().with_topology(Topology::default_library());
        assert_eq!((c.segments.len(), c.links.len()), (3, 2));
    }

    fn base() -> BridgeConfig {
        BridgeConfig {
            segments: vec!["base".into(), "ext".into()],
            ports: vec![
                PortConfig::new("master", "base", "/tmp/m.sock"),
                PortConfig::new("n1", "ext", "/tmp/n1.sock"),
            ],
            ..BridgeConfig::default()
        }
    }

    #[test]
    fn validation_names_the_field_or_port() {
        type Edit = fn(&mut BridgeConfig);
        let cases: [(Edit, &str); 11] = [
            (|c| c.segments.clear(), "config: segments is empty"),
            (
                |c| c.segments.push("base".into()),
                "config: segment \"base\" is listed twice",
            ),
            (
                |c| c.segments[1].clear(),
                "config: segment 1 has an empty name",
            ),
            (
                |c| c.ports[1].segment = "ha".into(),
                "config: port \"n1\" names unknown segment \"ha\"",
            ),
            (
                |c| c.ports[1].name = "master".into(),
                "config: port name \"master\" is used twice",
            ),
            (
                |c| c.ports[0].name.clear(),
                "config: port 0 has an empty name",
            ),
            (
                |c| c.ports[1].socket = "/tmp/m.sock".into(),
                "config: ports \"master\" and \"n1\" both use socket /tmp/m.sock",
            ),
            (
                |c| c.ports[0].socket = format!("/{}", "x".repeat(107)).into(),
                "config: port \"master\": socket path /xxx",
            ),
            (
                |c| c.ports[1].tx_fifo_depth = Some(0),
                "config: ports[1] (n1).tx_fifo_depth: must be at least 1",
            ),
            (
                |c| c.tx_fifo_depth = 0,
                "config: tx_fifo_depth must be at least 1",
            ),
            (
                |c| c.rx_queue_depth = 0,
                "config: rx_queue_depth must be at least 1",
            ),
        ];
        for (edit, expected) in cases {
            let mut config = base();
            edit(&mut config);
            let err = config.validate().expect_err(expected).to_string();
            assert!(
                err.starts_with(expected),
                "{err:?} does not start with {expected:?}"
            );
        }
        assert_eq!(base().validate().unwrap(), vec![0, 1]);
        // Links, faults, capture, socketcand and the control socket.
        let cases: [(Edit, &str); 14] = [
            (
                |c| c.links.push(LinkConfig::between("base", "moon")),
                "config: links[0].b: no segment named \"moon\"",
            ),
            (
                |c| c.links.push(LinkConfig::between("base", "base")),
                "config: links[0].b: joins \"base\" to itself",
            ),
            (
                |c| {
                    c.links.push(LinkConfig::between("base", "ext"));
                    c.links.push(LinkConfig::between("base", "ext"));
                },
                "config: links[1].name: \"base-ext\" is used twice",
            ),
            (
                |c| c.segments[1] = "ext 1".into(),
                "config: segments[1]: \"ext 1\" contains whitespace",
            ),
            (
                |c| c.faults.rules.push(crate::Fault::loss(2.0)),
                "config: faults.rules[0].probability: 2 is not between 0 and 1",
            ),
            (
                |c| c.faults.rules.push(crate::Fault::loss(0.5).on_port("n9")),
                "config: faults.rules[0].port: no port named \"n9\"",
            ),
            (
                |c| c.faults.link_down.push("n9".into()),
                "config: faults.link_down[0]: no port named \"n9\"",
            ),
            (
                |c| c.faults.cut.push("base-ext".into()),
                "config: faults.cut[0]: no link named \"base-ext\"",
            ),
            (
                |c| {
                    c.faults.babble.insert(
                        "n1".into(),
                        crate::Babble {
                            id: 0x800,
                            ..Default::default()
                        },
                    );
                },
                "config: faults.babble.n1.id: 0x800 does not fit",
            ),
            (
                |c| {
                    c.timing = BitTiming::Classic1m;
                    c.faults.babble.insert(
                        "n1".into(),
                        crate::Babble {
                            fd: true,
                            ..Default::default()
                        },
                    );
                },
                "config: faults.babble.n1.fd: a classic-1m bus carries no FD frames",
            ),
            (
                |c| {
                    c.capture.pcap = Some("/tmp/x".into());
                    c.capture.candump = Some("/tmp/x".into());
                },
                "config: capture.candump: /tmp/x is also the pcap file",
            ),
            (
                |c| {
                    c.socketcand = Some(SocketcandConfig {
                        max_clients: 0,
                        ..Default::default()
                    })
                },
                "config: socketcand.max_clients: 0 is not between 1 and 64",
            ),
            (
                |c| {
                    c.socketcand = Some(SocketcandConfig::default());
                    c.ports[1].name = "socketcand2".into();
                },
                "config: socketcand: port name \"socketcand2\" is taken",
            ),
            (
                |c| c.control_socket = Some("/tmp/m.sock".into()),
                "config: control_socket: /tmp/m.sock is port \"master\"'s socket",
            ),
        ];
        for (edit, expected) in cases {
            let mut config = base();
            edit(&mut config);
            let err = config.validate().expect_err(expected).to_string();
            assert!(
                err.starts_with(expected),
                "{err:?} does not start with {expected:?}"
            );
        }
        // Faults may name socketcand ports.
        let mut config = base();
        config.socketcand = Some(SocketcandConfig::default());
        config
            .faults
            .rules
            .push(crate::Fault::loss(0.5).on_port("socketcand3"));
        assert!(config.validate().is_ok());
        // Exactly 107 bytes is fine.
        let mut config = base();
        config.ports[0].socket = format!("/{}", "x".repeat(106)).into();
        assert!(config.validate().is_ok());
    }
}
