//! The byte codec under the messages. Each message describes its layout once,
//! as a walk over its fields in wire order ([`Layout::fields`]); reading runs
//! that walk filling the fields in, writing runs it sending them out. So the
//! two directions cannot disagree, and what one refuses the other refuses.

use crate::frame::MAX_DATA;

/// Why a frame is not a bootcast message, or a message cannot be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgError {
    /// Not an extended-identifier frame.
    NotBootcast = 1,
    /// The identifier's kind bits name no message.
    UnknownKind = 2,
    /// The data field is shorter than the message.
    Truncated = 3,
    /// A field holds a value the message does not allow.
    BadField = 4,
    /// The message does not fit one frame (encoding only).
    TooLong = 5,
}

/// One direction of the codec. Multi-byte fields are little-endian.
pub(crate) trait Codec<'a> {
    /// `N` bytes as they are on the wire.
    fn bytes<const N: usize>(&mut self, v: &mut [u8; N]) -> Result<(), MsgError>;

    /// `n` reserved bytes: written as zeros, skipped when read.
    fn reserved(&mut self, n: usize) -> Result<(), MsgError>;

    /// Everything after the fields so far, up to the end of the frame.
    fn rest(&mut self, v: &mut &'a [u8]) -> Result<(), MsgError>;

    fn u8(&mut self, v: &mut u8) -> Result<(), MsgError> {
        let mut b = [*v];
        self.bytes(&mut b)?;
        *v = b[0];
        Ok(())
    }

    fn u16(&mut self, v: &mut u16) -> Result<(), MsgError> {
        let mut b = v.to_le_bytes();
        self.bytes(&mut b)?;
        *v = u16::from_le_bytes(b);
        Ok(())
    }

    /// Three bytes (chunk indices). A value above 24 bits cannot be
    /// written; a read one never is (reading starts from zeroed fields).
    fn u24(&mut self, v: &mut u32) -> Result<(), MsgError> {
        let [a, b, c, high] = v.to_le_bytes();
        if high != 0 {
            return Err(MsgError::BadField);
        }
        let mut low = [a, b, c];
        self.bytes(&mut low)?;
        *v = u32::from_le_bytes([low[0], low[1], low[2], 0]);
        Ok(())
    }

    fn u32(&mut self, v: &mut u32) -> Result<(), MsgError> {
        let mut b = v.to_le_bytes();
        self.bytes(&mut b)?;
        *v = u32::from_le_bytes(b);
        Ok(())
    }

    fn u64(&mut self, v: &mut u64) -> Result<(), MsgError> {
        let mut b = v.to_le_bytes();
        self.bytes(&mut b)?;
        *v = u64::from_le_bytes(b);
        Ok(())
    }
}

/// A message body and its one layout.
pub(crate) trait Layout<'a>: Sized + Default + Copy {
    /// Walks the fields in wire order through `c`.
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError>;

    /// Refuses values the message does not allow; run by both directions.
    fn check(&self) -> Result<(), MsgError> {
        Ok(())
    }
}

/// Reads a body from a frame's data field. Trailing bytes (CAN FD padding)
/// are ignored.
pub(crate) fn read<'a, L: Layout<'a>>(bytes: &'a [u8]) -> Result<L, MsgError> {
    let mut body = L::default();
    body.fields(&mut Reader { bytes, at: 0 })?;
    body.check()?;
    Ok(body)
}

/// Writes a body into `buf`; returns its length.
pub(crate) fn write<'a, L: Layout<'a>>(
    mut body: L,
    buf: &mut [u8; MAX_DATA],
) -> Result<usize, MsgError> {
    body.check()?;
    let mut w = Writer { buf, at: 0 };
    body.fields(&mut w)?;
    Ok(w.at)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgError> {
        let end = self.at.checked_add(n).ok_or(MsgError::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(MsgError::Truncated)?;
        self.at = end;
        Ok(s)
    }
}

impl<'a> Codec<'a> for Reader<'a> {
    fn bytes<const N: usize>(&mut self, v: &mut [u8; N]) -> Result<(), MsgError> {
        v.copy_from_slice(self.take(N)?);
        Ok(())
    }

    fn reserved(&mut self, n: usize) -> Result<(), MsgError> {
        self.take(n).map(|_| ())
    }

    fn rest(&mut self, v: &mut &'a [u8]) -> Result<(), MsgError> {
        *v = self.take(self.bytes.len().saturating_sub(self.at))?;
        Ok(())
    }
}

struct Writer<'b> {
    buf: &'b mut [u8; MAX_DATA],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), MsgError> {
        let end = self.at + bytes.len();
        self.buf
            .get_mut(self.at..end)
            .ok_or(MsgError::TooLong)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
}

impl<'a> Codec<'a> for Writer<'_> {
    fn bytes<const N: usize>(&mut self, v: &mut [u8; N]) -> Result<(), MsgError> {
        self.put(v)
    }

    fn reserved(&mut self, n: usize) -> Result<(), MsgError> {
        let end = self.at + n;
        self.buf
            .get_mut(self.at..end)
            .ok_or(MsgError::TooLong)?
            .fill(0);
        self.at = end;
        Ok(())
    }

    fn rest(&mut self, v: &mut &'a [u8]) -> Result<(), MsgError> {
        self.put(v)
    }
}
