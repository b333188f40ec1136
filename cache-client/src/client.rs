//! [`Client::read`]: a byte range of an object, through the cache when it can answer and from
//! the origin when it cannot. The answer is always the origin's bytes or a typed error.
//!
//! For each page of the range (concurrently): ask the page's owner on the ring; on any failure
//! (unreachable, deadline, refusal, a digest or length that does not check out) ask the next
//! distinct node; then read the origin directly. An owner whose answer has not begun within
//! `hedge_after` gets company: the next node is asked for the page if it has it cached (a peek:
//! no origin GET), and the first good answer wins (`hedge.rs`: at most about one extra request
//! in ten); an owner that sent nothing at all three times in ten seconds is set aside, and reads
//! waiting on it move on. An answer that has begun is waited for while its bytes keep coming.
//! Only a node answer whose length matches the object size it reports and whose digest, bound
//! to the request, matches the bytes is used. One piece's walk is `read_piece.rs`; this file
//! holds [`Client`], its construction, the whole-range read and the status requests.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures::future::try_join_all;

use crate::{
    chunks::Chunks,
    config::{ClientConfig, ClientSection},
    hedge::HedgeBudget,
    origin::{OriginChain, OriginError},
    pool::{ExchangeError, Pool},
    ring_source::RingSource,
    stats::{ClientStats, Source},
    tls::{self, TlsError},
};
use cache_proto::{
    key::{ObjectKey, Volume},
    page::pieces,
    ring::Member,
    wire::{NodeStatus, Request, ResponseHead, Status},
};

/// Largest range one `read` call may ask for.
pub const MAX_READ_LEN: u64 = 256 << 20;
pub use crate::read_piece::NODE_TRIES;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("volume {volume}: {source}")]
    Origin { volume: String, source: OriginError },
    #[error("cannot bind a UDP socket for QUIC: {0}")]
    Bind(std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("volume {0} is not in this client's config")]
    UnknownVolume(String),
    #[error("a read of {len} bytes is more than the limit of {max}")]
    TooLarge { len: u64, max: u64 },
    #[error("{key}: offset {offset} is past the end of the object ({size} bytes)")]
    OutOfRange { key: String, offset: u64, size: u64 },
    #[error("{key}: origin did not answer within {after:?}")]
    OriginTimeout { key: String, after: Duration },
    /// Pages of a streamed read disagree about the object (it changed at the origin while it
    /// was read): the stream ends rather than mix two versions.
    #[error("{key} changed while it was read; read it again")]
    Changed { key: String },
    /// The cache could not answer and the origin failed too (or has no such object).
    #[error(transparent)]
    Origin(#[from] OriginError),
}

/// Why a `Status` or `Drain` request to a node got no status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("bad status JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("refused ({}): {message}", status.as_str())]
    Refused { status: Status, message: String },
    #[error("not a status answer to a status request")]
    NotAStatus,
}

/// How one page of a read was served.
#[derive(Debug, Clone)]
pub struct PageTrace {
    pub page: u64,
    pub source: Source,
    /// Nodes asked before the source, and why each was passed over.
    pub passed_over: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct ClientVolume {
    pub(crate) token: String,
    pub(crate) origin: OriginChain,
}

/// The mirrorcache client. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Client {
    pub(crate) ring_source: RingSource,
    pub(crate) pool: Pool,
    pub(crate) volumes: HashMap<Volume, ClientVolume>,
    pub(crate) page_size: u32,
    pub(crate) timeouts: ClientSection,
    pub(crate) stats: ClientStats,
    pub(crate) hedges: HedgeBudget,
    /// Off only to prove that the checker catches what the digest would have (`cache-bench
    /// check --no-verify-digests`); never in a mount.
    pub(crate) verify_digests: bool,
}

/// A read with what is known about the object: its size and ETag, and how each page was served.
#[derive(Debug, Clone)]
pub struct ObjectRead {
    pub bytes: Bytes,
    pub object_size: u64,
    pub etag: Option<String>,
    pub pages: Vec<PageTrace>,
}

impl Client {
    /// Builds the ring (static membership) and the origin chains from `config` and binds a QUIC
    /// endpoint. Must run inside a tokio runtime. Nothing is connected until the first read,
    /// which with gossip membership first asks a seed for the ring.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let files = tls::TlsFiles::load(&config.tls)?;
        let transport = std::sync::Arc::new(tls::transport_config());
        let quic = tls::client_config(&files, transport.clone())?;
        let seed_config = crate::node_cert::any_node_client_config(&files, transport)?;
        let cluster = &config.cluster;
        let any_v6 = cluster.members.iter().map(|m| m.addr).chain(cluster.seeds.iter().copied()).any(|a| a.is_ipv6());
        let bind: SocketAddr = if any_v6 { "[::]:0" } else { "0.0.0.0:0" }.parse().map_err(|_| {
            ClientError::Bind(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad bind address"))
        })?;
        let endpoint = crate::tls::endpoint(bind, None).map_err(ClientError::Bind)?;
        let mut volumes = HashMap::new();
        for v in &config.volume {
            let origin = OriginChain::from_config(&v.origin)
                .map_err(|source| ClientError::Origin { volume: v.name.to_string(), source })?;
            volumes.insert(v.name.clone(), ClientVolume { token: v.token.clone(), origin });
        }
        Ok(Self {
            ring_source: RingSource::new(cluster, seed_config),
            pool: Pool::new(endpoint, quic, config.client.connect_timeout.0),
            volumes,
            page_size: config.cache.page_size.0 as u32,
            timeouts: config.client,
            stats: ClientStats::default(),
            hedges: HedgeBudget::default(),
            verify_digests: true,
        })
    }

