//! TLS and QUIC transport settings shared by clients and nodes: loads the `[tls]` PEM files,
//! builds mutual-TLS quinn configs (TLS 1.3 only, aws-lc-rs, ALPN [`ALPN`]) that trust only the
//! cluster CA, and the transport tuning for 4 MiB pages with many requests in flight.
//!
//! Clients connect to a node using the node's id (e.g. `a`) as the server name; `certs.rs`
//! issues node certificates whose SANs carry that id.

use std::{fmt, io, path::Path, path::PathBuf, sync::Arc, time::Duration};

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    crypto::{CryptoProvider, aws_lc_rs},
    server::{ResolvesServerCert, WebPkiClientVerifier},
    sign::{CertifiedKey, SingleCertAndKey},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::TlsConfig;

/// ALPN of protocol version 1.
pub const ALPN: &[u8] = b"mirrorcache/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: bad PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path}: no CERTIFICATE in this PEM file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PRIVATE KEY in this PEM file")]
    NoKey { path: PathBuf },
    #[error("{path}: not a usable CA certificate: {source}")]
    BadCa { path: PathBuf, source: rustls::Error },
    #[error("key {key} does not fit certificate {cert}: {source}")]
    KeyMismatch { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("QUIC TLS config: {0}")]
    Quic(#[from] NoInitialCipherSuite),
}

/// Loaded PEM material: CA roots, own chain and key.
pub struct TlsFiles {
    pub(crate) paths: TlsConfig,
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TlsConfig { ca, cert, key } = &self.paths; // paths only: no key material in logs
        write!(f, "TlsFiles {{ ca: {ca:?}, cert: {cert:?}, key: {key:?} }}")
    }
}

impl TlsFiles {
    /// Reads the CA certificate(s), this process's certificate chain and its private key, and
    /// checks that the key belongs to the certificate. Every error names the file.
    pub fn load(cfg: &TlsConfig) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&cfg.ca)? {
            roots.add(ca).map_err(|source| TlsError::BadCa { path: cfg.ca.clone(), source })?;
        }
        let chain = read_certs(&cfg.cert)?;
        let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: cfg.key.clone() },
            e => pem_error(&cfg.key, e),
        })?;
        CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())
            .map_err(|source| TlsError::KeyMismatch { cert: cfg.cert.clone(), key: cfg.key.clone(), source })?;
        Ok(Self { paths: cfg.clone(), roots: Arc::new(roots), chain, key })
    }

    /// This process's certificate and key, ready to sign handshakes.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider())
            .map(Arc::new)
            .map_err(TlsError::Rustls)
    }

    /// A resolver that always presents this process's certificate.
    pub fn fixed_cert(&self) -> Result<Arc<dyn ResolvesServerCert>, TlsError> {
        Ok(Arc::new(SingleCertAndKey::from(self.certified_key()?)))
    }

    /// Checks a server's certificate: signed by the CA, issued for the name connected to.
    pub fn ca_verifier(&self) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
        WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Verifier(format!("{}: {e}", self.paths.ca.display())))
    }
}

/// All certificates of a PEM file (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Read { path: path.into(), source },
        e => TlsError::Pem { path: path.into(), message: e.to_string() },
    }
}

/// The one crypto provider every config uses (no process-wide default is assumed).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// The one server builder: a node's side of a connection. Requires a client certificate signed
/// by the CA (WebPkiClientVerifier), TLS 1.3, ALPN; presents the certificate `certs` resolves: a
/// fixed one ([`TlsFiles::fixed_cert`]) or one replaced without a restart
/// ([`crate::tls_reload::CertReloader::resolver`]).
pub fn quic_server_config(
    files: &TlsFiles,
    certs: Arc<dyn ResolvesServerCert>,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(files.roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(format!("{}: {e}", files.paths.ca.display())))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // 0-RTT stays off (max_early_data_size 0): early data is replayable and skips mTLS.
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport);
    Ok(config)
}

