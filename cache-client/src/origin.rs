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

use std::{
    fmt,
    ops::Range,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest as _, Md5};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig,
    aws::AmazonS3Builder,
    client::{HttpError, HttpErrorKind},
    local::LocalFileSystem,
    path::Path,
};
use url::Url;

use crate::config::OriginConfig;
use cache_proto::key::ObjectKey;

/// Region used when an S3 origin does not name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// object_store's limit on one attempt of one request, connect to last byte (its own default,
/// set here so that it is written down). Callers' deadlines are shorter or equal.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Backoff between retries: the first waits 100 ms, each next one a random time between 100 ms
/// and twice the previous (decorrelated jitter), at most 1 s. Three retries wait 0.7 s at most.
const BACKOFF: BackoffConfig =
    BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1), base: 2.0 };

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
}

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

/// An object or a common prefix; both are ordered by name.
#[derive(Debug)]
enum Entry {
    Object(ListedObject),
    Prefix(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object(o) => &o.key,
            Entry::Prefix(p) => p,
        }
    }
}

#[derive(Debug)]
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
        Ok(Self { origins: origins.iter().map(Origin::build).collect::<Result<_, _>>()? })
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
        for (index, origin) in self.origins.iter().enumerate() {
            if let Some(read) = origin.get_range(index, key, range.clone(), tap).await? {
                return Ok(read);
            }
        }
        Err(OriginError::NotFound { key: key.to_string() })
    }

    /// Size, ETag and modification time of `key` from the first origin that has it (one HEAD per
    /// origin asked); NotFound passes to the next origin, any other error is returned at once.
    pub async fn head(&self, key: &ObjectKey) -> Result<OriginHead, OriginError> {
        for origin in &self.origins {
            let path = origin.object_path(key).map_err(|e| origin.other(key, e))?;
            match origin.store.head(&path).await {
                Ok(meta) => {
                    let last_modified = meta.last_modified.into();
                    return Ok(OriginHead { size: meta.size, etag: meta.e_tag, last_modified });
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(origin.other(key, e)),
            }
        }
        Err(OriginError::NotFound { key: key.to_string() })
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
        // A stable sort keeps the earlier origin's entry first among equal names; dedup keeps it.
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        entries.dedup_by(|later, earlier| later.name() == earlier.name());
        let truncated = entries.len() > max;
        entries.truncate(max);
        let next_start_after = if truncated { entries.last().map(|e| e.name().to_owned()) } else { None };
        let mut listing = Listing { next_start_after, ..Listing::default() };
        for entry in entries {
            match entry {
                Entry::Object(o) => listing.objects.push(o),
                Entry::Prefix(p) => listing.common_prefixes.push(p),
            }
        }
        Ok(listing)
    }
}

/// The object store of one origin entry and the prefix its volume keys live under, validated and
/// built exactly as a chain builds it (for tools that write objects, like the load tool).
pub fn open_store(cfg: &OriginConfig) -> Result<(Arc<dyn ObjectStore>, Path), OriginError> {
    let origin = Origin::build(cfg)?;
    Ok((origin.store, origin.prefix))
}

