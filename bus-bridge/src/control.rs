//! The control API: faults, topology and statistics while the bridge runs,
//! in process ([`BridgeControl`]) and as JSON lines on a unix socket.
//!
//! One request per line, one answer per line:
//!
//! ```text
//! {"cmd":"add_fault","fault":{"kind":"loss","port":"n3","probability":0.2}}
//! {"ok":true,"id":0}
//! {"cmd":"cut","link":"ext1-ha"}
//! {"ok":true,"changed":true}
//! {"cmd":"link_down","port":"n3","flush":true}
//! {"ok":true}
//! {"cmd":"add_fault","fault":{"kind":"loss","probability":2}}
//! {"ok":false,"error":{"field":"fault.probability","reason":"2 is not between 0 and 1"}}
//! ```
//!
//! Commands: `stats`, `faults`, `topology`, `capture_status`, `add_fault`
//! (`fault`), `remove_fault` (`id`), `clear_faults`, `link_down` (`port`,
//! optional `flush`), `link_up` (`port`), `cut` / `restore` (`link`),
//! `babble_start` (`port`, optional `babble`: [`Babble`]), `babble_stop`
//! (`port`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::arbiter::Command;
use crate::capture::CaptureStatus;
use crate::faults::{self, Babble, Fault, FaultEntry, Invalid};
use crate::ids::{LinkId, PortId};
use crate::shutdown::wait_shutdown;
use crate::stats::{BusStats, Shared};

/// Why a control request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A field of the request is wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, e.g. `fault.probability`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bridge is shutting down or gone.
    #[error("the bridge has stopped")]
    Stopped,
}

