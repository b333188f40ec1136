//! QUIC connections to the cluster's nodes, one pooled connection per node, and the exchange of
//! one request on one bidirectional stream.
//!
//! A connection is opened on first use (one handshake at a time per node) and reused by every
//! request after it; QUIC multiplexes their streams. A node whose handshake fails, or which
//! stops answering, is set aside for [`SET_ASIDE`] so reads go straight to the next owner instead
//! of each paying the deadline again.

use std::{
    net::SocketAddr,
    sync::Mutex as SyncMutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::{
    ring::Member,
    wire::{MAX_RESPONSE_HEAD, RESPONSE_PREFIX_LEN, Request, ResponseHead, WireError},
};

/// How long a node that failed at the connection level is skipped.
pub const SET_ASIDE: Duration = Duration::from_secs(3);

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
        match self {
            Self::SetAside { .. } => "set_aside",
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Connection { .. } => "connection",
            Self::Stream { .. } => "stream",
            Self::Wire { .. } => "protocol",
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    conn: Mutex<Option<quinn::Connection>>,
    set_aside_until: SyncMutex<Option<Instant>>,
}

/// Connections to every member of the ring, indexed like the ring's members.
#[derive(Debug)]
pub struct Pool {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    members: Vec<Member>,
    slots: Vec<Slot>,
    connect_timeout: Duration,
}

impl Pool {
    pub fn new(
        endpoint: quinn::Endpoint,
        config: quinn::ClientConfig,
        members: Vec<Member>,
        connect_timeout: Duration,
    ) -> Self {
        let slots = members.iter().map(|_| Slot::default()).collect();
        Self { endpoint, config, members, slots, connect_timeout }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    fn set_aside(&self, idx: usize) {
        if let Ok(mut until) = self.slots[idx].set_aside_until.lock() {
            *until = Some(Instant::now() + SET_ASIDE);
        }
    }

    fn is_set_aside(&self, idx: usize) -> bool {
        self.slots[idx].set_aside_until.lock().is_ok_and(|u| u.is_some_and(|t| Instant::now() < t))
    }

    async fn connection(&self, idx: usize) -> Result<quinn::Connection, ExchangeError> {
        let member = &self.members[idx];
        let node = member.id.to_string();
        if self.is_set_aside(idx) {
            return Err(ExchangeError::SetAside { node });
        }
        let mut slot = self.slots[idx].conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(conn.clone());
        }
        let connect_err = |message: String| ExchangeError::Connect { node: node.clone(), addr: member.addr, message };
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), member.addr, member.id.as_str())
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                self.set_aside(idx);
                return Err(connect_err(e.to_string()));
            }
            Err(_) => {
                self.set_aside(idx);
                return Err(connect_err(format!("no handshake within {:?}", self.connect_timeout)));
            }
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Sends `request` to member `idx` on a new stream and reads the answer: the head, then a
    /// payload of exactly the length the head gives, if `accept` agrees to that length (checked
    /// before anything is allocated). The whole exchange has the deadline `timeout`.
    pub async fn exchange(
        &self,
        idx: usize,
        request: &Request,
        timeout: Duration,
        accept: impl FnOnce(&ResponseHead) -> Result<(), WireError>,
    ) -> Result<(ResponseHead, Bytes), ExchangeError> {
        let node = self.members[idx].id.to_string();
        let result = tokio::time::timeout(timeout, async {
            let conn = self.connection(idx).await?;
            let lost = |source| ExchangeError::Connection { node: node.clone(), source };
            let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
            let stream_err = |message: String| ExchangeError::Stream { node: node.clone(), message };
            send.write_all(&request.encode()).await.map_err(|e| stream_err(e.to_string()))?;
            send.finish().map_err(|e| stream_err(e.to_string()))?;

            let wire = |source| ExchangeError::Wire { node: node.clone(), source };
            let mut prefix = [0u8; RESPONSE_PREFIX_LEN];
            recv.read_exact(&mut prefix).await.map_err(|e| stream_err(e.to_string()))?;
            let (status, head_len) = ResponseHead::parse_prefix(&prefix).map_err(wire)?;
            debug_assert!(head_len <= MAX_RESPONSE_HEAD);
            let mut head = vec![0u8; head_len];
            recv.read_exact(&mut head).await.map_err(|e| stream_err(e.to_string()))?;
            let head = ResponseHead::decode_head(request.kind(), status, &head).map_err(wire)?;
            accept(&head).map_err(wire)?;
            let mut payload = vec![0u8; head.payload_len() as usize];
            recv.read_exact(&mut payload).await.map_err(|e| stream_err(e.to_string()))?;
            Ok((head, Bytes::from(payload)))
        })
        .await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                if matches!(e, ExchangeError::Connection { .. }) {
                    self.set_aside(idx);
                }
                Err(e)
            }
            Err(_) => {
                // A node that takes the whole deadline is as good as down for a while.
                self.set_aside(idx);
                Err(ExchangeError::Timeout { node, after: timeout })
            }
        }
    }
}
