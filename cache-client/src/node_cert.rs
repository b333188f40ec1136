//! Who is on the other end of a connection, beyond "someone the cluster CA signed":
//!
//! - connecting to a seed, whose node id is not known yet: [`any_node_client_config`] accepts any
//!   *node* certificate of the cluster (signed by the CA, issued for server auth) whatever its
//!   name, and the id is then read from it;
//! - accepting gossip or an operator's request: [`NodeCerts::node_id`] says whether the peer
//!   presented a node certificate, and [`peer_name`] gives the name a client certificate was
//!   issued to (the handshake already checked that the CA signed it).
//!
//! `certs.rs` puts a node's id first among its certificate's DNS names, and a client's name as
//! its only one.

use std::sync::Arc;

use rustls::{
    CertificateError, DigitallySignedStruct, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::tls::{TlsError, TlsFiles, provider};
use cache_proto::key::NodeId;

/// The first DNS name of a certificate that is a valid node id.
fn cert_node_id(cert: &CertificateDer<'_>) -> Option<NodeId> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    parsed.valid_dns_names().find_map(|name| NodeId::new(name).ok())
}

/// Checks a server certificate as a node certificate of the cluster under the name it carries.
#[derive(Debug)]
struct AnyNode(Arc<WebPkiServerVerifier>);

impl AnyNode {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<NodeId, rustls::Error> {
        let id =
            cert_node_id(end_entity).ok_or(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        let name = ServerName::try_from(id.as_str().to_owned())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        self.0.verify_server_cert(end_entity, intermediates, &name, &[], now)?;
        Ok(id)
    }
}

impl ServerCertVerifier for AnyNode {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now).map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn any_node(files: &TlsFiles) -> Result<AnyNode, TlsError> {
    WebPkiServerVerifier::builder_with_provider(files.roots.clone(), provider())
        .build()
        .map(AnyNode)
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// A server-certificate check for [`crate::tls::quic_client_config`] that accepts any node of
/// the cluster: the server name is not checked, the certificate must still be a node certificate
/// signed by the CA.
pub fn any_node_verifier(files: &TlsFiles) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    Ok(Arc::new(any_node(files)?))
}

/// [`crate::tls::quic_client_config`] that connects to any node of the cluster and presents
/// `files`' certificate.
pub fn any_node_client_config(
    files: &TlsFiles,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    crate::tls::quic_client_config(any_node_verifier(files)?, Some(files), transport)
}

/// The peer's certificate chain, as quinn keeps it after a rustls handshake.
fn peer_chain(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok().map(|b| *b)
}

/// The name the peer's certificate was issued to (its first DNS name).
pub fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let chain = peer_chain(conn)?;
    let parsed = webpki::EndEntityCert::try_from(chain.first()?).ok()?;
    parsed.valid_dns_names().next().map(str::to_owned)
}

/// Tells node certificates from client certificates.
#[derive(Debug, Clone)]
pub struct NodeCerts(Arc<AnyNode>);

impl NodeCerts {
    pub fn new(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self(Arc::new(any_node(files)?)))
    }

    /// The node id of the peer, if it presented a node certificate of this cluster.
    pub fn node_id(&self, conn: &quinn::Connection) -> Option<NodeId> {
        let chain = peer_chain(conn)?;
        let (leaf, rest) = chain.split_first()?;
        self.0.check(leaf, rest, UnixTime::now()).ok()
    }
}