impl From<Invalid> for ControlError {
    fn from(e: Invalid) -> Self {
        ControlError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ControlError {
    ControlError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Segments, links and the arbitration domains they form now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyStatus {
    /// Segment names.
    pub segments: Vec<String>,
    /// Links and whether each is up.
    pub links: Vec<LinkStatus>,
    /// Arbitration domains, as segment names.
    pub domains: Vec<Vec<String>>,
}

/// A link and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// Link name.
    pub name: String,
    /// One end.
    pub a: String,
    /// The other end.
    pub b: String,
    /// Whether it joins its segments now.
    pub up: bool,
}

/// A handle on a running bridge's faults and topology. Cheap to clone;
/// every method fails with [`ControlError::Stopped`] once the bridge is
/// gone.
#[derive(Clone)]
pub struct BridgeControl {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
}

impl BridgeControl {
    fn port(&self, name: &str) -> Result<PortId, ControlError> {
        self.shared
            .port_index(name)
            .ok_or_else(|| invalid("port", format!("no port named {name:?}")))
    }

    fn link(&self, name: &str) -> Result<LinkId, ControlError> {
        self.shared
            .link_index(name)
            .ok_or_else(|| invalid("link", format!("no link named {name:?}")))
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ControlError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    /// Puts `fault` in force; returns its id.
    pub async fn add_fault(&self, fault: Fault) -> Result<u64, ControlError> {
        let shared = &self.shared;
        let rule = faults::compile(
            &fault,
            0,
            |p| shared.port_index(p),
            |s| shared.segment_index(s),
        )?;
        self.ask(|reply| Command::AddFault { rule, reply }).await
    }

    /// Removes rule `id`.
    pub async fn remove_fault(&self, id: u64) -> Result<(), ControlError> {
        match self.ask(|reply| Command::RemoveFault { id, reply }).await? {
            true => Ok(()),
            false => Err(invalid("id", format!("no fault rule with id {id}"))),
        }
    }

    /// Removes every rule; returns how many there were. Link-down,
    /// babbling and cut links are left as they are.
    pub async fn clear_faults(&self) -> Result<usize, ControlError> {
        self.ask(|reply| Command::ClearFaults { reply }).await
    }

    /// The rules in force.
    pub fn faults(&self) -> Vec<FaultEntry> {
        self.shared.bus().faults.clone()
    }

    /// Disconnects `port`'s transceiver: it neither sends nor receives.
    /// Its TX frames wait in its FIFO (and its client is held back) until
    /// the link is up again; with `flush`, they are dropped instead, and
    /// so is every frame it sends while down (`tx_link_down`).
    pub async fn link_down(&self, port: &str, flush: bool) -> Result<(), ControlError> {
        let port = self.port(port)?;
        self.ask(|reply| Command::LinkDown { port, flush, reply })
            .await
    }

    /// Reconnects `port`'s transceiver.
    pub async fn link_up(&self, port: &str) -> Result<(), ControlError> {
        let port = self.port(port)?;
        self.ask(|reply| Command::LinkUp { port, reply }).await
    }

    /// Cuts link `link`, partitioning its domain; `false` if it was cut.
    /// Frames waiting in TX FIFOs stay there and contend on their port's
    /// side of the cut; a paced frame on the wire in a domain that the cut
    /// splits is aborted and sent again (counted in `retransmissions`).
    /// Each frame then counts `link_cut` on every port it no longer
    /// reaches.
    pub async fn cut(&self, link: &str) -> Result<bool, ControlError> {
        let link = self.link(link)?;
        self.ask(|reply| Command::SetLink {
            link,
            up: false,
            reply,
        })
        .await
    }

    /// Restores link `link`, merging domains; `false` if it was up. The
    /// merged bus continues from the later of the two bus clocks.
    pub async fn restore(&self, link: &str) -> Result<bool, ControlError> {
        let link = self.link(link)?;
        self.ask(|reply| Command::SetLink {
            link,
            up: true,
            reply,
        })
        .await
    }

    /// Makes the bridge babble as `port` (replacing any babble there).
    pub async fn babble_start(&self, port: &str, babble: Babble) -> Result<(), ControlError> {
        let port = self.port(port)?;
        let frame = babble.frame().map_err(|e| e.within("babble"))?;
        if !self.shared.timing.carries(&frame) {
            return Err(invalid(
                "babble.fd",
                format!("a {} bus carries no FD frames", self.shared.timing),
            ));
        }
        let period_ns = babble.period_ns().map_err(|e| e.within("babble"))?;
        let count = babble.count;
        self.ask(|reply| Command::BabbleStart {
            port,
            frame,
            period_ns,
            count,
            reply,
        })
        .await
    }

    /// Stops `port`'s babble; `false` if it was not babbling.
    pub async fn babble_stop(&self, port: &str) -> Result<bool, ControlError> {
        let port = self.port(port)?;
        self.ask(|reply| Command::BabbleStop { port, reply }).await
    }

    /// On the virtual clock, stops the fleet's time where it is, for the
    /// end of a run: the bus is polled no more (nothing else goes on it or
    /// is counted), timed host clients are granted nothing more (they still
    /// take commands from outside the bus), and nodes run on unheld, what
    /// they send dropped, so that their QEMUs end as usual. On the wall
    /// clock it does nothing.
    pub async fn hold_time(&self) -> Result<(), ControlError> {
        self.ask(|reply| Command::HoldTime { reply }).await
    }

    /// On the virtual clock, holds the fleet's time at `at_ns` (never
    /// before the bus's time now) and returns once every node and timed
    /// host client has reached it, with that time: nothing on the bus gets
    /// past it until [`BridgeControl::resume`] with the same time. What the
    /// host does meanwhile (power cycles, faults, commands) happens at that
    /// point of virtual time. `None` at once on the wall clock.
    pub async fn pause_at(&self, at_ns: u64) -> Result<Option<u64>, ControlError> {
        let at = crate::clock::WallTime::from_ns(at_ns);
        let reached = self
            .ask(|reply| Command::PauseAt {
                at,
                releasing: None,
                reply,
            })
            .await?;
        Ok(reached.map(|t| t.as_ns()))
    }

    /// [`BridgeControl::pause_at`] `to_ns`, then [`BridgeControl::resume`]
    /// `from_ns`, in one step: time cannot run past `to_ns` between the
    /// two, as it could with two commands when nothing else holds it.
    pub async fn move_pause(&self, from_ns: u64, to_ns: u64) -> Result<Option<u64>, ControlError> {
        let at = crate::clock::WallTime::from_ns(to_ns);
        let releasing = Some(crate::clock::WallTime::from_ns(from_ns));
        let reached = self
            .ask(|reply| Command::PauseAt {
                at,
                releasing,
                reply,
            })
            .await?;
        Ok(reached.map(|t| t.as_ns()))
    }

    /// Lets the fleet's time go on past the pause at `at_ns` (as
    /// [`BridgeControl::pause_at`] returned it).
    pub async fn resume(&self, at_ns: u64) -> Result<(), ControlError> {
        let at = crate::clock::WallTime::from_ns(at_ns);
        self.ask(|reply| Command::Resume { at, reply }).await
    }

    /// On the virtual clock, returns once a node's clock (its QEMU) or a
    /// timed host client (a master) has joined the fleet's time on `port`:
    /// from then on the fleet's time waits for it. At once on the wall
    /// clock.
    pub async fn await_clock(&self, port: &str) -> Result<(), ControlError> {
        let port = self.port(port)?;
        self.ask(|reply| Command::AwaitClock { port, reply }).await
    }

    /// On the virtual clock, resets the node on `port` at virtual time
    /// `at_ns` (`None`: the bus's time now; never earlier): at the node's
    /// first stop from then on. Its QEMU resets as on a monitor
    /// `system_reset`, asked by its clock plugin; the bus's time holds at
    /// `at_ns` until it has. False on the wall clock or for a port without
    /// a clock: reset it through its monitor then.
    pub async fn reset_node(&self, port: &str, at_ns: Option<u64>) -> Result<bool, ControlError> {
        let port = self.port(port)?;
        let at = at_ns.map(crate::clock::WallTime::from_ns);
        self.ask(|reply| Command::ResetNode { port, at, reply })
            .await
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> BusStats {
        self.shared.snapshot()
    }

    /// The same snapshot as JSON.
    pub fn stats_json(&self) -> Value {
        serde_json::to_value(self.stats()).unwrap_or(Value::Null)
    }

    /// The capture, if one is configured.
    pub fn capture_status(&self) -> Option<CaptureStatus> {
        self.shared.capture.as_ref().map(|c| c.status())
    }

    /// Segments, links and domains now.
    pub fn topology(&self) -> TopologyStatus {
        let s = &self.shared;
        let (links, domains) = {
            let bus = s.bus();
            (bus.links.clone(), bus.domains.clone())
        };
        TopologyStatus {
            segments: s.segment_names.iter().cloned().collect(),
            links: s
                .links
                .enumerate()
                .map(|(i, l)| LinkStatus {
                    name: l.name.clone(),
                    a: s.segment_names[l.a].clone(),
                    b: s.segment_names[l.b].clone(),
                    up: links[i].up,
                })
                .collect(),
            domains: domains
                .iter()
                .map(|d| d.iter().map(|&i| s.segment_names[i].clone()).collect())
                .collect(),
        }
    }

    /// Runs one JSON request (see the module docs) and returns the JSON
    /// answer: `{"ok":true,…}` or `{"ok":false,"error":{"field","reason"}}`.
    pub async fn handle_json(&self, line: &str) -> Value {
        match self.execute_json(line).await {
            Ok(mut v) => {
                if let Value::Object(m) = &mut v {
                    m.insert("ok".into(), Value::Bool(true));
                }
                v
            }
            Err(ControlError::Invalid { field, reason }) => {
                json!({"ok": false, "error": {"field": field, "reason": reason}})
            }
            Err(ControlError::Stopped) => {
                json!({"ok": false, "error": {"field": "", "reason": "the bridge has stopped"}})
            }
        }
    }

    async fn execute_json(&self, line: &str) -> Result<Value, ControlError> {
        match parse_request(line)? {
            Request::Stats => Ok(json!({ "stats": self.stats_json() })),
            Request::Faults => Ok(json!({ "faults": self.faults() })),
            Request::Topology => Ok(json!({ "topology": self.topology() })),
            Request::CaptureStatus => Ok(json!({ "capture": self.capture_status() })),
            Request::AddFault(a) => {
                let id = self
                    .add_fault(a.fault)
                    .await
                    .map_err(|e| within(e, "fault"))?;
                Ok(json!({ "id": id }))
            }
            Request::RemoveFault(a) => {
                self.remove_fault(a.id).await?;
                Ok(json!({}))
            }
            Request::ClearFaults => Ok(json!({ "removed": self.clear_faults().await? })),
            Request::LinkDown(a) => {
                self.link_down(&a.port, a.flush).await?;
                Ok(json!({}))
            }
            Request::LinkUp(a) => {
                self.link_up(&a.port).await?;
                Ok(json!({}))
            }
            Request::Cut(a) => Ok(json!({ "changed": self.cut(&a.link).await? })),
            Request::Restore(a) => Ok(json!({ "changed": self.restore(&a.link).await? })),
            Request::BabbleStart(a) => {
                self.babble_start(&a.port, a.babble).await?;
                Ok(json!({}))
            }
            Request::BabbleStop(a) => {
                Ok(json!({ "was_babbling": self.babble_stop(&a.port).await? }))
            }
        }
    }
}

/// A JSON request, parsed.
enum Request {
    Stats,
    Faults,
    Topology,
    CaptureStatus,
    AddFault(AddFault),
    RemoveFault(ById),
    ClearFaults,
    LinkDown(LinkDown),
    LinkUp(ByPort),
    Cut(ByLink),
    Restore(ByLink),
    BabbleStart(BabbleStart),
    BabbleStop(ByPort),
}

/// Parses one request line, naming the field that is wrong.
fn parse_request(line: &str) -> Result<Request, ControlError> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| invalid("(request)", format!("not JSON: {e}")))?;
    let Value::Object(mut m) = v else {
        return Err(invalid("(request)", "not a JSON object"));
    };
    let cmd = match m.remove("cmd") {
        Some(Value::String(c)) => c,
        Some(_) => return Err(invalid("cmd", "not a string")),
        None => return Err(invalid("cmd", "missing")),
    };
    let args = Value::Object(m);
    Ok(match cmd.as_str() {
        "stats" => no_args(args).map(|()| Request::Stats)?,
        "faults" => no_args(args).map(|()| Request::Faults)?,
        "topology" => no_args(args).map(|()| Request::Topology)?,
        "capture_status" => no_args(args).map(|()| Request::CaptureStatus)?,
        "add_fault" => Request::AddFault(parse(args)?),
        "remove_fault" => Request::RemoveFault(parse(args)?),
        "clear_faults" => no_args(args).map(|()| Request::ClearFaults)?,
        "link_down" => Request::LinkDown(parse(args)?),
        "link_up" => Request::LinkUp(parse(args)?),
        "cut" => Request::Cut(parse(args)?),
        "restore" => Request::Restore(parse(args)?),
        "babble_start" => Request::BabbleStart(parse(args)?),
        "babble_stop" => Request::BabbleStop(parse(args)?),
        other => {
            return Err(invalid(
                "cmd",
                format!(
                    "unknown command {other:?} (expected one of stats, faults, topology, capture_status, add_fault, remove_fault, clear_faults, link_down, link_up, cut, restore, babble_start, babble_stop)"
                ),
            ));
        }
    })
}

fn within(e: ControlError, outer: &str) -> ControlError {
    match e {
        ControlError::Invalid { field, reason } => ControlError::Invalid {
            field: format!("{outer}.{field}"),
            reason,
        },
        other => other,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddFault {
    fault: Fault,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ById {
    id: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByPort {
    port: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByLink {
    link: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkDown {
    port: String,
    #[serde(default)]
    flush: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BabbleStart {
    port: String,
    #[serde(default)]
    babble: Babble,
}

fn no_args(args: Value) -> Result<(), ControlError> {
    parse::<NoArgs>(args).map(|_| ())
}

/// Deserializes `args`, naming the field that is wrong.
fn parse<T: serde::de::DeserializeOwned>(args: Value) -> Result<T, ControlError> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names unknown and missing fields in its message, not the path.
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| inner.split_once(p))
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name.to_owned());
        let field = match (path.as_str(), named) {
            (".", Some(n)) => n,
            (".", None) => "(request)".to_owned(),
            (p, Some(n)) if inner.starts_with("missing") => format!("{p}.{n}"),
            (p, _) => p.to_owned(),
        };
        ControlError::Invalid {
            field,
            reason: inner,
        }
    })
}

/// Longest request line.
const MAX_LINE: usize = 64 * 1024;
/// Control connections at once.
const MAX_CLIENTS: usize = 16;

/// Serves JSON-lines requests on `listener` until shutdown.
pub(crate) async fn serve(
    listener: UnixListener,
    control: BridgeControl,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = wait_shutdown(&mut shutdown) => break,
            Some(_) = clients.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((mut stream, _)) => {
                    if clients.len() >= MAX_CLIENTS {
                        let line = json!({"ok": false, "error": {"field": "", "reason": "too many control connections"}});
                        let _ = stream.write_all(format!("{line}\n").as_bytes()).await;
                        continue;
                    }
                    let control = control.clone();
                    clients.spawn(async move {
                        if let Err(e) = client(stream, control).await {
                            debug!(error = %e, "control connection ended");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "control accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    clients.shutdown().await;
}

async fn client(mut stream: tokio::net::UnixStream, control: BridgeControl) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line[..nl]);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let answer = control.handle_json(text).await;
            stream.write_all(format!("{answer}\n").as_bytes()).await?;
        }
        if buf.len() > MAX_LINE {
            let line = json!({"ok": false, "error": {"field": "(request)", "reason": format!("line longer than {MAX_LINE} bytes")}});
            stream.write_all(format!("{line}\n").as_bytes()).await?;
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
