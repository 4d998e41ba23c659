//! TLS for the L7 proxy: termination on listeners and re-encryption to backends.
//!
//! Listeners: [`server_config`] loads every configured certificate up front and answers each
//! handshake through [`SniResolver`] (exact name, then one-label wildcard, then the default
//! certificate). Building a config reads files and parses keys but has no other side effect, so
//! hot reload is the caller's job: on SIGHUP build a new `ServerConfig` and swap it in; accepted
//! connections keep the `Arc` they started with and are not disturbed. A bad file fails the
//! build, and the old config stays in service.
//!
//! Backends: [`client_config`] builds the rustls client side of `tls = { verify, server_name,
//! client_cert, client_key }` on a pool, including mTLS client authentication.
//!
//! The crypto provider is always ring, passed explicitly: nothing here installs or depends on
//! the process-wide default provider.

use std::collections::hash_map::{Entry, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// TLS 1.3 first: rustls negotiates the highest version both sides support either way.
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// One listener certificate: a PEM chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SNI names this certificate serves (`*.example.com` for a wildcard). `None` takes them
    /// from the certificate's subjectAltName dNSNames, or its subject CN when it has none.
    /// `Some(vec![])` serves no name: useful only for the default certificate.
    pub names: Option<Vec<String>>,
    /// DER OCSP response to staple; None = `<cert>.ocsp` when that file exists.
    pub ocsp: Option<PathBuf>,
}

/// Largest OCSP response we staple (real ones are 1-4 KiB).
const OCSP_MAX: u64 = 64 * 1024;

/// The OCSP response to staple for `spec`, read afresh on every (re)load
/// so a cron job that refreshes the file plus a reload keeps it current.
fn load_ocsp(spec: &CertSpec) -> Result<Option<Vec<u8>>, TlsError> {
    let (path, explicit) = match &spec.ocsp {
        Some(p) => (p.clone(), true),
        None => {
            let mut p = spec.cert.clone().into_os_string();
            p.push(".ocsp");
            (PathBuf::from(p), false)
        }
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(_) if !explicit => return Ok(None),
        Err(source) => return Err(TlsError::Read { path, source }),
    };
    if !meta.is_file() || meta.len() == 0 || meta.len() > OCSP_MAX {
        return Err(TlsError::BadCertificate {
            path,
            detail: format!("OCSP response must be a regular DER file of 1..={OCSP_MAX} bytes"),
        });
    }
    read(&path).map(Some)
}

/// TLS towards a pool's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub verify: Verify,
    /// Name to send as SNI and to verify the backend certificate against; without it the
    /// backend's IP address is used (no SNI; the certificate needs an IP subjectAltName).
    pub server_name: Option<String>,
    /// Client certificate chain for mTLS; set together with `client_key`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// How backend certificates are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Trust the CA certificates in this PEM file (all of them), and only those.
    CaFile(PathBuf),
    /// Accept any certificate. The traffic is encrypted but not authenticated: anyone who can
    /// intercept the path to the backend can impersonate it. An explicit opt-out for lab
    /// setups; a warning is logged whenever a config using it is built.
    Insecure,
}

/// A TLS configuration error. File problems name the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid PEM: {detail}", path.display())]
    Pem { path: PathBuf, detail: String },
    #[error("{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: invalid certificate: {detail}", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    #[error(
        "{}: no private key found (expected PKCS#8, PKCS#1 RSA or SEC1 EC PEM; encrypted keys are not supported)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error(
        "{}: unsupported key type or invalid key (supported: RSA 2048-8192 bits, ECDSA P-256/P-384, Ed25519)",
        path.display()
    )]
    UnsupportedKey { path: PathBuf },
    #[error("{}: key {} does not match the certificate", cert.display(), key.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: certificate has no DNS name: set names", path.display())]
    NoDnsName { path: PathBuf },
    #[error("{}: invalid name {name:?} in names (expected a DNS name or *.domain)", path.display())]
    InvalidName { path: PathBuf, name: String },
    #[error("client_cert {} is set without client_key", path.display())]
    ClientKeyMissing { path: PathBuf },
    #[error("client_key {} is set without client_cert", path.display())]
    ClientCertMissing { path: PathBuf },
    #[error("no certificates configured")]
    NoCertificates,
    #[error("default certificate #{index} does not exist: {count} configured")]
    DefaultOutOfRange { index: usize, count: usize },
    #[error("invalid server_name {0:?}")]
    InvalidServerName(String),
    /// rustls refused the protocol/provider combination; not expected with the fixed setup here.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A fresh ring provider per config: cheap (a few static tables), and it keeps us independent
/// of whatever else in the process may install as the global default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// All certificates in a PEM file, in file order.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file, parsed into a ring signing key.
fn load_key(path: &Path, provider: &CryptoProvider) -> Result<Arc<dyn SigningKey>, TlsError> {
    let pem = read(path)?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        },
    })?;
    provider
        .key_provider
        .load_private_key(der)
        .map_err(|_| TlsError::UnsupportedKey {
            path: path.to_owned(),
        })
}

/// Chain plus key, checked to belong together now rather than failing every handshake later.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let signing_key = load_key(key, provider)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot report its public half. ring's RSA, ECDSA and Ed25519 keys
        // all can, so this is unreachable today; rustls itself accepts it too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        Err(e) => Err(TlsError::BadCertificate {
            path: cert.to_owned(),
            detail: e.to_string(),
        }),
    }
}

