//! QUIC connections to the cluster's nodes, one pooled connection per node id, and the exchange
//! of one request on one bidirectional stream.
//!
//! A connection is opened on first use (one handshake at a time per node) and reused by every
//! request after it; QUIC multiplexes their streams. A node whose handshake fails, or which
//! stops answering, is set aside for [`SET_ASIDE`] so reads go straight to the next owner instead
//! of each paying the deadline again.
//!
//! A node that goes silent is noticed by a watchdog on its connection ([`watch_silence`]), not
//! by the reads: a live node sends something at least every [`tls::KEEP_ALIVE`] (a keep-alive,
//! an acknowledgement of ours), so a connection that has received nothing for [`SILENT_AFTER`]
//! is to a node killed, stopped or cut off. The watchdog sets the node aside and closes the
//! connection, which ends every request waiting on it at once (its head or its bytes), and they
//! move to the next node. After [`SET_ASIDE`], one handshake in the background probes the node;
//! until it succeeds, requests still skip the node instead of waiting on it (with the whole
//! cluster down, reads keep going straight to the origin).
//!
//! [`tls::KEEP_ALIVE`]: crate::tls::KEEP_ALIVE

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex as SyncMutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::{
    chunks::Chunks,
    latency::{self, Samples},
    stats::Fallback,
};

use cache_proto::{
    key::NodeId,
    ring::Member,
    wire::{
        ErrorHead, MAX_RESPONSE_HEAD, RESET_ORIGIN_FAILED, RESPONSE_PREFIX_LEN, Request, ResponseHead, Status,
        TRAILER_LEN, WireError,
    },
};

/// How long a node that failed at the connection level, or was slow again and again, is
/// skipped. Afterwards the next request to it is the probe that brings it back (or not).
pub const SET_ASIDE: Duration = Duration::from_secs(3);
/// A node that needed a hedge this many times within [`SLOW_WINDOW`] is set aside.
pub const SLOW_STRIKES: u32 = 3;
pub const SLOW_WINDOW: Duration = Duration::from_secs(10);
/// A connection that has received nothing for this long is to a node that is gone: three
/// keep-alive intervals ([`crate::tls::KEEP_ALIVE`], 200 ms) without a datagram.
pub const SILENT_AFTER: Duration = Duration::from_millis(600);
/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// A watchdog tick this late (against [`WATCH_EVERY`]) says the client itself was stalled.
const LATE_TICK: Duration = Duration::from_millis(200);

/// Why one exchange with a node produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("node {node} set aside after a recent failure")]
    SetAside { node: String },
    #[error("connect to node {node} at {addr}: {message}")]
    Connect { node: String, addr: SocketAddr, message: String },
    #[error("node {node} did not answer within {after:?}")]
    Timeout { node: String, after: Duration },
    #[error("node {node}: connection lost: {source}")]
    Connection { node: String, source: quinn::ConnectionError },
    #[error("node {node}: stream: {message}")]
    Stream { node: String, message: String },
    #[error("node {node} sent a bad frame: {source}")]
    Wire { node: String, source: WireError },
}

impl ExchangeError {
    /// A short label for counters and traces.
    pub fn reason(&self) -> &'static str {
        self.fallback().as_str()
    }

    /// The counter this failure counts under.
    pub fn fallback(&self) -> Fallback {
        match self {
            Self::SetAside { .. } => Fallback::SetAside,
            Self::Connect { .. } => Fallback::Connect,
            Self::Timeout { .. } => Fallback::Timeout,
            Self::Connection { .. } => Fallback::Connection,
            Self::Stream { .. } => Fallback::Stream,
            Self::Wire { .. } => Fallback::Protocol,
        }
    }
}

/// How much a node had sent on its connection at some moment ([`Pool::heard`]), to tell later
/// whether it has sent anything since ([`Pool::heard_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard(Option<(usize, u64)>);

/// One node's connection and health, found by its id.
#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    conn: Mutex<Option<quinn::Connection>>,
    set_aside_until: SyncMutex<Option<Instant>>,
    /// Hedges this node needed in the current window: (count, window start).
    strikes: SyncMutex<(u32, Instant)>,
    /// A probe (a handshake after being set aside) is running.
    probing: AtomicBool,
    /// What its answers usually take ([`crate::latency`]).
    samples: SyncMutex<Samples>,
}

