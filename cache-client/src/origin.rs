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
//! S3 stores keep object_store's default retries (5xx and network errors, up to 10 retries within 3 minutes):
//! callers that need a deadline wrap `get_range` in a timeout.

use std::{ops::Range, sync::Arc};

use bytes::Bytes;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, aws::AmazonS3Builder, local::LocalFileSystem, path::Path,
};
use url::Url;

use crate::{config::OriginConfig, key::ObjectKey};

/// Region used when an S3 origin does not name one.
pub const DEFAULT_REGION: &str = "us-east-1";

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

#[derive(Debug)]
struct Origin {
    /// The configured URL, for logs and metrics (it carries no credentials).
    label: String,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
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
        for (index, origin) in self.origins.iter().enumerate() {
            if let Some(read) = origin.get_range(index, key, range.clone()).await? {
                return Ok(read);
            }
        }
        Err(OriginError::NotFound { key: key.to_string() })
    }
}

impl Origin {
    fn build(cfg: &OriginConfig) -> Result<Self, OriginError> {
        let err = |message: &str| OriginError::Config { url: cfg.url.clone(), message: message.to_owned() };
        let url = Url::parse(&cfg.url)
            .map_err(|e| err(&format!("not a URL ({e}); expected s3://bucket/prefix or file:///dir")))?;
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
            return Err(err("must not have a user, password, query or fragment"));
        }
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match url.scheme() {
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| err("no bucket: expected s3://bucket/prefix"))?;
                if url.port().is_some() {
                    return Err(err("a port belongs in `endpoint`, not in the s3:// URL"));
                }
                let prefix = Path::from_url_path(url.path()).map_err(|e| err(&format!("bad prefix: {e}")))?;
                let mut builder = AmazonS3Builder::new()
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
                (Arc::new(builder.build().map_err(|e| err(&e.to_string()))?), prefix)
            }
            "file" => {
                let dir = url.to_file_path().map_err(|()| err("expected file:///absolute/dir"))?;
                let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| err(&e.to_string()))?;
                (Arc::new(store), Path::ROOT)
            }
            other => return Err(err(&format!("unsupported scheme {other:?}: expected s3:// or file://"))),
        };
        Ok(Self { label: cfg.url.clone(), store, prefix })
    }

    fn other(&self, key: &ObjectKey, source: object_store::Error) -> OriginError {
        OriginError::Other { origin: self.label.clone(), key: key.to_string(), source: Box::new(source) }
    }

    /// Key K is object `prefix/K`.
    fn object_path(&self, key: &ObjectKey) -> Result<Path, object_store::Error> {
        let joined = if self.prefix.is_root() { key.to_string() } else { format!("{}/{key}", self.prefix) };
        Path::parse(joined).map_err(|source| object_store::Error::InvalidPath { source })
    }

    /// `Ok(None)`: this origin does not have `key`.
    async fn get_range(
        &self,
        index: usize,
        key: &ObjectKey,
        range: Range<u64>,
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
        let bytes = result.bytes().await.map_err(|e| self.other(key, e))?;
        if bytes.len() as u64 != expected {
            return Err(OriginError::Truncated { key: key.to_string(), expected, got: bytes.len() as u64 });
        }
        Ok(Some(OriginRead { bytes, object_size: size, etag: e_tag, origin: index }))
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
        OriginConfig {
            url: url.into(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
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
