//! TLS helpers for the integration tests: rcgen-made CAs and leaves, and a
//! verifier that accepts any server certificate (tests compare which one
//! was served themselves).
#![allow(dead_code)]

pub mod certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    pub struct Ca {
        pub issuer: Issuer<'static, KeyPair>,
        pub pem: String,
    }

    pub fn ca() -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tandem test CA");
        let cert = params.self_signed(&key).expect("ca");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (cert PEM, key PEM, cert DER)
    pub fn leaf(ca: &Ca, names: &[&str]) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &ca.issuer).expect("sign");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A client certificate with this subject CN and O: (cert PEM, key PEM).
    pub fn client(ca: &Ca, cn: &str, org: &str) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        let cert = params.signed_by(&key, &ca.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// Accepts any server certificate, still checking handshake signatures.
#[derive(Debug)]
pub struct AnyCert(
    pub std::sync::Arc<rustls::crypto::CryptoProvider>,
    /// The OCSP response the server stapled (empty: none).
    pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
);

impl AnyCert {
    pub fn new(provider: std::sync::Arc<rustls::crypto::CryptoProvider>) -> AnyCert {
        AnyCert(provider, Default::default())
    }
}

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut o) = self.1.lock() {
            *o = ocsp.to_vec();
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