impl Origin {
    fn build(cfg: &OriginConfig) -> Result<Self, OriginError> {
        let err = |message: &str| OriginError::Config { url: cfg.url.clone(), message: message.to_owned() };
        let url = Url::parse(&cfg.url)
            .map_err(|e| err(&format!("not a URL ({e}); expected s3://bucket/prefix or file:///dir")))?;
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
            return Err(err("must not have a user, password, query or fragment"));
        }
        let (store, prefix, sorted_list): (Arc<dyn ObjectStore>, Path, bool) = match url.scheme() {
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| err("no bucket: expected s3://bucket/prefix"))?;
                if url.port().is_some() {
                    return Err(err("a port belongs in `endpoint`, not in the s3:// URL"));
                }
                let prefix = Path::from_url_path(url.path()).map_err(|e| err(&format!("bad prefix: {e}")))?;
                // Client options first: `with_allow_http` writes into them.
                let mut builder = AmazonS3Builder::new()
                    .with_client_options(client_options(cfg))
                    .with_retry(retry_config(cfg))
                    .with_bucket_name(bucket)
                    .with_region(cfg.region.as_deref().unwrap_or(DEFAULT_REGION))
                    .with_allow_http(cfg.allow_http)
                    .with_virtual_hosted_style_request(false);
                if let Some(endpoint) = &cfg.endpoint {
                    match Url::parse(endpoint).as_ref().map(Url::scheme) {
                        Ok("https") => {}
                        Ok("http") if cfg.allow_http => {}
                        Ok("http") => return Err(err(&format!("endpoint {endpoint:?} is plain HTTP: set allow_http"))),
                        _ => return Err(err(&format!("endpoint {endpoint:?} is not an http(s):// URL"))),
                    }
                    builder = builder.with_endpoint(endpoint);
                }
                builder = match (&cfg.access_key_id, &cfg.secret_access_key) {
                    (Some(id), Some(secret)) => builder.with_access_key_id(id).with_secret_access_key(secret),
                    (None, None) => builder, // the instance's own credentials (IMDS, ECS, ...)
                    _ => return Err(err("access_key_id and secret_access_key must be set together")),
                };
                (Arc::new(builder.build().map_err(|e| err(&e.to_string()))?), prefix, true)
            }
            "file" => {
                let dir = url.to_file_path().map_err(|()| err("expected file:///absolute/dir"))?;
                let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| err(&e.to_string()))?;
                (Arc::new(store), Path::ROOT, false)
            }
            other => return Err(err(&format!("unsupported scheme {other:?}: expected s3:// or file://"))),
        };
        let (stall, verify_etag) = (cfg.stall_timeout.0, cfg.verify_etag);
        Ok(Self { label: cfg.url.clone(), store, prefix, sorted_list, stall, verify_etag })
    }

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

    /// Volume key of an object path of this origin (`None`: not under the prefix).
    fn volume_key<'p>(&self, location: &'p Path) -> Option<&'p str> {
        let path: &str = location.as_ref();
        if self.prefix.is_root() {
            return Some(path);
        }
        path.strip_prefix(AsRef::<str>::as_ref(&self.prefix))?.strip_prefix('/')
    }

    fn entry(&self, meta: ObjectMeta) -> Option<Entry> {
        let key = self.volume_key(&meta.location)?.to_owned();
        let last_modified = meta.last_modified.into();
        Some(Entry::Object(ListedObject { key, size: meta.size, etag: meta.e_tag, last_modified }))
    }

    /// This origin's first `limit` entries (sorted) for [`OriginChain::list`]. object_store lists
    /// whole path segments, so the listing starts at the prefix's last `/` and is filtered here.
    async fn list(
        &self,
        prefix: &str,
        delimiter: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, OriginError> {
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let base = if dir.is_empty() {
            self.prefix.clone()
        } else {
            match ObjectKey::new(dir).ok().and_then(|k| self.object_path(&k).ok()) {
                Some(path) => path,
                None => return Ok(Vec::new()), // no valid key lies under it
            }
        };
        let base = (!base.is_root()).then_some(&base);
        let wanted = |name: &str| name.starts_with(prefix) && after.is_none_or(|a| name > a);
        let mut out = Vec::new();
        if delimiter {
            let listed = match self.store.list_with_delimiter(base).await {
                Ok(listed) => listed,
                Err(object_store::Error::NotFound { .. }) => return Ok(out),
                Err(e) => return Err(self.other(prefix, e)),
            };
            let dirs = listed
                .common_prefixes
                .iter()
                .filter_map(|p| self.volume_key(p).map(|k| Entry::Prefix(format!("{k}/"))));
            out.extend(
                listed.objects.into_iter().filter_map(|m| self.entry(m)).chain(dirs).filter(|e| wanted(e.name())),
            );
        } else {
            let offset = after.and_then(|a| ObjectKey::new(a).ok()).and_then(|k| self.object_path(&k).ok());
            let mut stream = match &offset {
                Some(offset) => self.store.list_with_offset(base, offset),
                None => self.store.list(base),
            };
            while let Some(meta) = stream.next().await {
                let meta = match meta {
                    Ok(meta) => meta,
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(self.other(prefix, e)),
                };
                let Some(entry) = self.entry(meta) else { continue };
                if wanted(entry.name()) {
                    out.push(entry);
                    if self.sorted_list && out.len() >= limit {
                        break;
                    }
                } else if self.sorted_list && entry.name() > prefix && !entry.name().starts_with(prefix) {
                    break; // sorted: every later name is past the prefix too
                }
            }
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out.truncate(limit);
        Ok(out)
    }

    /// `Ok(None)`: this origin does not have `key`.
    async fn get_range(
        &self,
        index: usize,
        key: &ObjectKey,
        range: Range<u64>,
        tap: Option<&OriginTap>,
    ) -> Result<Option<OriginRead>, OriginError> {
        let path = self.object_path(key).map_err(|e| self.other(key, e))?;
        if range.start >= range.end {
            return self.read_at_end(index, key, &path, range.start, None).await;
        }
        let options = GetOptions::new().with_range(Some(GetRange::Bounded(range.clone())));
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) if is_range_not_satisfiable(&e) => {
                return self.read_at_end(index, key, &path, range.start, Some(e)).await;
            }
            Err(e) => return Err(self.other(key, e)),
        };
        let (size, e_tag) = (result.meta.size, result.meta.e_tag.clone());
        let expected = range.end.min(size).saturating_sub(range.start);
        // Only a whole object can be checked against its ETag.
        let whole = result.range == (0..size);
        let md5_etag = e_tag.as_deref().filter(|_| whole && self.verify_etag).and_then(plain_md5);
        let mut md5 = md5_etag.map(|_| Md5::new());
        // `expected` is at most the caller's range, so this allocation is bounded by the caller.
        let mut bytes = BytesMut::with_capacity(expected as usize);
        // A tap whose receiver is gone only stops being told.
        let tell = |event| {
            if let Some(tap) = tap {
                let _ = tap.send(event);
            }
        };
        tell(OriginEvent::Head { object_size: size, etag: e_tag.clone() });
        let mut body = result.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) if is_stall(&e) => return Err(self.other(key, e)),
                Err(e) => {
                    // object_store resumed the cut body as often as its retries allowed.
                    tracing::debug!(origin = %self.label, %key, error = %e, "origin body cut");
                    let got = bytes.len() as u64;
                    return Err(OriginError::Truncated { key: key.to_string(), expected, got });
                }
            };
            if bytes.len() as u64 + chunk.len() as u64 > expected {
                let got = bytes.len() as u64 + chunk.len() as u64;
                return Err(OriginError::Truncated { key: key.to_string(), expected, got });
            }
            if let Some(md5) = &mut md5 {
                md5.update(&chunk);
            }
            bytes.extend_from_slice(&chunk);
            tell(OriginEvent::Chunk(chunk));
        }
        if bytes.len() as u64 != expected {
            return Err(OriginError::Truncated { key: key.to_string(), expected, got: bytes.len() as u64 });
        }
        if let (Some(md5), Some(want)) = (md5, md5_etag) {
            let got: [u8; 16] = md5.finalize().into();
            if got != want {
                return Err(OriginError::Corrupt {
                    origin: self.label.clone(),
                    key: key.to_string(),
                    etag: e_tag.unwrap_or_default(),
                    md5: hex(&got),
                });
            }
        }
        Ok(Some(OriginRead { bytes: bytes.freeze(), object_size: size, etag: e_tag, origin: index }))
    }

    /// A range starting at or past the end of the object, or an empty one: one HEAD learns the size.
    /// `get_error` is the GET's own error, returned if the HEAD cannot explain it.
    async fn read_at_end(
        &self,
        index: usize,
        key: &ObjectKey,
        path: &Path,
        start: u64,
        get_error: Option<object_store::Error>,
    ) -> Result<Option<OriginRead>, OriginError> {
        let meta = match self.store.head(path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.other(key, get_error.unwrap_or(e))),
        };
        if start > meta.size {
            return Err(OriginError::OutOfRange { key: key.to_string(), start, size: meta.size });
        }
        match get_error {
            // The GET refused a start inside the object: it changed in between, or the store misbehaves.
            Some(e) if start < meta.size => Err(self.other(key, e)),
            _ => Ok(Some(OriginRead { bytes: Bytes::new(), object_size: meta.size, etag: meta.e_tag, origin: index })),
        }
    }
}

