//! Bundle parsing on arbitrary bytes: never panics, every accepted entry
//! lies inside the bundle, and the entries lay out again as the same bundle.
#![no_main]

use images::bundle::{self, Bundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(b) = Bundle::parse(data) else {
        return;
    };
    let mut parts = Vec::new();
    for e in b.entries() {
        let part = data
            .get(e.offset as usize..e.offset as usize + e.len as usize)
            .expect("an accepted entry lies inside the bundle");
        parts.push((e.node_type, part));
    }
    let rebuilt = bundle::build(&parts).expect("accepted entries bundle again");
    let again = Bundle::parse(&rebuilt).expect("a built bundle parses");
    assert!(
        again
            .entries()
            .map(|e| (e.node_type, e.len))
            .eq(b.entries().map(|e| (e.node_type, e.len)))
    );
});
