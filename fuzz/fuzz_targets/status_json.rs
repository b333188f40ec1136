//! A `Status` answer's JSON (what `cachectl status` shows): parsing never panics, and what
//! parses serialises again.
#![no_main]

use cache_proto::wire::NodeStatus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(status) = serde_json::from_slice::<NodeStatus>(data) else { return };
    let json = serde_json::to_vec(&status).expect("serialises");
    let again: NodeStatus = serde_json::from_slice(&json).expect("what we write, we read");
    // Floats may differ in the last bit (serde_json parses them best-effort); the rest may not.
    assert_eq!(NodeStatus { p50_ms: None, p99_ms: None, ..again }, NodeStatus { p50_ms: None, p99_ms: None, ..status });
});
