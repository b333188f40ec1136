//! `Get`: a piece of one page. A memory hit is answered at once and allocates nothing. Anything
//! else is looked up while listening to the page's fill tap (`fill_tap.rs`): when the page is
//! being filled from the origin, by this request or by another one it joined, the node sends the
//! page head as soon as the origin's head is in, forwards the body chunks as they arrive, and
//! ends with the digest of the whole piece (wire `Status::Streamed`). Without that a miss costs
//! the origin read and then the whole transfer to the client, and a request that joined a fill
//! shows its client no first byte until the fill is done (so the client hedges); with it the
//! transfer rides along with the origin read.
//!
//! ```text
//!  get ─ memory hit ─► page answer
//!   └─ get_streaming ─► subscribe to the page's tap, lookup.find ─┬─ disk hit, handoff, failure: a plain answer
//!                                                                  └─ the origin's head on the tap: Answer { streamed }
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
    key::{ObjectKey, Volume},
    wire::{GetView, PageHeadRef, Tier, encode_streamed_page_head},
};

use super::{InFlight, Service};
use crate::{
    answer::{Answer, Streamed, piece},
    lookup::{Failure, Found, VolumeState},
    metrics::{ErrorKind, TierLabel, VolumeLabel, VolumeName, VolumeTier},
    store::{Page, PageKey},
};

impl Service {
    pub(super) async fn get<'a>(&'a self, get: GetView<'a>) -> Answer<'a> {
        let (volume, state) = match self.authorise(&get) {
            Ok(v) => v,
            Err(refusal) => return *refusal,
        };
        let Ok(permit) = self.inflight.try_acquire() else { return self.busy() };
        let in_flight = InFlight::new(&self.metrics().inflight, permit);
        let began = Instant::now();
        // A memory hit is answered here, allocating nothing; anything else may stream a fill.
        let Some(entry) = self.lookup.store.memory_get(volume.as_str(), get.key, get.page) else {
            return self.get_streaming(get, volume, state, in_flight, began).await;
        };
        drop(in_flight);
        self.answer_found(&get, volume, Ok((Found::Cached(entry), Tier::Memory)), began)
    }

    /// A `Get` that is not a memory hit: looks the page up listening to its fill tap, and if the
    /// origin's head comes in first (the page is being filled), answers with the head at once
    /// and the bytes as they come.
    async fn get_streaming<'a>(
        &'a self,
        get: GetView<'a>,
        volume: &'a Volume,
        state: &'a VolumeState,
        in_flight: InFlight<'a>,
        began: Instant,
    ) -> Answer<'a> {
        let Ok(key) = ObjectKey::new(get.key) else {
            // Not a key the cache can carry: the lookup says why.
            let found = self.lookup.find(volume, state, &get).await;
            drop(in_flight);
            return self.answer_found(&get, volume, found, began);
        };
        let tap = self.lookup.taps.tap(&PageKey { volume: volume.clone(), key, page: get.page });
        let mut events = tap.subscribe();
        // The request counts as in flight until its lookup ends (or is dropped); it holds the
        // tap until then.
        let mut lookup = Box::pin(async move {
            let found = self.lookup.find(volume, state, &get).await;
            drop((in_flight, tap));
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
            epoch: self.lookup.membership.epoch(),
            tier: Tier::Origin,
            etag: etag.as_deref(),
        };
        let rest = Box::pin(async move {
            let Ok((found, tier)) = lookup.await else {
                self.metrics().error(ErrorKind::Origin);
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

    /// Counts a page answer of `bytes` from `tier`: a hit or a miss, the bytes, the time taken.
    fn count_served(&self, volume: &Volume, tier: Tier, bytes: usize, began: Instant) {
        let metrics = self.metrics();
        let name = VolumeName(volume.clone());
        if tier == Tier::Origin {
            metrics.misses.get_or_create(&VolumeLabel { volume: name.clone() }).inc();
        } else {
            metrics.hits.get_or_create(&VolumeTier { volume: name.clone(), tier: tier.as_str() }).inc();
        }
        let served = VolumeTier { volume: name, tier: tier.as_str() };
        metrics.bytes_served.get_or_create(&served).inc_by(bytes as u64);
        let label = TierLabel { tier: tier.as_str() };
        metrics.request_seconds.get_or_create(&label).observe(began.elapsed().as_secs_f64());
    }

    /// The answer for what a lookup found (or why it found nothing), with its metrics counted.
    fn answer_found(
        &self,
        get: &GetView<'_>,
        volume: &Volume,
        found: Result<(Found, Tier), Failure>,
        began: Instant,
    ) -> Answer<'static> {
        match found {
            Ok((found, tier)) => {
                let answer = self.slice(get, found.page(), tier);
                self.count_served(volume, tier, answer.payload.len(), began);
                answer
            }
            Err(Failure::OutOfRange { size }) => {
                // The page starts past the object's end: an empty answer that carries the size.
                let empty = Page { object_size: size, etag: None, digest: 0, bytes: Bytes::new() };
                self.slice(get, &empty, Tier::Origin)
            }
            Err(failure) => self.refuse_failure(get, failure),
        }
    }
}
