//! A real S3-compatible origin for tests, benches and the local demo: `s3s` (HTTP, SigV4) over `s3s-fs`
//! (a directory per bucket, a file per object) on a loopback port, in this process. Not a mock: clients
//! talk to it with object_store's ordinary S3 client. It counts the GetObject requests it serves, so tests
//! can check what the origin was asked for.
//!
//! Things to know about s3s-fs 0.14.1:
//! - an object is the plain file `root/bucket/key`; its ETag (MD5) and checksums live in side files
//!   `root/.bucket-<b64>.object-<b64>.internal.json` (and `.metadata.json` for content type and user
//!   metadata); without the side file it computes the MD5 by reading the whole file on every GET and HEAD,
//!   even a ranged one. [`S3Origin::put`] therefore writes the side file with the MD5 itself;
//! - ranges follow S3: the end is clamped to the object, a start at or past the end is `416 InvalidRange`.
//!
//! Faults: [`S3Origin::fail_next`] and [`S3Origin::fail_always`] make GetObject answers go wrong in the ways
//! a real origin does now and then (see [`Fault`]); [`S3Origin::clear_faults`] makes it healthy again.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use cache_client::config::OriginConfig;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder as ConnBuilder,
};
use s3s::{
    S3, S3Request, S3Response, S3Result,
    auth::SimpleAuth,
    crypto::{Checksum as _, Md5},
    dto::*,
    s3_error,
    service::S3ServiceBuilder,
};
use tokio::{net::TcpListener, task::JoinSet};

pub const REGION: &str = "us-east-1";

/// An S3 server on `127.0.0.1:PORT` serving a directory; stops when dropped.
pub struct S3Origin {
    root: PathBuf,
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
    stats: Arc<Stats>,
    tmp_counter: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Stats {
    gets: AtomicU64,
    bytes: AtomicU64,
    faulted: AtomicU64,
    /// The fault to inject, and for how many more GetObject requests (`None`: every one).
    fault: Mutex<Option<(Fault, Option<u64>)>>,
    heads: AtomicU64,
    puts: AtomicU64,
    put_bytes: AtomicU64,
    /// The fault to inject into PutObject requests, and for how many more (`None`: every one).
    put_fault: Mutex<Option<(PutFault, Option<u64>)>>,
}

/// A fault [`S3Origin`] injects into PutObject requests (a regional bucket that refuses writes,
/// or a write that arrives damaged). A fake only where a real server cannot misbehave on demand:
/// authentication, the S3 error XML and s3s-fs's own write and ETag stay real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutFault {
    /// `403 AccessDenied` (a bucket policy or credentials that do not allow writes).
    Refuse,
    /// `503 ServiceUnavailable` (the bucket is down).
    Unavailable,
    /// The body is stored with the byte at offset `at` flipped (the ETag is the stored bytes' MD5).
    Corrupt { at: u64 },
    /// Only the first `keep` bytes of the body are stored.
    Truncate { keep: u64 },
}

/// Takes the next fault of `slot`, counting it down.
fn take_fault<F: Copy>(slot: &Mutex<Option<(F, Option<u64>)>>) -> Option<F> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    let (fault, left) = (*slot)?;
    match left {
        Some(0) => {
            *slot = None;
            return None;
        }
        Some(1) => *slot = None,
        Some(n) => *slot = Some((fault, Some(n - 1))),
        None => {}
    }
    Some(fault)
}

impl Stats {
    /// The fault for the GetObject request now arriving, counting it down.
    fn next_fault(&self) -> Option<Fault> {
        let fault = take_fault(&self.fault)?;
        self.faulted.fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }
}

/// A fault [`S3Origin`] injects into its GetObject answers, after authentication and in place of
/// (or on top of) s3s-fs's answer. Everything else (HTTP, SigV4, the S3 error XML, the headers) stays
/// real: this is a fake only where a real server cannot misbehave on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `404 NoSuchKey` for an object that exists (deleted in between, not yet copied to a replica).
    NotFound,
    /// `500 InternalError`.
    InternalError,
    /// `503 SlowDown` (S3's answer to too many requests).
    SlowDown,
    /// Reads the request and never answers it (the connection stays open until the origin is dropped).
    Hang,
    /// Sends the head at once, then the body `chunk` bytes at a time, one chunk every `every`.
    Drip { chunk: usize, every: Duration },
    /// Sends the head (with the whole `Content-Length`), ends the body after its first `keep` bytes,
    /// and so closes the connection short of the promised length (the client may see fewer bytes:
    /// what a reset loses on the way is not defined).
    Truncate { keep: u64 },
    /// Sends the whole body with the byte at offset `at` of the body flipped (unchanged if the body is
    /// shorter). Length and ETag stay as they were.
    Corrupt { at: u64 },
}

