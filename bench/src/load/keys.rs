//! The load's objects: names shaped like JuiceFS blocks, deterministic contents, and `populate`,
//! which writes them to a volume's first origin.
//!
//! Object `i` (of `n`, each `size` bytes) is `<prefix>/chunks/<i/1e6>/<i/1000>/<i>_0_<size>`, the
//! shape of [`crate::block_key`] under another prefix, and holds [`crate::content`]`(i, size)`, so
//! any read can be checked without keeping the data. `populate` writes with object_store directly
//! (the client's origin chain only reads), built from the same `[[volume.origin]]` fields and with
//! the same key-to-path rule as `cache_client::origin`: key K of `s3://bucket/p` is object `p/K`,
//! of `file:///dir` the file `dir/K`.

use anyhow::Context as _;
use cache_client::config::OriginConfig;
use cache_proto::key::ObjectKey;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::{ObjectStoreExt as _, PutPayload, path::Path};

/// The volume key of object `i`.
pub fn object_key(prefix: &str, i: u64, size: u64) -> anyhow::Result<ObjectKey> {
    let prefix = prefix.trim_matches('/');
    let key = format!("{prefix}/chunks/{}/{}/{i}_0_{size}", i / 1_000_000, i / 1000);
    ObjectKey::new(key.trim_start_matches('/')).map_err(|e| anyhow::anyhow!("object key {key:?}: {e}"))
}

/// The keys of objects `0..n`.
pub fn object_keys(prefix: &str, n: u64, size: u64) -> anyhow::Result<Vec<ObjectKey>> {
    (0..n).map(|i| object_key(prefix, i, size)).collect()
}

/// What [`populate`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Populated {
    pub written: u64,
    /// Already there with the right size (contents are deterministic, so they are not rewritten).
    pub skipped: u64,
}

/// Writes objects `0..n` of `size` bytes under `prefix` to `origin`, `concurrency` at a time,
/// skipping those a HEAD finds with the right size.
pub async fn populate(
    origin: &OriginConfig,
    prefix: &str,
    n: u64,
    size: u64,
    concurrency: usize,
) -> anyhow::Result<Populated> {
    let (store, base) = cache_client::origin::open_store(origin)?;
    let puts = futures::stream::iter(0..n).map(|i| {
        let (store, base) = (store.clone(), base.clone());
        async move {
            let key = object_key(prefix, i, size)?;
            let path = if base.is_root() { key.to_string() } else { format!("{base}/{key}") };
            let path = Path::parse(&path).with_context(|| format!("object path {path:?}"))?;
            match store.head(&path).await {
                Ok(meta) if meta.size == size => return Ok(false),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e).with_context(|| format!("HEAD {path}")),
            }
            let data = crate::content(i, size);
            store.put(&path, PutPayload::from_bytes(data)).await.with_context(|| format!("PUT {path}"))?;
            anyhow::Ok(true)
        }
    });
    let results: Vec<bool> = puts.buffer_unordered(concurrency.max(1)).try_collect().await?;
    let written = results.iter().filter(|w| **w).count() as u64;
    Ok(Populated { written, skipped: n - written })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_juicefs_shaped() {
        assert_eq!(object_key("bench", 0, 4 << 20).expect("key").as_str(), "bench/chunks/0/0/0_0_4194304");
        assert_eq!(object_key("/a/b/", 1_234_567, 10).expect("key").as_str(), "a/b/chunks/1/1234/1234567_0_10");
        assert_eq!(object_key("", 5, 10).expect("key").as_str(), "chunks/0/0/5_0_10");
    }

    #[tokio::test]
    async fn populate_writes_once_to_a_file_origin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = url::Url::from_directory_path(dir.path()).expect("file url").to_string();
        let cfg = OriginConfig::new(url);
        assert_eq!(populate(&cfg, "p", 3, 1000, 2).await.expect("populate"), Populated { written: 3, skipped: 0 });
        assert_eq!(populate(&cfg, "p", 3, 1000, 2).await.expect("populate"), Populated { written: 0, skipped: 3 });
        let on_disk = std::fs::read(dir.path().join("p/chunks/0/0/2_0_1000")).expect("object file");
        assert_eq!(on_disk, crate::content(2, 1000));
    }
}
