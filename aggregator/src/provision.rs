//! Provisioning a federation: the CA, the aggregator's certificate, one per merchant.
//!
//! Files under the output folder:
//!
//! ```text
//! ca.pem, ca.key                          the federation CA (key 0600; never leaves here)
//! aggregator/{ca.pem,cert.pem,key.pem}    the aggregator's credentials
//! merchants/<id>/{ca.pem,cert.pem,key.pem} what to hand merchant <id>, over a safe channel
//! ```
//!
//! Running it again keeps the CA and every existing merchant, adds the new merchants, and
//! reissues the aggregator's certificate for the server names given.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hansa_protocol::{Identity, MerchantId, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Common name of the federation CA's certificate.
const CA_COMMON_NAME: &str = "Hansa federation CA";
/// Common name of the aggregator's certificate.
const AGGREGATOR_COMMON_NAME: &str = "hansa-aggregator";
/// Years a merchant's or the aggregator's certificate stays valid.
const LEAF_VALIDITY_YEARS: i32 = 3;
/// Years the federation CA stays valid.
const CA_VALIDITY_YEARS: i32 = 10;
/// Longest merchant id accepted, in bytes (it becomes a folder name and a certificate CN).
const MAX_MERCHANT_ID_BYTES: usize = 64;

/// Errors while provisioning.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A merchant id is not usable as a certificate name and a folder name.
    #[error(
        "merchant id `{0}` is invalid: use 1 to 64 of A-Z a-z 0-9 . _ - (not starting with . or -)"
    )]
    InvalidMerchantId(String),
    /// A server name is neither a DNS name nor an IP address.
    #[error("server name `{name}` is invalid: {reason}")]
    InvalidServerName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// No server name was given.
    #[error("at least one --server-name (DNS name or IP address of the aggregator) is needed")]
    NoServerName,
    /// Certificate generation failed.
    #[error("certificate generation for {subject}: {source}")]
    Certificate {
        /// Whose certificate.
        subject: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// The existing CA files could not be loaded.
    #[error("existing CA in {path}: {reason}")]
    ExistingCa {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// Freshly issued credentials do not load (a bug, reported rather than written).
    #[error("issued credentials do not load: {0}")]
    Tls(#[from] TlsError),
}

/// A certificate and its private key, as PEM text.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// The federation CA, able to issue certificates.
pub struct FederationCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for FederationCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationCa").finish_non_exhaustive()
    }
}

/// The current calendar year (UTC), close enough for certificate validity bounds.
fn this_year() -> i32 {
    const SECONDS_PER_YEAR: u64 = 31_556_952; // 365.2425 days
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + (secs / SECONDS_PER_YEAR) as i32
}

/// Valid from the start of last year (tolerates clock skew) for `years` years after this one.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn named(common_name: &str, sans: Vec<String>) -> Result<CertificateParams, ProvisionError> {
    let mut params =
        CertificateParams::new(sans).map_err(|source| ProvisionError::Certificate {
            subject: common_name.to_string(),
            source,
        })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    Ok(params)
}

fn cert_error(subject: &str) -> impl FnOnce(rcgen::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Certificate {
        subject: subject.to_string(),
        source,
    }
}