/// [`quic_server_config`] presenting `files`' own certificate.
pub fn server_config(
    files: &TlsFiles,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, TlsError> {
    quic_server_config(files, files.fixed_cert()?, transport)
}

/// The one client builder: checks the server's certificate with `verifier` (the CA's
/// [`TlsFiles::ca_verifier`], or `node_cert`'s any-node check), presents `identity`'s
/// certificate (tests also try none), TLS 1.3, ALPN.
pub fn quic_client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<&TlsFiles>,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport);
    Ok(config)
}

/// [`quic_client_config`] that trusts only the CA and presents `files`' certificate.
pub fn client_config(
    files: &TlsFiles,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    quic_client_config(files.ca_verifier()?, Some(files), transport)
}

/// How often each end of an idle connection pings the other.
pub const KEEP_ALIVE: Duration = Duration::from_millis(200);

/// Transport tuned for 4 MiB pages with many in flight. GSO stays on (the default, ~4x fewer
/// syscalls here) and congestion control stays Cubic (the default).
pub fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // 16 MiB per stream (default 1.25 MB): a whole 4 MiB page plus headroom is in flight without
    // waiting for window updates. Cost: credit, not allocation; a stream whose reader stalls
    // may buffer up to 16 MiB, bounded overall by `receive_window`.
    t.stream_receive_window(mib(16));
    // 128 MiB per connection (default unlimited): ~32 pages in flight from one peer. Cost: the
    // worst-case receive buffer of one connection when the application reads slowly.
    t.receive_window(mib(128));
    // 128 MiB per connection (default 10 MB): unacknowledged page bytes a node may hold for one
    // peer. Cost: worst-case send memory per connection (times the number of connections).
    t.send_window(128 << 20);
    // 1024 concurrent requests per connection (default 100): one bidi stream per page request.
    // Cost: a few hundred bytes of state per open stream; more parallel work a peer can start.
    t.max_concurrent_bidi_streams(1024u32.into());
    // The protocol uses no unidirectional streams; refusing them costs nothing.
    t.max_concurrent_uni_streams(0u32.into());
    // A ping every KEEP_ALIVE keeps pooled connections (and NAT/conntrack entries) alive and
    // gives the client's silence watchdog (pool.rs, SILENT_AFTER: three of these) and the idle
    // timer below something to miss. Cost: five small packets a second per idle connection.
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // A peer silent for 5 s is dead: every stream on the connection fails. A client notices
    // sooner (pool.rs: its watchdog closes a connection silent for SILENT_AFTER); this is the
    // backstop for every connection, the node's too. Neither is the page deadline, so that can
    // stay long enough for slow cold fills. Cost: a node stalled for 5 s (e.g. a long GC-like
    // pause or a saturated link) loses its connections.
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(5_000))));
    // Datagrams up to MAX_UDP_PAYLOAD where the path carries them (default 1452): MTU discovery
    // probes upward from 1200 and backs off on loss, so a 1500-byte network stays at ~1452. On
    // loopback this moves 4 MiB pages ~1.7x faster at 8 in flight (BENCHMARKS.md: fewer packets
    // to seal, send and acknowledge); 8952 was slower than 1452 there. Cost: a few lost probes
    // on paths with a smaller MTU.
    // Reordering is not loss. quinn counts each datagram it declares lost as a congestion event,
    // and by default one overtaken by 3 later ones, or late by 1/8 of an RTT, is lost: on a path
    // that jitters or reorders (FAULTS.md "netem": 10-15 ms with a 2 % reordering relay) Cubic's
    // window sat at its floor and a page took seconds. Now a datagram is lost when it is late by
    // two RTTs, or overtaken by more than the receiver's duplicate window (quinn keeps 128 packet
    // numbers behind the highest; one older than that is dropped on arrival, so waiting for it
    // is pointless). Cost: a datagram really lost is resent one RTT later than before (well under
    // a millisecond on a LAN).
    t.packet_threshold(REORDER_PACKETS);
    t.time_threshold(REORDER_RTTS);
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// A QUIC endpoint bound to `addr` (a server when `server` is given), with [`endpoint_config`].
/// Call inside a tokio runtime.
pub fn endpoint(addr: std::net::SocketAddr, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    size_buffers(&socket);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for QUIC (call inside tokio)"))?;
    quinn::Endpoint::new(endpoint_config(), server, socket, runtime)
}

