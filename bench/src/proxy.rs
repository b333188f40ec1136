//! A delaying TCP proxy for an origin's HTTP endpoint: it makes a local S3 server look like a
//! bucket in another region (`cache-bench proxy`, or [`Proxy::start`] in a test).
//!
//! Each accepted connection gets its own upstream connection; bytes are relayed both ways in
//! 64 KiB reads. It models two things:
//! - **first-byte latency**: HTTP/1.1 without pipelining (what object_store's client sends)
//!   alternates request bytes and response bytes on a connection. The first client bytes after a
//!   response (or on a new connection) start a *request*: it is counted and held for `delay`
//!   before it is forwarded; the rest of it, and the whole response, flow at once. So the
//!   upstream sees each request `delay` late and every response's first byte comes `delay` later
//!   than without the proxy. (Holding the response's first byte instead would let the upstream
//!   fill the socket buffers meanwhile, so a large response would pay less than `delay`; a 4 MiB
//!   GET on loopback did.) Connection setup is not delayed.
//! - **bandwidth**: one token bucket (`bandwidth` bytes/s, bursts of 50 ms worth, at least
//!   64 KiB) shared by all connections, like one link. A chunk takes its tokens up front, going
//!   into debt if needed, and waits until the debt is paid, so senders are served in turn.
//!
//! Bounded: at most `max_connections` connections (more wait in the accept queue), a fixed buffer
//! per direction, and everything stops when the [`Proxy`] is dropped (the accept loop owns the
//! connection tasks).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cache_client::config::OriginConfig;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};

const BUF: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Added to each request's time to first byte (the request is held this long).
    pub delay: Duration,
    /// Response bytes per second over all connections; `None`: unlimited.
    pub bandwidth: Option<u64>,
    pub max_connections: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self { delay: Duration::ZERO, bandwidth: None, max_connections: 1024 }
    }
}

/// Counters of a proxy, shared with its connections.
#[derive(Debug, Default)]
pub struct ProxyStats {
    connections: AtomicU64,
    requests: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    upstream_errors: AtomicU64,
}

impl ProxyStats {
    /// Requests seen (see the module docs for what counts as one).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
    /// Bytes client → upstream (requests).
    pub fn bytes_up(&self) -> u64 {
        self.bytes_up.load(Ordering::Relaxed)
    }
    /// Bytes upstream → client (responses).
    pub fn bytes_down(&self) -> u64 {
        self.bytes_down.load(Ordering::Relaxed)
    }
    /// Connections dropped because the upstream could not be reached.
    pub fn upstream_errors(&self) -> u64 {
        self.upstream_errors.load(Ordering::Relaxed)
    }
    pub fn summary(&self) -> String {
        format!(
            "{} connections, {} requests, {} B up, {} B down, {} upstream connect errors",
            self.connections(),
            self.requests(),
            self.bytes_up(),
            self.bytes_down(),
            self.upstream_errors()
        )
    }
}

/// A running proxy; stops (with all its connections) when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listen` (port 0: any) and relays to `upstream` (`host:port`). Call inside a
    /// tokio runtime.
    pub async fn start(listen: SocketAddr, upstream: &str, options: ProxyOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ProxyStats::default());
        let bucket = options.bandwidth.map(|rate| Arc::new(Bucket::new(rate)));
        let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
        let (upstream, stats2) = (Arc::<str>::from(upstream), stats.clone());
        let accept = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let Ok((socket, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await; // e.g. out of file descriptors
                    continue;
                };
                let (upstream, stats, bucket, delay) =
                    (upstream.clone(), stats2.clone(), bucket.clone(), options.delay);
                connections.spawn(async move {
                    let _slot = slot;
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    let Ok(server) = TcpStream::connect(&*upstream).await else {
                        stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let _ = relay(socket, server, delay, bucket.as_deref(), &stats).await;
                });
            }
        });
        Ok(Self { addr, stats, accept })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for an origin's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> &Arc<ProxyStats> {
        &self.stats
    }

    /// `origin` with its endpoint replaced by this proxy (plain HTTP allowed).
    pub fn origin_config(&self, origin: &OriginConfig) -> OriginConfig {
        OriginConfig { endpoint: Some(self.endpoint()), allow_http: true, ..origin.clone() }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Relays one connection until both directions have ended (or either fails).
async fn relay(
    client: TcpStream,
    server: TcpStream,
    delay: Duration,
    bucket: Option<&Bucket>,
    stats: &ProxyStats,
) -> std::io::Result<()> {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    // Set by the first bytes of a request (which then wait out the delay), cleared by the response.
    let awaiting = AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0u8; BUF];
        loop {
            let n = client_rx.read(&mut buf).await?;
            if n == 0 {
                return server_tx.shutdown().await;
            }
            if !awaiting.swap(true, Ordering::AcqRel) {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
            server_tx.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; BUF];
        loop {
            let n = server_rx.read(&mut buf).await?;
            if n == 0 {
                return client_tx.shutdown().await;
            }
            awaiting.store(false, Ordering::Release);
            if let Some(bucket) = bucket {
                bucket.take(n as u64).await;
            }
            client_tx.write_all(&buf[..n]).await?;
            stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    tokio::try_join!(up, down).map(|_| ())
}

/// A token bucket that lends: `take` always succeeds and then waits off any debt.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    /// (tokens, when last refilled); tokens may be negative (debt).
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        let rate = rate.max(1) as f64;
        let burst = (rate / 20.0).max(BUF as f64);
        Self { rate, burst, state: Mutex::new((burst, Instant::now())) }
    }

    async fn take(&self, n: u64) {
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let tokens = (state.0 + now.duration_since(state.1).as_secs_f64() * self.rate).min(self.burst);
            *state = (tokens - n as f64, now);
            (-state.0).max(0.0) / self.rate
        };
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that answers every read with `reply` (one "response" per request).
    async fn echo_server(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(1..) = s.read(&mut buf).await {
                        if s.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn each_request_pays_the_delay_and_is_counted() {
        let upstream = echo_server(b"pong").await.to_string();
        let options = ProxyOptions { delay: Duration::from_millis(30), ..ProxyOptions::default() };
        let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr"), &upstream, options).await.expect("start");
        let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
        for _ in 0..3 {
            let began = Instant::now();
            conn.write_all(b"ping").await.expect("write");
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).await.expect("read");
            assert_eq!(&buf, b"pong");
            assert!(began.elapsed() >= Duration::from_millis(30), "{:?}", began.elapsed());
        }
        assert_eq!((proxy.stats().requests(), proxy.stats().connections()), (3, 1));
        assert_eq!((proxy.stats().bytes_up(), proxy.stats().bytes_down()), (12, 12));
    }

    #[tokio::test]
    async fn the_bucket_caps_the_rate() {
        let bucket = Bucket::new(1 << 20); // 1 MiB/s, burst 64 KiB
        let began = Instant::now();
        for _ in 0..5 {
            bucket.take(64 << 10).await; // 320 KiB: the first 64 KiB are the burst
        }
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(240) && took < Duration::from_millis(600), "{took:?}");
    }
}
