//! ListObjectsV2, ListObjects (v1), and the bucket-level reads clients ask before them.
//!
//! Listings come from the volume's origin chain, every origin merged ([`OriginChain::list`]):
//! the cache holds pages, not directories. Keys are volume keys. Only the delimiter `/` is
//! supported. At most 1000 keys per page (S3's own limit). The continuation token (v2) and the
//! next marker (v1) are the last name of the page, so a page is "names after the token"; when
//! both a token and `start-after` are given, the token wins, as in S3. `EncodingType=url` is not
//! applied (and not echoed, so clients do not decode the names).

use s3s::{S3Request, S3Response, S3Result, dto::*, s3_error};

use super::{Gateway, ORIGIN_DEADLINE, etag, origin_error, origin_timeout};
use cache_client::origin::{Listing, OriginChain};

/// Most keys per page (S3's limit and default).
const MAX_KEYS: i32 = 1000;

impl Gateway {
    pub(super) async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = &req.input;
        let (_, chain) = self.volume(&req, &input.bucket)?;
        let after = input.continuation_token.as_deref().or(input.start_after.as_deref());
        let (listing, max) =
            list(chain, input.prefix.as_deref(), input.delimiter.as_deref(), after, input.max_keys).await?;
        let key_count = (listing.objects.len() + listing.common_prefixes.len()) as i32;
        let output = ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: input.prefix.clone(),
            delimiter: input.delimiter.clone(),
            max_keys: Some(max),
            key_count: Some(key_count),
            continuation_token: input.continuation_token.clone(),
            start_after: input.start_after.clone(),
            is_truncated: Some(listing.next_start_after.is_some()),
            next_continuation_token: listing.next_start_after.clone(),
            contents: contents(&listing),
            common_prefixes: common_prefixes(&listing),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    pub(super) async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = &req.input;
        let (_, chain) = self.volume(&req, &input.bucket)?;
        let (listing, max) =
            list(chain, input.prefix.as_deref(), input.delimiter.as_deref(), input.marker.as_deref(), input.max_keys)
                .await?;
        let output = ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: input.prefix.clone(),
            delimiter: input.delimiter.clone(),
            marker: input.marker.clone(),
            max_keys: Some(max),
            is_truncated: Some(listing.next_start_after.is_some()),
            next_marker: listing.next_start_after.clone(),
            contents: contents(&listing),
            common_prefixes: common_prefixes(&listing),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    /// Only the caller's own volume: its access key names it.
    pub(super) async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let Some(creds) = &req.credentials else { return Err(s3_error!(AccessDenied)) };
        let bucket = Bucket { name: Some(creds.access_key.clone()), ..Default::default() };
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(vec![bucket]), ..Default::default() }))
    }

    pub(super) async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.volume(&req, &req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    /// No location constraint: the default region.
    pub(super) async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.volume(&req, &req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }
}

/// One page of `chain`, and the max-keys applied.
async fn list(
    chain: &OriginChain,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    after: Option<&str>,
    max_keys: Option<i32>,
) -> S3Result<(Listing, i32)> {
    let delimiter = match delimiter {
        None | Some("") => false,
        Some("/") => true,
        Some(other) => return Err(s3_error!(InvalidArgument, "delimiter {other:?}: only \"/\" is supported")),
    };
    let max = match max_keys {
        None => MAX_KEYS,
        Some(n) if n < 0 => return Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => n.min(MAX_KEYS),
    };
    let listing = tokio::time::timeout(ORIGIN_DEADLINE, chain.list(prefix, delimiter, after, max as usize))
        .await
        .map_err(|_| origin_timeout())?
        .map_err(origin_error)?;
    Ok((listing, max))
}

fn contents(listing: &Listing) -> Option<Vec<Object>> {
    let objects = listing.objects.iter().map(|o| Object {
        key: Some(o.key.clone()),
        size: Some(o.size as i64),
        e_tag: etag(o.etag.clone()),
        last_modified: Some(Timestamp::from(o.last_modified)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    });
    Some(objects.collect::<Vec<_>>()).filter(|v| !v.is_empty())
}

fn common_prefixes(listing: &Listing) -> Option<Vec<CommonPrefix>> {
    let prefixes = listing.common_prefixes.iter().map(|p| CommonPrefix { prefix: Some(p.clone()) });
    Some(prefixes.collect::<Vec<_>>()).filter(|v| !v.is_empty())
}
