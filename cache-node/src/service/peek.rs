//! `Peek`: a whole page, only if this node has it cached (a new owner asking its previous owner
//! after a ring change: warm handoff). Never reads the origin.

use bytes::Bytes;
use cache_proto::{
    digest::page_digest,
    wire::{GetView, ResponseHead, Status, Tier},
};

use super::Service;
use crate::{
    answer::Answer,
    metrics::{ErrorKind, KindLabel},
};

impl Service {
    pub(super) async fn peek(&self, get: &GetView<'_>) -> Answer<'static> {
        let key = match self.page_key(get) {
            Ok((key, _)) => key,
            Err(refusal) => return *refusal,
        };
        let store = &self.lookup.store;
        match store.get_cached(&key).await {
            Ok(Some((entry, tier))) => {
                let page = entry.value();
                if tier == Tier::Disk && page_digest(&key.volume, &key.key, key.page, 0, &page.bytes) != page.digest {
                    store.remove(&key);
                    self.metrics().error(ErrorKind::Corrupt);
                } else {
                    self.metrics().peeks.get_or_create(&KindLabel { kind: "hit" }).inc();
                    return self.slice(get, page, tier);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(node = %self.id, error = %e, "cache failed on a peek"),
        }
        self.metrics().peeks.get_or_create(&KindLabel { kind: "miss" }).inc();
        Answer::other(
            ResponseHead::error(Status::NotCached, format!("node {} has not cached it", self.id)),
            Bytes::new(),
        )
    }
}