/// Loads a listener certificate and the SNI names it serves (lowercase, no trailing dot).
pub fn load_certified_key(spec: &CertSpec) -> Result<(Arc<CertifiedKey>, Vec<String>), TlsError> {
    let mut certified = load_pair(&spec.cert, &spec.key, &provider())?;
    certified.ocsp = load_ocsp(spec)?;
    let names = match &spec.names {
        Some(names) => names
            .iter()
            .map(|n| {
                normalize_name(n).ok_or_else(|| TlsError::InvalidName {
                    path: spec.cert.clone(),
                    name: n.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => {
            let leaf = certified
                .end_entity_cert()
                .map_err(|e| TlsError::BadCertificate {
                    path: spec.cert.clone(),
                    detail: e.to_string(),
                })?;
            let raw = cert_dns_names(leaf).ok_or_else(|| TlsError::BadCertificate {
                path: spec.cert.clone(),
                detail: "cannot parse the subject or subjectAltName".to_owned(),
            })?;
            // A CN such as "Example Ltd web server" is not a host name: skip, don't fail.
            let names: Vec<String> = raw.iter().filter_map(|n| normalize_name(n)).collect();
            if names.is_empty() {
                return Err(TlsError::NoDnsName {
                    path: spec.cert.clone(),
                });
            }
            names
        }
    };
    Ok((Arc::new(certified), names))
}

/// Lowercases and strips a trailing dot; `None` unless it is a host name, optionally with a
/// whole-label `*` first (`*.example.com`). Partial wildcards (`w*.example.com`) are rejected:
/// RFC 6125 allows them only as a legacy option and rustls clients do not accept them.
fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let ok = match labels.split_first() {
        Some((&"*", rest)) => !rest.is_empty() && rest.iter().all(|l| valid_label(l)),
        _ => labels.iter().all(|l| valid_label(l)),
    };
    ok.then_some(name)
}

/// Picks a listener certificate from the ClientHello's SNI.
///
/// Exact names beat wildcards. `*.example.com` covers exactly one label (`a.example.com`), not
/// `a.b.example.com` and not `example.com` (RFC 6125 §6.4.3), which is also what clients accept:
/// serving the wildcard for a deeper name would only move the failure to the client. No SNI, or
/// a name nothing covers, gets the default certificate.
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Loads every certificate. `default` indexes `certs`; `None` means the first. When two
    /// certificates claim the same name the earlier one keeps it (and a warning is logged).
    pub fn new(certs: &[CertSpec], default: Option<usize>) -> Result<Self, TlsError> {
        if certs.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        let default_index = default.unwrap_or(0);
        if default_index >= certs.len() {
            return Err(TlsError::DefaultOutOfRange {
                index: default_index,
                count: certs.len(),
            });
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default_key = None;
        for (i, spec) in certs.iter().enumerate() {
            let (key, names) = load_certified_key(spec)?;
            for name in names {
                let (map, host) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent.to_owned()),
                    None => (&mut exact, name.clone()),
                };
                match map.entry(host) {
                    Entry::Occupied(_) => tracing::warn!(
                        name = %name,
                        cert = %spec.cert.display(),
                        "TLS name already served by an earlier certificate; keeping that one"
                    ),
                    Entry::Vacant(slot) => {
                        slot.insert(Arc::clone(&key));
                    }
                }
            }
            if i == default_index {
                default_key = Some(key);
            }
        }
        // Always set: default_index < certs.len() was checked and every spec loaded.
        let default = default_key.ok_or(TlsError::NoCertificates)?;
        Ok(Self {
            exact,
            wildcard,
            default,
        })
    }

    fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(sni) = sni else {
            return &self.default;
        };
        let name = sni.strip_suffix('.').unwrap_or(sni).to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        // Only the first label may be replaced by the wildcard.
        if let Some(key) = name
            .split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
        {
            return key;
        }
        &self.default
    }
}

impl fmt::Debug for SniResolver {
    // Certificates and keys are noise (and keys must never be printed): show the names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<&String> = self.exact.keys().collect();
        exact.sort();
        let mut wildcard: Vec<String> = self.wildcard.keys().map(|p| format!("*.{p}")).collect();
        wildcard.sort();
        f.debug_struct("SniResolver")
            .field("exact", &exact)
            .field("wildcard", &wildcard)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.pick(client_hello.server_name())))
    }
}

/// A listener's server config: TLS 1.2 and 1.3 with ring, certificates chosen by SNI, ALPN
/// `h2, http/1.1` (server preference, so h2 wins when offered) or only `http/1.1`. A client
/// that sends no ALPN gets none and speaks HTTP/1.1. Session resumption uses rustls's defaults
/// (in-memory session cache, TLS 1.3 tickets); a reload starts with a fresh cache.
pub fn server_config(
    certs: &[CertSpec],
    default: Option<usize>,
    alpn_h2: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(
        certs,
        default,
        alpn_h2,
        &crate::config::TlsOptions::default(),
    )
}

/// The ring provider narrowed to the listener's cipher suites and key
/// exchange groups (names as rustls spells them); empty lists keep all.
fn provider_for(opts: &crate::config::TlsOptions) -> Result<Arc<CryptoProvider>, String> {
    let mut p = rustls::crypto::ring::default_provider();
    if !opts.cipher_suites.is_empty() {
        let mut picked = Vec::new();
        for name in &opts.cipher_suites {
            let s = rustls::crypto::ring::ALL_CIPHER_SUITES
                .iter()
                .find(|s| s.suite().as_str() == Some(name.as_str()))
                .ok_or_else(|| {
                    format!(
                        "unknown cipher suite {name:?}; known: {}",
                        suite_names().join(", ")
                    )
                })?;
            picked.push(*s);
        }
        p.cipher_suites = picked;
    }
    if !opts.groups.is_empty() {
        let mut picked = Vec::new();
        for name in &opts.groups {
            let g = rustls::crypto::ring::ALL_KX_GROUPS
                .iter()
                .find(|g| g.name().as_str() == Some(name.as_str()))
                .ok_or_else(|| {
                    let known: Vec<&str> = rustls::crypto::ring::ALL_KX_GROUPS
                        .iter()
                        .filter_map(|g| g.name().as_str())
                        .collect();
                    format!("unknown group {name:?}; known: {}", known.join(", "))
                })?;
            picked.push(*g);
        }
        p.kx_groups = picked;
    }
    Ok(Arc::new(p))
}

fn suite_names() -> Vec<&'static str> {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .filter_map(|s| s.suite().as_str())
        .collect()
}

/// Checks the listener's TLS options the way [`server_config_with`] will
/// use them (names, version/suite consistency, the client CA file).
pub fn check_options(opts: &crate::config::TlsOptions) -> Result<(), (String, String)> {
    let provider = provider_for(opts).map_err(|e| {
        let key = if e.contains("cipher") {
            "cipher_suites"
        } else {
            "groups"
        };
        (key.to_string(), e)
    })?;
    let versions = versions_for(opts);
    ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| {
            (
                "cipher_suites".to_string(),
                format!("no cipher suite left for the allowed TLS versions: {e}"),
            )
        })?;
    if let Some(ca) = &opts.client_ca {
        check_pem_file(ca).map_err(|e| ("client_ca".to_string(), e))?;
        client_verifier(ca, opts.client_auth_required, provider)
            .map_err(|e| ("client_ca".to_string(), e.to_string()))?;
    }
    Ok(())
}

fn versions_for(opts: &crate::config::TlsOptions) -> &'static [&'static SupportedProtocolVersion] {
    const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    if opts.min_tls13 {
        TLS13_ONLY
    } else {
        VERSIONS
    }
}

fn client_verifier(
    ca: &Path,
    required: bool,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::BadCertificate {
            path: ca.to_owned(),
            detail: e.to_string(),
        })?;
    }
    let b = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let b = if required {
        b
    } else {
        b.allow_unauthenticated()
    };
    b.build().map_err(|e| TlsError::BadCertificate {
        path: ca.to_owned(),
        detail: e.to_string(),
    })
}

/// [`server_config`] with the listener's TLS options: minimum version,
/// cipher suites and groups, and client certificates (mTLS).
pub fn server_config_with(
    certs: &[CertSpec],
    default: Option<usize>,
    alpn_h2: bool,
    opts: &crate::config::TlsOptions,
) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = SniResolver::new(certs, default)?;
    let provider = provider_for(opts).map_err(|e| TlsError::Config(rustls::Error::General(e)))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions_for(opts))?;
    let builder = match &opts.client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(
            ca,
            opts.client_auth_required,
            provider,
        )?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = if alpn_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// A pool's client config: TLS 1.2 and 1.3 with ring, offering `alpn` (may be empty).
