//! GetObject (through the cluster, streamed page by page) and HeadObject (from the origin chain).
//!
//! - A GET is one [`Client::read_stream`]: the headers go out once the first page is in (it
//!   tells the object's size), then each page as soon as it is checked, [`PAGES_AHEAD`] read
//!   ahead. Memory is bounded by pages in flight, not by the object, so a GET has no size limit.
//!   A page that fails after the headers went out (the object changed at the origin, the origin
//!   failed too) ends the body early, so the client sees a short body (its Content-Length said
//!   more) rather than wrong bytes.
//! - `bytes=a-b` and `bytes=a-` read `[a, b]` (cut at the object's end) and answer 206 with
//!   `Content-Range: bytes a-e/size`. A start at or past the end is `InvalidRange`.
//! - `bytes=-n` (the last n bytes) needs the size first. It is learnt **through the cache**, not
//!   by a HEAD on the origin: a first read of `min(n, 64 KiB)` bytes at offset 0 tells the size
//!   (and is the whole answer when the object is no longer than that); otherwise a second read
//!   fetches the suffix. The node fills whole pages, so for a JuiceFS block (one page) the
//!   second read is a hit on the page the first one cached.
//! - `ETag` comes from the read; `Last-Modified` only from HEAD (the cache does not keep it).
//!   Conditional headers (`If-Match`, ...) and `partNumber` are ignored.
//!
//! [`PAGES_AHEAD`]: cache_client::stream::PAGES_AHEAD

use bytes::Bytes;
use futures::StreamExt;
use s3s::{S3Error, S3Request, S3Response, S3Result, dto::*, s3_error};

use super::{Gateway, ORIGIN_DEADLINE, etag, origin_error, origin_timeout};
use cache_client::{Client, ObjectStream, ReadError};
use cache_proto::key::{ObjectKey, Volume};

/// Bytes read at offset 0 to learn the size for a suffix range.
const SUFFIX_PROBE: u64 = 64 << 10;

impl Gateway {
    pub(super) async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let (volume, _) = self.volume(&req, &req.input.bucket)?;
        let key = object_key(&req.input.key)?;
        let (start, read) = match req.input.range {
            None => (None, self.read(&volume, &key, 0, u64::MAX).await?),
            Some(Range::Int { first, last }) => {
                if last.is_some_and(|last| last < first) {
                    return Err(s3_error!(InvalidRange));
                }
                let want = last.map_or(u64::MAX - first, |last| last - first + 1);
                let read = self.read(&volume, &key, first, want).await?;
                if first >= read.object_size {
                    return Err(s3_error!(InvalidRange, "the object has {} bytes", read.object_size));
                }
                (Some(first), read)
            }
            Some(Range::Suffix { length }) => {
                let (start, read) = self.suffix(&volume, &key, length).await?;
                (Some(start), read)
            }
        };
        tracing::debug!(%volume, %key, ?start, len = read.len, first = %read.first_trace.source, "gateway GET");
        let len = read.len;
        let content_range = start.map(|s| format!("bytes {s}-{}/{}", s + len - 1, read.object_size));
        let e_tag = etag(read.etag.clone());
        let output = GetObjectOutput {
            body: Some(body(read)),
            content_length: Some(len as i64),
            content_range,
            e_tag,
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    /// The last `length` bytes of `key`, and where they start.
    async fn suffix(&self, volume: &Volume, key: &ObjectKey, length: u64) -> S3Result<(u64, ObjectStream)> {
        if length == 0 {
            return Err(s3_error!(InvalidRange));
        }
        let probe = self.read(volume, key, 0, length.min(SUFFIX_PROBE)).await?;
        let size = probe.object_size;
        if size == 0 {
            return Err(s3_error!(InvalidRange, "the object is empty"));
        }
        let start = size.saturating_sub(length);
        if probe.len == size && probe.rest.is_none() {
            let first = probe.first.slice(start as usize..probe.first.len());
            return Ok((start, ObjectStream { first, len: size - start, ..probe }));
        }
        let read = self.read(volume, key, start, size - start).await?;
        if read.object_size != size {
            return Err(s3_error!(InternalError, "the object changed size while it was read; retry"));
        }
        Ok((start, read))
    }

    async fn read(&self, volume: &Volume, key: &ObjectKey, offset: u64, len: u64) -> S3Result<ObjectStream> {
        Client::read_stream(&self.client, volume, key, offset, len).await.map_err(read_error)
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

/// The body of a streamed read: the first page, then the others as they come, each in the parts
/// it came off the QUIC stream in (the socket write gathers them: no copy here). An error ends
/// it early (hyper then closes the connection: the client sees fewer bytes than Content-Length).
fn body(read: ObjectStream) -> StreamingBlob {
    let first = futures::stream::once(std::future::ready(Ok(read.first)));
    let pages = match read.rest {
        None => first.left_stream(),
        Some(rest) => first
            .chain(rest.inspect(|r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "gateway: a page failed after the headers were sent; cutting the body short");
                }
            }))
            .right_stream(),
    };
    StreamingBlob::wrap(pages.flat_map(|page| {
        let parts: Vec<Result<Bytes, ReadError>> = match page {
            Ok(chunks) => chunks.into_parts().into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(parts)
    }))
}
fn read_error(e: ReadError) -> S3Error {
    match e {
        ReadError::UnknownVolume(v) => s3_error!(NoSuchBucket, "no volume {v:?} in this gateway's config"),
        ReadError::TooLarge { .. } => s3_error!(InvalidRequest, "{e}"),
        ReadError::OutOfRange { .. } => s3_error!(InvalidRange, "{e}"),
        ReadError::OriginTimeout { .. } => s3_error!(ServiceUnavailable, "{e}"),
        ReadError::Changed { .. } => s3_error!(InternalError, "{e}"),
        ReadError::Origin(e) => origin_error(e),
    }
}
