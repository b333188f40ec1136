//! GetObject (through the cluster) and HeadObject (from the origin chain).
//!
//! - A whole-object GET is one `read_object(0, MAX_READ_LEN)`; an object larger than
//!   [`MAX_READ_LEN`] (256 MiB; JuiceFS blocks are at most 16 MiB) is refused with
//!   `InvalidRequest`, saying to use ranged GETs (the size is known only after that first read,
//!   so such a refusal costs a 256 MiB read; whole-object GETs of blocks cost one read).
//! - `bytes=a-b` and `bytes=a-` read `[a, b]` (cut at the object's end, at most 256 MiB) and
//!   answer 206 with `Content-Range: bytes a-e/size`. A start at or past the end is `InvalidRange`.
//! - `bytes=-n` (the last n bytes) needs the size first. It is learnt **through the cache**, not
//!   by a HEAD on the origin: a first read of `min(n, 64 KiB)` bytes at offset 0 tells the size
//!   (and is the whole answer when the object is no longer than that); otherwise a second read
//!   fetches the suffix. The node fills whole pages, so for a JuiceFS block (one page) the
//!   second read is a hit on the page the first one cached.
//! - `ETag` comes from the read; `Last-Modified` only from HEAD (the cache does not keep it).
//!   Conditional headers (`If-Match`, ...) and `partNumber` are ignored.

use bytes::Bytes;
use s3s::{S3Error, S3Request, S3Response, S3Result, dto::*, s3_error};

use super::{Gateway, ORIGIN_DEADLINE, etag, origin_error, origin_timeout};
use cache_client::{ObjectRead, ReadError, client::MAX_READ_LEN};
use cache_proto::key::{ObjectKey, Volume};

/// Bytes read at offset 0 to learn the size for a suffix range.
const SUFFIX_PROBE: u64 = 64 << 10;

impl Gateway {
    pub(super) async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let (volume, _) = self.volume(&req, &req.input.bucket)?;
        let key = object_key(&req.input.key)?;
        let (start, read) = match req.input.range {
            None => {
                let read = self.read(&volume, &key, 0, MAX_READ_LEN).await?;
                if read.object_size > MAX_READ_LEN {
                    return Err(too_large(read.object_size));
                }
                (None, read)
            }
            Some(Range::Int { first, last }) => {
                if last.is_some_and(|last| last < first) {
                    return Err(s3_error!(InvalidRange));
                }
                let want = last.map_or(u64::MAX, |last| last - first + 1);
                let read = self.read(&volume, &key, first, want.min(MAX_READ_LEN)).await?;
                if first >= read.object_size {
                    return Err(s3_error!(InvalidRange, "the object has {} bytes", read.object_size));
                }
                if (read.bytes.len() as u64) < want.min(read.object_size - first) {
                    return Err(too_large(read.object_size));
                }
                (Some(first), read)
            }
            Some(Range::Suffix { length }) => {
                let (start, read) = self.suffix(&volume, &key, length).await?;
                (Some(start), read)
            }
        };
        let sources: Vec<String> = read.pages.iter().map(|p| p.source.to_string()).collect();
        tracing::debug!(%volume, %key, ?start, len = read.bytes.len(), ?sources, "gateway GET");
        let len = read.bytes.len() as u64;
        let content_range = start.map(|s| format!("bytes {s}-{}/{}", s + len - 1, read.object_size));
        let output = GetObjectOutput {
            body: Some(StreamingBlob::from(s3s::Body::from(read.bytes))),
            content_length: Some(len as i64),
            content_range,
            e_tag: etag(read.etag),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    /// The last `length` bytes of `key`, and where they start.
    async fn suffix(&self, volume: &Volume, key: &ObjectKey, length: u64) -> S3Result<(u64, ObjectRead)> {
        if length == 0 {
            return Err(s3_error!(InvalidRange));
        }
        let probe = self.read(volume, key, 0, length.min(SUFFIX_PROBE)).await?;
        let size = probe.object_size;
        if size == 0 {
            return Err(s3_error!(InvalidRange, "the object is empty"));
        }
        let start = size.saturating_sub(length);
        if probe.bytes.len() as u64 == size {
            let bytes: Bytes = probe.bytes.slice(start as usize..);
            return Ok((start, ObjectRead { bytes, ..probe }));
        }
        if size - start > MAX_READ_LEN {
            return Err(too_large(size));
        }
        let read = self.read(volume, key, start, size - start).await?;
        if read.object_size != size {
            return Err(s3_error!(InternalError, "the object changed size while it was read; retry"));
        }
        Ok((start, read))
    }

    async fn read(&self, volume: &Volume, key: &ObjectKey, offset: u64, len: u64) -> S3Result<ObjectRead> {
        self.client.read_object(volume, key, offset, len).await.map_err(read_error)
    }

    pub(super) async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let (_, chain) = self.volume(&req, &req.input.bucket)?;
        let key = object_key(&req.input.key)?;
        let head = tokio::time::timeout(ORIGIN_DEADLINE, chain.head(&key))
            .await
            .map_err(|_| origin_timeout())?
            .map_err(origin_error)?;
        let output = HeadObjectOutput {
            content_length: Some(head.size as i64),
            e_tag: etag(head.etag),
            last_modified: Some(Timestamp::from(head.last_modified)),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }
}

/// Keys the cache can carry (no empty, `.` or `..` segments, at most 1024 bytes).
fn object_key(key: &str) -> S3Result<ObjectKey> {
    ObjectKey::new(key).map_err(|e| s3_error!(InvalidArgument, "{e}"))
}

fn too_large(size: u64) -> S3Error {
    s3_error!(
        InvalidRequest,
        "the object has {size} bytes; a GET through this gateway returns at most {MAX_READ_LEN} bytes: use ranged GETs"
    )
}

fn read_error(e: ReadError) -> S3Error {
    match e {
        ReadError::UnknownVolume(v) => s3_error!(NoSuchBucket, "no volume {v:?} in this gateway's config"),
        ReadError::TooLarge { .. } => s3_error!(InvalidRequest, "{e}"),
        ReadError::OutOfRange { .. } => s3_error!(InvalidRange, "{e}"),
        ReadError::OriginTimeout { .. } => s3_error!(ServiceUnavailable, "{e}"),
        ReadError::Origin(e) => origin_error(e),
    }
}