pub fn client_config(u: &UpstreamTls, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(VERSIONS)?;
    let builder = match &u.verify {
        Verify::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::BadCertificate {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            }
            builder.with_root_certificates(roots)
        }
        Verify::Insecure => {
            tracing::warn!(
                server_name = u.server_name.as_deref().unwrap_or("(backend address)"),
                "backend TLS certificates are not verified (verify = insecure): \
                 the connection can be intercepted"
            );
            let verifier = AcceptAnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    let mut config = match (&u.client_cert, &u.client_key) {
        (Some(cert), Some(key)) => {
            let certified = load_pair(cert, key, &provider)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), None) => return Err(TlsError::ClientKeyMissing { path: cert.clone() }),
        (None, Some(key)) => return Err(TlsError::ClientCertMissing { path: key.clone() }),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The name to connect to a backend with: the configured `server_name`, else its IP address.
pub fn server_name(u: &UpstreamTls, backend_ip: IpAddr) -> Result<ServerName<'static>, TlsError> {
    match &u.server_name {
        Some(name) => ServerName::try_from(name.clone())
            .map_err(|_| TlsError::InvalidServerName(name.clone())),
        None => Ok(ServerName::from(backend_ip)),
    }
}

/// `verify = insecure`: accepts every certificate chain and name, but still checks the
/// handshake signatures, so the peer must at least hold the key of the certificate it sent
/// (which, with no chain validation, anyone can produce: this is no authentication).
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificate's subjectAltName dNSNames, or, when it has none, its subject CNs (raw,
/// unvalidated). `None` if the DER is not shaped like an X.509 certificate.
///
/// rustls exposes no certificate parser and the dependency set is fixed, so this walks the few
/// DER fields needed. rustls has already parsed the certificate by the time this runs
/// (`keys_match`), so only well-formed input reaches it in practice.
fn cert_dns_names(cert: &[u8]) -> Option<Vec<String>> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const OCTET_STRING: u8 = 0x04;
    const EXPLICIT_0: u8 = 0xa0; // TBSCertificate.version
    const EXPLICIT_3: u8 = 0xa3; // TBSCertificate.extensions
    const DNS_NAME: u8 = 0x82; // GeneralName [2] IMPLICIT IA5String
    const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
    const OID_CN: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3

    let certificate = der::only(cert, SEQUENCE)?;
    let tbs = der::children(certificate)?
        .into_iter()
        .next()
        .filter(|t| t.tag == SEQUENCE)?;
    let mut fields = der::children(tbs.value)?;
    if fields.first()?.tag == EXPLICIT_0 {
        fields.remove(0);
    }
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, then the
    // optional issuerUniqueID [1], subjectUniqueID [2] and extensions [3].
    let subject = fields.get(4).filter(|t| t.tag == SEQUENCE)?;

    let mut names = Vec::new();
    if let Some(extensions) = fields.iter().skip(6).find(|t| t.tag == EXPLICIT_3) {
        for extension in der::children(der::only(extensions.value, SEQUENCE)?)? {
            // extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING
            let parts = der::children(extension.value)?;
            let (id, value) = (parts.first()?, parts.last()?);
            if id.tag != OID || id.value != OID_SAN {
                continue;
            }
            if value.tag != OCTET_STRING {
                return None;
            }
            for general_name in der::children(der::only(value.value, SEQUENCE)?)? {
                if general_name.tag == DNS_NAME {
                    names.push(std::str::from_utf8(general_name.value).ok()?.to_owned());
                }
            }
        }
    }
    if names.is_empty() {
        for rdn in der::children(subject.value)? {
            if rdn.tag != SET {
                return None;
            }
            for attribute in der::children(rdn.value)? {
                let parts = der::children(attribute.value)?;
                if let [id, value] = parts.as_slice() {
                    // UTF8String, PrintableString or IA5String; other string types cannot
                    // hold a usable host name.
                    if id.tag == OID
                        && id.value == OID_CN
                        && matches!(value.tag, 0x0c | 0x13 | 0x16)
                    {
                        names.push(std::str::from_utf8(value.value).ok()?.to_owned());
                    }
                }
            }
        }
    }
    Some(names)
}

/// The certificate's subject as an RFC 4514 string (`CN=client1,O=Example`,
/// most specific first), for the header an mTLS listener passes to backends.
/// Attributes other than the usual ones appear as dotted OIDs; values that
/// are not text are left out. `None` if the DER is not a certificate.
pub fn subject_dn(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const EXPLICIT_0: u8 = 0xa0;
    let certificate = der::only(cert, SEQUENCE)?;
    let tbs = der::children(certificate)?
        .into_iter()
        .next()
        .filter(|t| t.tag == SEQUENCE)?;
    let mut fields = der::children(tbs.value)?;
    if fields.first()?.tag == EXPLICIT_0 {
        fields.remove(0);
    }
    let subject = fields.get(4).filter(|t| t.tag == SEQUENCE)?;
    let mut rdns = Vec::new();
    for rdn in der::children(subject.value)? {
        if rdn.tag != SET {
            return None;
        }
        let mut parts = Vec::new();
        for attribute in der::children(rdn.value)? {
            let av = der::children(attribute.value)?;
            let [id, value] = av.as_slice() else {
                return None;
            };
            // UTF8String, PrintableString, IA5String, T61String.
            if !matches!(value.tag, 0x0c | 0x13 | 0x16 | 0x14) {
                continue;
            }
            let text = std::str::from_utf8(value.value).ok()?;
            parts.push(format!("{}={}", oid_label(id.value), escape_dn(text)));
        }
        if !parts.is_empty() {
            rdns.push(parts.join("+"));
        }
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn oid_label(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x55, 0x04, 0x05] => "serialNumber".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => {
            // Dotted form: first byte holds two arcs, the rest are base-128.
            let mut arcs: Vec<u64> = Vec::new();
            let mut acc = 0u64;
            for (i, b) in oid.iter().enumerate() {
                if i == 0 {
                    arcs.push(u64::from(b / 40));
                    arcs.push(u64::from(b % 40));
                    continue;
                }
                acc = (acc << 7) | u64::from(b & 0x7f);
                if b & 0x80 == 0 {
                    arcs.push(acc);
                    acc = 0;
                }
            }
            arcs.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(".")
        }
    }
}

/// RFC 4514 §2.4 escaping, plus control characters (a header value must
/// stay one clean line).
fn escape_dn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\{:02x}", c as u32 & 0xff)),
            c => out.push(c),
        }
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

