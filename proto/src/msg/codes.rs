//! The fixed codes carried in message fields: node types, boot states, and
//! why a node refused an image, was reset or is told to reboot.

/// Node types, named after the seed's tape-library modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum NodeType {
    /// The accessor's work processor (robot controller).
    Accessor = 1,
    /// The accessor's XY motion processor.
    Xy = 2,
    /// A data storage drive's processor.
    Drive = 3,
    /// A communication processor (host interface).
    Comm = 4,
    /// An operator panel processor.
    OpPanel = 5,
}

impl NodeType {
    /// Every node type.
    pub const ALL: [NodeType; 5] = [
        NodeType::Accessor,
        NodeType::Xy,
        NodeType::Drive,
        NodeType::Comm,
        NodeType::OpPanel,
    ];

    /// The type with wire code `code`.
    pub fn from_code(code: u8) -> Option<NodeType> {
        NodeType::ALL.iter().copied().find(|t| *t as u8 == code)
    }

    /// The type's name as used in fleet files and reports.
    pub fn name(self) -> &'static str {
        match self {
            NodeType::Accessor => "accessor",
            NodeType::Xy => "xy",
            NodeType::Drive => "drive",
            NodeType::Comm => "comm",
            NodeType::OpPanel => "op-panel",
        }
    }

    /// The type called `name`.
    pub fn from_name(name: &str) -> Option<NodeType> {
        NodeType::ALL.iter().copied().find(|t| t.name() == name)
    }
}

/// Where a node is in its boot, as reported in `Status` and `Heartbeat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NodeState {
    /// Boot ROM self-test.
    SelfTest = 1,
    /// Minimal: asking for an image.
    Requesting = 2,
    /// Minimal: receiving a session for its type.
    Receiving = 3,
    /// All bytes in; checking the digest.
    Verifying = 4,
    /// Image accepted; jumping to it.
    Handoff = 5,
    /// The app is running.
    Running = 6,
    /// Self-test failed; the node stays minimal.
    Failed = 7,
}

impl NodeState {
    /// The state with wire code `code`.
    pub fn from_code(code: u8) -> Option<NodeState> {
        use NodeState::*;
        [
            SelfTest, Requesting, Receiving, Verifying, Handoff, Running, Failed,
        ]
        .into_iter()
        .find(|s| *s as u8 == code)
    }
}

/// Why a node refused an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    /// The SHA-256 of the loaded bytes differs from the manifest's.
    DigestMismatch = 1,
    /// The manifest names another node type.
    WrongType = 2,
    /// The manifest does not parse.
    BadManifest = 3,
    /// The image does not fit the image region, or its entry is outside it.
    OutOfRegion = 4,
    /// The session ended before every chunk arrived.
    Incomplete = 5,
    /// The session's part disagrees with the manifest it carried.
    Inconsistent = 6,
    /// The image version is below the node's minimum.
    VersionTooLow = 7,
    /// The signature does not verify.
    BadSignature = 8,
}

impl RejectReason {
    /// The reason with wire code `code`.
    pub fn from_code(code: u8) -> Option<RejectReason> {
        use RejectReason::*;
        [
            DigestMismatch,
            WrongType,
            BadManifest,
            OutOfRegion,
            Incomplete,
            Inconsistent,
            VersionTooLow,
            BadSignature,
        ]
        .into_iter()
        .find(|r| *r as u8 == code)
    }

    /// A short description for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::DigestMismatch => "digest mismatch",
            RejectReason::WrongType => "image is for another node type",
            RejectReason::BadManifest => "manifest does not parse",
            RejectReason::OutOfRegion => "image outside the image region",
            RejectReason::Incomplete => "session ended with chunks missing",
            RejectReason::Inconsistent => "session part disagrees with manifest",
            RejectReason::VersionTooLow => "version below the node's minimum",
            RejectReason::BadSignature => "bad signature",
        }
    }
}

/// How a node came to be in its boot ROM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ResetCause {
    /// RAM was lost: power-on.
    PowerOn = 1,
    /// A reset with RAM kept (e.g. QMP `system_reset`).
    Reset = 2,
    /// The app obeyed `Reboot`.
    SoftReboot = 3,
}

impl ResetCause {
    /// The cause with wire code `code`.
    pub fn from_code(code: u8) -> Option<ResetCause> {
        use ResetCause::*;
        [PowerOn, Reset, SoftReboot]
            .into_iter()
            .find(|r| *r as u8 == code)
    }
}

/// Why a node is told to reboot: `Reboot::reason`. Apps obey a `Reboot`
/// whatever its reason; the code is for logs and bus captures. Other codes
/// are allowed on the wire and mean "unspecified".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RebootReason {
    /// The testbed's own soft reboot (a test, a storm's `soft-reboot`), sent
    /// by the supervisor.
    Requested = 1,
    /// A reboot the scenario does not own: a storm's disturbance, sent from
    /// the tool port.
    Disturbance = 99,
}

impl RebootReason {
    /// The reason with wire code `code`.
    pub fn from_code(code: u8) -> Option<RebootReason> {
        use RebootReason::*;
        [Requested, Disturbance]
            .into_iter()
            .find(|r| *r as u8 == code)
    }
}
