//! A node's certificate, replaced without a restart: the node's TLS config resolves its
//! certificate through [`CertReloader::resolver`] (given to [`crate::tls::quic_server_config`]), which re-reads the `[tls] cert` and `key` files when
//! their modification times change (the node checks every few seconds). New handshakes get the
//! new certificate; connections already open keep the one they were made with. A file that
//! does not load (half-written, a key that does not fit) is reported and the old certificate
//! stays.

use std::{
    fs,
    path::Path,
    sync::{Arc, RwLock},
    time::SystemTime,
};

use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use crate::{
    config::TlsConfig,
    tls::{TlsError, TlsFiles},
};

#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The certificate a node presents, and where it came from.
#[derive(Debug)]
pub struct CertReloader {
    current: Arc<Current>,
    paths: TlsConfig,
    stamps: (Option<SystemTime>, Option<SystemTime>),
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl CertReloader {
    /// Starts with `files`' certificate, as loaded.
    pub fn new(files: &TlsFiles) -> Result<Self, TlsError> {
        let current = Arc::new(Current(RwLock::new(files.certified_key()?)));
        let paths = files.paths.clone();
        let stamps = (modified(&paths.cert), modified(&paths.key));
        Ok(Self { current, paths, stamps })
    }

    /// What a server config resolves its certificate through
    /// ([`crate::tls::quic_server_config`]): always the latest certificate loaded.
    pub fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        self.current.clone()
    }

    /// Reloads the certificate if its files changed since the last load. `Ok(true)`: the new
    /// certificate is in use for new handshakes.
    pub fn reload_if_changed(&mut self) -> Result<bool, TlsError> {
        let stamps = (modified(&self.paths.cert), modified(&self.paths.key));
        if stamps == self.stamps {
            return Ok(false);
        }
        let files = TlsFiles::load(&self.paths)?;
        let key = files.certified_key()?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = key;
        self.stamps = stamps;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use quinn::Endpoint;
    use rustls_pki_types::CertificateDer;

    use super::*;
    use crate::tls::{client_config, quic_server_config, transport_config};

    fn files(dir: &Path, name: &str) -> TlsFiles {
        let file = |ext: &str| dir.join(format!("{name}.{ext}"));
        TlsFiles::load(&TlsConfig { ca: dir.join("ca.pem"), cert: file("pem"), key: file("key") }).expect("load")
    }

    /// The server's certificate as the client saw it.
    fn peer_cert(conn: &quinn::Connection) -> CertificateDer<'static> {
        let chain = conn.peer_identity().expect("identity").downcast::<Vec<CertificateDer<'static>>>().expect("chain");
        chain[0].clone()
    }

    async fn echo(conn: &quinn::Connection) -> Vec<u8> {
        let (mut send, mut recv) = conn.open_bi().await.expect("open");
        send.write_all(b"ping").await.expect("write");
        send.finish().expect("finish");
        recv.read_to_end(1024).await.expect("read")
    }

    #[tokio::test]
    async fn a_renewed_certificate_serves_new_handshakes_and_open_connections_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        cachectl::certs::generate(dir.path(), &["a"], &["mount"], 1).expect("certs");
        let a = files(dir.path(), "a");
        let mut reloader = CertReloader::new(&a).expect("certificate");
        let config = quic_server_config(&a, reloader.resolver(), Arc::new(transport_config())).expect("server");
        let server = Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr: SocketAddr = server.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let Ok(data) = recv.read_to_end(1024).await else { break };
                        let _ = send.write_all(&data).await;
                        let _ = send.finish();
                    }
                });
            }
        });
        let mut client = Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
        client.set_default_client_config(
            client_config(&files(dir.path(), "mount"), Arc::new(transport_config())).expect("client config"),
        );
        let first = client.connect(addr, "a").expect("connect").await.expect("handshake");
        let old_cert = peer_cert(&first);
        assert!(!reloader.reload_if_changed().expect("unchanged"), "nothing changed yet");

        // The certificate is renewed on disk (same CA, new key): files' times change.
        tokio::time::sleep(Duration::from_millis(20)).await;
        cachectl::certs::generate(dir.path(), &["a"], &[], 2).expect("renew");
        assert!(reloader.reload_if_changed().expect("reload"), "the new files are loaded");

        // A client without a session to resume (a resumed session keeps the old certificate).
        let fresh = || client_config(&files(dir.path(), "mount"), Arc::new(transport_config())).expect("config");
        let second = client.connect_with(fresh(), addr, "a").expect("connect").await.expect("handshake");
        assert_ne!(peer_cert(&second), old_cert, "a new handshake gets the new certificate");
        assert_eq!(peer_cert(&first), old_cert);
        assert_eq!(echo(&first).await, b"ping", "the connection made before the renewal goes on");
        assert_eq!(echo(&second).await, b"ping");

        // A half-written renewal (a key that does not fit) keeps the certificate in use.
        std::fs::copy(dir.path().join("mount.key"), dir.path().join("a.key")).expect("copy");
        assert!(reloader.reload_if_changed().is_err());
        let third = client.connect_with(fresh(), addr, "a").expect("connect").await.expect("handshake");
        assert_eq!(peer_cert(&third), peer_cert(&second));
    }
}
