//! One attempt at one copy ([`Target::copy_once`]): is the object already in the regional copy
//! (HEAD: same size and MD5)? If not, take its bytes (from the node's memory cache when every
//! page is there, as the fill checked them, unless the last copy failed its check; else one GET from the
//! source that served the fill, hashed on the blocking pool and checked against the source's
//! MD5 ETag), wait for the bandwidth cap, PUT them, and verify: the PUT's ETag and a HEAD read
//! back must both state the size and MD5 of the bytes sent. Anything else is an error and the
//! copy is tried again.
//!
//! ```text
//! HEAD replica ─same size+MD5─► AlreadyThere
//!      │ missing or different
//!      ▼
//! bytes: memory cache, else GET source ─► MD5 = source ETag? ─► pace ─► PUT ─► ETag = MD5?
//!                                                                          ─► HEAD: size, MD5 ─► Copied
//! ```

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cache_client::origin::{OriginChain, OriginError, etag_md5};
use cache_proto::key::{ObjectKey, Volume};
use md5::{Digest as _, Md5};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};

use super::queue::Pending;
use crate::{metrics::OriginOp, store::PageStore};

/// A volume's regional copy as a node writes it.
#[derive(Debug)]
pub struct Target {
    pub volume: Volume,
    /// The volume's origins (index 0 is the regional copy), to read a source.
    pub chain: Arc<OriginChain>,
    /// The regional copy, opened with its write credentials.
    pub replica: Arc<dyn ObjectStore>,
    pub prefix: Path,
}

/// How an attempt ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written and verified.
    Copied { bytes: u64 },
    /// The regional copy already had the object (same size and MD5): nothing written.
    AlreadyThere,
}

/// Why an attempt failed (the copy is tried again within its budget).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("volume {volume}: key {key:?} cannot be an object key: {message}")]
    BadKey { volume: String, key: String, message: String },
    #[error("volume {volume}, object {key}: the regional copy: {source}")]
    Replica { volume: String, key: String, source: Box<object_store::Error> },
    #[error("volume {volume}, object {key}: reading the source: {source}")]
    Source { volume: String, key: String, source: Box<OriginError> },
    #[error("volume {volume}, object {key}: the source no longer has it")]
    SourceGone { volume: String, key: String },
    /// The bytes or the copy do not match what they must (size or MD5): the copy is redone.
    #[error("volume {volume}, object {key}: {what}")]
    Mismatch { volume: String, key: String, what: String },
}

impl CopyError {
    /// A copy found wrong after it was written (corrupt or truncated in the regional copy).
    pub fn is_bad_copy(&self) -> bool {
        matches!(self, Self::Mismatch { what, .. } if what.starts_with("copy"))
    }
}

/// What an attempt uses besides its target: the page cache, the counters, the pace.
pub(super) struct Attempt<'a> {
    pub store: &'a PageStore,
    pub page_size: u64,
    pub count: &'a (dyn Fn(usize, OriginOp, u64) + Send + Sync),
    /// Whether the bytes may come from the cache (not after an attempt whose copy failed its
    /// check: those bytes may be what was wrong).
    pub use_cache: bool,
}

impl Target {
    /// Key K of the volume is object `prefix/K` in the regional copy.
    pub(super) fn path(&self, key: &ObjectKey) -> Result<Path, object_store::path::Error> {
        let joined = if self.prefix.is_root() { key.to_string() } else { format!("{}/{key}", self.prefix) };
        Path::parse(joined)
    }

