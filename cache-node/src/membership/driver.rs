//! Runs [`Gossip`] on the node's own QUIC endpoint: gossip travels as QUIC datagrams on
//! connections between nodes (same port, same mTLS: only peers with a node certificate of the
//! cluster are heard), timers are tokio sleeps, and every change of the member list is
//! installed into [`Membership`].
//!
//! ```text
//!  server.rs: datagram from a node ──► inbound ─┐
//!  Control (drain) ─────────────────────────────┤
//!  timers (tokio sleeps) ───────────────────────┼─► actor: Gossip ─► install(members)
//!  1 s tick: alone? announce to seeds again ────┘        │
//!                                                        ▼ (addr, bytes)
//!                              Outbound: one connection per peer address, datagrams
//! ```
//! Gossip is lossy by design: a full queue or a datagram that cannot be sent is dropped, and
//! SWIM's probes and retransmissions cover it.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use cache_proto::wire::MemberState;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Membership, gossip::Gossip};

/// Datagrams waiting for the gossip task; more are dropped.
const INBOUND_QUEUE: usize = 1024;
/// Datagrams to one peer held while its connection is being opened.
const PENDING_PER_PEER: usize = 16;
/// Deadline for opening a gossip connection, and the pause before trying a failed peer again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What an operator asks of the gossip task.
#[derive(Debug)]
pub enum Control {
    /// Advertise weight 0 and state `draining`; answered once the ring shows it.
    Drain(oneshot::Sender<()>),
}

/// The ends the rest of the node talks to.
#[derive(Debug, Clone)]
pub struct GossipHandle {
    pub inbound: mpsc::Sender<Bytes>,
    pub control: mpsc::Sender<Control>,
}

/// Starts the gossip task; it leaves the cluster and stops when `shutdown` fires.
pub fn spawn(
    mut gossip: Gossip,
    endpoint: quinn::Endpoint,
    peer_config: quinn::ClientConfig,
    membership: Arc<Membership>,
    shutdown: CancellationToken,
) -> (GossipHandle, tokio::task::JoinHandle<()>) {
    let (inbound, mut inbound_rx) = mpsc::channel::<Bytes>(INBOUND_QUEUE);
    let (control, mut control_rx) = mpsc::channel::<Control>(8);
    let (timer_tx, mut timer_rx) = mpsc::unbounded_channel();
    let outbound = Outbound::spawn(endpoint, peer_config, shutdown.clone());
    let task = tokio::spawn(async move {
        let mut step = Step { timer_tx, outbound, membership };
        if let Err(e) = gossip.announce() {
            tracing::warn!(error = %e, "announcing to the seeds failed");
        }
        step.flush(&mut gossip);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(data) = inbound_rx.recv() => gossip.handle_data(&data),
                Some(timer) = timer_rx.recv() => gossip.handle_timer(timer),
                Some(control) = control_rx.recv() => match control {
                    Control::Drain(done) => {
                        let weight = gossip.me().weight;
                        let r = if gossip.me().state == MemberState::Draining {
                            Ok(())
                        } else {
                            gossip.set_state(MemberState::Draining, weight)
                        };
                        step.flush(&mut gossip);
                        let _ = done.send(());
                        r
                    }
                },
                _ = tick.tick() => if gossip.is_alone() { gossip.announce() } else { Ok(()) },
            };
            if let Err(e) = result {
                // Bad or stale datagrams land here; they change nothing.
                tracing::debug!(error = %e, "gossip");
            }
            step.flush(&mut gossip);
        }
        if let Err(e) = gossip.leave() {
            tracing::debug!(error = %e, "leaving the cluster");
        }
        step.flush(&mut gossip);
        // Give the goodbye a moment to leave before the endpoint closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    (GossipHandle { inbound, control }, task)
}

struct Step {
    timer_tx: mpsc::UnboundedSender<foca::Timer<super::peer::Peer>>,
    outbound: mpsc::Sender<(SocketAddr, Bytes)>,
    membership: Arc<Membership>,
}