/// Deadlines of an S3 origin's HTTP client: `stall_timeout` for connecting and for each wait for
/// bytes (reqwest's read timeout covers the wait for the answer's head and each body read), and
/// [`REQUEST_TIMEOUT`] for a whole attempt.
fn client_options(cfg: &OriginConfig) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(cfg.stall_timeout.0)
        .with_read_timeout(cfg.stall_timeout.0)
        .with_timeout(REQUEST_TIMEOUT)
}

/// At most `retries` retries, none started after `retry_timeout`, with [`BACKOFF`] between them.
fn retry_config(cfg: &OriginConfig) -> RetryConfig {
    RetryConfig { backoff: BACKOFF, max_retries: cfg.retries as usize, retry_timeout: cfg.retry_timeout.0 }
}

/// Whether a request failed because a stall deadline passed (object_store reports the HTTP
/// client's timeout as an [`HttpError`] of kind `Timeout` somewhere in the error's sources).
fn is_stall(error: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<HttpError>().is_some_and(|h| h.kind() == HttpErrorKind::Timeout) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The MD5 an ETag states, if it is a plain one: 32 hex digits, optionally quoted. Multipart
/// ETags (`"<md5 of the parts' md5s>-<parts>"`) and weak ETags are not.
fn plain_md5(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(etag);
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a ranged GET failed because the range starts at or past the end of the object. object_store 0.14
/// reports both cases as `Generic` with a private source type, so this reads the messages (S3: the HTTP status
/// `416 Range Not Satisfiable`; LocalFileSystem: `InvalidRange`). A false answer leaves the error as it is; a
/// true one costs a HEAD that confirms it.
fn is_range_not_satisfiable(error: &object_store::Error) -> bool {
    if !matches!(error, object_store::Error::Generic { .. }) {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if text.contains("416 Range Not Satisfiable") || text.contains("Requested range was invalid") {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> OriginConfig {
        OriginConfig::new(url)
    }

    #[test]
    fn only_plain_md5_etags_are_checked() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        let want = plain_md5(md5).expect("plain");
        assert_eq!(hex(&want), md5);
        assert_eq!(plain_md5(&format!("\"{md5}\"")), Some(want));
        assert_eq!(plain_md5(&md5.to_uppercase()), Some(want));
        for not_md5 in [
            "\"9e107d9d372bb6826bd81d3542a419d6-2\"",
            "W/\"9e107d9d372bb6826bd81d3542a419d6\"",
            "9e107d9d372bb6826bd81d3542a419d",
            "9e107d9d372bb6826bd81d3542a419zz",
            "1a2b3c-5f0e-1000",
            "",
        ] {
            assert_eq!(plain_md5(not_md5), None, "{not_md5}");
        }
    }

    fn config_error(c: OriginConfig) -> String {
        match OriginChain::from_config(std::slice::from_ref(&c)) {
            Err(e @ OriginError::Config { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("{:?}", c.url)), "{text}");
                text
            }
            other => panic!("{}: expected a config error, got {other:?}", c.url),
        }
    }

    #[test]
    fn bad_urls_are_config_errors_naming_the_url() {
        for url in [
            "",
            "not a url",
            "bucket/prefix",
            "http://bucket/prefix",
            "gs://bucket/prefix",
            "s3:///prefix",
            "s3://user:pw@bucket/prefix",
            "s3://bucket:9000/prefix",
            "s3://bucket/prefix?x=1",
            "s3://bucket/a//b",
            "file://host/dir",
            "file:///this/dir/does/not/exist",
        ] {
            config_error(cfg(url));
        }
        assert!(OriginChain::from_config(&[]).is_err());
    }

    #[test]
    fn bad_s3_settings_are_config_errors() {
        let half_creds = OriginConfig { access_key_id: Some("AK".into()), ..cfg("s3://b/p") };
        assert!(config_error(half_creds).contains("together"));
        let plain_http = OriginConfig { endpoint: Some("http://127.0.0.1:9000".into()), ..cfg("s3://b/p") };
        assert!(config_error(plain_http).contains("allow_http"));
        let bad_endpoint = OriginConfig { endpoint: Some("127.0.0.1:9000".into()), ..cfg("s3://b/p") };
        config_error(bad_endpoint);
    }

    #[test]
    fn keys_join_under_the_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file_url = Url::from_directory_path(dir.path()).expect("file url").to_string();
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

    fn file_origin(files: &[(&str, &[u8])]) -> (tempfile::TempDir, OriginConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (key, data) in files {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, data).expect("write");
        }
        let url = Url::from_directory_path(dir.path()).expect("file url").to_string();
        (dir, cfg(&url))
    }

    fn names(l: &Listing) -> Vec<&str> {
        let mut all: Vec<&str> =
            l.objects.iter().map(|o| o.key.as_str()).chain(l.common_prefixes.iter().map(String::as_str)).collect();
        all.sort_unstable();
        all
    }

    #[tokio::test]
    async fn list_merges_origins_filters_by_string_prefix_and_pages() {
        let (_a, first) = file_origin(&[("j/c/0/1_0_4", b"AAAA"), ("j/c/0/2_0_4", b"BBBB"), ("j/meta", b"m")]);
        let (_b, second) = file_origin(&[("j/c/0/1_0_4", b"xx"), ("j/c/1/3_0_4", b"CCCC"), ("k/x", b"k")]);
        let chain = OriginChain::from_config(&[first, second]).expect("chain");
        let all = chain.list(None, false, None, 100).await.expect("list");
        assert_eq!(names(&all), ["j/c/0/1_0_4", "j/c/0/2_0_4", "j/c/1/3_0_4", "j/meta", "k/x"]);
        assert_eq!(all.objects[0].size, 4, "the first origin's copy wins");
        assert!(all.next_start_after.is_none());
        let some = chain.list(Some("j/c/0/1"), false, None, 100).await.expect("list");
        assert_eq!(names(&some), ["j/c/0/1_0_4"]);
        let page = chain.list(Some("j/"), false, None, 2).await.expect("list");
        assert_eq!(names(&page), ["j/c/0/1_0_4", "j/c/0/2_0_4"]);
        let next = chain.list(Some("j/"), false, page.next_start_after.as_deref(), 2).await.expect("list");
        assert_eq!(names(&next), ["j/c/1/3_0_4", "j/meta"]);
        assert!(next.next_start_after.is_none());
        let dirs = chain.list(Some("j/"), true, None, 100).await.expect("list");
        assert_eq!((dirs.common_prefixes.as_slice(), names(&dirs)), (&["j/c/".to_owned()][..], vec!["j/c/", "j/meta"]));
        let top = chain.list(None, true, Some("j/"), 100).await.expect("list");
        assert_eq!(names(&top), ["k/"]);
        assert!(chain.list(Some("nothing/here"), true, None, 10).await.expect("list").objects.is_empty());
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

    #[tokio::test]
    async fn unparsable_key_is_an_error_not_a_panic() {
        let chain = OriginChain::from_config(&[cfg("s3://bucket/p")]).expect("valid chain");
        let key = ObjectKey::new("a/ctl\u{1}char").expect("the key type allows control characters");
        match chain.get_range(&key, 0..10).await {
            Err(e @ OriginError::Other { .. }) => assert!(e.to_string().contains("s3://bucket/p"), "{e}"),
            other => panic!("expected Other, got {other:?}"),
        }
    }
}