impl Slot {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            conn: Mutex::new(None),
            set_aside_until: SyncMutex::new(None),
            strikes: SyncMutex::new((0, Instant::now())),
            probing: AtomicBool::new(false),
            samples: SyncMutex::new(Samples::default()),
        }
    }

    /// What the node's connection has received so far (none while there is no connection).
    fn heard(&self) -> Heard {
        let conn = self.conn.try_lock().ok().and_then(|c| c.clone());
        Heard(conn.map(|c| (c.stable_id(), c.stats().udp_rx.datagrams)))
    }

    /// One more hedge for this node; the [`SLOW_STRIKES`]th within [`SLOW_WINDOW`] sets it aside.
    fn strike(&self) -> bool {
        let mut s = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        if s.1.elapsed() > SLOW_WINDOW {
            *s = (0, Instant::now());
        }
        s.0 += 1;
        if s.0 >= SLOW_STRIKES {
            *s = (0, Instant::now());
            drop(s);
            self.set_aside();
            return true;
        }
        false
    }

    /// Skips the node for [`SET_ASIDE`] and forgets its connection, so the request after that
    /// (the probe) opens a fresh one: a connection to a node that was killed and restarted, or
    /// stalled, would otherwise hang until its idle timeout. Requests already on the old
    /// connection finish on it (it is not closed).
    fn set_aside(&self) {
        if let Ok(mut until) = self.set_aside_until.lock() {
            *until = Some(Instant::now() + SET_ASIDE);
        }
        if let Ok(mut conn) = self.conn.try_lock() {
            conn.take();
        }
    }

    fn is_set_aside(&self) -> bool {
        self.set_aside_until.lock().is_ok_and(|u| u.is_some_and(|t| Instant::now() < t))
    }

    /// Whether `conn` is this node's pooled connection (yes while the slot is busy: it cannot
    /// be told, and the next look will).
    fn holds(&self, conn: &quinn::Connection) -> bool {
        self.conn.try_lock().map_or(true, |c| c.as_ref().is_some_and(|c| c.stable_id() == conn.stable_id()))
    }

    /// Set aside once and not yet back: the next handshake is its probe.
    fn on_probation(&self) -> bool {
        self.set_aside_until.lock().is_ok_and(|u| u.is_some())
    }

    /// A handshake succeeded: the node is back.
    fn back(&self) {
        if let Ok(mut until) = self.set_aside_until.lock() {
            *until = None;
        }
    }
}

/// Watches `conn` to `slot`'s node while it is the node's pooled connection: if it receives
/// nothing for [`SILENT_AFTER`], the node is set aside and the connection closed, so every
/// request on it ends now instead of at its own deadline (or the 5 s idle timeout). Once the
/// slot has forgotten it (set aside for another reason), the watchdog lets go of it, so the
/// connection closes when its last request does.
async fn watch_silence(slot: std::sync::Weak<Slot>, conn: quinn::Connection, node: NodeId) {
    let mut heard = conn.stats().udp_rx.datagrams;
    let mut last = Instant::now();
    let mut tick = Instant::now();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(pooled) = slot.upgrade() else { return };
        if conn.close_reason().is_some() || !pooled.holds(&conn) {
            return;
        }
        let now = conn.stats().udp_rx.datagrams;
        // A late tick means this process was not running (a busy or starved machine), and
        // neither was the task that reads the socket: the node's packets may be waiting there,
        // so the silence so far is ours, not the node's. Count it from now.
        let late = std::mem::replace(&mut tick, Instant::now()).elapsed() > LATE_TICK;
        if now != heard || late {
            (heard, last) = (now, Instant::now());
            continue;
        }
        if last.elapsed() < SILENT_AFTER {
            continue;
        }
        tracing::info!(%node, "node silent for {SILENT_AFTER:?}; set aside for {SET_ASIDE:?}");
        pooled.set_aside();
        conn.close(0u32.into(), b"silent");
        return;
    }
}

