//! The origin chain of a volume: the ordered object stores (`s3://bucket/prefix` or `file:///dir`)
//! that hold its data. Cache nodes fill misses from it and clients fall back to it.
//!
//! `get_range` asks each origin in turn; an origin that does not have the key passes to the next,
//! any other failure is returned at once. A read is one ranged GET. Ranges are clamped to the end
//! of the object; a range that starts exactly at the end (or an empty range) returns no bytes,
//! one that starts past the end is [`OriginError::OutOfRange`]. Short bodies are never returned.
//!
//! Past-the-end behaviour of object_store 0.14 (which this relies on): for `GetRange::Bounded`
//! both S3 (the server clamps, `Content-Range` says so) and the local store clamp the end to the
//! object size; a start at or past the end fails with a `Generic` error (S3: `416 Range Not
//! Satisfiable`; local: "Requested range was invalid"). Only then, and for empty ranges, is a HEAD
//! sent to learn the size.
//!
//! A chain whose first origin is a regional copy (`replica = true`) treats any failure of that
//! origin like a 404: the read goes on to the source (the truth), and the regional copy is
//! skipped for [`REPLICA_PAUSE`] so a bucket that is down does not cost every read its retries.
//! [`OriginRead::first`] tells a caller how the first origin was passed, for its counters.
//!
//! `head` asks the chain like `get_range` does (the first origin that has the key answers).
//! `list` lists **every** origin of the chain and merges the answers (an object is in the volume
//! when any origin has it, since reads fall through the chain; where two origins hold a key, the
//! earlier one's size and ETag are shown). S3 listings are byte-ordered and read lazily, so a page
//! costs about one LIST request per origin; a `file://` origin is listed whole and sorted.
//!
//! Faults, and what bounds them (S3 origins; the values are per origin, see [`OriginConfig`]):
//! - 5xx (InternalError, SlowDown), 429, connection errors, stalls and cut bodies are retried by
//!   object_store with jittered exponential backoff (100 ms, doubling at most, capped at 1 s), at
//!   most `retries` times (default 3) and never after `retry_timeout` (default 10 s). object_store's
//!   own default (10 retries within 3 minutes) would outlast every caller's deadline and multiply
//!   the load on an origin that is already failing. A cut body is resumed from where it broke, with
//!   a range GET that must carry the same ETag.
//! - 404 and other 4xx are not retried: a missing object costs one GET per origin of the chain.
//! - `stall_timeout` (default 5 s) bounds connecting, the wait for the first byte, and each read of
//!   the body: a hung origin fails with [`OriginError::Stalled`]. A body that keeps arriving, only
//!   slowly, is not a stall; the caller's deadline (the node's `origin_timeout`, the client's) ends
//!   it. Each attempt also has object_store's overall limit of [`REQUEST_TIMEOUT`].
//! - A body shorter than its answer promised is [`OriginError::Truncated`]; nothing short is
//!   returned.
//! - A byte changed in transit cannot be seen in the bytes alone. When a read covers a whole object
//!   and its ETag is a plain MD5 (32 hex digits: S3 single-part uploads, which JuiceFS blocks of at
//!   most one page are), the bytes are hashed as they arrive and a mismatch is
//!   [`OriginError::Corrupt`] (not retried: the caller falls back or fails). The limit: a part of a
//!   larger object, a multipart ETag (`...-N`) and a `file://` origin are not checked this way; and
//!   ETags of SSE-KMS or SSE-C objects are not MD5s, so such origins set `verify_etag = false`.
//!
//! The files: this one holds the chain, its types and errors; `build.rs` turns an
//! [`OriginConfig`] into a store (URL checks, HTTP deadlines, retries); `read.rs` is one origin's
//! ranged GET (the tap, the MD5 check, truncation, reads at the end); `list.rs` lists one origin
//! and merges the chain's listings.

mod build;
mod list;
mod read;

use std::{
    fmt,
    ops::Range,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, path::Path};

use crate::config::OriginConfig;
use cache_proto::key::ObjectKey;

pub use build::open_store;
pub use list::ObjectStream;
pub use read::etag_md5;
use read::is_stall;

