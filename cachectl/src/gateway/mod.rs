//! A read-only S3-compatible gateway over the cache cluster, so unmodified S3 tools (boto3, the
//! aws CLI, rclone, a JuiceFS mount) can read a volume through the cache: `cachectl gateway`.
//!
//! - **Buckets are volumes**: only the volumes of the client config exist (others: `NoSuchBucket`).
//! - **Auth**: SigV4 (checked by s3s) with per-volume credentials: access key id = volume name,
//!   secret = the volume's `token`. Every operation also checks that the signing access key is
//!   the bucket's volume (else `AccessDenied`); unsigned requests are refused.
//! - **Reads** ([`read`]): GetObject goes through the cluster ([`Client::read_object`]), so
//!   repeated reads are served by the nodes, not the origin; HeadObject asks the origin chain.
//! - **Listings** ([`list`]): ListObjectsV2 and ListObjects from the volume's origin chain, all
//!   origins merged ([`OriginChain::list`]).
//! - **Writes** (PutObject, DeleteObject(s), CopyObject, multipart uploads, bucket and ACL
//!   changes, ...) are refused with `AccessDenied`: the mirror is read-only.
//!
//! Served over HTTP/1.1 and HTTP/2 (hyper-util's auto builder), path-style addressing
//! (`http://host:port/bucket/key`). On shutdown the listener closes and open connections drop.

mod list;
mod read;

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder as ConnBuilder,
};
use s3s::{
    S3, S3Error, S3Request, S3Response, S3Result,
    auth::{S3Auth, SecretKey},
    dto::*,
    s3_error,
    service::{S3Service, S3ServiceBuilder},
    validation::NameValidation,
};
use tokio::{net::TcpListener, task::JoinSet};

use cache_client::{
    Client, ClientError,
    config::VolumeConfig,
    origin::{OriginChain, OriginError},
};
use cache_proto::key::Volume;

/// Deadline for one HEAD or one listing page from the origin chain.
pub const ORIGIN_DEADLINE: Duration = Duration::from_secs(30);

/// The S3 operations; build one with [`Gateway::new`], or serve one with [`serve`].
#[derive(Debug)]
pub struct Gateway {
    client: Arc<Client>,
    /// Each volume's origin chain, for HEAD and listings (reads go through `client`).
    volumes: HashMap<Volume, OriginChain>,
}

impl Gateway {
    pub fn new(client: Arc<Client>, volumes: &[VolumeConfig]) -> Result<Self, ClientError> {
        let chains = volumes
            .iter()
            .map(|v| {
                let chain = OriginChain::from_config(&v.origin)
                    .map_err(|source| ClientError::Origin { volume: v.name.to_string(), source })?;
                Ok((v.name.clone(), chain))
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Self { client, volumes: chains })
    }

    /// The volume named by `bucket` and its origin chain, if the request may read it.
    fn volume<T>(&self, req: &S3Request<T>, bucket: &str) -> S3Result<(Volume, &OriginChain)> {
        let Some(creds) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "sign requests with SigV4: access key = volume, secret = its token"));
        };
        let found = Volume::new(bucket).ok().and_then(|v| self.volumes.get_key_value(&v));
        let Some((volume, chain)) = found else {
            return Err(s3_error!(NoSuchBucket, "no volume {bucket:?} in this gateway's config"));
        };
        if creds.access_key != bucket {
            return Err(s3_error!(AccessDenied, "access key {:?} may read only volume {0:?}", creds.access_key));
        }
        Ok((volume.clone(), chain))
    }
}

/// The service s3s runs: SigV4 against per-volume secrets, bucket names = volume names.
pub fn service(client: Arc<Client>, volumes: &[VolumeConfig]) -> Result<S3Service, ClientError> {
    let secrets = volumes.iter().map(|v| (v.name.as_str().to_owned(), v.token.clone())).collect();
    let mut builder = S3ServiceBuilder::new(Gateway::new(client, volumes)?);
    builder.set_auth(VolumeAuth { secrets });
    builder.set_validation(VolumeNames);
    Ok(builder.build())
}