/// What opening a connection to a node takes (owned, so a probe can run on its own).
struct Handshake {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    timeout: Duration,
}

impl Handshake {
    /// The live connection in `conn_slot`, or a new one to `member` (then watched by
    /// [`watch_silence`], and the node is back); a failed handshake sets the node aside.
    async fn open(
        self,
        slot: &Arc<Slot>,
        member: &Member,
        conn_slot: &mut Option<quinn::Connection>,
    ) -> Result<quinn::Connection, ExchangeError> {
        if let Some(conn) = conn_slot.as_ref().filter(|c| c.close_reason().is_none()) {
            slot.back();
            return Ok(conn.clone());
        }
        let node = member.id.to_string();
        let connect_err = |message: String| ExchangeError::Connect { node: node.clone(), addr: member.addr, message };
        let connecting = self
            .endpoint
            .connect_with(self.config, member.addr, member.id.as_str())
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                slot.set_aside();
                return Err(connect_err(e.to_string()));
            }
            Err(_) => {
                slot.set_aside();
                return Err(connect_err(format!("no handshake within {:?}", self.timeout)));
            }
        };
        *conn_slot = Some(conn.clone());
        slot.back();
        tokio::spawn(watch_silence(Arc::downgrade(slot), conn.clone(), member.id.clone()));
        Ok(conn)
    }
}

/// Connections to the cluster's nodes, keyed by node id (members come and go with the ring).
#[derive(Debug)]
pub struct Pool {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    slots: SyncMutex<HashMap<NodeId, Arc<Slot>>>,
    connect_timeout: Duration,
}

impl Pool {
    pub fn new(endpoint: quinn::Endpoint, config: quinn::ClientConfig, connect_timeout: Duration) -> Self {
        Self { endpoint, config, slots: SyncMutex::new(HashMap::new()), connect_timeout }
    }