    /// Turns off the check of node answers against their digests. Only for proving that a
    /// checker notices wrong bytes (a corrupting node then reaches the reader); never in a mount.
    pub fn without_digest_checks(mut self) -> Self {
        self.verify_digests = false;
        self
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The page size this client splits reads by (it must equal the nodes').
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Bytes `[offset, offset + len)` of `key`, cut at the object's end (like `pread`). An
    /// offset past the end is [`ReadError::OutOfRange`]; a zero-length read is empty and sends
    /// no request.
    pub async fn read(&self, volume: &Volume, key: &ObjectKey, offset: u64, len: u64) -> Result<Bytes, ReadError> {
        self.read_traced(volume, key, offset, len).await.map(|(bytes, _)| bytes)
    }

    /// [`Client::read`], also telling where each page came from.
    pub async fn read_traced(
        &self,
        volume: &Volume,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<(Bytes, Vec<PageTrace>), ReadError> {
        self.read_object(volume, key, offset, len).await.map(|r| (r.bytes, r.pages))
    }

    /// [`Client::read`], also telling the object's size and ETag and where each page came from.
    /// A zero-length read knows nothing of the object: its size is 0 and its ETag `None`.
    pub async fn read_object(
        &self,
        volume: &Volume,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<ObjectRead, ReadError> {
        let cv = self.volumes.get(volume).ok_or_else(|| ReadError::UnknownVolume(volume.to_string()))?;
        if len > MAX_READ_LEN {
            return Err(ReadError::TooLarge { len, max: MAX_READ_LEN });
        }
        let mut parts = match pieces(offset, len, self.page_size) {
            Some(p) => p,
            None => return Err(ReadError::TooLarge { len, max: u64::MAX - offset }),
        };
        let Some(first) = parts.next() else {
            return Ok(ObjectRead { bytes: Bytes::new(), object_size: 0, etag: None, pages: Vec::new() });
        };
        // The first page tells the object's size, so pages past its end are never asked for
        // (a read "to the end" of a 4 MiB block is one request, not one per page of `len`).
        let head = self.read_piece(volume, cv, key, first).await?;
        let size = head.object_size;
        let end = offset.saturating_add(len).min(size);
        let rest = parts.take_while(|p| p.offset(self.page_size) < end).map(|mut p| {
            p.len = p.len.min((end - p.offset(self.page_size)) as u32);
            p
        });
        let mut reads = vec![head];
        reads.extend(try_join_all(rest.map(|p| self.read_piece(volume, cv, key, p))).await?);
        let total: u64 = reads.iter().map(|r| r.bytes.len() as u64).sum();
        if reads.iter().any(|r| r.object_size != size) || total != end.saturating_sub(offset) {
            // Pages disagree about the object (it changed at the origin between them): read the
            // whole range from the origin in one request instead.
            tracing::warn!(%volume, %key, "pages disagree about the object; reading the range from the origin");
            let read = self.origin_range(cv, key, offset, len).await?;
            let pages = reads.into_iter().map(|r| PageTrace { source: Source::Origin, ..r.trace }).collect();
            return Ok(ObjectRead { bytes: read.bytes, object_size: read.object_size, etag: read.etag, pages });
        }
        if offset > size {
            return Err(ReadError::OutOfRange { key: key.to_string(), offset, size });
        }
        let pages = reads.iter().map(|r| r.trace.clone()).collect();
        let etag = reads[0].etag.clone();
        // One buffer for the caller: the parts of every page, joined (one copy, none for a
        // page that came in one part).
        let mut all = Chunks::with_capacity(reads.iter().map(|r| r.bytes.parts().len()).sum());
        for r in reads {
            for part in r.bytes.into_parts() {
                all.push(part);
            }
        }
        let bytes = all.into_bytes();
        Ok(ObjectRead { bytes, object_size: size, etag, pages })
    }

    async fn origin_range(
        &self,
        cv: &ClientVolume,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<crate::origin::OriginRead, ReadError> {
        let after = self.timeouts.origin_timeout.0;
        match tokio::time::timeout(after, cv.origin.get_range(key, offset..offset.saturating_add(len))).await {
            Err(_) => Err(ReadError::OriginTimeout { key: key.to_string(), after }),
            Ok(Ok(read)) => Ok(read),
            Ok(Err(OriginError::OutOfRange { size, .. })) => {
                Err(ReadError::OutOfRange { key: key.to_string(), offset, size })
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Counters of `member`, asked over QUIC.
    pub async fn node_status(&self, member: &Member) -> Result<NodeStatus, StatusError> {
        self.status_request(member, &Request::Status).await
    }

    /// Takes `member` off the ring (its answer is its status once draining). The node refuses
    /// unless this client's certificate is one of its operators.
    pub async fn drain(&self, member: &Member) -> Result<NodeStatus, StatusError> {
        self.status_request(member, &Request::Drain).await
    }

    async fn status_request(&self, member: &Member, request: &Request) -> Result<NodeStatus, StatusError> {
        let timeout = self.timeouts.page_timeout.0;
        let (head, payload) = self.pool.exchange(member, request, timeout, |_| Ok(())).await?;
        match head {
            ResponseHead::Status { .. } => serde_json::from_slice(&payload).map_err(StatusError::Json),
            ResponseHead::Error(e) => Err(StatusError::Refused { status: e.status, message: e.message }),
            ResponseHead::Page(_) | ResponseHead::Warm { .. } => Err(StatusError::NotAStatus),
        }
    }
}
