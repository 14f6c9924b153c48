//! What a bridge is made of: segments, ports, bit timing and queue sizes.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::timing::BitTiming;

/// The longest unix socket path: `sun_path` holds 108 bytes, one is the NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// A whole bridge.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// Segment names. Each segment is its own arbitration domain for now.
    pub segments: Vec<String>,
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
        }
    }
}

/// One drop on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Unique name, e.g. the node's name or `master`.
    pub name: String,
    /// Name of the segment the port is attached to.
    pub segment: String,
    /// Unix socket the bridge listens on for this port.
    pub socket: PathBuf,
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
        }
    }
}

/// Why a bridge did not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// `segments` is empty.
    #[error("config: segments is empty")]
    NoSegments,
    /// A segment name is empty.
    #[error("config: segment {index} has an empty name")]
    EmptySegmentName {
        /// Index in `segments`.
        index: usize,
    },
    /// Two segments share a name.
    #[error("config: segment {0:?} is listed twice")]
    DuplicateSegment(String),
    /// A port name is empty.
    #[error("config: port {index} has an empty name")]
    EmptyPortName {
        /// Index in `ports`.
        index: usize,
    },
    /// Two ports share a name.
    #[error("config: port name {0:?} is used twice")]
    DuplicatePortName(String),
    /// A port names a segment that `segments` does not list.
    #[error("config: port {port:?} names unknown segment {segment:?}")]
    UnknownSegment {
        /// The port.
        port: String,
        /// The segment it names.
        segment: String,
    },
    /// Two ports share a socket path.
    #[error("config: ports {first:?} and {second:?} both use socket {path}")]
    DuplicateSocket {
        /// The port listed first.
        first: String,
        /// The port listed second.
        second: String,
        /// The shared path.
        path: PathBuf,
    },
    /// A socket path does not fit `sun_path`.
    #[error("config: port {port:?}: socket path {path} is {len} bytes, the limit is 107")]
    SocketPathTooLong {
        /// The port.
        port: String,
        /// Its path.
        path: PathBuf,
        /// The path's length in bytes.
        len: usize,
    },
    /// A queue depth is zero.
    #[error("config: {field} must be at least 1")]
    ZeroDepth {
        /// `tx_fifo_depth` or `rx_queue_depth`.
        field: &'static str,
    },
    /// Something other than a socket sits at a port's path.
    #[error("port {port:?}: {path} exists and is not a socket; not removing it")]
    NotASocket {
        /// The port.
        port: String,
        /// Its path.
        path: PathBuf,
    },
    /// Another process listens at a port's path.
    #[error("port {port:?}: {path} is in use by a live listener")]
    SocketInUse {
        /// The port.
        port: String,
        /// Its path.
        path: PathBuf,
    },
    /// Binding a port's socket failed.
    #[error("port {port:?}: cannot listen on {path}")]
    Bind {
        /// The port.
        port: String,
        /// Its path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

impl BridgeConfig {
    /// Checks the configuration; returns each port's segment index.
    pub fn validate(&self) -> Result<Vec<usize>, BridgeError> {
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
            let segment = self
                .segments
                .iter()
                .position(|s| *s == port.segment)
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
        let cases: [(Edit, &str); 10] = [
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
        // Exactly 107 bytes is fine.
        let mut config = base();
        config.ports[0].socket = format!("/{}", "x".repeat(106)).into();
        assert!(config.validate().is_ok());
    }
}
