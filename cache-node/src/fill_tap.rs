//! The fills in progress, so that every request for a page being filled from the origin sees the
//! origin's head and bytes as they arrive, not only the request whose fill runs. Without this a
//! request that joined a fill (a JuiceFS read of a block's first 128 KiB and of the rest, sent
//! together) got no answer until the whole page was in; its client, seeing no first byte, hedged
//! and in the end filled the page a second time elsewhere.
//!
//! ```text
//! Fill::run ──begin, publish(Head, Chunk...), end──► FillTap (one per page key while anyone holds it)
//!                                                      │ replays what came so far, then follows
//! each Get of the page ──subscribe──────────────────► an event channel (server::write_streamed)
//! ```
//! A tap lives while a fill or a request holds it (the registry keeps only a weak reference), so
//! memory is bounded by the pages in flight: the chunks of one fill (at most a page) are kept
//! until it ends, for the requests that subscribe late.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use cache_client::origin::OriginEvent;
use tokio::sync::mpsc;

use crate::store::PageKey;

/// The taps of the pages being filled (or asked for) now.
#[derive(Debug, Default)]
pub struct FillTaps {
    taps: Mutex<HashMap<PageKey, Weak<FillTap>>>,
}

impl FillTaps {
    /// The tap of `key`, shared by its fill and every request for it while any of them holds it.
    pub fn tap(self: &Arc<Self>, key: &PageKey) -> Arc<FillTap> {
        let mut taps = self.taps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tap) = taps.get(key).and_then(Weak::upgrade) {
            return tap;
        }
        let tap = Arc::new(FillTap { key: key.clone(), taps: Arc::downgrade(self), state: Mutex::default() });
        taps.insert(key.clone(), Arc::downgrade(&tap));
        tap
    }

    /// Taps held now (for tests: none once every request and fill is done).
    pub fn len(&self) -> usize {
        self.taps.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One page's fill as it goes: what it told so far, and who listens.
#[derive(Debug)]
pub struct FillTap {
    key: PageKey,
    taps: Weak<FillTaps>,
    state: Mutex<TapState>,
}

#[derive(Debug, Default)]
struct TapState {
    /// What the running fill told so far.
    events: Vec<OriginEvent>,
    subscribers: Vec<mpsc::UnboundedSender<OriginEvent>>,
}

impl FillTap {
    /// The events of the page's fill: those of the running one so far, then the rest as they
    /// come (of a fill that starts later, if none runs yet). The channel closes when the fill
    /// ends.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<OriginEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.lock();
        for event in &state.events {
            let _ = tx.send(event.clone());
        }
        state.subscribers.push(tx);
        rx
    }

    /// A fill starts: what an earlier fill told is forgotten (its subscribers saw it already).
    pub fn begin(&self) {
        self.lock().events.clear();
    }

    pub fn publish(&self, event: OriginEvent) {
        let mut state = self.lock();
        state.subscribers.retain(|s| s.send(event.clone()).is_ok());
        state.events.push(event);
    }

    /// The fill ended (filled or failed): its subscribers' channels close.
    pub fn end(&self) {
        let mut state = self.lock();
        *state = TapState::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FillTap {
    fn drop(&mut self) {
        let Some(taps) = self.taps.upgrade() else { return };
        let mut taps = taps.taps.lock().unwrap_or_else(|e| e.into_inner());
        // A new tap for the key may have replaced this one already.
        if taps.get(&self.key).is_some_and(|t| t.strong_count() == 0) {
            taps.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use cache_proto::key::{ObjectKey, Volume};

    fn key(page: u64) -> PageKey {
        PageKey { volume: Volume::new("v").unwrap(), key: ObjectKey::new("k").unwrap(), page }
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<OriginEvent>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(e) = rx.try_recv() {
            seen.push(match e {
                OriginEvent::Head { object_size, .. } => format!("head {object_size}"),
                OriginEvent::Chunk(c) => format!("chunk {}", c.len()),
            });
        }
        seen
    }

    #[test]
    fn a_late_subscriber_gets_what_came_so_far_then_the_rest() {
        let taps = Arc::new(FillTaps::default());
        let fill = taps.tap(&key(0));
        let mut early = fill.subscribe(); // before the fill starts
        fill.begin();
        fill.publish(OriginEvent::Head { object_size: 10, etag: None });
        fill.publish(OriginEvent::Chunk(Bytes::from_static(b"abcd")));
        let waiter = taps.tap(&key(0));
        assert!(Arc::ptr_eq(&fill, &waiter), "one tap per page key");
        let mut late = waiter.subscribe();
        fill.publish(OriginEvent::Chunk(Bytes::from_static(b"efghij")));
        fill.end();
        assert_eq!(drain(&mut late), ["head 10", "chunk 4", "chunk 6"]);
        assert!(late.try_recv().is_err(), "closed when the fill ends");
        assert_eq!(drain(&mut early), ["head 10", "chunk 4", "chunk 6"]);
    }

    #[test]
    fn a_tap_is_forgotten_when_nobody_holds_it() {
        let taps = Arc::new(FillTaps::default());
        let a = taps.tap(&key(0));
        let b = taps.tap(&key(1));
        assert_eq!(taps.len(), 2);
        drop(a);
        assert_eq!(taps.len(), 1);
        let again = taps.tap(&key(0));
        assert_eq!(taps.len(), 2);
        drop((b, again));
        assert!(taps.is_empty());
    }

    #[test]
    fn a_new_fill_forgets_the_last_ones_events() {
        let taps = Arc::new(FillTaps::default());
        let tap = taps.tap(&key(0));
        tap.begin();
        tap.publish(OriginEvent::Head { object_size: 10, etag: None });
        tap.end();
        tap.begin();
        let mut rx = tap.subscribe();
        tap.publish(OriginEvent::Head { object_size: 12, etag: None });
        assert_eq!(drain(&mut rx), ["head 12"]);
    }
}
