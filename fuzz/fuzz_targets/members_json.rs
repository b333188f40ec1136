//! A `Members` answer's JSON (what a client builds its ring from): parsing never panics, and
//! an answer of a size a client accepts (`ring_source::MAX_MEMBERS`) builds a ring, an epoch and
//! owners without panicking or allocating without bound.
#![no_main]

use cache_proto::{members::RingView, wire::MembersAnswer};
use cache_client::{ring_source::MAX_MEMBERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice::<MembersAnswer>(data) else { return };
    let json = serde_json::to_vec(&answer).expect("serialises");
    assert_eq!(serde_json::from_slice::<MembersAnswer>(&json).ok(), Some(answer.clone()));
    if answer.members.len() > MAX_MEMBERS {
        return;
    }
    let view = RingView::new(answer.members);
    let shares = view.ring.shares();
    assert_eq!(shares.len(), view.members.len());
    for point in [0, 1 << 63, u64::MAX] {
        if let Some(owner) = view.ring.owner(point) {
            assert!(owner < view.members.len());
        }
        assert!(view.ring.walk(point).count() <= view.members.len());
    }
});
