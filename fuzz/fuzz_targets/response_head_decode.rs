//! `ResponseHead::decode` for each request kind (what a client decodes from a node): never
//! panics, never claims more bytes than it was given, and whatever it accepts encodes back to a
//! frame that decodes to the same head.
#![no_main]

use cache_proto::wire::{RESPONSE_PREFIX_LEN, RequestKind, ResponseHead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else { return };
    let Ok(kind) = RequestKind::try_from(selector % 7 + 1) else { return };
    if let Some(prefix) = frame.first_chunk::<RESPONSE_PREFIX_LEN>()
        && let Err(e) = ResponseHead::parse_prefix(prefix)
    {
        assert_eq!(ResponseHead::decode(kind, frame), Err(e));
    }
    let Ok(Some((head, used))) = ResponseHead::decode(kind, frame) else { return };
    assert!(used >= RESPONSE_PREFIX_LEN && used <= frame.len(), "used {used} of {}", frame.len());
    let _ = head.payload_len();
    let again = head.encode();
    assert_eq!(ResponseHead::decode(kind, &again), Ok(Some((head, again.len()))));
});
