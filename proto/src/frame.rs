//! A CAN FD-like bus frame.

/// Largest data field of a CAN FD frame.
pub const MAX_DATA: usize = 64;
/// Largest data field of a classic CAN frame.
pub const CLASSIC_MAX_DATA: usize = 8;
/// Largest standard (11-bit) identifier.
pub const MAX_STANDARD_ID: u32 = 0x7FF;
/// Largest extended (29-bit) identifier.
pub const MAX_EXTENDED_ID: u32 = 0x1FFF_FFFF;

/// Frame flag: the identifier is extended (29 bits, CAN 2.0B).
pub const FLAG_EXTENDED: u8 = 0x01;
/// Frame flag: CAN FD format (up to 64 data bytes).
pub const FLAG_FD: u8 = 0x02;
/// Frame flag: bit-rate switch, the data phase runs at the data bit rate.
pub const FLAG_BRS: u8 = 0x04;
const KNOWN_FLAGS: u8 = FLAG_EXTENDED | FLAG_FD | FLAG_BRS;

/// Data lengths a CAN FD frame can carry, indexed by DLC.
pub const FD_LENGTHS: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64];

/// Why a frame is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameError {
    /// A flag bit that no frame format defines is set.
    UnknownFlags = 1,
    /// The identifier does not fit the 11 or 29 bits of its format.
    IdOutOfRange = 2,
    /// The data length is not one a DLC can express (FD) or exceeds 8 (classic).
    BadLength = 3,
    /// Bit-rate switch on a classic frame.
    BrsWithoutFd = 4,
}

/// One bus frame. Data beyond `len` is always zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    id: u32,
    flags: u8,
    len: u8,
    data: [u8; MAX_DATA],
}

impl core::fmt::Debug for Frame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Frame")
            .field("id", &format_args!("{:#x}", self.id))
            .field("flags", &self.flags)
            .field("data", &self.data())
            .finish()
    }
}

/// Smallest valid CAN FD length that holds `len` bytes, or `None` above 64.
pub fn fd_padded_len(len: usize) -> Option<usize> {
    FD_LENGTHS.iter().map(|&l| l as usize).find(|&l| l >= len)
}

impl Frame {
    /// A classic standard frame with identifier 0 and no data.
    pub(crate) const EMPTY: Frame = Frame {
        id: 0,
        flags: 0,
        len: 0,
        data: [0; MAX_DATA],
    };

    /// Builds a frame, checking identifier range, flags and length. A CAN FD
    /// frame whose length no DLC expresses is zero-padded to the next one, as
    /// a CAN FD controller does.
    pub fn new(id: u32, flags: u8, data: &[u8]) -> Result<Frame, FrameError> {
        let mut frame = Frame::EMPTY;
        frame.set(id, flags, data)?;
        Ok(frame)
    }

    /// [`Frame::new`] in place, so that a decoder need not copy the frame
    /// it returns. On error `self` is left as it was.
    #[inline]
    pub(crate) fn set(&mut self, id: u32, flags: u8, data: &[u8]) -> Result<(), FrameError> {
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags);
        }
        let max_id = if flags & FLAG_EXTENDED != 0 {
            MAX_EXTENDED_ID
        } else {
            MAX_STANDARD_ID
        };
        if id > max_id {
            return Err(FrameError::IdOutOfRange);
        }
        let fd = flags & FLAG_FD != 0;
        if !fd && flags & FLAG_BRS != 0 {
            return Err(FrameError::BrsWithoutFd);
        }
        let len = if fd {
            fd_padded_len(data.len()).ok_or(FrameError::BadLength)?
        } else if data.len() <= CLASSIC_MAX_DATA {
            data.len()
        } else {
            return Err(FrameError::BadLength);
        };
        self.id = id;
        self.flags = flags;
        self.len = len as u8;
        self.data[..data.len()].copy_from_slice(data);
        self.data[data.len()..].fill(0);
        Ok(())
    }

    /// An extended-identifier CAN FD frame with bit-rate switch, the format
    /// all bootcast messages use.
    pub fn fd_extended(id: u32, data: &[u8]) -> Result<Frame, FrameError> {
        Frame::new(id, FLAG_EXTENDED | FLAG_FD | FLAG_BRS, data)
    }

    /// The identifier (11 or 29 bits).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The flag bits (`FLAG_*`).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the identifier is 29 bits.
    pub fn is_extended(&self) -> bool {
        self.flags & FLAG_EXTENDED != 0
    }

    /// Whether this is a CAN FD frame.
    pub fn is_fd(&self) -> bool {
        self.flags & FLAG_FD != 0
    }

    /// Whether the data phase switches to the data bit rate.
    pub fn is_brs(&self) -> bool {
        self.flags & FLAG_BRS != 0
    }

    /// The data field, `len` bytes (padding included).
    pub fn data(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }

    /// The data length code for this frame's length.
    pub fn dlc(&self) -> u8 {
        FD_LENGTHS.iter().position(|&l| l == self.len).unwrap_or(0) as u8
    }

    /// Arbitration order: `true` when `self` wins the bus against `other`.
    /// The lower identifier wins; with the same 11-bit base, a standard frame
    /// beats an extended one (its dominant IDE bit comes first).
    pub fn wins_against(&self, other: &Frame) -> bool {
        self.arbitration_key() < other.arbitration_key()
    }

    /// A key that sorts frames in the order they win arbitration.
    pub fn arbitration_key(&self) -> u64 {
        // Bits sent in arbitration: 11 base bits, then (extended) SRR=1,
        // IDE=1, 18 extension bits; (standard) RTR/RRS=0, IDE=0.
        if self.is_extended() {
            let base = (self.id >> 18) as u64;
            let ext = (self.id & 0x3FFFF) as u64;
            (base << 20) | (1 << 19) | (1 << 18) | ext
        } else {
            (self.id as u64) << 20
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_padded_to_a_dlc() {
        let f = Frame::fd_extended(1, &[1; 9]).unwrap();
        assert_eq!(f.data().len(), 12);
        assert_eq!(&f.data()[9..], &[0, 0, 0]);
        assert_eq!(f.dlc(), 9);
        assert_eq!(Frame::fd_extended(1, &[0; 65]), Err(FrameError::BadLength));
        assert_eq!(Frame::new(1, 0, &[0; 9]), Err(FrameError::BadLength));
    }

    #[test]
    fn identifier_ranges() {
        assert!(Frame::new(0x7FF, 0, &[]).is_ok());
        assert_eq!(Frame::new(0x800, 0, &[]), Err(FrameError::IdOutOfRange));
        assert!(Frame::new(MAX_EXTENDED_ID, FLAG_EXTENDED, &[]).is_ok());
        assert_eq!(
            Frame::new(1 << 29, FLAG_EXTENDED, &[]),
            Err(FrameError::IdOutOfRange)
        );
        assert_eq!(Frame::new(1, 0x80, &[]), Err(FrameError::UnknownFlags));
        assert_eq!(Frame::new(1, FLAG_BRS, &[]), Err(FrameError::BrsWithoutFd));
    }

    #[test]
    fn arbitration_order() {
        let std_frame = Frame::new(0x123, 0, &[]).unwrap();
        let ext_same_base = Frame::new(0x123 << 18, FLAG_EXTENDED, &[]).unwrap();
        let ext_lower = Frame::new(0x122 << 18 | 0x3FFFF, FLAG_EXTENDED, &[]).unwrap();
        assert!(std_frame.wins_against(&ext_same_base));
        assert!(ext_lower.wins_against(&std_frame));
        assert!(!std_frame.wins_against(&std_frame));
    }
}