    /// The slot of `member`; a member that moved to another address gets a fresh one.
    fn slot(&self, member: &Member) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get(&member.id) {
            Some(slot) if slot.addr == member.addr => slot.clone(),
            _ => {
                let slot = Arc::new(Slot::new(member.addr));
                slots.insert(member.id.clone(), slot.clone());
                slot
            }
        }
    }

    /// Forgets (and closes the connections of) nodes for which `keep` says no: members that
    /// left the ring.
    pub fn retain(&self, keep: impl Fn(&NodeId) -> bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|id, slot| {
            let kept = keep(id);
            if !kept
                && let Ok(conn) = slot.conn.try_lock()
                && let Some(conn) = conn.as_ref()
            {
                conn.close(0u32.into(), b"left the ring");
            }
            kept
        });
    }

    /// `member` began no answer to a request within the hedge deadline. If it has sent nothing
    /// at all since `before` either (taken when the request was sent: a live node acknowledges a
    /// request within milliseconds), that is a strike, and after [`SLOW_STRIKES`] strikes within
    /// [`SLOW_WINDOW`] it is set aside. A node that still talks is busy (a slow origin, a queue
    /// of fills), not gone: setting it aside would send its reads to a node that fills them a
    /// second time, or to the origin, which fills nothing.
    pub fn note_slow(&self, member: &Member, before: Heard) {
        if !self.heard_since(member, before) && self.slot(member).strike() {
            tracing::info!(node = %member.id, "node is slow; set aside for {SET_ASIDE:?}");
        }
    }

    /// `member`'s begun answer came so slowly that it was dropped for another node's: a
    /// strike, as for a head that did not come (the node still talks, only too slowly).
    pub fn note_crawling(&self, member: &Member) {
        if self.slot(member).strike() {
            tracing::info!(node = %member.id, "node answers too slowly; set aside for {SET_ASIDE:?}");
        }
    }

    /// An answer's head from `member` came `took` after its request was sent.
    pub fn note_head(&self, member: &Member, took: Duration) {
        self.slot(member).samples.lock().unwrap_or_else(|e| e.into_inner()).head(took);
    }

    /// A cached page's payload from `member`: `bytes` in `took` after its head.
    pub fn note_payload(&self, member: &Member, bytes: u64, took: Duration) {
        self.slot(member).samples.lock().unwrap_or_else(|e| e.into_inner()).payload(bytes, took);
    }

    /// When to hedge a request to `member` that has no head yet: after its usual head time
    /// ([`Samples::hedge_after`]), at most `ceiling`.
    pub fn hedge_after(&self, member: &Member, ceiling: Duration) -> Duration {
        self.slot(member).samples.lock().unwrap_or_else(|e| e.into_inner()).hedge_after(ceiling)
    }

    /// How long a begun cached answer of `bytes` may take before it is crawling, judged by the
    /// cluster's usual rate ([`latency::crawling_after`]); None when it cannot be judged.
    pub fn crawling_after(&self, bytes: u64, floor: Duration) -> Option<Duration> {
        let slots: Vec<Arc<Slot>> = self.slots.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let medians = slots.iter().filter_map(|s| s.samples.lock().unwrap_or_else(|e| e.into_inner()).median_rate());
        latency::crawling_after(bytes, latency::usual_rate(medians), floor)
    }

    /// What `member` has sent on its connection so far.
    pub fn heard(&self, member: &Member) -> Heard {
        self.slot(member).heard()
    }

    /// Whether `member` has sent anything on its connection since `before` (a datagram of any
    /// kind: an answer, an acknowledgement, a keep-alive, which a live node sends every
    /// [`crate::tls::KEEP_ALIVE`]).
    /// A killed, stopped or cut-off node sends nothing.
    pub fn heard_since(&self, member: &Member, before: Heard) -> bool {
        match (before, self.heard(member)) {
            (_, Heard(None)) => false,
            (before, now) => now != before,
        }
    }

    /// Whether `member` failed at the connection level within the last [`SET_ASIDE`].
    pub fn is_set_aside(&self, member: &Member) -> bool {
        self.slot(member).is_set_aside()
    }

    /// The pooled connection to `member`, opened if there is none (one handshake at a time).
    /// A node back from being set aside is probed by one handshake in the background; until it
    /// succeeds, requests skip the node ([`ExchangeError::SetAside`]) instead of each waiting up
    /// to the connect deadline for a node that may still be gone.
    pub async fn connection(&self, member: &Member) -> Result<quinn::Connection, ExchangeError> {
        let slot = self.slot(member);
        let node = member.id.to_string();
        if slot.is_set_aside() {
            return Err(ExchangeError::SetAside { node });
        }
        if slot.on_probation() {
            if !slot.probing.swap(true, Ordering::AcqRel) {
                let (handshake, slot, member) = (self.handshake(), slot.clone(), member.clone());
                tokio::spawn(async move {
                    let mut conn_slot = slot.conn.lock().await;
                    let result = handshake.open(&slot, &member, &mut conn_slot).await;
                    drop(conn_slot);
                    slot.probing.store(false, Ordering::Release);
                    if let Err(e) = result {
                        tracing::debug!(node = %member.id, error = %e, "probe failed; still set aside");
                    }
                });
            }
            return Err(ExchangeError::SetAside { node });
        }
        let mut conn_slot = slot.conn.lock().await;
        self.handshake().open(&slot, member, &mut conn_slot).await
    }

    fn handshake(&self) -> Handshake {
        Handshake { endpoint: self.endpoint.clone(), config: self.config.clone(), timeout: self.connect_timeout }
    }

    /// Sends `request` to `member` on a new stream and reads the answer: the head, then a
    /// payload of exactly the length the head gives, if `accept` agrees to that length (checked
    /// before anything is allocated). The whole exchange has the deadline `timeout`.
    pub async fn exchange(
        &self,
        member: &Member,
        request: &Request,
        timeout: Duration,
        accept: impl FnOnce(&ResponseHead) -> Result<(), WireError>,
    ) -> Result<(ResponseHead, Bytes), ExchangeError> {
        let slot = self.slot(member);
        let node = member.id.to_string();
        let result = tokio::time::timeout(timeout, async {
            let conn = self.connection(member).await?;
            let answering = open_on(&conn, &node, request, accept).await?;
            answering.payload(None).await
        })
        .await;
        settle(&slot, node, timeout, result)
    }

    /// Sends `request` to `member` on a new stream and waits for the answer's head, at most
    /// `timeout` (connecting included), if `accept` agrees to the length it gives. The payload
    /// is then read with [`Answering::payload`]: a caller can tell a node that answers (a page
    /// it is filling from a slow origin streams as the origin sends it) from one that does not.
    pub async fn request(
        &self,
        member: &Member,
        request: &Request,
        timeout: Duration,
        accept: impl FnOnce(&ResponseHead) -> Result<(), WireError>,
    ) -> Result<Answering, ExchangeError> {
        let slot = self.slot(member);
        let node = member.id.to_string();
        let result = tokio::time::timeout(timeout, async {
            let conn = self.connection(member).await?;
            open_on(&conn, &node, request, accept).await
        })
        .await;
        settle(&slot, node, timeout, result).map(|mut a| {
            a.slot = Some(slot);
            a
        })
    }
}

