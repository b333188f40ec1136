//! `RequestView::decode_body` (what a node decodes, borrowing from the frame) on any body of any
//! kind: never panics, agrees with the owned decode, and a view it accepts has names valid
//! enough to own and a geometry that the node can slice without overflow.
#![no_main]

use cache_proto::wire::{Request, RequestKind, RequestView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let Ok(kind) = RequestKind::try_from(selector % 7 + 1) else { return };
    let view = RequestView::decode_body(kind, body);
    let owned = Request::decode_body(kind, body);
    match view {
        Ok(view) => {
            let request = view.to_owned().expect("a view that decoded has valid names");
            assert_eq!(owned, Ok(request.clone()));
            if let Request::Get(get) = &request {
                get.check_range().expect("a decoded get has a valid range");
                // The node computes the object offset of what it serves.
                let _ = get.object_offset();
            }
            assert_eq!(request.kind(), kind);
        }
        Err(e) => assert_eq!(owned, Err(e)),
    }
});
