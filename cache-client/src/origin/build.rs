//! [`Origin::build`]: one origin entry of the config, checked and turned into an object store.
//! The URL must be `s3://bucket/prefix` or `file:///dir` with nothing else in it; an S3 origin
//! gets the HTTP deadlines ([`client_options`]) and retries ([`retry_config`]) the module doc
//! describes.

use std::{sync::Arc, time::Duration};

use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, RetryConfig, aws::AmazonS3Builder, local::LocalFileSystem, path::Path,
};
use url::Url;

use super::{DEFAULT_REGION, Origin, OriginError, REQUEST_TIMEOUT};
use crate::config::OriginConfig;

/// Backoff between retries: the first waits 100 ms, each next one a random time between 100 ms
/// and twice the previous (decorrelated jitter), at most 1 s. Three retries wait 0.7 s at most.
const BACKOFF: BackoffConfig =
    BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1), base: 2.0 };

/// The object store of one origin entry and the prefix its volume keys live under, validated and
/// built exactly as a chain builds it (for tools that write objects, like the load tool).
pub fn open_store(cfg: &OriginConfig) -> Result<(Arc<dyn ObjectStore>, Path), OriginError> {
    let origin = Origin::build(cfg)?;
    Ok((origin.store, origin.prefix))
}

impl Origin {
    pub(super) fn build(cfg: &OriginConfig) -> Result<Self, OriginError> {
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

#[cfg(test)]
mod tests {
    use super::super::{OriginChain, tests::cfg};
    use super::*;

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
}