/// Serves the gateway on `listener` until `shutdown` completes. Fails only if an origin entry of
/// `volumes` is invalid.
pub async fn serve(
    listener: TcpListener,
    client: Arc<Client>,
    volumes: &[VolumeConfig],
    shutdown: impl Future,
) -> Result<(), ClientError> {
    let service = service(client, volumes)?;
    let mut shutdown = std::pin::pin!(shutdown);
    // Connection tasks live in the set: returning (dropping it) closes them.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let _ = socket.set_nodelay(true);
                    let service = service.clone();
                    connections.spawn(async move {
                        let io = TokioIo::new(socket);
                        let _ = ConnBuilder::new(TokioExecutor::new()).serve_connection(io, service).await;
                    });
                }
                Err(e) => {
                    // e.g. out of file descriptors: wait instead of spinning
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// The secret of access key `V` is the token of volume `V`.
struct VolumeAuth {
    secrets: HashMap<String, String>,
}

type Boxed<'b, T> = Pin<Box<dyn Future<Output = T> + Send + 'b>>;

/// The signature `#[async_trait]` gives `S3Auth::get_secret_key`.
impl S3Auth for VolumeAuth {
    fn get_secret_key<'a, 'k, 'b>(&'a self, access_key: &'k str) -> Boxed<'b, S3Result<SecretKey>>
    where
        'a: 'b,
        'k: 'b,
        Self: 'b,
    {
        let found = self.secrets.get(access_key).map(|s| SecretKey::from(s.as_str()));
        Box::pin(async move { found.ok_or_else(|| s3_error!(InvalidAccessKeyId, "access key = a volume name")) })
    }
}

/// Bucket names are volume names (which may have capitals and `_`, unlike AWS bucket names).
struct VolumeNames;

impl NameValidation for VolumeNames {
    fn validate_bucket_name(&self, name: &str) -> bool {
        Volume::new(name).is_ok()
    }
}

/// An S3 ETag from an origin's (quoted or not) ETag.
fn etag(raw: Option<String>) -> Option<ETag> {
    let raw = raw?;
    Some(ETag::parse_http_header(raw.as_bytes()).unwrap_or_else(|_| ETag::Strong(raw.trim_matches('"').to_owned())))
}

fn read_only(op: &str) -> S3Error {
    s3_error!(AccessDenied, "this mirror is read-only: {op} is refused")
}

fn origin_error(e: OriginError) -> S3Error {
    match e {
        OriginError::NotFound { .. } => s3_error!(NoSuchKey),
        OriginError::OutOfRange { .. } => s3_error!(InvalidRange, "{e}"),
        e => {
            tracing::warn!(error = %e, "gateway: origin failed");
            s3_error!(InternalError, "origin failed: {e}")
        }
    }
}

fn origin_timeout() -> S3Error {
    s3_error!(ServiceUnavailable, "the origin did not answer within {ORIGIN_DEADLINE:?}")
}

type Op<'b, T> = Boxed<'b, S3Result<S3Response<T>>>;

/// Each operation as `#[async_trait]` expands it: a boxed future borrowing `self`.
macro_rules! ops {
    ($($op:ident: $input:ty => $output:ty,)*) => {$(
        fn $op<'a, 'b>(&'a self, req: S3Request<$input>) -> Op<'b, $output>
        where
            'a: 'b,
            Self: 'b,
        {
            Box::pin(Gateway::$op(self, req))
        }
    )*};
}

/// Writes: `AccessDenied` (s3s's defaults would answer `NotImplemented`).
macro_rules! refuse {
    ($($op:ident: $input:ty => $output:ty,)*) => {$(
        fn $op<'a, 'b>(&'a self, _req: S3Request<$input>) -> Op<'b, $output>
        where
            'a: 'b,
            Self: 'b,
        {
            Box::pin(std::future::ready(Err(read_only(stringify!($op)))))
        }
    )*};
}

impl S3 for Gateway {
    ops! {
        get_object: GetObjectInput => GetObjectOutput,
        head_object: HeadObjectInput => HeadObjectOutput,
        list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
        list_objects: ListObjectsInput => ListObjectsOutput,
        list_buckets: ListBucketsInput => ListBucketsOutput,
        head_bucket: HeadBucketInput => HeadBucketOutput,
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    }

    refuse! {
        put_object: PutObjectInput => PutObjectOutput,
        copy_object: CopyObjectInput => CopyObjectOutput,
        delete_object: DeleteObjectInput => DeleteObjectOutput,
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
        upload_part: UploadPartInput => UploadPartOutput,
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
        complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
        create_bucket: CreateBucketInput => CreateBucketOutput,
        delete_bucket: DeleteBucketInput => DeleteBucketOutput,
        put_object_acl: PutObjectAclInput => PutObjectAclOutput,
        put_bucket_acl: PutBucketAclInput => PutBucketAclOutput,
        put_object_tagging: PutObjectTaggingInput => PutObjectTaggingOutput,
        delete_object_tagging: DeleteObjectTaggingInput => DeleteObjectTaggingOutput,
        put_object_retention: PutObjectRetentionInput => PutObjectRetentionOutput,
        put_object_legal_hold: PutObjectLegalHoldInput => PutObjectLegalHoldOutput,
        put_bucket_policy: PutBucketPolicyInput => PutBucketPolicyOutput,
        delete_bucket_policy: DeleteBucketPolicyInput => DeleteBucketPolicyOutput,
        put_bucket_versioning: PutBucketVersioningInput => PutBucketVersioningOutput,
        put_bucket_lifecycle_configuration: PutBucketLifecycleConfigurationInput => PutBucketLifecycleConfigurationOutput,
        delete_bucket_lifecycle: DeleteBucketLifecycleInput => DeleteBucketLifecycleOutput,
        put_bucket_tagging: PutBucketTaggingInput => PutBucketTaggingOutput,
        delete_bucket_tagging: DeleteBucketTaggingInput => DeleteBucketTaggingOutput,
        put_bucket_cors: PutBucketCorsInput => PutBucketCorsOutput,
        delete_bucket_cors: DeleteBucketCorsInput => DeleteBucketCorsOutput,
        restore_object: RestoreObjectInput => RestoreObjectOutput,
    }
}