/// Receive and send buffer asked of the kernel for each QUIC socket. The default (208 KiB on
/// Linux) holds about fifty 4000-byte datagrams: a page arriving while the endpoint's task waits
/// for a thread overflows it, and each datagram dropped there is a loss that halves the sender's
/// window (the checker's socket dropped hundreds per run behind a 10 ms relay). Cost: memory
/// only when datagrams queue, at most this much per socket.
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Asks for [`SOCKET_BUFFER`] each way. The kernel caps the request at `net.core.rmem_max` /
/// `wmem_max` (and reports twice what it grants); a smaller grant is logged once, with the
/// setting that raises it. (Also for the test relay's sockets, which carry the same datagrams.)
pub fn size_buffers(socket: &impl std::os::fd::AsFd) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let s = socket2::SockRef::from(socket);
    // Failures leave the default: slower under bursts, not wrong.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    let granted = s.recv_buffer_size().unwrap_or(0) / 2;
    if granted < SOCKET_BUFFER {
        WARNED.call_once(|| {
            tracing::warn!(
                granted,
                wanted = SOCKET_BUFFER,
                "QUIC socket receive buffer capped by the kernel; raise it with \
                 `sysctl -w net.core.rmem_max={SOCKET_BUFFER} net.core.wmem_max={SOCKET_BUFFER}`"
            )
        });
    }
}

/// How late, in round trips, a datagram may be before it counts as lost ([`transport_config`]).
pub const REORDER_RTTS: f32 = 2.0;
/// How many later datagrams may overtake one before it counts as lost: quinn's receiver drops
/// a packet more than 128 numbers behind the highest it has seen as a possible duplicate.
pub const REORDER_PACKETS: u32 = 129;

/// Largest QUIC datagram payload this endpoint sends and accepts (see [`transport_config`]).
pub const MAX_UDP_PAYLOAD: u16 = 4000;

/// Endpoint settings shared by nodes and clients: accept datagrams of up to [`MAX_UDP_PAYLOAD`]
/// (quinn's default, 1472, would cap what a peer may send us whatever the path carries).
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut e = quinn::EndpointConfig::default();
    e.max_udp_payload_size(MAX_UDP_PAYLOAD).expect("1200 <= MAX_UDP_PAYLOAD <= 65527");
    e
}

