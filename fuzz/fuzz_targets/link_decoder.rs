//! The link codec's streaming decoder on arbitrary bytes: it never panics,
//! whatever it accepts encodes back to something it decodes the same, and
//! the bulk entry point gives exactly what byte-by-byte feeding gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::link::{self, Decoder, Item, MAX_ENCODED};

fn decode_one(bytes: &[u8]) -> Option<Item> {
    let mut d = Decoder::new();
    let mut item = None;
    for &b in bytes {
        if let Some(r) = d.push_item(b) {
            item = r.ok();
        }
    }
    item
}

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new();
    let mut bytewise = Vec::new();
    for &b in data {
        let Some(r) = d.push_item(b) else {
            continue;
        };
        bytewise.push(r);
        let Ok(item) = r else {
            continue;
        };
        let mut out = [0u8; MAX_ENCODED];
        let n = match &item {
            Item::Frame(f) => link::encode(f, &mut out),
            Item::SetFilter(filter) => link::encode_filter(filter, &mut out),
            Item::At(t) => link::encode_at(*t, &mut out),
            Item::Until(t) => link::encode_until(*t, &mut out),
            Item::Idle { at, wake } => link::encode_idle(*at, *wake, &mut out),
            Item::TxFree(n) => link::encode_tx_free(*n, &mut out),
        };
        assert_eq!(decode_one(&out[..n]), Some(item), "re-encoded item differs");
    }
    // The same bytes in pieces whose lengths the bytes themselves choose.
    let mut d = Decoder::new();
    let mut bulk = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let len = 1 + (rest[0] as usize * 7) % rest.len();
        let mut piece = &rest[..len];
        rest = &rest[len..];
        while !piece.is_empty() {
            let (n, r) = d.push_slice_item(piece);
            bulk.extend(r);
            piece = &piece[n..];
        }
    }
    assert_eq!(bulk, bytewise, "bulk and byte-by-byte decoding differ");
});