/// Region used when an S3 origin does not name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// object_store's limit on one attempt of one request, connect to last byte (its own default,
/// set here so that it is written down). Callers' deadlines are shorter or equal.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("origin {url:?}: {message}")]
    Config { url: String, message: String },
    #[error("object {key} not found in any origin")]
    NotFound { key: String },
    #[error("object {key}: range starts at {start}, past the end of the object ({size} bytes)")]
    OutOfRange { key: String, start: u64, size: u64 },
    #[error("object {key}: origin sent {got} bytes where {expected} were due")]
    Truncated { key: String, expected: u64, got: u64 },
    /// A request timed out on the first try and on every retry: no progress (connect, first
    /// byte, or a read of the body) within the origin's `stall_timeout` (`after`), or an attempt
    /// past [`REQUEST_TIMEOUT`].
    #[error("object {key} from origin {origin}: timed out (stall_timeout {after:?}): {source}")]
    Stalled { origin: String, key: String, after: Duration, source: Box<object_store::Error> },
    /// The bytes of a whole object do not hash to its ETag (an MD5): changed in transit, or the
    /// origin's ETags are not MD5s of the content (SSE-KMS, SSE-C: set `verify_etag = false`).
    #[error(
        "object {key} from origin {origin}: its bytes have MD5 {md5}, its ETag says {etag} (changed in \
         transit; or, if the bucket uses SSE-KMS or SSE-C, set verify_etag = false)"
    )]
    Corrupt { origin: String, key: String, etag: String, md5: String },
    #[error("object {key} from origin {origin}: {source}")]
    Other { origin: String, key: String, source: Box<object_store::Error> },
}

/// Bytes of one object read from the chain.
#[derive(Debug, Clone)]
pub struct OriginRead {
    pub bytes: Bytes,
    /// Size of the whole object.
    pub object_size: u64,
    pub etag: Option<String>,
    /// Index in the chain of the origin that answered.
    pub origin: usize,
    /// When an origin after the first answered: how the first was passed (it did not have the
    /// object; or, a regional copy, it failed or was paused after failing).
    pub first: Option<Passed>,
}

/// How a read passed the chain's first origin on to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// It answered "no such object" (one GET).
    Missing,
    /// A regional copy that failed (down, refusing, corrupt): one GET and its retries.
    Failed,
    /// A regional copy paused after a failure: not asked.
    Skipped,
}

/// How long a regional copy that failed a read is skipped (reads go to the source meanwhile);
/// the first read after it asks it again.
pub const REPLICA_PAUSE: Duration = Duration::from_secs(5);

/// What a read of the origin tells as it goes ([`OriginChain::get_range_tapped`]): the object's
/// size and ETag once the answer's head is in, then each body chunk as it arrives. An origin that
/// fails after its head may be followed by the next origin's `Head`; the result of the read, not
/// the events, says which bytes are right.
#[derive(Debug, Clone)]
pub enum OriginEvent {
    Head { object_size: u64, etag: Option<String> },
    Chunk(Bytes),
}

/// Where [`OriginChain::get_range_tapped`] sends its [`OriginEvent`]s (at most the range's bytes).
pub type OriginTap = tokio::sync::mpsc::UnboundedSender<OriginEvent>;

/// What a HEAD of one object tells.
#[derive(Debug, Clone)]
pub struct OriginHead {
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: SystemTime,
}

/// One object of a listing, under its volume key (the origin's prefix stripped).
#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: SystemTime,
}

/// One page of a listing, in byte order of the names.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub objects: Vec<ListedObject>,
    /// With a delimiter: the "directories" under the prefix, each ending in `/`.
    pub common_prefixes: Vec<String>,
    /// Set when more entries follow: the last name of this page (a key or a common prefix), to
    /// pass back as `start_after` for the next page.
    pub next_start_after: Option<String>,
}

#[derive(Debug, Clone)]
struct Origin {
    /// The configured URL, for logs and metrics (it carries no credentials).
    label: String,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Whether `list` yields paths in byte order (S3 does; a local directory does not).
    sorted_list: bool,
    /// `stall_timeout` (S3 origins), to name it in errors.
    stall: Duration,
    /// Check whole-object reads against an MD5 ETag.
    verify_etag: bool,
}

/// The ordered origins of one volume.
#[derive(Debug)]
pub struct OriginChain {
    origins: Vec<Origin>,
    /// The first origin is the volume's regional copy (`replica = true`): any failure of it,
    /// not only a 404, passes a read to the source, and it is skipped for [`REPLICA_PAUSE`]
    /// after a failure, so a regional bucket that is down costs reads one failed GET per pause.
    replica: bool,
    /// Until when the regional copy is skipped.
    replica_paused: std::sync::Mutex<Option<Instant>>,
}

impl OriginChain {
    /// Builds the stores of `origins`, in order. Fails on the first bad entry, naming its URL.
    pub fn from_config(origins: &[OriginConfig]) -> Result<Self, OriginError> {
        if origins.is_empty() {
            return Err(OriginError::Config {
                url: String::new(),
                message: "a volume needs at least one origin".into(),
            });
        }
        Ok(Self {
            origins: origins.iter().map(Origin::build).collect::<Result<_, _>>()?,
            replica: origins.len() > 1 && origins[0].replica,
            replica_paused: std::sync::Mutex::new(None),
        })
    }

    /// Whether the first origin is the volume's regional copy.
    pub fn has_replica(&self) -> bool {
        self.replica
    }

