//! A miss answered while it is filled: when this request leads a fill from the origin, the node
//! sends the page head as soon as the origin's head is in, forwards the body chunks as they
//! arrive, and ends with the digest of the whole piece (wire `Status::Streamed`). Without it a
//! miss costs the origin read and then the whole transfer to the client; with it the transfer
//! rides along with the origin read.
//!
//! ```text
//!  Service::get_streaming ─► lookup(tap) ─┬─ hit, waiter, handoff, failure: a plain answer
//!                                         └─ the origin's head on the tap: Answer { streamed }
//!  server::write_streamed ◄─ chunks from the tap ... then `rest`: the filled piece and its digest
//! ```
//!
//! The bytes that count are the filled page's, not the tap's: the server sends whatever part of
//! the piece the chunks did not cover from the filled page, and the digest over the filled
//! piece. Forwarded chunks that differ from it (a second origin answered after the first failed)
//! fail the client's digest check, and the client reads elsewhere. A fill that fails resets the
//! stream with `RESET_ORIGIN_FAILED`, which the client takes as an `OriginFailed` answer.

use std::time::Instant;

use bytes::Bytes;
use cache_client::origin::OriginEvent;
use cache_proto::{
    key::Volume,
    wire::{GetView, PageHeadRef, Tier, encode_streamed_page_head},
};
use tokio::sync::mpsc;

use crate::{
    answer::{Answer, Streamed, piece},
    metrics::ErrorKind,
    service::{InFlight, Service, VolumeState},
};

impl Service {
    /// A `Get` that is not a memory hit: looks the page up with a tap on the origin, and if the
    /// origin's head comes in first (this request leads the fill), answers with the head at once
    /// and the bytes as they come.
    pub(crate) async fn get_streaming<'a>(
        &'a self,
        get: GetView<'a>,
        volume: &'a Volume,
        state: &'a VolumeState,
        in_flight: InFlight<'a>,
        began: Instant,
    ) -> Answer<'a> {
        let (tap, mut events) = mpsc::unbounded_channel();
        // The request counts as in flight until its lookup ends (or is dropped).
        let mut lookup = Box::pin(async move {
            let found = self.lookup(volume, state, &get, Some(&tap)).await;
            drop(in_flight);
            found
        });
        let (object_size, etag) = loop {
            tokio::select! {
                found = &mut lookup => return self.answer_found(&get, volume, found, began),
                event = events.recv() => match event {
                    Some(OriginEvent::Head { object_size, etag }) => break (object_size, etag),
                    Some(OriginEvent::Chunk(_)) => {}
                    None => {
                        let found = lookup.await;
                        return self.answer_found(&get, volume, found, began);
                    }
                },
            }
        };
        let page_start = get.page.saturating_mul(u64::from(get.page_size));
        let page_len = object_size.saturating_sub(page_start).min(u64::from(get.page_size)) as usize;
        let start = (get.start as usize).min(page_len);
        let window = start..(start + get.len as usize).min(page_len);
        if window.is_empty() {
            let found = lookup.await;
            return self.answer_found(&get, volume, found, began);
        }
        let head = PageHeadRef {
            object_size,
            digest: 0,
            len: window.len() as u32,
            epoch: self.membership.epoch(),
            tier: Tier::Origin,
            etag: etag.as_deref(),
        };
        let rest = Box::pin(async move {
            let Ok((found, tier)) = lookup.await else {
                self.metrics.error(ErrorKind::Origin);
                return None;
            };
            let page = found.page();
            // Another object than the head announced (changed between origins): the server
            // resets the stream, as it does for a piece of another length.
            if page.object_size != object_size {
                return None;
            }
            let (bytes, digest) = piece(&get, page);
            self.count_served(volume, tier, bytes.len(), began);
            Some((bytes, digest))
        });
        Answer::page(|buf| encode_streamed_page_head(buf, &head), Bytes::new(), Some(Streamed { events, window, rest }))
    }
}