/// Just enough DER for [`cert_dns_names`]: definite lengths, single-byte tags.
mod der {
    pub(super) struct Tlv<'a> {
        pub tag: u8,
        pub value: &'a [u8],
    }

    fn split(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tag: never used by the fields we read
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None; // indefinite length (BER) or absurdly large
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        Some((Tlv { tag, value }, rest))
    }

    /// The TLVs that make up `input` exactly.
    pub(super) fn children(mut input: &[u8]) -> Option<Vec<Tlv<'_>>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (tlv, rest) = split(input)?;
            out.push(tlv);
            input = rest;
        }
        Some(out)
    }

    /// The value of the single TLV `input` consists of, if it has tag `tag`.
    pub(super) fn only(input: &[u8], tag: u8) -> Option<&[u8]> {
        match split(input)? {
            (tlv, []) if tlv.tag == tag => Some(tlv.value),
            _ => None,
        }
    }
}

/// Config validation: the certificate and key load and match (the same
/// loading the listener does), so a bad file never reaches start or reload.
pub fn check_cert(c: &crate::config::CertConfig) -> Result<(), String> {
    // Before reading: a device path (/dev/zero) would hang check and grow without bound.
    check_pem_file(&c.cert)?;
    check_pem_file(&c.key)?;
    load_certified_key(&spec(c))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub fn spec(c: &crate::config::CertConfig) -> CertSpec {
    CertSpec {
        cert: c.cert.clone(),
        key: c.key.clone(),
        names: c.names.clone(),
        ocsp: c.ocsp.clone(),
    }
}

// Files named by the config (certificates, keys, CA bundles) are checked before anything
// reads them: a device or FIFO path (`/dev/zero`, `/dev/stdin`) would block `check` or grow
// its memory without bound, and no PEM file is anywhere near the cap.

/// Largest PEM file accepted: a long chain or a full system CA bundle is well under 1 MiB.
pub const MAX_PEM_BYTES: u64 = 4 << 20;

/// `Ok` if `path` is a regular file (after symlinks) of at most [`MAX_PEM_BYTES`].
pub fn check_pem_file(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file (a device, FIFO or directory cannot hold a certificate or key)",
            path.display()
        ));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!(
            "{} is {} bytes: larger than the {} bytes a PEM file may have",
            path.display(),
            meta.len(),
            MAX_PEM_BYTES
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SignatureAlgorithm,
    };
    use rustls::server::WebPkiClientVerifier;
    use rustls::ProtocolVersion;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    #[test]
    fn subject_dn_is_rfc4514_and_escaped() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme, Inc+Co");
        params
            .distinguished_name
            .push(DnType::CommonName, " svc=1 ");
        let cert = params.self_signed(&key).unwrap();
        let dn = subject_dn(cert.der()).expect("subject");
        // Every attribute once, escaped, comma-separated, in reverse DER order.
        let mut parts: Vec<&str> = dn.split(',').collect();
        parts.sort();
        let want = ["CN=\\ svc\\=1\\ ", "C=DE", "O=Acme\\", " Inc\\+Co"];
        let mut want: Vec<&str> = want.to_vec();
        want.sort();
        assert_eq!(parts, want, "{dn}");
        assert_eq!(escape_dn("a\nb"), "a\\0ab");
        assert_eq!(escape_dn("#x"), "\\#x");
        assert_eq!(oid_label(&[0x2a, 0x03, 0x81, 0x00]), "1.2.3.128");
        assert!(subject_dn(b"not der").is_none());
    }

    // Generated once with openssl 3.0 (`genrsa -traditional 2048`, `ecparam -genkey`, and
    // `req -x509 -days 36500`): PKCS#1 and SEC1 encodings, which rcgen does not produce.
    const RSA_KEY_PKCS1: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEA2ex9+f+OIaO1u4VOGBTp8edBESyJSTGSVAfm5rMTiiB8t30s
z2hzhyIkCl16NpnpW6jsNOHoiK8qz2B5KIs+YfprKNrtrzH6ttjD8jEKPUhbX8+9
Mxsn1ZO3ZGKf3JPNUU78ES8N5jv3W4JqFs99P+y3c5Nt3vooUYt3PJKkLJ8MoVez
8hqOLrIfUixFv5Mlm3zu3KoyQktwSEmIYeXtAbfrYJIWYApNn10J3eWI0X7DRlUk
j0GwzyjuIKTFk0uE1IXWFYb5Nvr/Xbt4fi/VKpGS+k3sRuXsH100ZT48g+Wr4cGE
fPnHH+IvoZ53T70VFkBkh2wizgulkVGK+wHIowIDAQABAoIBACQGUhL27zYvZnZK
hKI61CukQ3Tagb1i9PdwMPhNJ9CV1e137hBBX5Zkte7YDMEkSK0u1matkQUGE/52
dRZB4nz26n+1T+++GYiKz+WPEXbCVIdDrllZnAhUpCSeSyKpykSug8E2ypuXU9OW
/QD//uAHj+dgD/HO38W515W2AMQhSUwRofQ+2wlBFftwwzDpD6i6uKcbeVMaaWr1
9AmEKCcpIyQpkeRO+Dh6zltOEq6iWCj5Teqzpv1kvgfz0AZedAxBcoyhmT1L+w9X
9Q1jZxfgzfMbL6QE4dvNtFBSl+jWmqgZU2LPkSktoOfS9Z722kpfgaKC0c+ftmxx
O0UIOMUCgYEA9csnTvPeXwM6IgLTsOps6+t6l9R9dh9pZ2EZgxQC02ADG5sHHrk5
ngSyia8mAHNr3o+GJD8gRul17vgY1yQktueIpLX8yGBxLGARD1C1ZpEiSUl/8SKO
RwiPb3uUsiivLFiT6G32DtohHAVhk06cAY5Wc+B+N8ToeO81EiCZKz8CgYEA4vkT
c5hePGBORAVpLZks2Az7ocXQ0Ckcla4N1yb67jtxJxeMcGPtQOh/Y2cpaOJH/oGZ
bm9fCw/5n6iLXWQT4QV+PTi8g2MJBa5B+l6zLt4OxsjKGpaVXFEs7FKNe4vJjLtv
Wga2uB/5rvb5nkVmYEld7xucH85YoKO13vZr/Z0CgYBgy6VqSU2sWyf8luJpDJji
e7SmsE7MQuiOhsW2Qh4uwePXbkDqj4UqPq1U3X34tXuohRsNkTKT2oLQHjIiH6C5
ywqb2vN2scw/7oEpZ95YSxWWiPRysOoY/T0HaUKQusbpjuSIpy08ghiB4Xigu1di
oXxYW/M44Tmvznw27FGFnwKBgFpGGrh1N7Xnz/k59bVPIQjlUQfst7qzP01BJvwV
4uPx/HVB5nelJu4UCuasV0oCBgRx42aLIVAzEGOyE4wXi9iJ6MXM1R2kvCfoQRGl
rLrNUy85GTkt/0Xye12bD+69kHJK8mTqGq5s+U/fpzSOAcP2Kkg5wQTde16Y/nMp
q5X5AoGAX6tPK055nG87rviPJOOXhqUqLtRZZxuAquuJG5isln1BH9R94pQ63oMO
ad6QNbkY8XpZo2TLRhSKxjyRpJjE4AJKRJGLKWqy6BIrWfwCKLFkGPVS4q6/IELP
HkZmJNkrpl/q4BaW1Y4BkLcbn0RFXwDmefIDrIdoUvToiHY61Ao=
-----END RSA PRIVATE KEY-----
";
    /// Self-signed, SAN DNS:rsa.example.com, CN rsa.example.com, valid until 2126.
    const RSA_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIDMDCCAhigAwIBAgIUaQ0akzLXLw6cZDmVqAv03Dl5J5kwDQYJKoZIhvcNAQEL
