//! Fleet file parsing on arbitrary text: an error or a fleet, never a panic.
#![no_main]

use host_orchestrator::fleet::Fleet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(f) = Fleet::parse(text)
    {
        assert!(!f.nodes.is_empty());
        let _ = (f.types(), f.segments(), f.max_window());
    }
});
