//! A UDP relay that delays, reorders and duplicates datagrams: what this kernel's missing
//! `tc netem` would do, in user space (a fault injector: a fake by necessity). It sits in front
//! of a node's QUIC port: peers send to `listen`, the relay forwards to `upstream` from one
//! socket per peer, and the node's answers go back to each peer from `listen`, so the peer sees
//! the address it expects.
//!
//! Every datagram waits `delay` plus up to `jitter`; with probability `reorder` it waits
//! another 2 × `delay` (so later ones overtake it); with probability `duplicate` it is sent
//! twice. With `rate`, each direction is a link of that many bytes per second: a datagram leaves
//! no sooner than the link has sent the ones before it (a saturated or capped link, a gray
//! failure: slow, not down). Pure randomness from a seeded generator; the relay stops when its
//! future is dropped.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::net::UdpSocket;

#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    pub delay: Duration,
    pub jitter: Duration,
    pub reorder: f64,
    pub duplicate: f64,
    pub seed: u64,
    /// Bytes per second each way (None: as fast as the relay goes).
    pub rate: Option<u64>,
}

/// One direction of a capped link: when it is free to send the next datagram.
#[derive(Debug, Default)]
struct Link {
    free_at: Option<tokio::time::Instant>,
}

impl Link {
    /// How long a datagram of `len` bytes waits for the link (0 without a rate), and the link
    /// is busy sending it after that.
    fn wait(&mut self, len: usize, rate: Option<u64>) -> Duration {
        let Some(rate) = rate.filter(|r| *r > 0) else { return Duration::ZERO };
        let now = tokio::time::Instant::now();
        let start = self.free_at.map_or(now, |f| f.max(now));
        self.free_at = Some(start + Duration::from_secs_f64(len as f64 / rate as f64));
        start - now
    }
}

/// Datagrams relayed, duplicated and held back for reordering.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub datagrams: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
}

impl RelayStats {
    pub fn summary(&self) -> String {
        format!(
            "{} datagrams, {} duplicated, {} reordered",
            self.datagrams.load(Ordering::Relaxed),
            self.duplicated.load(Ordering::Relaxed),
            self.reordered.load(Ordering::Relaxed)
        )
    }
}

/// Sends `data` to `to` from `socket` after the relay's delay, maybe twice, maybe late.
fn schedule(
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    data: Vec<u8>,
    opts: &RelayOptions,
    (rng, link): (&mut StdRng, &mut Link),
    stats: &RelayStats,
) {
    let mut wait = link.wait(data.len(), opts.rate) + opts.delay + opts.jitter.mul_f64(rng.random::<f64>());
    if rng.random::<f64>() < opts.reorder {
        wait += opts.delay * 2;
        stats.reordered.fetch_add(1, Ordering::Relaxed);
    }
    let copies = if rng.random::<f64>() < opts.duplicate {
        stats.duplicated.fetch_add(1, Ordering::Relaxed);
        2
    } else {
        1
    };
    stats.datagrams.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        for _ in 0..copies {
            let _ = socket.send_to(&data, to).await;
        }
    });
}

/// Relays until dropped. Binds `listen` first, so a caller that awaits this in a task knows the
/// port is taken once [`bind`] returned.
pub async fn bind(listen: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let socket = UdpSocket::bind(listen).await?;
    cache_client::tls::size_buffers(&socket);
    Ok(Arc::new(socket))
}

pub async fn run(
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    opts: RelayOptions,
    stats: Arc<RelayStats>,
) -> std::io::Result<()> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut link = Link::default();
    let mut peers: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let bind_ip: SocketAddr =
        if upstream.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().map_err(std::io::Error::other)?;
    loop {
        let (n, from) = front.recv_from(&mut buf).await?;
        let back = match peers.get(&from) {
            Some(s) => s.clone(),
            None => {
                // One upstream socket per peer, and a task carrying the node's answers back.
                let socket = UdpSocket::bind(bind_ip).await?;
                cache_client::tls::size_buffers(&socket);
                let socket = Arc::new(socket);
                let (reader, front, stats) = (socket.clone(), front.clone(), stats.clone());
                let mut rng = StdRng::seed_from_u64(opts.seed ^ u64::from(from.port()));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    let mut link = Link::default();
                    while let Ok((n, source)) = reader.recv_from(&mut buf).await {
                        if source == upstream {
                            schedule(front.clone(), from, buf[..n].to_vec(), &opts, (&mut rng, &mut link), &stats);
                        }
                    }
                });
                peers.insert(from, socket.clone());
                socket
            }
        };
        schedule(back, upstream, buf[..n].to_vec(), &opts, (&mut rng, &mut link), &stats);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn datagrams_arrive_late_some_twice_and_answers_come_back_from_the_relay() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let upstream = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let front = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind relay");
        let relay_addr = front.local_addr().expect("addr");
        let opts = RelayOptions {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            reorder: 0.2,
            duplicate: 0.2,
            seed: 7,
            rate: None,
        };
        let stats = Arc::new(RelayStats::default());
        let relay = tokio::spawn(run(front, upstream, opts, stats.clone()));

        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let started = Instant::now();
        for i in 0..50u8 {
            peer.send_to(&[i], relay_addr).await.expect("send");
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(Ok((n, from))) = tokio::time::timeout(Duration::from_millis(500), peer.recv_from(&mut buf)).await {
            assert_eq!(from, relay_addr, "answers come from the address the peer sent to");
            assert_eq!(n, 1);
            got.push(buf[0]);
        }
        // Two legs of at least 20 ms each.
        assert!(started.elapsed() >= Duration::from_millis(40));
        let mut distinct = got.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 50, "every datagram arrived: {got:?}");
        assert!(got.len() > 50, "some arrived twice");
        assert!(got.windows(2).any(|w| w[0] > w[1]), "some were overtaken");
        assert!(stats.duplicated.load(Ordering::Relaxed) > 0 && stats.reordered.load(Ordering::Relaxed) > 0);
        relay.abort();
    }
}