BQAwGjEYMBYGA1UEAwwPcnNhLmV4YW1wbGUuY29tMCAXDTI2MTEyODAxNDE1NVoY
DzIxMjYxMTA0MDE0MTU1WjAaMRgwFgYDVQQDDA9yc2EuZXhhbXBsZS5jb20wggEi
MA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDZ7H35/44ho7W7hU4YFOnx50ER
LIlJMZJUB+bmsxOKIHy3fSzPaHOHIiQKXXo2melbqOw04eiIryrPYHkoiz5h+mso
2u2vMfq22MPyMQo9SFtfz70zGyfVk7dkYp/ck81RTvwRLw3mO/dbgmoWz30/7Ldz
k23e+ihRi3c8kqQsnwyhV7PyGo4ush9SLEW/kyWbfO7cqjJCS3BISYhh5e0Bt+tg
khZgCk2fXQnd5YjRfsNGVSSPQbDPKO4gpMWTS4TUhdYVhvk2+v9du3h+L9UqkZL6
TexG5ewfXTRlPjyD5avhwYR8+ccf4i+hnndPvRUWQGSHbCLOC6WRUYr7AcijAgMB
AAGjbDBqMB0GA1UdDgQWBBSxaEbPqLDbeLFp25hWVt8sOsFBRjAfBgNVHSMEGDAW
gBSxaEbPqLDbeLFp25hWVt8sOsFBRjAaBgNVHREEEzARgg9yc2EuZXhhbXBsZS5j
b20wDAYDVR0TAQH/BAIwADANBgkqhkiG9w0BAQsFAAOCAQEAVQYO4bJIDMFV3H8H
7OdcLjwP4G1I6jbTfnGoXwf8yLUSkzPV3VyIZiL2xTlQQp74LeQULE4zU20J78r2
6MuEi2vo+pYUpWluaWbfuyhvAI7hV+kIhpBkO+g7mX31otGx0Pk/iIxkswuAN9DY
NrLELJDCec+17mEUc+hQ8Bl2oObvy0aqDV4VueP8H1XxhQiPj1on4gBYXSKmeini
ozM9+9vDvtDkVYB27IzuOPdPtRTLgdzadddrX+VDgqwstQ3JGXAE7bpY/wgdL5sP
yWT8avZkcpE7rYTavBdzRtbWEZ7ycYjVg8aG0WocNOWLkLNdgwwMQztopTlsl7x7
bc/thw==
-----END CERTIFICATE-----
";
    const EC_KEY_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIJka578Sukw8hl2fNMKzWVu5nV+nfEcMK1JHhUmhXat5oAoGCCqGSM49
AwEHoUQDQgAEbBjntJktznnzrMJRN+gMNIig5FueFPwhH/RccZdaPJYvP6Kzpijf
gAqLAmgl9tgE5WKGmm8kmJmA4K6dQgfmQw==
-----END EC PRIVATE KEY-----
";
    /// Self-signed P-256, CN sec1.example.com and no subjectAltName.
    const EC_CERT_CN_ONLY: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATCgAwIBAgIUKBdtd6y2eouLx9N0tWGI0GhWhcAwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQc2VjMS5leGFtcGxlLmNvbTAgFw0yNjExMjgwMTQxNTVaGA8y
