//! A `Members` answer's JSON (what a client builds its ring from): parsing never panics, and an
//! answer the client's check accepts (`RingView::from_answer`: members, weight and ids within the
//! limits) builds a ring, an epoch and owners without panicking or allocating without bound.
#![no_main]

use cache_proto::{members::RingView, wire::MembersAnswer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice::<MembersAnswer>(data) else { return };
    let json = serde_json::to_vec(&answer).expect("serialises");
    assert_eq!(serde_json::from_slice::<MembersAnswer>(&json).ok(), Some(answer.clone()));
    let count = answer.members.len();
    let Ok(view) = RingView::from_answer(answer) else { return };
    assert_eq!(view.members.len(), count);
    let shares = view.ring.shares();
    assert_eq!(shares.len(), view.members.len());
    for point in [0, 1 << 63, u64::MAX] {
        if let Some(owner) = view.ring.owner(point) {
            assert!(owner < view.members.len());
        }
        assert!(view.ring.walk(point).count() <= view.members.len());
    }
});
