//! CRC-32 (ISO-HDLC, the Ethernet/zlib CRC), table-free so the boot ROM stays
//! small. It guards link frames; it is not the CAN CRC.

/// Feeds `bytes` into a running CRC state. Start with [`INIT`] and finish
/// with [`finish`].
pub fn update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    crc
}

/// Initial CRC state.
pub const INIT: u32 = 0xFFFF_FFFF;

/// Final XOR of the CRC state.
pub fn finish(crc: u32) -> u32 {
    !crc
}

/// CRC-32 of `bytes` in one call.
pub fn crc32(bytes: &[u8]) -> u32 {
    finish(update(INIT, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // The catalogue check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn incremental_equals_whole() {
        let data = b"bootcast link frame";
        let split = finish(update(update(INIT, &data[..7]), &data[7..]));
        assert_eq!(split, crc32(data));
    }
}