    /// One attempt at copying `p`; `pace` is awaited (with the byte count) right before the PUT.
    pub(super) async fn copy_once<F: Future<Output = ()>>(
        &self,
        p: &Pending,
        at: &Attempt<'_>,
        pace: impl FnOnce(u64) -> F,
    ) -> Result<Outcome, CopyError> {
        let (volume, k) = (self.volume.to_string(), p.key.clone());
        let bad_key = |message: String| CopyError::BadKey { volume: volume.clone(), key: k.clone(), message };
        let key = ObjectKey::new(&p.key).map_err(|e| bad_key(e.to_string()))?;
        let path = self.path(&key).map_err(|e| bad_key(e.to_string()))?;
        let replica =
            |e: object_store::Error| CopyError::Replica { volume: volume.clone(), key: k.clone(), source: Box::new(e) };
        let mismatch = |what: String| CopyError::Mismatch { volume: volume.clone(), key: k.clone(), what };
        let source_md5 = p.etag.as_deref().and_then(etag_md5);

        (at.count)(0, OriginOp::Head, 0);
        match self.replica.head(&path).await {
            Ok(meta)
                if meta.size == p.size
                    && source_md5.is_some()
                    && meta.e_tag.as_deref().and_then(etag_md5) == source_md5 =>
            {
                return Ok(Outcome::AlreadyThere);
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(replica(e)),
        }

        // The bytes come from the node's memory when it still has the whole object: the fill
        // checked them against the source's MD5 ETag already (a whole-object read), so they are
        // not hashed again. After a copy that failed its check, or without the object in
        // memory, the source is read and what it sent is hashed off the async workers.
        let cached = if at.use_cache { self.cached(p, at) } else { None };
        let (bytes, md5) = match (cached, source_md5) {
            (Some(bytes), Some(md5)) => (bytes, md5),
            (cached, _) => {
                let bytes = match cached {
                    Some(bytes) => bytes,
                    None => self.read_source(p, &key, at).await?,
                };
                let hashed = bytes.clone();
                let md5: [u8; 16] = tokio::task::spawn_blocking(move || Md5::digest(&hashed).into())
                    .await
                    .map_err(|e| mismatch(format!("hashing the bytes did not finish: {e}")))?;
                if source_md5.is_some_and(|want| want != md5) {
                    return Err(mismatch("its bytes do not hash to the source's ETag".into()));
                }
                (bytes, md5)
            }
        };
        let len = bytes.len() as u64;
        if len != p.size {
            return Err(mismatch(format!("the source has {len} bytes, {} were queued", p.size)));
        }

        pace(len).await;
        (at.count)(0, OriginOp::Put, len);
        let put = self.replica.put(&path, bytes.into()).await.map_err(replica)?;
        let put_md5 = put.e_tag.as_deref().and_then(etag_md5);
        if put_md5.is_some_and(|got| got != md5) {
            return Err(mismatch("copy: the regional copy stored other bytes (its ETag differs)".into()));
        }
        (at.count)(0, OriginOp::Head, 0);
        let meta = self.replica.head(&path).await.map_err(replica)?;
        if meta.size != len {
            return Err(mismatch(format!("copy: the regional copy holds {} bytes of {len}", meta.size)));
        }
        if meta.e_tag.as_deref().and_then(etag_md5).is_some_and(|got| got != md5) {
            return Err(mismatch("copy: the regional copy's ETag differs from the bytes' MD5".into()));
        }
        Ok(Outcome::Copied { bytes: len })
    }

    /// The whole object from `p.source`, one GET (counted).
    async fn read_source(&self, p: &Pending, key: &ObjectKey, at: &Attempt<'_>) -> Result<Bytes, CopyError> {
        let (volume, k) = (self.volume.to_string(), p.key.clone());
        match self.chain.get_range_at(p.source, key, 0..p.size).await {
            Ok(Some(read)) => {
                (at.count)(p.source, OriginOp::Get, read.bytes.len() as u64);
                Ok(read.bytes)
            }
            Ok(None) => {
                (at.count)(p.source, OriginOp::GetMissing, 0);
                Err(CopyError::SourceGone { volume, key: k })
            }
            Err(e) => {
                (at.count)(p.source, OriginOp::Get, 0);
                Err(CopyError::Source { volume, key: k, source: Box::new(e) })
            }
        }
    }

    /// The whole object from the node's memory cache, if every page of it is there.
    fn cached(&self, p: &Pending, at: &Attempt<'_>) -> Option<Bytes> {
        let pages = p.size.div_ceil(at.page_size).max(1);
        let mut out = BytesMut::new();
        for page in 0..pages {
            let entry = at.store.memory_get(self.volume.as_str(), &p.key, page)?;
            let cached = entry.value();
            if cached.object_size != p.size {
                return None;
            }
            if pages == 1 {
                return Some(cached.bytes.clone());
            }
            out.extend_from_slice(&cached.bytes);
        }
        Some(out.freeze())
    }
}