    /// Whether a read should skip the regional copy now (it failed within [`REPLICA_PAUSE`]).
    fn replica_skipped(&self) -> bool {
        let paused = self.replica_paused.lock().unwrap_or_else(|e| e.into_inner());
        paused.is_some_and(|until| Instant::now() < until)
    }

    /// The regional copy failed `e`: skip it for a while; the source is asked instead.
    fn replica_failed(&self, key: &ObjectKey, e: &OriginError) {
        tracing::warn!(origin = %self.origins[0].label, %key, error = %e, pause = ?REPLICA_PAUSE, "regional copy failed; reading the source");
        *self.replica_paused.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + REPLICA_PAUSE);
    }

    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// Always false: a chain has at least one origin.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The URL of origin `index`, e.g. `s3://bucket/prefix`. Panics if `index >= len()`.
    pub fn label(&self, index: usize) -> &str {
        &self.origins[index].label
    }

    /// GET bytes [range.start, range.end) of `key` (clamped to the object's end: asking past the end returns the
    /// bytes that exist; starting exactly at the end, or an empty range, returns no bytes).
    /// Tries each origin in order; an origin that answers NotFound passes to the next one; any other error is
    /// returned at once.
    pub async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<OriginRead, OriginError> {
        self.get_range_tapped(key, range, None).await
    }

    /// [`Self::get_range`], telling `tap` the object's size and each chunk as they arrive, so a
    /// node can forward a page while it is still being read.
    pub async fn get_range_tapped(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
        tap: Option<&OriginTap>,
    ) -> Result<OriginRead, OriginError> {
        let mut first = None;
        for (index, origin) in self.origins.iter().enumerate() {
            if index == 0 && self.replica && self.replica_skipped() {
                first = Some(Passed::Skipped);
                continue;
            }
            match origin.get_range(index, key, range.clone(), tap).await {
                Ok(Some(read)) => return Ok(OriginRead { first: first.filter(|_| index > 0), ..read }),
                Ok(None) => first = first.or(Some(Passed::Missing)),
                Err(e) if index == 0 && self.replica && !matches!(e, OriginError::OutOfRange { .. }) => {
                    self.replica_failed(key, &e);
                    first = Some(Passed::Failed);
                }
                Err(e) => return Err(e),
            }
        }
        Err(OriginError::NotFound { key: key.to_string() })
    }

    /// [`Self::get_range`] from origin `index` alone (a node copying an object from the source
    /// that has it into the regional copy). `Ok(None)`: that origin does not have `key`.
    /// Panics if `index >= len()`.
    pub async fn get_range_at(
        &self,
        index: usize,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Option<OriginRead>, OriginError> {
        self.origins[index].get_range(index, key, range, None).await
    }

    /// Size, ETag and modification time of `key` from the first origin that has it (one HEAD per
    /// origin asked); NotFound passes to the next origin, any other error is returned at once.
    pub async fn head(&self, key: &ObjectKey) -> Result<OriginHead, OriginError> {
        for (index, origin) in self.origins.iter().enumerate() {
            if index == 0 && self.replica && self.replica_skipped() {
                continue;
            }
            let path = origin.object_path(key).map_err(|e| origin.other(key, e))?;
            match origin.store.head(&path).await {
                Ok(meta) => {
                    let last_modified = meta.last_modified.into();
                    return Ok(OriginHead { size: meta.size, etag: meta.e_tag, last_modified });
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) if index == 0 && self.replica => self.replica_failed(key, &origin.other(key, e)),
                Err(e) => return Err(origin.other(key, e)),
            }
        }
        Err(OriginError::NotFound { key: key.to_string() })
    }

    /// Size, ETag and modification time of `key` at origin `index` only (`None`: it does not
    /// have it), for `cachectl sync --delete-extra`, which deletes only what no source has.
    pub async fn head_at(&self, index: usize, key: &ObjectKey) -> Result<Option<OriginHead>, OriginError> {
        let Some(origin) = self.origins.get(index) else {
            return Err(OriginError::Config { url: String::new(), message: format!("no origin {index}") });
        };
        let path = origin.object_path(key).map_err(|e| origin.other(key, e))?;
        match origin.store.head(&path).await {
            Ok(meta) => {
                let last_modified = meta.last_modified.into();
                Ok(Some(OriginHead { size: meta.size, etag: meta.e_tag, last_modified }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(origin.other(key, e)),
        }
    }

    /// Up to `max` volume keys that start with `prefix` (a plain string prefix, as in S3) and sort
    /// after `start_after`, merged from every origin of the chain. With `delimiter` (`/`), keys
    /// below the next `/` after the prefix are rolled up into one common prefix, and only the
    /// prefix's "directory" is listed (one non-recursive listing per origin, read whole).
    pub async fn list(
        &self,
        prefix: Option<&str>,
        delimiter: bool,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Listing, OriginError> {
        if max == 0 {
            return Ok(Listing::default());
        }
        let prefix = prefix.unwrap_or("");
        let mut entries = Vec::new();
        for origin in &self.origins {
            entries.extend(origin.list(prefix, delimiter, start_after, max + 1).await?);
        }
        Ok(list::merge(entries, max))
    }
}

impl Origin {
    /// A failure of this origin: [`OriginError::Stalled`] when a stall deadline ended it, else
    /// [`OriginError::Other`].
    fn other(&self, key: impl fmt::Display, source: object_store::Error) -> OriginError {
        let (origin, key, source) = (self.label.clone(), key.to_string(), Box::new(source));
        if is_stall(&source) {
            OriginError::Stalled { origin, key, after: self.stall, source }
        } else {
            OriginError::Other { origin, key, source }
        }
    }

    /// Key K is object `prefix/K`.
    fn object_path(&self, key: &ObjectKey) -> Result<Path, object_store::Error> {
        let joined = if self.prefix.is_root() { key.to_string() } else { format!("{}/{key}", self.prefix) };
        Path::parse(joined).map_err(|source| object_store::Error::InvalidPath { source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn cfg(url: &str) -> OriginConfig {
        OriginConfig::new(url)
    }

    #[test]
    fn keys_join_under_the_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file_url = url::Url::from_directory_path(dir.path()).expect("file url").to_string();
        let chain = OriginChain::from_config(&[
            cfg("s3://bucket/some/prefix/"),
            cfg("s3://bucket"),
            cfg("s3://bucket/with%20space"),
            cfg(&file_url),
        ])
        .expect("valid chain");
        assert_eq!(chain.len(), 4);
        assert_eq!(chain.label(0), "s3://bucket/some/prefix/");
        let key = ObjectKey::new("jfs/chunks/0/0/1_0_4").expect("key");
        let paths: Vec<String> =
            chain.origins.iter().map(|o| o.object_path(&key).expect("joins").to_string()).collect();
        assert_eq!(
            paths,
            [
                "some/prefix/jfs/chunks/0/0/1_0_4",
                "jfs/chunks/0/0/1_0_4",
                "with space/jfs/chunks/0/0/1_0_4",
                "jfs/chunks/0/0/1_0_4"
            ]
        );
    }

    pub(super) fn file_origin(files: &[(&str, &[u8])]) -> (tempfile::TempDir, OriginConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (key, data) in files {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, data).expect("write");
        }
        let url = url::Url::from_directory_path(dir.path()).expect("file url").to_string();
        (dir, cfg(&url))
    }

    #[tokio::test]
    async fn a_regional_copy_that_fails_passes_reads_to_the_source_and_is_paused() {
        let (_dir, source) = file_origin(&[("a/1", b"from the source")]);
        // A regional copy nobody listens at (connection refused), without retries.
        let down = OriginConfig {
            endpoint: Some("http://127.0.0.1:1".into()),
            allow_http: true,
            retries: 0,
            replica: true,
            access_key_id: Some("AK".into()),
            secret_access_key: Some("SK".into()),
            ..cfg("s3://regional/vol1")
        };
        let key = ObjectKey::new("a/1").expect("key");
        let chain = OriginChain::from_config(&[down.clone(), source.clone()]).expect("chain");
        assert!(chain.has_replica());
        let read = chain.get_range(&key, 0..100).await.expect("served by the source");
        assert_eq!((&read.bytes[..], read.origin, read.first), (&b"from the source"[..], 1, Some(Passed::Failed)));
        let read = chain.get_range(&key, 0..100).await.expect("served by the source");
        assert_eq!(read.first, Some(Passed::Skipped), "paused after the failure");
        assert_eq!(chain.head(&key).await.expect("head").size, 15);

        // The same origin not marked as a regional copy: its failure is the read's.
        let plain = OriginChain::from_config(&[OriginConfig { replica: false, ..down }, source]).expect("chain");
        assert!(!plain.has_replica());
        assert!(matches!(plain.get_range(&key, 0..100).await, Err(OriginError::Other { .. })));
    }

    #[tokio::test]
    async fn head_falls_through_to_the_origin_that_has_the_key() {
        let (_a, first) = file_origin(&[("a/1", b"one")]);
        let (_b, second) = file_origin(&[("a/2", b"second")]);
        let chain = OriginChain::from_config(&[first, second]).expect("chain");
        let head = chain.head(&ObjectKey::new("a/2").expect("key")).await.expect("head");
        assert_eq!(head.size, 6);
        assert!(matches!(chain.head(&ObjectKey::new("a/3").expect("key")).await, Err(OriginError::NotFound { .. })));
    }
}