impl FederationCa {
    /// Creates a new CA with a fresh key.
    pub fn create() -> Result<Self, ProvisionError> {
        let key = KeyPair::generate().map_err(cert_error(CA_COMMON_NAME))?;
        let mut params = named(CA_COMMON_NAME, Vec::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        set_validity(&mut params, CA_VALIDITY_YEARS);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(cert_error(CA_COMMON_NAME))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA written by [`FederationCa::create`] from its PEM texts.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("key: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| format!("cert: {e}"))?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// The CA certificate, PEM: every party's trust anchor.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues the aggregator's certificate, valid for each of `server_names` (DNS names or
    /// IP addresses, as nodes will dial it).
    pub fn issue_aggregator(&self, server_names: &[String]) -> Result<Credentials, ProvisionError> {
        if server_names.is_empty() {
            return Err(ProvisionError::NoServerName);
        }
        let mut params = named(AGGREGATOR_COMMON_NAME, server_names.to_vec()).map_err(|e| {
            ProvisionError::InvalidServerName {
                name: server_names.join(", "),
                reason: e.to_string(),
            }
        })?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, AGGREGATOR_COMMON_NAME)
    }

    /// Issues a merchant's client certificate; its common name is the merchant id.
    pub fn issue_merchant(&self, merchant: &str) -> Result<Credentials, ProvisionError> {
        check_merchant_id(merchant)?;
        let mut params = named(merchant, Vec::new())?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, merchant)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        subject: &str,
    ) -> Result<Credentials, ProvisionError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Limitation: there is no revocation list; a merchant removed from the federation
        // keeps a valid certificate until it expires (a CRL checked by the aggregator's
        // verifier, or a deny list of merchant ids, would lift it).
        set_validity(&mut params, LEAF_VALIDITY_YEARS);
        let key = KeyPair::generate().map_err(cert_error(subject))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_error(subject))?;
        Ok(Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// An [`Identity`] for `credentials` under this CA.
    pub fn identity(&self, credentials: &Credentials) -> Result<Identity, ProvisionError> {
        Ok(Identity::from_pem(
            self.cert_pem.as_bytes(),
            credentials.cert_pem.as_bytes(),
            credentials.key_pem.as_bytes(),
        )?)
    }
}

/// Refuses ids that would be unsafe as a folder name or confusing as a certificate name.
pub fn check_merchant_id(merchant: &str) -> Result<(), ProvisionError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let ok = !merchant.is_empty()
        && merchant.len() <= MAX_MERCHANT_ID_BYTES
        && merchant.chars().all(allowed)
        && !merchant.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(ProvisionError::InvalidMerchantId(merchant.to_string()))
    }
}

/// What one provisioning run did, file by file.
#[derive(Debug, Default)]
pub struct Report {
    /// True when the CA was created by this run (false: an existing one was kept).
    pub ca_created: bool,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
    /// Merchants issued by this run, with their folders.
    pub merchants_added: Vec<(MerchantId, PathBuf)>,
    /// Merchants that already had credentials and were left as they were.
    pub merchants_kept: Vec<MerchantId>,
}

/// Provisions (or extends) the federation in `out`; see the module docs for the layout.
pub fn provision(
    out: &Path,
    server_names: &[String],
    merchants: &[String],
) -> Result<Report, ProvisionError> {
    for merchant in merchants {
        check_merchant_id(merchant)?;
    }
    let mut report = Report::default();

    let ca = load_or_create_ca(out, &mut report)?;

    let aggregator = ca.issue_aggregator(server_names)?;
    let dir = out.join("aggregator");
    write_file(&dir.join("ca.pem"), ca.cert_pem(), false, &mut report)?;
    write_file(
        &dir.join("cert.pem"),
        &aggregator.cert_pem,
        false,
        &mut report,
    )?;
    write_file(&dir.join("key.pem"), &aggregator.key_pem, true, &mut report)?;

    for merchant in merchants {
        let dir = out.join("merchants").join(merchant);
        if dir.join("cert.pem").exists() {
            report.merchants_kept.push(merchant.clone());
            continue;
        }
        let credentials = ca.issue_merchant(merchant)?;
        write_file(&dir.join("ca.pem"), ca.cert_pem(), false, &mut report)?;
        write_file(
            &dir.join("cert.pem"),
            &credentials.cert_pem,
            false,
            &mut report,
        )?;
        write_file(
            &dir.join("key.pem"),
            &credentials.key_pem,
            true,
            &mut report,
        )?;
        report.merchants_added.push((merchant.clone(), dir));
    }
    Ok(report)
}

