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
    assert_eq!(without_floats(again), without_floats(status));
});

/// `status` with its floats (latency quantiles, estimated costs) cleared.
fn without_floats(mut status: NodeStatus) -> NodeStatus {
    status.p50_ms = None;
    status.p99_ms = None;
    for v in &mut status.volumes {
        v.spent = 0.0;
        v.saved = 0.0;
        for o in &mut v.origins {
            o.spent = 0.0;
        }
    }
    status
}