impl S3Origin {
    /// Serves `root` (a directory, created if missing; bucket = a subdirectory) over HTTP on 127.0.0.1:0 with SigV4
    /// auth (s3s SimpleAuth) for the given credentials. Must be called inside a tokio runtime.
    pub async fn start(root: &Path, access_key: &str, secret_key: &str) -> anyhow::Result<S3Origin> {
        Self::start_on(root, SocketAddr::from(([127, 0, 0, 1], 0)), access_key, secret_key).await
    }

    /// [`S3Origin::start`] on a given address (the local demo cluster uses a fixed port).
    pub async fn start_on(
        root: &Path,
        listen: SocketAddr,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<S3Origin> {
        std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
        let root = root.canonicalize().with_context(|| format!("canonicalize {}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(&root).map_err(|e| anyhow::anyhow!("s3s-fs on {}: {e:?}", root.display()))?;
        let stats = Arc::new(Stats::default());
        let mut builder = S3ServiceBuilder::new(CountingFs { fs, stats: stats.clone() });
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();

        let listener = TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            // Connection tasks live in the set, so aborting this task (on drop) closes them too.
            let mut connections = JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok((socket, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await; // e.g. out of file descriptors
                    continue;
                };
                // Without it, Nagle's algorithm holds the end of each response until the client's
                // delayed ACK: about 40 ms added to every GET.
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                connections.spawn(async move {
                    let _ =
                        ConnBuilder::new(TokioExecutor::new()).serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        Ok(S3Origin {
            root,
            addr,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            stats,
            tmp_counter: AtomicU64::new(0),
            server,
        })
    }

    /// The address it listens on (to start it again there after dropping it: a bucket that was
    /// down and is back).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GetObject requests that passed authentication so far, including those answered with an error (a missing
    /// key, a bad range): S3 bills those too. HEADs and lists are not counted.
    pub fn get_count(&self) -> u64 {
        self.stats.gets.load(Ordering::Relaxed)
    }

    /// Sum of the `Content-Length` of the successful GetObject answers (those with a dripped, cut or
    /// corrupted body included).
    pub fn bytes_served(&self) -> u64 {
        self.stats.bytes.load(Ordering::Relaxed)
    }

    /// Injects `fault` into the next `n` GetObject requests (replacing any fault set before).
    pub fn fail_next(&self, fault: Fault, n: u64) {
        *self.stats.fault.lock().unwrap_or_else(|e| e.into_inner()) = Some((fault, Some(n)));
    }

    /// Injects `fault` into every GetObject request from now on, until [`Self::clear_faults`].
    pub fn fail_always(&self, fault: Fault) {
        *self.stats.fault.lock().unwrap_or_else(|e| e.into_inner()) = Some((fault, None));
    }

    /// Answers every request normally again (requests already hanging stay so).
    pub fn clear_faults(&self) {
        *self.stats.fault.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// HeadObject requests that passed authentication so far.
    pub fn head_count(&self) -> u64 {
        self.stats.heads.load(Ordering::Relaxed)
    }

    /// PutObject requests that passed authentication so far (refused ones included).
    pub fn put_count(&self) -> u64 {
        self.stats.puts.load(Ordering::Relaxed)
    }

    /// Sum of the `Content-Length` of the PutObject requests (the bytes clients sent).
    pub fn put_bytes(&self) -> u64 {
        self.stats.put_bytes.load(Ordering::Relaxed)
    }

    /// Injects `fault` into the next `n` PutObject requests (`None`: every one, until
    /// [`Self::clear_put_faults`]).
    pub fn fail_puts(&self, fault: PutFault, n: Option<u64>) {
        *self.stats.put_fault.lock().unwrap_or_else(|e| e.into_inner()) = Some((fault, n));
    }

    /// Takes writes normally again.
    pub fn clear_put_faults(&self) {
        *self.stats.put_fault.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The bytes of object `key` of `bucket` as stored, if it exists.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(bucket).join(key)).ok()
    }

    /// GetObject requests that got a fault so far (they are in [`Self::get_count`] too).
    pub fn faults_injected(&self) -> u64 {
        self.stats.faulted.load(Ordering::Relaxed)
    }

    /// Writes object `key` of `bucket` as the file `root/bucket/key` (atomically, by rename), with the side file
    /// that gives it its ETag (the MD5 of `data`, as PutObject would). Creates the bucket if needed.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) -> std::io::Result<()> {
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {bucket}/{key}"));
        if bucket.is_empty() || bucket.contains('/') || bucket.starts_with('.') {
            return Err(bad("bad bucket name"));
        }
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(bad("bad object key"));
        }
        let object = self.root.join(bucket).join(key);
        self.write_atomically(&object, data)?;
        let side = |suffix: &str| self.root.join(format!(".bucket-{}.object-{}.{suffix}", b64(bucket), b64(key)));
        let md5: String = Md5::checksum(data).iter().map(|b| format!("{b:02x}")).collect();
        self.write_atomically(&side("internal.json"), format!(r#"{{"e_tag":"{md5}"}}"#).as_bytes())?;
        match std::fs::remove_file(side("metadata.json")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// An origin entry for `s3://bucket/prefix` on this server (region us-east-1, plain HTTP allowed).
    pub fn origin_config(&self, bucket: &str, prefix: &str) -> OriginConfig {
        let prefix = prefix.trim_matches('/');
        OriginConfig {
            endpoint: Some(self.endpoint()),
            region: Some(REGION.into()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            allow_http: true,
            ..OriginConfig::new(if prefix.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{prefix}")
            })
        }
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn write_atomically(&self, dest: &Path, data: &[u8]) -> std::io::Result<()> {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Named like s3s-fs's own temporaries, which it deletes when it starts.
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join(format!(".tmp.testkit-{}-{n}.internal.part", self.addr.port()));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, dest).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

impl Drop for S3Origin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl fmt::Debug for S3Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Origin")
            .field("endpoint", &self.endpoint())
            .field("root", &self.root)
            .field("access_key", &self.access_key)
            .field("get_count", &self.get_count())
            .field("bytes_served", &self.bytes_served())
            .finish_non_exhaustive()
    }
}

/// URL-safe base64 without padding, as s3s-fs names its side files.
fn b64(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(s.len().div_ceil(3) * 4);
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// s3s-fs with a GetObject counter and the fault switch.
#[derive(Debug)]
struct CountingFs {
    fs: s3s_fs::FileSystem,
    stats: Arc<Stats>,
}

type BoxedResult<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// Forwards S3 operations to s3s-fs. The signatures are what `#[async_trait]` expands `S3`'s methods to.
macro_rules! delegate {
    ($($op:ident: $input:ty => $output:ty,)*) => {$(
        fn $op<'a, 'b>(&'a self, req: S3Request<$input>) -> BoxedResult<'b, $output>
        where
            'a: 'b,
            Self: 'b,
        {
            self.fs.$op(req)
        }
    )*};
}

impl S3 for CountingFs {
    fn get_object<'a, 'b>(&'a self, req: S3Request<GetObjectInput>) -> BoxedResult<'b, GetObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            self.stats.gets.fetch_add(1, Ordering::Relaxed);
            let fault = self.stats.next_fault();
            match fault {
                Some(Fault::NotFound) => return Err(s3_error!(NoSuchKey, "injected fault")),
                Some(Fault::InternalError) => return Err(s3_error!(InternalError, "injected fault")),
                Some(Fault::SlowDown) => return Err(s3_error!(SlowDown, "injected fault")),
                Some(Fault::Hang) => std::future::pending::<()>().await,
                _ => {}
            }
            let mut response = self.fs.get_object(req).await?;
            let len = response.output.content_length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
            self.stats.bytes.fetch_add(len, Ordering::Relaxed);
            if let Some(fault) = fault
                && let Some(body) = response.output.body.take()
            {
                response.output.body = Some(StreamingBlob::wrap(FaultyBody::new(body, fault)));
            }
            Ok(response)
        })
    }

    fn head_object<'a, 'b>(&'a self, req: S3Request<HeadObjectInput>) -> BoxedResult<'b, HeadObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        self.stats.heads.fetch_add(1, Ordering::Relaxed);
        self.fs.head_object(req)
    }

    fn put_object<'a, 'b>(&'a self, mut req: S3Request<PutObjectInput>) -> BoxedResult<'b, PutObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            self.stats.puts.fetch_add(1, Ordering::Relaxed);
            let len = req.input.content_length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
            self.stats.put_bytes.fetch_add(len, Ordering::Relaxed);
            let body_fault = match take_fault(&self.stats.put_fault) {
                Some(PutFault::Refuse) => return Err(s3_error!(AccessDenied, "injected fault: writes refused")),
                Some(PutFault::Unavailable) => return Err(s3_error!(ServiceUnavailable, "injected fault")),
                Some(PutFault::Corrupt { at }) => Some(Fault::Corrupt { at }),
                Some(PutFault::Truncate { keep }) => Some(Fault::Truncate { keep }),
                None => None,
            };
            if let Some(fault) = body_fault
                && let Some(body) = req.input.body.take()
            {
                req.input.body = Some(StreamingBlob::wrap(FaultyBody::new(body, fault)));
            }
            self.fs.put_object(req).await
        })
    }

    delegate! {
        head_bucket: HeadBucketInput => HeadBucketOutput,
        list_buckets: ListBucketsInput => ListBucketsOutput,
        list_objects: ListObjectsInput => ListObjectsOutput,
        list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
        create_bucket: CreateBucketInput => CreateBucketOutput,
        delete_bucket: DeleteBucketInput => DeleteBucketOutput,
        copy_object: CopyObjectInput => CopyObjectOutput,
        delete_object: DeleteObjectInput => DeleteObjectOutput,
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
        upload_part: UploadPartInput => UploadPartOutput,
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
        list_parts: ListPartsInput => ListPartsOutput,
        complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
    }
}

/// A GetObject body with a [`Fault`] applied: dripped, cut, or with one byte flipped.
struct FaultyBody {
    inner: StreamingBlob,
    fault: Fault,
    /// Body bytes passed on so far.
    sent: u64,
    /// Drip: bytes of the inner body not passed on yet, and the wait before the next chunk.
    held: bytes::Bytes,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Truncate: the kept bytes are out; the body ends there, short of its `Content-Length`, and
    /// hyper closes the connection (after flushing what was sent, unlike a failed body).
    cut: bool,
}

impl FaultyBody {
    fn new(inner: StreamingBlob, fault: Fault) -> Self {
        Self { inner, fault, sent: 0, held: bytes::Bytes::new(), wait: None, cut: false }
    }
}

impl futures::Stream for FaultyBody {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.cut {
            return Poll::Ready(None);
        }
        if let Some(wait) = &mut this.wait {
            std::task::ready!(wait.as_mut().poll(cx));
            this.wait = None;
        }
        if this.held.is_empty() {
            match std::task::ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(chunk)) => this.held = chunk,
                Some(Err(e)) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
                None => return Poll::Ready(None),
            }
        }
        let mut chunk = match this.fault {
            Fault::Drip { chunk, every } => {
                this.wait = Some(Box::pin(tokio::time::sleep(every)));
                this.held.split_to(chunk.max(1).min(this.held.len()))
            }
            _ => std::mem::take(&mut this.held),
        };
        match this.fault {
            Fault::Truncate { keep } if this.sent + chunk.len() as u64 >= keep => {
                chunk.truncate(keep.saturating_sub(this.sent) as usize);
                this.cut = true;
            }
            Fault::Corrupt { at } if (this.sent..this.sent + chunk.len() as u64).contains(&at) => {
                let mut flipped = bytes::BytesMut::from(&chunk[..]);
                flipped[(at - this.sent) as usize] ^= 0xff;
                chunk = flipped.freeze();
            }
            _ => {}
        }
        this.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(chunk)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn b64_matches_rfc4648_url_safe_unpadded() {
        for (input, want) in
            [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")]
        {
            assert_eq!(super::b64(input), want);
        }
        assert_eq!(super::b64("\u{fb}\u{ff}"), "w7vDvw");
        assert_eq!(super::b64("??>"), "Pz8-");
        assert_eq!(super::b64("???"), "Pz8_");
    }
}
