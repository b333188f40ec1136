//! `Copy`: a sync asks this node (the owner of the object's page 0) to copy an object into the
//! volume's regional copy, or to delete one the sources no longer have. Authorised like a read
//! (the volume's token); the copy itself is [`crate::copy::Copier::copy_asked`].

use cache_proto::{
    key::ObjectKey,
    wire::{CopyAnswer, CopyMode, CopyView, GetView, Status},
};

use super::Service;
use crate::{
    answer::{Answer, json_answer},
    metrics::ErrorKind,
};

impl Service {
    pub(super) async fn copy(&self, c: &CopyView<'_>) -> Answer<'static> {
        let page_size = self.lookup.page_size;
        let get =
            GetView { volume: c.volume, token: c.token, key: c.key, page_size, page: 0, start: 0, len: page_size };
        if let Err(refusal) = self.authorise(&get) {
            return *refusal;
        }
        let Some(copier) = &self.lookup.copier else {
            let msg = format!("node {} copies into no regional copy (no volume has replica = true)", self.id);
            return self.refuse(ErrorKind::BadRequest, Status::BadRequest, msg);
        };
        let Ok(key) = ObjectKey::new(c.key) else {
            return self.refuse(ErrorKind::BadRequest, Status::BadRequest, format!("bad key {:?}", c.key));
        };
        let result = match c.mode {
            CopyMode::Copy => {
                copier.copy_asked(c.volume, &key, usize::from(c.source), c.size, c.etag.map(str::to_owned)).await
            }
            CopyMode::DeleteExtra => copier.delete_extra(c.volume, &key).await.map(|done| (done, 0)),
        };
        match result {
            Ok((done, bytes)) => json_answer(&CopyAnswer { done, bytes }),
            Err(e) if e.is_bad_request() => self.refuse(ErrorKind::BadRequest, Status::BadRequest, e.to_string()),
            Err(e) => self.refuse(ErrorKind::Origin, Status::OriginFailed, e.to_string()),
        }
    }
}
