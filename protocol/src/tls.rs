//! Mutual TLS for the federation: PEM credentials, rustls configs, identity from certificates.
//!
//! The operator's federation CA signs the aggregator's certificate and every merchant's.
//! The aggregator requires a client certificate chaining to that CA; a node verifies the
//! aggregator against the same CA. A merchant's id is its certificate's common name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::messages::MerchantId;

/// Where a party's PEM files are, as written in its config file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The federation CA certificate.
    pub ca_cert: PathBuf,
    /// This party's certificate.
    pub cert: PathBuf,
    /// This party's private key (keep it mode 0600).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Loads the identity; relative paths are taken from `base` (the config file's folder).
    pub fn load(&self, base: &Path) -> Result<Identity, TlsError> {
        Identity::from_pem_files(
            &base.join(&self.ca_cert),
            &base.join(&self.cert),
            &base.join(&self.key),
        )
    }
}

/// ALPN protocol id Hansa peers negotiate; a peer speaking anything else is refused.
pub const ALPN: &[u8] = b"hansa/1";

/// Errors loading credentials or building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A credential file could not be read.
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        /// What the file should hold, e.g. `CA certificate`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A PEM document is malformed or holds nothing of the expected kind.
    #[error("{what} from {origin}: {reason}")]
    Pem {
        /// What the document should hold.
        what: &'static str,
        /// Where it came from (a path, or `memory`).
        origin: String,
        /// Why it was refused.
        reason: String,
    },
    /// A certificate is not valid X.509 or has no usable common name.
    #[error("certificate has no usable merchant id: {0}")]
    CommonName(String),
    /// rustls refused the credentials (for instance a key that does not match).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// The TLS configuration cannot carry QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
}

/// One party's credentials: the federation CA, its own certificate chain and private key.
#[derive(Debug)]
pub struct Identity {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Builds an identity from PEM text: the CA certificate, this party's certificate
    /// (chain, leaf first) and its PKCS#8/PKCS#1/SEC1 private key.
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Self::parse(ca_pem, cert_pem, key_pem, ["memory", "memory", "memory"])
    }

    /// Reads the three PEM files of [`Identity::from_pem`]; errors name the file.
    pub fn from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let ca_pem = read("CA certificate", ca)?;
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("private key", key)?;
        let origins = [ca, cert, key].map(|p| p.display().to_string());
        let [a, b, c] = &origins;
        Self::parse(&ca_pem, &cert_pem, &key_pem, [a, b, c])
    }

    fn parse(ca: &[u8], cert: &[u8], key: &[u8], origin: [&str; 3]) -> Result<Self, TlsError> {
        let pem = |what: &'static str, origin: &str, reason: String| TlsError::Pem {
            what,
            origin: origin.to_string(),
            reason,
        };
        let ca = CertificateDer::from_pem_slice(ca)
            .map_err(|e| pem("CA certificate", origin[0], e.to_string()))?;
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem("certificate", origin[1], e.to_string()))?;
        if chain.is_empty() {
            return Err(pem("certificate", origin[1], "no CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| pem("private key", origin[2], e.to_string()))?;
        Ok(Self { ca, chain, key })
    }

    /// The common name of this party's own certificate (a merchant's id).
    pub fn common_name(&self) -> Result<MerchantId, TlsError> {
        common_name(&self.chain[0])
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }

    /// rustls server config: TLS 1.3, client certificates required and verified against
    /// the federation CA, ring provider only.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// rustls client config: TLS 1.3, the aggregator verified against the federation CA,
    /// this party's certificate presented, ring provider only.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// The one crypto provider Hansa compiles, passed explicitly.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The subject common name of a DER certificate: the merchant id of a node's certificate.
pub fn common_name(der: &[u8]) -> Result<MerchantId, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::CommonName(format!("not X.509: {e}")))?;
    let mut names = cert.subject().iter_common_name();
    let first = names
        .next()
        .ok_or_else(|| TlsError::CommonName("subject has no common name".into()))?;
    if names.next().is_some() {
        return Err(TlsError::CommonName(
            "subject has several common names".into(),
        ));
    }
    let name = first
        .as_str()
        .map_err(|e| TlsError::CommonName(format!("common name is not a string: {e}")))?;
    if name.is_empty() {
        return Err(TlsError::CommonName("common name is empty".into()));
    }
    Ok(name.to_string())
}
