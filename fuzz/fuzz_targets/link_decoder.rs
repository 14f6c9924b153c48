//! The link codec's streaming decoder on arbitrary bytes: it never panics,
//! and whatever it accepts encodes back to something it decodes the same.
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
    for &b in data {
        let Some(Ok(item)) = d.push_item(b) else {
            continue;
        };
        let mut out = [0u8; MAX_ENCODED];
        let n = match &item {
            Item::Frame(f) => link::encode(f, &mut out),
            Item::SetFilter(filter) => link::encode_filter(filter, &mut out),
        };
        assert_eq!(decode_one(&out[..n]), Some(item), "re-encoded item differs");
    }
});
