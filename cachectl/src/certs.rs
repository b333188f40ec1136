//! `cachectl certs`: creates the cluster CA (or reuses the one already in the directory) and
//! issues ECDSA P-256 certificates for nodes (server and client auth, SANs: id, `localhost`,
//! 127.0.0.1, ::1) and for clients (client auth only), as PEM files `tls.rs` loads.
//!
//! rcgen is built without x509 parsing, so a reused CA is re-described from its fixed subject
//! ([`CA_NAME`]) and its key; the result is checked against `ca.pem` before anything is signed.

use std::{
    fs,
    io::{self, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject};

use cache_proto::key::NodeId;

/// Subject common name of every cluster CA this module creates.
pub const CA_NAME: &str = "mirrorcache cluster CA";
/// Validity of a new CA.
pub const CA_DAYS: u32 = 3650;
/// Default validity of node and client certificates.
pub const DEFAULT_DAYS: u32 = 365;
/// Longest validity `generate` accepts (keeps dates inside what X.509 and `time` represent).
pub const MAX_DAYS: u32 = 36_500;
/// Certificates start this long before "now", so a peer whose clock is a little behind accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{what}: {source}")]
    Rcgen { what: String, source: rcgen::Error },
    #[error("certificate name {0:?}: must be a DNS label of [a-z0-9-], not \"ca\", and unique")]
    InvalidName(String),
    #[error("validity must be 1 to {MAX_DAYS} days")]
    InvalidDays,
    #[error("found {present} but not {missing}: restore it, or remove both to create a new CA")]
    IncompleteCa { present: PathBuf, missing: PathBuf },
    #[error("{key} is not the key of {cert}, or {cert} was not created by `cachectl certs`")]
    CaMismatch { cert: PathBuf, key: PathBuf },
}

fn rcgen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Rcgen { what, source }
}

/// Creates (or reuses, if ca.pem and ca.key already exist in `dir`) a cluster CA, then a
/// server+client-auth certificate for each node id (SAN: id, "localhost", 127.0.0.1, ::1) and a
/// client-auth certificate for each client name, written as DIR/ca.pem, DIR/ca.key,
/// DIR/<name>.pem, DIR/<name>.key (keys mode 0600). Returns the paths written. The CA is valid
/// for [`CA_DAYS`], leaf certificates for `days` (a leaf outliving its CA stops working with it).
pub fn generate(dir: &Path, nodes: &[&str], clients: &[&str], days: u32) -> Result<Vec<PathBuf>, CertError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(CertError::InvalidDays);
    }
    let now = SystemTime::now();
    issue(dir, nodes, clients, now - CLOCK_SKEW, now + DAY * days)
}

/// [`generate`] with leaf certificates valid from `not_before` to `not_after` (tests use it for
/// certificates that have expired or are not valid yet).
pub fn issue(
    dir: &Path,
    nodes: &[&str],
    clients: &[&str],
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Vec<PathBuf>, CertError> {
    let mut seen = std::collections::HashSet::new();
    for &name in nodes.iter().chain(clients) {
        if NodeId::new(name).is_err() || name == "ca" || !seen.insert(name) {
            return Err(CertError::InvalidName(name.to_owned()));
        }
    }
    fs::create_dir_all(dir).map_err(|source| CertError::Io { path: dir.into(), source })?;
    let mut written = Vec::new();
    let ca = load_or_create_ca(dir, &mut written)?;
    for (&name, node) in nodes.iter().map(|n| (n, true)).chain(clients.iter().map(|c| (c, false))) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("generate key"))?;
        let cert = leaf_params(name, node, not_before, not_after)?
            .signed_by(&key, &ca)
            .map_err(rcgen_err(format!("sign certificate {name}")))?;
        written.push(write_file(&dir.join(format!("{name}.key")), &key.serialize_pem(), true)?);
        written.push(write_file(&dir.join(format!("{name}.pem")), &cert.pem(), false)?);
    }
    Ok(written)
}

/// Validity from a little before now to `days` from now.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + DAY * days).into();
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "mirrorcache");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(CA_NAME);
    // Path length 0: the CA signs leaf certificates only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, CA_DAYS);
    params
}

fn leaf_params(
    name_: &str,
    node: bool,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, CertError> {
    let dns = |s: &str| s.try_into().map(SanType::DnsName).map_err(rcgen_err(format!("DNS name {s:?}")));
    let mut params = CertificateParams::default();
    params.distinguished_name = name(name_);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.subject_alt_names = vec![dns(name_)?];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if node {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        params.subject_alt_names.extend([
            dns("localhost")?,
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
    }
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    Ok(params)
}

/// The CA in `dir`: reused if both files exist, created if neither does.
fn load_or_create_ca(dir: &Path, written: &mut Vec<PathBuf>) -> Result<Issuer<'static, KeyPair>, CertError> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("generate CA key"))?;
            let params = ca_params();
            let cert = params.self_signed(&key).map_err(rcgen_err("self-sign CA"))?;
            written.push(write_file(&key_path, &key.serialize_pem(), true)?);
            written.push(write_file(&cert_path, &cert.pem(), false)?);
            Ok(Issuer::new(params, key))
        }
        (true, true) => {
            let pem =
                fs::read_to_string(&key_path).map_err(|source| CertError::Io { path: key_path.clone(), source })?;
            let key = KeyPair::from_pem(&pem).map_err(rcgen_err(key_path.display().to_string()))?;
            let params = ca_params();
            // Same subject and public key as ca.pem, or the leaves would not chain to it.
            let expected =
                anchor(&params.self_signed(&key).map_err(rcgen_err("self-sign CA"))?.der().clone(), &key_path)?;
            let der = CertificateDer::from_pem_file(&cert_path)
                .map_err(|e| CertError::Pem { path: cert_path.clone(), message: e.to_string() })?;
            if anchor(&der, &cert_path)? != expected {
                return Err(CertError::CaMismatch { cert: cert_path, key: key_path });
            }
            Ok(Issuer::new(params, key))
        }
        (true, false) => Err(CertError::IncompleteCa { present: cert_path, missing: key_path }),
        (false, true) => Err(CertError::IncompleteCa { present: key_path, missing: cert_path }),
    }
}

