//! The crate's error: why a bridge did not start. Its own module, so that
//! every module that can fail at start (config, capture, port) depends on
//! it and on nothing else of the others.

use std::path::PathBuf;

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
    /// A field is wrong (links, faults, capture, socketcand, control).
    #[error("config: {field}: {reason}")]
    Invalid {
        /// The field, e.g. `faults.rules[2].probability`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A capture file cannot be written.
    #[error("capture: cannot write {field} file {path}")]
    Capture {
        /// `pcap` or `candump`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The socketcand server cannot listen.
    #[error("socketcand: cannot listen on 127.0.0.1:{port}")]
    Socketcand {
        /// The port asked for.
        port: u16,
        /// What the OS said.
        #[source]
        source: std::io::Error,
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
