//! `Request::decode` on any bytes: never panics, never claims more bytes than it was given, and
//! whatever it accepts encodes back to a frame that decodes to the same request.
#![no_main]

use cache_proto::wire::{REQUEST_PREFIX_LEN, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(prefix) = data.first_chunk::<REQUEST_PREFIX_LEN>() {
        // The node reads the prefix on its own first; it must agree with the whole decode.
        if let Err(e) = Request::parse_prefix(prefix) {
            assert_eq!(Request::decode(data), Err(e));
        }
    }
    let Ok(Some((request, used))) = Request::decode(data) else { return };
    assert!(used >= REQUEST_PREFIX_LEN && used <= data.len(), "used {used} of {}", data.len());
    let frame = request.encode();
    assert_eq!(Request::decode(&frame), Ok(Some((request, frame.len()))));
});