impl Step {
    fn flush(&mut self, gossip: &mut Gossip) {
        let out = match gossip.take() {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(error = %e, "gossip state change failed");
                return;
            }
        };
        for (after, timer) in out.schedule {
            let tx = self.timer_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(timer);
            });
        }
        for message in out.send {
            let _ = self.outbound.try_send(message);
        }
        if out.changed {
            let members = gossip.members();
            if self.membership.install(members, std::time::Instant::now()) {
                let view = self.membership.view();
                let list: Vec<String> =
                    view.members.iter().map(|m| format!("{}({} w{})", m.id, m.state.as_str(), m.weight)).collect();
                tracing::info!(epoch = format_args!("{:016x}", view.epoch), members = %list.join(" "), "ring changed");
            }
        }
    }
}

/// A peer's gossip connection.
enum Conn {
    Ready(quinn::Connection),
    Opening(Vec<Bytes>),
    Failed(tokio::time::Instant),
}

struct Outbound {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    conns: HashMap<SocketAddr, Conn>,
    opened: mpsc::UnboundedSender<(SocketAddr, Option<quinn::Connection>)>,
}

impl Outbound {
    fn spawn(
        endpoint: quinn::Endpoint,
        config: quinn::ClientConfig,
        shutdown: CancellationToken,
    ) -> mpsc::Sender<(SocketAddr, Bytes)> {
        let (tx, mut rx) = mpsc::channel::<(SocketAddr, Bytes)>(INBOUND_QUEUE);
        let (opened, mut opened_rx) = mpsc::unbounded_channel();
        let mut out = Self { endpoint, config, conns: HashMap::new(), opened };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        // Deliver what is queued (the goodbye), then stop.
                        while let Ok((to, data)) = rx.try_recv() {
                            out.send(to, data);
                        }
                        break;
                    }
                    Some((to, data)) = rx.recv() => out.send(to, data),
                    Some((to, conn)) = opened_rx.recv() => out.opened(to, conn),
                }
            }
        });
        tx
    }

    fn send(&mut self, to: SocketAddr, data: Bytes) {
        match self.conns.get_mut(&to) {
            Some(Conn::Ready(conn)) if conn.close_reason().is_none() => {
                if let Err(e) = conn.send_datagram(data) {
                    tracing::debug!(peer = %to, error = %e, "gossip datagram not sent");
                }
            }
            Some(Conn::Opening(pending)) => {
                if pending.len() < PENDING_PER_PEER {
                    pending.push(data);
                }
            }
            Some(Conn::Failed(until)) if tokio::time::Instant::now() < *until => {}
            _ => {
                self.conns.insert(to, Conn::Opening(vec![data]));
                let (endpoint, config, opened) = (self.endpoint.clone(), self.config.clone(), self.opened.clone());
                tokio::spawn(async move {
                    let conn = match endpoint.connect_with(config, to, "gossip") {
                        Ok(connecting) => match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                            Ok(Ok(conn)) => Some(conn),
                            Ok(Err(e)) => {
                                tracing::debug!(peer = %to, error = %e, "gossip connection failed");
                                None
                            }
                            Err(_) => None,
                        },
                        Err(e) => {
                            tracing::debug!(peer = %to, error = %e, "gossip connection failed");
                            None
                        }
                    };
                    let _ = opened.send((to, conn));
                });
            }
        }
    }

    fn opened(&mut self, to: SocketAddr, conn: Option<quinn::Connection>) {
        let pending = match self.conns.remove(&to) {
            Some(Conn::Opening(pending)) => pending,
            _ => Vec::new(),
        };
        match conn {
            Some(conn) => {
                for data in pending {
                    let _ = conn.send_datagram(data);
                }
                self.conns.insert(to, Conn::Ready(conn));
            }
            None => {
                self.conns.insert(to, Conn::Failed(tokio::time::Instant::now() + RETRY_AFTER));
            }
        }
    }
}
