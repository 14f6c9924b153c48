//! CRC-32 (ISO-HDLC, the Ethernet/zlib CRC), one table lookup per byte, or
//! four lookups per four bytes ([`update_word`], "slice-by-4"). The 4 KiB of
//! tables are built at compile time: every received frame is checked, and a
//! guest cannot afford eight shifts per byte at a full bus's rate. It guards
//! link frames; it is not the CAN CRC.

/// The reflected polynomial.
const POLY: u32 = 0xEDB8_8320;

/// `TABLES[k][i]` is the CRC state after feeding byte `i`, then `k` zero
/// bytes, into a zero state.
static TABLES: [[u32; 256]; 4] = tables();

const fn tables() -> [[u32; 256]; 4] {
    let mut t = [[0u32; 256]; 4];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (POLY & mask);
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 4 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Feeds `bytes` into a running CRC state. Start with [`INIT`] and finish
/// with [`finish`].
pub fn update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = update_byte(crc, b);
    }
    crc
}

/// Feeds one byte into a running CRC state.
#[inline(always)]
pub fn update_byte(crc: u32, b: u8) -> u32 {
    TABLES[0][(crc as u8 ^ b) as usize] ^ (crc >> 8)
}

/// Feeds four bytes, read as a little-endian word, into a running CRC
/// state: the same as four [`update_byte`]s, with four lookups that do not
/// wait on each other.
#[inline(always)]
pub fn update_word(crc: u32, word: u32) -> u32 {
    let x = crc ^ word;
    TABLES[3][(x & 0xFF) as usize]
        ^ TABLES[2][((x >> 8) & 0xFF) as usize]
        ^ TABLES[1][((x >> 16) & 0xFF) as usize]
        ^ TABLES[0][(x >> 24) as usize]
}

/// The running state after bytes followed by their own CRC (little-endian):
/// the same for all bytes, so a receiver can check a frame in the pass that
/// reads it, without knowing where the CRC starts.
pub const RESIDUE: u32 = 0xDEBB_20E3;

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
    extern crate std;
    use super::*;

    #[test]
    fn check_value() {
        // The catalogue check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn bytes_then_their_crc_leave_the_residue() {
        let mut data = std::vec::Vec::new();
        for n in 0..300u32 {
            let mut framed = data.clone();
            framed.extend_from_slice(&crc32(&data).to_le_bytes());
            assert_eq!(update(INIT, &framed), RESIDUE, "{n} bytes");
            // Any other trailing word leaves another state.
            *framed.last_mut().unwrap() ^= 1 << (n % 8);
            assert_ne!(update(INIT, &framed), RESIDUE, "{n} bytes, damaged");
            data.push((n.wrapping_mul(2_654_435_761) >> 24) as u8);
        }
    }

    #[test]
    fn incremental_equals_whole() {
        let data = b"bootcast link frame";
        let split = finish(update(update(INIT, &data[..7]), &data[7..]));
        assert_eq!(split, crc32(data));
    }

    #[test]
    fn table_matches_the_bitwise_definition() {
        fn bitwise(mut crc: u32, bytes: &[u8]) -> u32 {
            for &b in bytes {
                crc ^= b as u32;
                for _ in 0..8 {
                    let mask = (crc & 1).wrapping_neg();
                    crc = (crc >> 1) ^ (POLY & mask);
                }
            }
            crc
        }
        let data: [u8; 256] = core::array::from_fn(|i| (i as u8).wrapping_mul(97) ^ 0x5A);
        for len in [0, 1, 3, 64, 256] {
            assert_eq!(update(INIT, &data[..len]), bitwise(INIT, &data[..len]));
        }
        assert_eq!(TABLES[0][1], 0x7707_3096);
        assert_eq!(TABLES[0][255], 0x2D02_EF8D);
    }

    #[test]
    fn a_word_is_its_four_bytes() {
        let mut crc = INIT;
        for n in 0..64u32 {
            let word = n.wrapping_mul(2_654_435_761) ^ (n << 3);
            let bytewise = update(crc, &word.to_le_bytes());
            crc = update_word(crc, word);
            assert_eq!(crc, bytewise, "word {n}");
        }
    }
}