/// An exchange's result, with the node set aside when its connection failed or it took the
/// whole deadline (it is as good as down for a while).
fn settle<T>(
    slot: &Slot,
    node: String,
    timeout: Duration,
    result: Result<Result<T, ExchangeError>, tokio::time::error::Elapsed>,
) -> Result<T, ExchangeError> {
    match result {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => {
            if matches!(e, ExchangeError::Connection { .. }) {
                slot.set_aside();
            }
            Err(e)
        }
        Err(_) => {
            slot.set_aside();
            Err(ExchangeError::Timeout { node, after: timeout })
        }
    }
}

/// An answer whose head has arrived; its payload is still on the stream.
#[derive(Debug)]
pub struct Answering {
    pub head: ResponseHead,
    status: Status,
    recv: quinn::RecvStream,
    node: String,
    /// The node's slot, to set it aside if the payload stops coming.
    slot: Option<Arc<Slot>>,
}

/// One request on a new stream of `conn`, up to the answer's head, if `accept` agrees to the
/// payload length it gives.
async fn open_on(
    conn: &quinn::Connection,
    node: &str,
    request: &Request,
    accept: impl FnOnce(&ResponseHead) -> Result<(), WireError>,
) -> Result<Answering, ExchangeError> {
    let lost = |source| ExchangeError::Connection { node: node.to_owned(), source };
    let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
    let stream_err = |message: String| ExchangeError::Stream { node: node.to_owned(), message };
    send.write_all(&request.encode()).await.map_err(|e| stream_err(e.to_string()))?;
    send.finish().map_err(|e| stream_err(e.to_string()))?;

    let wire = |source| ExchangeError::Wire { node: node.to_owned(), source };
    let mut prefix = [0u8; RESPONSE_PREFIX_LEN];
    recv.read_exact(&mut prefix).await.map_err(|e| stream_err(e.to_string()))?;
    let (status, head_len) = ResponseHead::parse_prefix(&prefix).map_err(wire)?;
    debug_assert!(head_len <= MAX_RESPONSE_HEAD);
    let mut head = vec![0u8; head_len];
    recv.read_exact(&mut head).await.map_err(|e| stream_err(e.to_string()))?;
    let head = ResponseHead::decode_head(request.kind(), status, &head).map_err(wire)?;
    accept(&head).map_err(wire)?;
    Ok(Answering { head, status, recv, node: node.to_owned(), slot: None })
}

impl Answering {
    /// The payload as one buffer: [`Self::payload_chunks`], joined (one copy when it came in
    /// more than one part). For answers that are not pages on their way to a socket.
    pub async fn payload(self, stall: Option<Duration>) -> Result<(ResponseHead, Bytes), ExchangeError> {
        let (head, payload) = self.payload_chunks(stall).await?;
        Ok((head, payload.into_bytes()))
    }