fn load_or_create_ca(out: &Path, report: &mut Report) -> Result<FederationCa, ProvisionError> {
    let cert_path = out.join("ca.pem");
    let key_path = out.join("ca.key");
    if cert_path.exists() {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| ProvisionError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        let cert = read(&cert_path)?;
        let key = read(&key_path)?;
        return FederationCa::load(&cert, &key).map_err(|reason| ProvisionError::ExistingCa {
            path: cert_path,
            reason,
        });
    }
    let ca = FederationCa::create()?;
    write_file(&cert_path, ca.cert_pem(), false, report)?;
    write_file(&key_path, &ca.key_pem, true, report)?;
    report.ca_created = true;
    Ok(ca)
}

/// Writes `contents` to `path`, creating folders; a secret gets mode 0600 from creation on.
fn write_file(
    path: &Path,
    contents: &str,
    secret: bool,
    report: &mut Report,
) -> Result<(), ProvisionError> {
    let io = |source| ProvisionError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    // An existing file keeps its old mode through `open`: set it explicitly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    report.written.push(path.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_ids_are_checked() {
        for good in ["merchant-001", "shop.berlin", "A_1"] {
            assert!(check_merchant_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            "-x",
            ".hidden",
            "späti",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(
                    check_merchant_id(bad),
                    Err(ProvisionError::InvalidMerchantId(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn issued_merchant_certificates_carry_the_id_as_common_name() {
        let ca = FederationCa::create().unwrap();
        let identity = ca
            .identity(&ca.issue_merchant("merchant-042").unwrap())
            .unwrap();
        assert_eq!(identity.common_name().unwrap(), "merchant-042");
        let server = ca
            .identity(
                &ca.issue_aggregator(&["agg.example".into(), "10.0.0.5".into()])
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(server.common_name().unwrap(), AGGREGATOR_COMMON_NAME);
    }

    #[test]
    fn a_rerun_keeps_the_ca_and_existing_merchants() {
        let out = tempfile::tempdir().unwrap();
        let first = provision(out.path(), &["localhost".into()], &["m1".into()]).unwrap();
        assert!(first.ca_created);
        let ca_before = fs::read(out.path().join("ca.pem")).unwrap();
        let m1_before = fs::read(out.path().join("merchants/m1/cert.pem")).unwrap();

        let second = provision(
            out.path(),
            &["localhost".into()],
            &["m1".into(), "m2".into()],
        )
        .unwrap();
        assert!(!second.ca_created);
        assert_eq!(second.merchants_kept, ["m1"]);
        assert_eq!(second.merchants_added.len(), 1);
        assert_eq!(fs::read(out.path().join("ca.pem")).unwrap(), ca_before);
        assert_eq!(
            fs::read(out.path().join("merchants/m1/cert.pem")).unwrap(),
            m1_before
        );

        for key in [
            "ca.key",
            "aggregator/key.pem",
            "merchants/m1/key.pem",
            "merchants/m2/key.pem",
        ] {
            let mode = fs::metadata(out.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    /// (not_before, not_after) years of a PEM certificate.
    fn validity_years(pem: &str) -> (i32, i32) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let validity = cert.validity();
        (
            validity.not_before.to_datetime().year(),
            validity.not_after.to_datetime().year(),
        )
    }

    #[test]
    fn certificates_expire_within_their_validity_years() {
        let ca = FederationCa::create().unwrap();
        let merchant = ca.issue_merchant("m").unwrap().cert_pem;
        assert_eq!(
            validity_years(&merchant),
            (this_year() - 1, this_year() + LEAF_VALIDITY_YEARS)
        );
        assert_eq!(
            validity_years(ca.cert_pem()).1,
            this_year() + CA_VALIDITY_YEARS
        );
    }

    #[test]
    fn no_server_name_is_refused() {
        let ca = FederationCa::create().unwrap();
        assert!(matches!(
            ca.issue_aggregator(&[]),
            Err(ProvisionError::NoServerName)
        ));
    }
}
