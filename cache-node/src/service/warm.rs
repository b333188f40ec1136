//! `Warm`: fills, checks or evicts one whole page for `cachectl warmup`. A fill goes through the
//! same single-flight lookup as a read, so a warmup racing readers still costs one origin GET.

use bytes::Bytes;
use cache_proto::wire::{GetView, ResponseHead, Tier, WarmMode, WarmOutcome};

use super::Service;
use crate::{answer::Answer, metrics::KindLabel};

impl Service {
    pub(super) async fn warm(&self, get: &GetView<'_>, mode: WarmMode) -> Answer<'static> {
        let (key, state) = match self.page_key(get) {
            Ok(v) => v,
            Err(refusal) => return *refusal,
        };
        let store = &self.lookup.store;
        let (outcome, object_size) = match mode {
            WarmMode::Check => (if store.contains(&key) { WarmOutcome::Present } else { WarmOutcome::Absent }, None),
            WarmMode::Evict => {
                store.remove(&key);
                (WarmOutcome::Evicted, None)
            }
            WarmMode::Fill => {
                let Ok(_permit) = self.inflight.try_acquire() else { return self.busy() };
                match self.lookup.find(&key.volume, state, get).await {
                    Ok((found, Tier::Origin)) => (WarmOutcome::Filled, Some(found.page().object_size)),
                    Ok((found, _)) => (WarmOutcome::Present, Some(found.page().object_size)),
                    Err(failure) => return self.refuse_failure(get, failure),
                }
            }
        };
        self.metrics().warms.get_or_create(&KindLabel { kind: outcome.as_str() }).inc();
        Answer::other(ResponseHead::Warm { outcome, object_size }, Bytes::new())
    }
}