    /// The payload (and, for a streamed page, the digest after it), in the parts it came in.
    /// With `stall`, the bytes must keep coming: a gap longer than it ends the read (and sets
    /// the node aside), however long the whole takes; the node bounds that (its response
    /// deadline, its origin deadline).
    pub async fn payload_chunks(self, stall: Option<Duration>) -> Result<(ResponseHead, Chunks), ExchangeError> {
        let Self { mut head, status, mut recv, node, slot } = self;
        let stream_err = |message: String| ExchangeError::Stream { node: node.clone(), message };
        let len = head.payload_len() as usize;
        let body = async {
            let payload = read_exactly(&mut recv, len, stall).await?;
            let mut trailer = [0u8; TRAILER_LEN];
            if status == Status::Streamed {
                let got = read_exactly(&mut recv, TRAILER_LEN, stall).await?;
                got.copy_prefix_to(&mut trailer);
            }
            Ok::<_, BodyError>((payload, trailer))
        };
        let (payload, trailer) = match body.await {
            Ok(body) => body,
            // The node's origin failed while it streamed the page: an `OriginFailed` answer.
            Err(BodyError::Read(quinn::ReadError::Reset(code)))
                if code == quinn::VarInt::from_u32(RESET_ORIGIN_FAILED) =>
            {
                let message = "the origin failed while the node streamed the page".to_owned();
                return Ok((
                    ResponseHead::Error(ErrorHead { status: Status::OriginFailed, message }),
                    Chunks::default(),
                ));
            }
            Err(BodyError::Stalled(after)) => {
                if let Some(slot) = slot {
                    slot.set_aside();
                }
                return Err(ExchangeError::Timeout { node, after });
            }
            Err(BodyError::Read(quinn::ReadError::ConnectionLost(source))) => {
                if let Some(slot) = slot {
                    slot.set_aside();
                }
                return Err(ExchangeError::Connection { node, source });
            }
            Err(e) => return Err(stream_err(e.to_string())),
        };
        if let (Status::Streamed, ResponseHead::Page(page)) = (status, &mut head) {
            page.digest = u64::from_be_bytes(trailer);
        }
        Ok((head, payload))
    }
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
    #[error("the stream ended {0} bytes early")]
    Short(usize),
    #[error("no bytes for {0:?}")]
    Stalled(Duration),
}

/// Exactly `len` bytes of `recv`, each part within `stall` of the last, in the parts quinn
/// hands out (one per datagram): nothing is copied.
async fn read_exactly(recv: &mut quinn::RecvStream, len: usize, stall: Option<Duration>) -> Result<Chunks, BodyError> {
    // ~4,000 bytes per datagram (tls.rs: MAX_UDP_PAYLOAD).
    let mut out = Chunks::with_capacity(len / 3_000 + 1);
    while out.len() < len {
        let next = recv.read_chunk(len - out.len(), true);
        let chunk = match stall {
            Some(after) => tokio::time::timeout(after, next).await.map_err(|_| BodyError::Stalled(after))??,
            None => next.await?,
        };
        let Some(chunk) = chunk else { return Err(BodyError::Short(len - out.len())) };
        out.push(chunk.bytes);
    }
    Ok(out)
}

impl Pool {
    /// One request to whatever node listens at `addr` (a seed: its id is not known yet), on a
    /// connection of its own that `config` (see [`crate::node_cert::any_node_client_config`])
    /// opens and that is closed afterwards.
    pub async fn ask_addr(
        &self,
        config: &quinn::ClientConfig,
        addr: SocketAddr,
        request: &Request,
        timeout: Duration,
    ) -> Result<(ResponseHead, Bytes), ExchangeError> {
        let node = format!("seed {addr}");
        let result = tokio::time::timeout(timeout, async {
            let connect_err = |message: String| ExchangeError::Connect { node: node.clone(), addr, message };
            let connecting =
                self.endpoint.connect_with(config.clone(), addr, "seed").map_err(|e| connect_err(e.to_string()))?;
            let conn = connecting.await.map_err(|e| connect_err(e.to_string()))?;
            let answer = match open_on(&conn, &node, request, |_| Ok(())).await {
                Ok(answering) => answering.payload(None).await,
                Err(e) => Err(e),
            };
            conn.close(0u32.into(), b"done");
            answer
        })
        .await;
        result.unwrap_or(Err(ExchangeError::Timeout { node, after: timeout }))
    }
}