/// (subject, subjectPublicKeyInfo) of a CA certificate, as rustls sees it.
fn anchor(der: &CertificateDer<'_>, path: &Path) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let mut roots = RootCertStore::empty();
    roots.add(der.clone()).map_err(|e| CertError::Pem { path: path.into(), message: e.to_string() })?;
    let ta = roots.roots.first().ok_or_else(|| CertError::Pem { path: path.into(), message: "no CA".into() })?;
    Ok((ta.subject.as_ref().to_vec(), ta.subject_public_key_info.as_ref().to_vec()))
}

/// Writes `contents` to `path`; private files get mode 0600 even if they existed before.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<PathBuf, CertError> {
    let io_err = |source| CertError::Io { path: path.into(), source };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // An existing file keeps its mode on open: tighten it before writing the key.
        if path.exists() {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        }
    }
    let mut file = options.open(path).map_err(io_err)?;
    file.write_all(contents.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(path.into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::{
        client::{WebPkiServerVerifier, danger::ServerCertVerifier},
        server::WebPkiClientVerifier,
    };
    use rustls_pki_types::{ServerName, UnixTime};

    use super::*;

    fn roots(dir: &Path) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).expect("ca.pem")).expect("ca");
        Arc::new(roots)
    }

    fn leaf(dir: &Path, name: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(dir.join(format!("{name}.pem"))).expect("leaf")
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// Whether `cert` is accepted as the server `name` / as a client, by the CA in `ca_dir`.
    fn as_server(ca_dir: &Path, cert: &CertificateDer<'_>, name: &str) -> bool {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(roots(ca_dir), provider()).build().expect("verifier");
        let name = ServerName::try_from(name.to_owned()).expect("name");
        verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now()).is_ok()
    }

    fn as_client(ca_dir: &Path, cert: &CertificateDer<'_>) -> bool {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots(ca_dir), provider()).build().expect("verifier");
        verifier.verify_client_cert(cert, &[], UnixTime::now()).is_ok()
    }

    #[test]
    fn issues_node_and_client_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let written = generate(d, &["a"], &["mount"], DEFAULT_DAYS).expect("generate");
        let names: Vec<_> = written.iter().filter_map(|p| p.file_name()?.to_str()).collect();
        assert_eq!(names, ["ca.key", "ca.pem", "a.key", "a.pem", "mount.key", "mount.pem"]);
        #[cfg(unix)]
        for key in ["ca.key", "a.key", "mount.key"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(d.join(key)).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let node = leaf(d, "a");
        for name in ["a", "localhost", "127.0.0.1", "::1"] {
            assert!(as_server(d, &node, name), "node cert must be valid for {name}");
        }
        assert!(!as_server(d, &node, "b"));
        assert!(as_client(d, &node), "nodes also connect to each other as clients");
        let client = leaf(d, "mount");
        assert!(as_client(d, &client));
        assert!(!as_server(d, &client, "mount"), "a client certificate is not a server certificate");
    }

    #[test]
    fn reuses_existing_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        generate(d, &["a"], &[], 1).expect("first");
        let ca = fs::read(d.join("ca.pem")).expect("ca");
        let written = generate(d, &["b"], &["mount"], 1).expect("second");
        assert_eq!(fs::read(d.join("ca.pem")).expect("ca"), ca, "CA must not change");
        assert!(!written.iter().any(|p| p.ends_with("ca.pem") || p.ends_with("ca.key")));
        assert!(as_server(d, &leaf(d, "a"), "a") && as_server(d, &leaf(d, "b"), "b"));
        assert!(as_client(d, &leaf(d, "mount")));
        // Certificates of another cluster's CA are not trusted.
        let other = tempfile::tempdir().expect("tempdir");
        generate(other.path(), &["a"], &[], 1).expect("other");
        assert!(!as_server(d, &leaf(other.path(), "a"), "a"));
    }

    #[test]
    fn rejects_broken_ca_and_bad_input() {
        let (dir, other) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let d = dir.path();
        generate(d, &[], &[], 1).expect("ca");
        generate(other.path(), &[], &[], 1).expect("other ca");
        fs::copy(other.path().join("ca.key"), d.join("ca.key")).expect("copy");
        let err = generate(d, &["a"], &[], 1).expect_err("mismatched key");
        assert!(matches!(err, CertError::CaMismatch { .. }), "{err}");
        fs::remove_file(d.join("ca.key")).expect("rm");
        let err = generate(d, &["a"], &[], 1).expect_err("half a CA");
        assert!(err.to_string().contains("ca.key"), "{err}");
        for bad in [&["A"][..], &["ca"], &["../x"], &["a", "a"], &[""]] {
            assert!(matches!(generate(other.path(), bad, &[], 1), Err(CertError::InvalidName(_))), "{bad:?}");
        }
        assert!(matches!(generate(other.path(), &["a"], &["a"], 1), Err(CertError::InvalidName(_))));
        for days in [0, MAX_DAYS + 1, u32::MAX] {
            assert!(matches!(generate(other.path(), &["a"], &[], days), Err(CertError::InvalidDays)));
        }
    }
}