MTI2MTEwNDAxNDE1NVowGzEZMBcGA1UEAwwQc2VjMS5leGFtcGxlLmNvbTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABGwY57SZLc5586zCUTfoDDSIoORbnhT8IR/0
XHGXWjyWLz+is6Yo34AKiwJoJfbYBOVihppvJJiZgOCunUIH5kOjUDBOMB0GA1Ud
DgQWBBQR1tA5LJLhgKetGHni6raW3DHZAjAfBgNVHSMEGDAWgBQR1tA5LJLhgKet
GHni6raW3DHZAjAMBgNVHRMBAf8EAjAAMAoGCCqGSM49BAMCA0kAMEYCIQDJTA4E
HX4cwPK8iDpdJ4GYQq4x38dYHnMGSKr/v87kTwIhANVC0CapmcMPlPBGo/rbdSg0
sXiewbuJb8PWKG9Vxrwt
-----END CERTIFICATE-----
";

    /// A directory of PEM files, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("tandem-tls-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }

        /// Writes `name.pem` and `name.key`; returns a spec taking names from the certificate.
        fn spec(&self, name: &str, leaf: &Leaf) -> CertSpec {
            CertSpec {
                cert: self.write(&format!("{name}.pem"), &leaf.cert_pem),
                key: self.write(&format!("{name}.key"), &leaf.key_pem),
                names: None,
                ocsp: None,
            }
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
        der: CertificateDer<'static>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    struct Leaf {
        cert_pem: String,
        key_pem: String,
        der: CertificateDer<'static>,
    }

    fn leaf(ca: &Ca, sans: &[&str], alg: &'static SignatureAlgorithm) -> Leaf {
        let key = KeyPair::generate_for(alg).unwrap();
        let params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn dns(name: &str) -> ServerName<'static> {
        ServerName::try_from(name.to_owned()).unwrap()
    }

    fn upstream(verify: Verify, server_name: Option<&str>) -> UpstreamTls {
        UpstreamTls {
            verify,
            server_name: server_name.map(str::to_owned),
            client_cert: None,
            client_key: None,
        }
    }

    #[derive(Debug)]
    struct Outcome {
        /// Certificates the client received, leaf first.
        server_chain: Vec<CertificateDer<'static>>,
        /// Certificates the server received (mTLS).
        client_chain: Option<Vec<CertificateDer<'static>>>,
        alpn: Option<Vec<u8>>,
        version: Option<ProtocolVersion>,
    }

    /// A real handshake over loopback TCP plus one echoed byte, so that a client certificate
    /// rejected after the client's side of a TLS 1.3 handshake completes still shows up.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Outcome, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_side = async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = TlsAcceptor::from(server)
                .accept(tcp)
                .await
                .map_err(|e| format!("server handshake: {e}"))?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte)
                .await
                .map_err(|e| format!("server read: {e}"))?;
            tls.write_all(&byte)
                .await
                .map_err(|e| format!("server write: {e}"))?;
            tls.flush()
                .await
                .map_err(|e| format!("server flush: {e}"))?;
            let peer = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec);
            Ok::<_, String>(peer)
        };
        let client_side = async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut tls = TlsConnector::from(client)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("client handshake: {e}"))?;
            tls.write_all(b"x")
                .await
                .map_err(|e| format!("client write: {e}"))?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte)
                .await
                .map_err(|e| format!("client read: {e}"))?;
            let conn = tls.get_ref().1;
            Ok::<_, String>(Outcome {
                server_chain: conn.peer_certificates().unwrap_or_default().to_vec(),
                client_chain: None,
                alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                version: conn.protocol_version(),
            })
        };
        match tokio::join!(server_side, client_side) {
            (Ok(client_chain), Ok(outcome)) => Ok(Outcome {
                client_chain,
                ..outcome
            }),
            (s, c) => Err(format!("{:?} / {:?}", s.err(), c.err())),
        }
    }

    fn without_sni(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
        let mut config = (*config).clone();
        config.enable_sni = false;
        Arc::new(config)
    }

    /// default.test (Ed25519, first), a.example.com (P-256), *.example.com (P-384).
    struct Listener {
        _dir: TempDir,
        specs: Vec<CertSpec>,
        ca: Ca,
        default: Leaf,
        a: Leaf,
        wildcard: Leaf,
    }

    fn listener() -> Listener {
        let dir = TempDir::new();
        let ca = ca("test CA");
        let default = leaf(&ca, &["default.test"], &rcgen::PKCS_ED25519);
        let a = leaf(&ca, &["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let wildcard = leaf(&ca, &["*.example.com"], &rcgen::PKCS_ECDSA_P384_SHA384);
        let specs = vec![
            dir.spec("default", &default),
            dir.spec("a", &a),
            dir.spec("wildcard", &wildcard),
        ];
        Listener {
            _dir: dir,
            specs,
            ca,
            default,
            a,
            wildcard,
        }
    }

    #[tokio::test]
    async fn sni_picks_exact_then_one_label_wildcard_then_default() {
        let l = listener();
        let server = server_config(&l.specs, None, true).unwrap();
        let any = client_config(&upstream(Verify::Insecure, None), &[]).unwrap();
        let served = |name: &'static str| {
            let (server, any) = (Arc::clone(&server), Arc::clone(&any));
            async move {
                handshake(server, any, dns(name))
                    .await
                    .unwrap()
                    .server_chain[0]
                    .clone()
            }
        };
        assert_eq!(served("a.example.com").await, l.a.der);
        assert_eq!(served("A.Example.COM").await, l.a.der);
        assert_eq!(served("b.example.com").await, l.wildcard.der);
        // One label only: neither deeper names nor the bare domain match the wildcard.
        assert_eq!(served("x.y.example.com").await, l.default.der);
        assert_eq!(served("example.com").await, l.default.der);
        assert_eq!(served("unknown.test").await, l.default.der);
        let no_sni = handshake(Arc::clone(&server), without_sni(any), dns("a.example.com"))
            .await
            .unwrap();
        assert_eq!(no_sni.server_chain[0], l.default.der);
    }

    #[tokio::test]
    async fn marked_default_serves_unknown_names() {
        let l = listener();
        let server = server_config(&l.specs, Some(1), true).unwrap();
        let any = client_config(&upstream(Verify::Insecure, None), &[]).unwrap();
        let unknown = handshake(Arc::clone(&server), Arc::clone(&any), dns("unknown.test"));
        assert_eq!(unknown.await.unwrap().server_chain[0], l.a.der);
        // The old first certificate now only answers to its own name.
        let named = handshake(server, any, dns("default.test")).await.unwrap();
        assert_eq!(named.server_chain[0], l.default.der);
    }

    #[tokio::test]
    async fn verified_handshakes_with_the_ca_file_and_chain() {
        let dir = TempDir::new();
        let ca = ca("test CA");
        let a = leaf(&ca, &["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let spec = CertSpec {
            cert: dir.write("chain.pem", &format!("{}{}", a.cert_pem, ca.pem)),
            key: dir.write("a.key", &a.key_pem),
            names: None,
            ocsp: None,
        };
        let server = server_config(&[spec], None, true).unwrap();
        let ca_file = dir.write("ca.pem", &ca.pem);
        let client = client_config(&upstream(Verify::CaFile(ca_file), None), &[]).unwrap();
        let ok = handshake(server, client, dns("a.example.com"))
            .await
            .unwrap();
        assert_eq!(ok.server_chain, vec![a.der, ca.der]);
        assert_eq!(ok.version, Some(ProtocolVersion::TLSv1_3));
    }

    #[tokio::test]
    async fn verification_uses_the_wildcard_and_rejects_other_cas() {
        let l = listener();
        let dir = TempDir::new();
        let server = server_config(&l.specs, None, true).unwrap();
        let ours = dir.write("ours.pem", &l.ca.pem);
        let client = client_config(&upstream(Verify::CaFile(ours), None), &[]).unwrap();
        handshake(Arc::clone(&server), client, dns("b.example.com"))
            .await
            .unwrap();

        let theirs = dir.write("theirs.pem", &ca("other CA").pem);
        let client = client_config(&upstream(Verify::CaFile(theirs), None), &[]).unwrap();
        let err = handshake(server, client, dns("a.example.com"))
            .await
            .unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[tokio::test]
    async fn alpn_prefers_h2_and_falls_back_to_http11() {
        let l = listener();
        let h2 = server_config(&l.specs, None, true).unwrap();
        let h1 = server_config(&l.specs, None, false).unwrap();
        let offer =
            |alpn: &[&[u8]]| client_config(&upstream(Verify::Insecure, None), alpn).unwrap();
        let negotiated = |server: &Arc<ServerConfig>, client| {
            let server = Arc::clone(server);
            async move {
                handshake(server, client, dns("a.example.com"))
                    .await
                    .unwrap()
                    .alpn
            }
        };
        let both: &[&[u8]] = &[b"http/1.1", b"h2"];
        assert_eq!(
            negotiated(&h2, offer(both)).await.as_deref(),
            Some(&b"h2"[..])
        );
        assert_eq!(
            negotiated(&h2, offer(&[b"http/1.1"])).await.as_deref(),
            Some(&b"http/1.1"[..])
        );
        assert_eq!(
            negotiated(&h1, offer(both)).await.as_deref(),
            Some(&b"http/1.1"[..])
        );
        assert_eq!(negotiated(&h2, offer(&[])).await, None);
    }

    #[tokio::test]
    async fn tls12_only_client_works() {
        let l = listener();
        let server = server_config(&l.specs, None, true).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(l.ca.der.clone()).unwrap();
        let tls12 = Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        for (name, expected) in [("a.example.com", &l.a), ("default.test", &l.default)] {
            let out = handshake(Arc::clone(&server), Arc::clone(&tls12), dns(name))
                .await
                .unwrap();
            assert_eq!(out.version, Some(ProtocolVersion::TLSv1_2));
            assert_eq!(out.server_chain[0], expected.der);
        }
    }

    #[tokio::test]
    async fn rsa_pkcs1_and_sec1_keys_load_and_serve() {
        let dir = TempDir::new();
        let rsa = CertSpec {
            cert: dir.write("rsa.pem", RSA_CERT),
            key: dir.write("rsa.key", RSA_KEY_PKCS1),
            names: None,
            ocsp: None,
        };
        let sec1 = CertSpec {
            cert: dir.write("sec1.pem", EC_CERT_CN_ONLY),
            key: dir.write("sec1.key", EC_KEY_SEC1),
            names: None,
            ocsp: None,
        };
        assert_eq!(load_certified_key(&rsa).unwrap().1, ["rsa.example.com"]);
        // No subjectAltName: the CN is used.
        assert_eq!(load_certified_key(&sec1).unwrap().1, ["sec1.example.com"]);

        let server = server_config(&[sec1, rsa], None, true).unwrap();
        let rsa_der = CertificateDer::from_pem_slice(RSA_CERT.as_bytes()).unwrap();
        let insecure = client_config(&upstream(Verify::Insecure, None), &[]).unwrap();
        let out = handshake(Arc::clone(&server), insecure, dns("rsa.example.com"))
            .await
            .unwrap();
        assert_eq!(out.server_chain[0], rsa_der);

        // And a verified one, TLS 1.2 (RSA signatures differ between versions): the
        // self-signed certificate is its own trust anchor.
        let mut roots = RootCertStore::empty();
        roots.add(rsa_der.clone()).unwrap();
        let tls12 = Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let out = handshake(server, tls12, dns("rsa.example.com"))
            .await
            .unwrap();
        assert_eq!(out.server_chain[0], rsa_der);
    }

    #[tokio::test]
    async fn mtls_client_certificate_is_presented_and_required() {
        let dir = TempDir::new();
        let server_ca = ca("server CA");
        let client_ca = ca("client CA");
        let backend = leaf(
            &server_ca,
            &["backend.internal"],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        );
        let mut roots = RootCertStore::empty();
        roots.add(client_ca.der.clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let resolver = SniResolver::new(&[dir.spec("backend", &backend)], None).unwrap();
        let server = Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(VERSIONS)
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(Arc::new(resolver)),
        );

        let ca_file = dir.write("server-ca.pem", &server_ca.pem);
        let tandem = leaf(&client_ca, &["tandem.internal"], &rcgen::PKCS_ED25519);
        let mut u = upstream(Verify::CaFile(ca_file), Some("backend.internal"));
        u.client_cert = Some(dir.write("tandem.pem", &tandem.cert_pem));
        u.client_key = Some(dir.write("tandem.key", &tandem.key_pem));
        let name = server_name(&u, [127, 0, 0, 1].into()).unwrap();
        let client = client_config(&u, &[b"http/1.1"]).unwrap();
        let out = handshake(Arc::clone(&server), client, name.clone())
            .await
            .unwrap();
        assert_eq!(out.client_chain, Some(vec![tandem.der]));

        // Without a client certificate, or with one from another CA, the backend refuses.
        let anonymous = UpstreamTls {
            client_cert: None,
            client_key: None,
            ..u.clone()
        };
        let client = client_config(&anonymous, &[]).unwrap();
        let err = handshake(Arc::clone(&server), client, name.clone())
            .await
            .unwrap_err();
        assert!(err.contains("server handshake"), "{err}");
        let stranger = leaf(
            &ca("stranger CA"),
            &["tandem.internal"],
            &rcgen::PKCS_ED25519,
        );
        u.client_cert = Some(dir.write("stranger.pem", &stranger.cert_pem));
        u.client_key = Some(dir.write("stranger.key", &stranger.key_pem));
        let client = client_config(&u, &[]).unwrap();
        let err = handshake(server, client, name).await.unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[tokio::test]
    async fn without_server_name_the_backend_ip_is_verified() {
        let dir = TempDir::new();
        let ca = ca("test CA");
        let backend = leaf(
            &ca,
            &["backend.internal", "127.0.0.1"],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        );
        let server = server_config(&[dir.spec("backend", &backend)], None, false).unwrap();
        let u = upstream(Verify::CaFile(dir.write("ca.pem", &ca.pem)), None);
        let client = client_config(&u, &[]).unwrap();
        let name = server_name(&u, [127, 0, 0, 1].into()).unwrap();
        handshake(Arc::clone(&server), Arc::clone(&client), name)
            .await
            .unwrap();
        let wrong = server_name(&u, [127, 0, 0, 2].into()).unwrap();
        let err = handshake(server, client, wrong).await.unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
    }

    #[tokio::test]
    async fn rebuilt_config_serves_new_files_and_old_one_keeps_its_own() {
        let dir = TempDir::new();
        let ca = ca("test CA");
        let old = leaf(&ca, &["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let spec = dir.spec("a", &old);
        let before = server_config(std::slice::from_ref(&spec), None, true).unwrap();
        let new = leaf(&ca, &["a.example.com"], &rcgen::PKCS_ED25519);
        dir.spec("a", &new);
        let after = server_config(&[spec], None, true).unwrap();
        let client = client_config(&upstream(Verify::Insecure, None), &[]).unwrap();
        let served = handshake(before, Arc::clone(&client), dns("a.example.com"))
            .await
            .unwrap();
        assert_eq!(served.server_chain[0], old.der);
        let served = handshake(after, client, dns("a.example.com"))
            .await
            .unwrap();
        assert_eq!(served.server_chain[0], new.der);
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = TempDir::new();
        let ca = ca("test CA");
        let a = leaf(&ca, &["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let b = leaf(&ca, &["b.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let good = dir.spec("a", &a);
        let check = |spec: CertSpec, file: &Path, expected: &str| {
            let msg = load_certified_key(&spec)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
        };

        let missing = dir.0.join("missing.pem");
        let spec = CertSpec {
            cert: missing.clone(),
            ..good.clone()
        };
        check(spec, &missing, "cannot read");

        let garbage = dir.write("garbage.pem", "this is not PEM\n");
        check(
            CertSpec {
                cert: garbage.clone(),
                ..good.clone()
            },
            &garbage,
            "no certificate found",
        );
        check(
            CertSpec {
                key: garbage.clone(),
                ..good.clone()
            },
            &garbage,
            "no private key found",
        );

        let broken = dir.write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
        );
        check(
            CertSpec {
                cert: broken.clone(),
                ..good.clone()
            },
            &broken,
            "invalid PEM",
        );

        let not_der = dir.write(
            "notder.pem",
            "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n",
        );
        check(
            CertSpec {
                cert: not_der.clone(),
                ..good.clone()
            },
            &not_der,
            "invalid certificate",
        );

        let odd_key = dir.write(
            "odd.key",
            "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n",
        );
        check(
            CertSpec {
                key: odd_key.clone(),
                ..good.clone()
            },
            &odd_key,
            "unsupported key type",
        );

        let other_key = dir.write("b.key", &b.key_pem);
        let mismatch = CertSpec {
            key: other_key.clone(),
            ..good.clone()
        };
        check(
            mismatch.clone(),
            &good.cert,
            "does not match the certificate",
        );
        check(mismatch, &other_key, "does not match the certificate");

        // A server config fails as a whole on any bad certificate.
        let err = server_config(
            &[
                good.clone(),
                CertSpec {
                    cert: garbage.clone(),
                    ..good.clone()
                },
            ],
            None,
            true,
        );
        assert!(err.unwrap_err().to_string().contains("garbage.pem"));
    }

    #[test]
    fn names_come_from_the_certificate_or_the_config() {
        let dir = TempDir::new();
        let ca = ca("test CA");
        let multi = leaf(
            &ca,
            &["www.example.com", "*.Example.org", "10.0.0.1"],
            &rcgen::PKCS_ED25519,
        );
        let spec = dir.spec("multi", &multi);
        assert_eq!(
            load_certified_key(&spec).unwrap().1,
            ["www.example.com", "*.example.org"]
        );

        let explicit = CertSpec {
            names: Some(vec!["Shop.Example.NET.".into(), "*.cdn.test".into()]),
            ..spec.clone()
        };
        assert_eq!(
            load_certified_key(&explicit).unwrap().1,
            ["shop.example.net", "*.cdn.test"]
        );
        for bad in [
            "",
            "*",
            "w*.example.com",
            "a..b",
            "a.*.example.com",
            "bad name",
        ] {
            let invalid = CertSpec {
                names: Some(vec![bad.into()]),
                ..spec.clone()
            };
            let msg = load_certified_key(&invalid)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("multi.pem") && msg.contains("invalid name"),
                "{bad:?}: {msg}"
            );
        }

        // Only an IP address and a CN that is no host name.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["192.0.2.7".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Example Ltd web server");
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let nameless = CertSpec {
            cert: dir.write("nameless.pem", &cert.pem()),
            key: dir.write("nameless.key", &key.serialize_pem()),
            names: None,
            ocsp: None,
        };
        let msg = load_certified_key(&nameless)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            format!(
                "{}: certificate has no DNS name: set names",
                nameless.cert.display()
            )
        );
        let named = CertSpec {
            names: Some(vec!["ip.example.com".into()]),
            ..nameless
        };
        assert_eq!(load_certified_key(&named).unwrap().1, ["ip.example.com"]);
    }

    #[test]
    fn resolver_setup_errors() {
        let l = listener();
        assert!(matches!(
            SniResolver::new(&[], None),
            Err(TlsError::NoCertificates)
        ));
        let err = server_config(&l.specs, Some(3), true).unwrap_err();
        assert!(
            matches!(err, TlsError::DefaultOutOfRange { index: 3, count: 3 }),
            "{err}"
        );
        let resolver = SniResolver::new(&l.specs, None).unwrap();
        assert_eq!(
            format!("{resolver:?}"),
            r#"SniResolver { exact: ["a.example.com", "default.test"], wildcard: ["*.example.com"], .. }"#
        );
    }

    #[test]
    fn duplicate_names_stay_with_the_earlier_certificate() {
        let l = listener();
        let dir = TempDir::new();
        let again = leaf(
            &l.ca,
            &["a.example.com", "*.example.com"],
            &rcgen::PKCS_ED25519,
        );
        let mut specs = l.specs.clone();
        specs.push(dir.spec("again", &again));
        let resolver = SniResolver::new(&specs, Some(3)).unwrap();
        assert_eq!(resolver.pick(Some("a.example.com")).cert[0], l.a.der);
        assert_eq!(resolver.pick(Some("b.example.com")).cert[0], l.wildcard.der);
        assert_eq!(resolver.pick(None).cert[0], again.der);
    }

    #[test]
    fn client_config_errors_name_the_file() {
        let dir = TempDir::new();
        let missing = dir.0.join("ca.pem");
        let err = client_config(&upstream(Verify::CaFile(missing.clone()), None), &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}", missing.display())),
            "{err}"
        );

        let ca = ca("test CA");
        let ca_file = dir.write("ca.pem", &ca.pem);
        let client = leaf(&ca, &["tandem.internal"], &rcgen::PKCS_ED25519);
        let cert = dir.write("client.pem", &client.cert_pem);
        let key = dir.write("client.key", &client.key_pem);
        let mut u = upstream(Verify::CaFile(ca_file), None);
        u.client_cert = Some(cert.clone());
        let err = client_config(&u, &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("client_cert {} is set without client_key", cert.display())
        );
        u.client_cert = None;
        u.client_key = Some(key.clone());
        let err = client_config(&u, &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("client_key {} is set without client_cert", key.display())
        );

        let other = leaf(&ca, &["other.internal"], &rcgen::PKCS_ED25519);
        u.client_cert = Some(dir.write("other.pem", &other.cert_pem));
        let err = client_config(&u, &[]).unwrap_err().to_string();
        assert!(
            err.contains("other.pem") && err.contains("does not match"),
            "{err}"
        );
    }

    #[test]
    fn server_name_is_configured_or_the_backend_ip() {
        let ip: IpAddr = "2001:db8::5".parse().unwrap();
        let none = upstream(Verify::Insecure, None);
        assert_eq!(
            server_name(&none, ip).unwrap(),
            ServerName::IpAddress(ip.into())
        );
        let named = upstream(Verify::Insecure, Some("api.internal"));
        assert_eq!(server_name(&named, ip).unwrap(), dns("api.internal"));
        let literal = upstream(Verify::Insecure, Some("10.1.2.3"));
        let expected: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            server_name(&literal, ip).unwrap(),
            ServerName::IpAddress(expected.into())
        );
        let bad = upstream(Verify::Insecure, Some("not a name"));
        assert_eq!(
            server_name(&bad, ip).unwrap_err().to_string(),
            r#"invalid server_name "not a name""#
        );
    }

    #[test]
    fn der_walker_rejects_truncated_certificates() {
        let ca = ca("test CA");
        let a = leaf(&ca, &["a.example.com"], &rcgen::PKCS_ED25519);
        assert_eq!(
            cert_dns_names(&a.der),
            Some(vec!["a.example.com".to_owned()])
        );
        for cut in [0, 1, 10, a.der.len() / 2, a.der.len() - 1] {
            assert_eq!(cert_dns_names(&a.der[..cut]), None, "cut at {cut}");
        }
    }
}

#[cfg(test)]
mod pem_file_tests {
    use super::*;

    #[test]
    fn devices_directories_missing_and_huge_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("tandem-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok.pem");
        std::fs::write(&ok, "-----BEGIN CERTIFICATE-----\n").unwrap();
        assert_eq!(check_pem_file(&ok), Ok(()));
        let huge = dir.join("huge.pem");
        let f = std::fs::File::create(&huge).unwrap();
        f.set_len(MAX_PEM_BYTES + 1).unwrap(); // sparse: costs no disk
        let link = dir.join("zero.pem");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (p, want) in [
            (Path::new("/dev/zero"), "not a regular file"),
            (link.as_path(), "not a regular file"),
            (dir.as_path(), "not a regular file"),
            (huge.as_path(), "larger than"),
            (Path::new("/nonexistent/x.pem"), "cannot read"),
        ] {
            let e = check_pem_file(p).expect_err(want);
            assert!(e.contains(want), "{p:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
