//! Hex digits as bytes, for key files and for test vectors written in the
//! source.

/// 64 hex digits as 32 bytes, at compile time (a bad digit fails the build).
pub(crate) const fn hex32(digits: &str) -> [u8; 32] {
    match parse_hex32(digits) {
        Some(bytes) => bytes,
        None => panic!("not 64 hex digits"),
    }
}

const fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// 64 hex digits (either case) as 32 bytes; `None` for anything else.
pub(crate) const fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let (Some(hi), Some(lo)) = (hex_nibble(b[2 * i]), hex_nibble(b[2 * i + 1])) else {
            return None;
        };
        out[i] = hi << 4 | lo;
        i += 1;
    }
    Some(out)
}