/// `n` MiB as a QUIC varint (`n` < 4096).
const fn mib(n: u32) -> quinn::VarInt {
    quinn::VarInt::from_u32(n << 20)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use quinn::{ConnectionError, Endpoint};
    use tokio::{sync::mpsc, time::timeout};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(20);

    /// How an echo attempt failed: during the handshake (`true`) or later, on the first stream.
    type Failed = (bool, ConnectionError);

    fn cluster() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        cachectl::certs::generate(dir.path(), &["a", "b"], &["mount"], 1).expect("certs");
        dir
    }

    fn files(dir: &Path, name: &str) -> TlsFiles {
        let file = |ext: &str| dir.join(format!("{name}.{ext}"));
        TlsFiles::load(&TlsConfig { ca: dir.join("ca.pem"), cert: file("pem"), key: file("key") }).expect("load")
    }

    fn client(files: &TlsFiles) -> quinn::ClientConfig {
        client_config(files, Arc::new(transport_config())).expect("client config")
    }

    /// A client that trusts `roots`' CA but presents `identity` (or no certificate at all).
    fn client_with(roots: &TlsFiles, identity: Option<&TlsFiles>) -> quinn::ClientConfig {
        let verifier = roots.ca_verifier().expect("verifier");
        quic_client_config(verifier, identity, Arc::new(transport_config())).expect("client config")
    }

    /// Node endpoint on 127.0.0.1:0 echoing every bidi stream; failed handshakes are reported.
    fn echo_server(files: &TlsFiles) -> (Endpoint, SocketAddr, mpsc::UnboundedReceiver<ConnectionError>) {
        let config = server_config(files, Arc::new(transport_config())).expect("server config");
        let endpoint = Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = endpoint.local_addr().expect("local addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let ep = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let conn = match incoming.await {
                        Ok(conn) => conn,
                        Err(e) => return drop(tx.send(e)),
                    };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let Ok(data) = recv.read_to_end(1 << 20).await else { break };
                        let _ = send.write_all(&data).await;
                        let _ = send.finish();
                    }
                });
            }
        });
        (endpoint, addr, rx)
    }

    /// Connects to `name` at `addr`, sends bytes on a bidi stream and returns the echo.
    async fn echo(config: quinn::ClientConfig, addr: SocketAddr, name: &str) -> Result<Vec<u8>, Failed> {
        let mut endpoint = Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client bind");
        endpoint.set_default_client_config(config);
        let conn = endpoint.connect(addr, name).expect("connect call").await.map_err(|e| (true, e))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| (false, e))?;
        send.write_all(b"hello page").await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => (false, e),
            e => panic!("not a connection error: {e}"),
        })?;
        // May race the server's close; the read below then reports the connection error.
        let _ = send.finish();
        let data = recv.read_to_end(1 << 20).await.map_err(|e| match e {
            quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e)) => (false, e),
            e => panic!("not a connection error: {e}"),
        })?;
        conn.close(0u32.into(), b"done");
        Ok(data)
    }

    // TLS alerts (RFC 8446 6.2) the tests expect; QUIC carries alert `n` as error 0x100 + n.
    const BAD_CERTIFICATE: u8 = 42;
    const UNKNOWN_CA: u8 = 48;
    const DECRYPT_ERROR: u8 = 51;
    const CERTIFICATE_REQUIRED: u8 = 116;

    /// The connection died of one of the TLS `alerts`, sent by either side.
    fn assert_tls_alert(err: &ConnectionError, alerts: &[u8]) {
        let code = match err {
            ConnectionError::ConnectionClosed(close) => u64::from(close.error_code),
            ConnectionError::TransportError(e) => u64::from(e.code),
            e => panic!("expected a TLS refusal, got {e:?}"),
        };
        assert!(alerts.iter().any(|&a| code == 0x100 + u64::from(a)), "not alert {alerts:?}: {err}");
    }

    /// `client` never gets an echo from node `a`: the connection fails with one of `alerts`, and
    /// the server reports the failed handshake too.
    async fn assert_refused(dir: &Path, client: quinn::ClientConfig, name: &str, alerts: &[u8]) -> Failed {
        let (_server, addr, mut server_errors) = echo_server(&files(dir, "a"));
        let failed = echo(client, addr, name).await.expect_err("echo must not succeed");
        assert_tls_alert(&failed.1, alerts);
        let server_err = server_errors.recv().await.expect("server reports the failed handshake");
        eprintln!("client: {failed:?}\nserver: {server_err}");
        failed
    }

    async fn within<T>(test: impl Future<Output = T>) -> T {
        timeout(LIMIT, test).await.expect("test timed out")
    }

    #[tokio::test]
    async fn good_client_gets_echo() {
        let dir = cluster();
        let (_server, addr, _) = echo_server(&files(dir.path(), "a"));
        let mount = client(&files(dir.path(), "mount"));
        assert_eq!(within(echo(mount, addr, "a")).await.expect("echo"), b"hello page");
        // Nodes connect to each other with their node certificate.
        let node_b = client(&files(dir.path(), "b"));
        assert_eq!(within(echo(node_b, addr, "a")).await.expect("echo"), b"hello page");
    }

    #[tokio::test]
    async fn client_without_certificate_is_refused() {
        let dir = cluster();
        let anonymous = client_with(&files(dir.path(), "mount"), None);
        within(assert_refused(dir.path(), anonymous, "a", &[CERTIFICATE_REQUIRED])).await;
    }

    #[tokio::test]
    async fn client_from_other_ca_is_refused() {
        let (dir, other) = (cluster(), cluster());
        let stranger = client_with(&files(dir.path(), "mount"), Some(&files(other.path(), "mount")));
        // Both CAs share a subject, so the signature check is what fails (else: unknown CA).
        within(assert_refused(dir.path(), stranger, "a", &[DECRYPT_ERROR, UNKNOWN_CA])).await;
    }

    const CERTIFICATE_EXPIRED: u8 = 45;

    /// Replaces `name`'s certificate in `dir` with one that expired a day ago.
    fn expire(dir: &Path, name: &str, node: bool) {
        let day = std::time::Duration::from_secs(86_400);
        let now = std::time::SystemTime::now();
        let (nodes, clients): (&[&str], &[&str]) = if node { (&[name], &[]) } else { (&[], &[name]) };
        cachectl::certs::issue(dir, nodes, clients, now - 10 * day, now - day).expect("issue expired");
    }

    #[tokio::test]
    async fn expired_client_certificate_is_refused() {
        let dir = cluster();
        expire(dir.path(), "mount", false);
        let expired = client(&files(dir.path(), "mount"));
        within(assert_refused(dir.path(), expired, "a", &[CERTIFICATE_EXPIRED, BAD_CERTIFICATE])).await;
    }

    #[tokio::test]
    async fn expired_node_certificate_is_refused_by_clients() {
        let dir = cluster();
        expire(dir.path(), "a", true);
        let mount = client(&files(dir.path(), "mount"));
        let (in_handshake, err) =
            within(assert_refused(dir.path(), mount, "a", &[CERTIFICATE_EXPIRED, BAD_CERTIFICATE])).await;
        assert!(in_handshake, "{err}");
    }

    #[tokio::test]
    async fn wrong_server_name_fails_handshake() {
        let dir = cluster();
        let mount = client(&files(dir.path(), "mount"));
        let (in_handshake, err) = within(assert_refused(dir.path(), mount, "b", &[BAD_CERTIFICATE])).await;
        assert!(in_handshake, "{err}");
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = cluster();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("empty.pem"), "no pem here\n").expect("write");
        let cfg = |ca: &str, cert: &str, key: &str| TlsConfig { ca: path(ca), cert: path(cert), key: path(key) };
        let cases = [
            (cfg("missing.pem", "a.pem", "a.key"), "missing.pem", "cannot read"),
            (cfg("ca.pem", "empty.pem", "a.key"), "empty.pem", "no CERTIFICATE"),
            (cfg("ca.pem", "a.pem", "empty.pem"), "empty.pem", "no PRIVATE KEY"),
            (cfg("ca.pem", "a.pem", "a.pem"), "a.pem", "no PRIVATE KEY"),
            (cfg("ca.pem", "a.pem", "b.key"), "b.key", "does not fit"),
        ];
        for (cfg, file, what) in cases {
            let err = TlsFiles::load(&cfg).expect_err("must fail").to_string();
            assert!(err.contains(&path(file).display().to_string()) && err.contains(what), "{err}");
        }
    }

    #[test]
    fn quic_sockets_ask_the_kernel_for_large_buffers() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        size_buffers(&socket);
        let cap = |k: &str| -> usize {
            std::fs::read_to_string(format!("/proc/sys/net/core/{k}")).expect("sysctl").trim().parse().expect("n")
        };
        // Linux grants min(asked, cap) and reports twice that (its bookkeeping).
        let s = socket2::SockRef::from(&socket);
        assert_eq!(s.recv_buffer_size().expect("rcvbuf"), 2 * SOCKET_BUFFER.min(cap("rmem_max")));
        assert_eq!(s.send_buffer_size().expect("sndbuf"), 2 * SOCKET_BUFFER.min(cap("wmem_max")));
    }
}
