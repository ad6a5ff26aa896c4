//! Test credentials and a small aggregator that answers hellos and reports what it saw.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use hansa_protocol::messages::{Hello, Welcome};
use hansa_protocol::{
    AggregatorEndpoint, HandshakeError, Identity, LinkError, MerchantId, Message, TransportSettings,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::sync::mpsc;

/// A certificate authority that signs test certificates.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn params(common_name: &str, sans: &[&str]) -> CertificateParams {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = params(name, &[]);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// Certificate and key PEM for a leaf, valid now unless `expired`.
    pub fn leaf(
        &self,
        common_name: &str,
        sans: &[&str],
        server: bool,
        expired: bool,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = params(common_name, sans);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn aggregator(&self) -> Identity {
        let (cert, key) = self.leaf("hansa-aggregator", &["localhost", "127.0.0.1"], true, false);
        Identity::from_pem(self.pem.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap()
    }

    /// A merchant identity trusting `trusted` (the federation CA) and signed by `self`.
    pub fn merchant(&self, id: &str, trusted: &TestCa, expired: bool) -> Identity {
        let (cert, key) = self.leaf(id, &[], false, expired);
        Identity::from_pem(trusted.pem.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap()
    }
}

/// What the test aggregator saw on one connection.
#[derive(Debug)]
pub enum Seen {
    Refused(HandshakeError),
    Hello(MerchantId, Hello),
    Failed(MerchantId, LinkError),
}

/// Serves hellos on 127.0.0.1 until dropped; every connection's outcome goes to the channel.
pub fn serve(
    identity: &Identity,
    settings: TransportSettings,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let endpoint =
        AggregatorEndpoint::bind("127.0.0.1:0".parse().unwrap(), identity, settings).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let endpoint = Arc::new(endpoint);
    tokio::spawn(async move {
        while let Some(arriving) = endpoint.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut link = match arriving.establish().await {
                    Ok(link) => link,
                    Err(e) => {
                        let _ = tx.send(Seen::Refused(e));
                        return;
                    }
                };
                let merchant = link.merchant().clone();
                loop {
                    match link.recv().await {
                        Ok(Message::Hello(hello)) => {
                            let welcome = Message::Welcome(Welcome {
                                merchant: merchant.clone(),
                                software_version: "test".into(),
                                current_round: 0,
                                wants_initial_model: false,
                            });
                            let _ = link.send(&welcome).await;
                            let _ = tx.send(Seen::Hello(merchant.clone(), hello));
                        }
                        Ok(other) => panic!("unexpected {}", other.kind()),
                        Err(e) => {
                            let _ = tx.send(Seen::Failed(merchant, e));
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

pub fn hello(merchant: &str) -> Message {
    Message::Hello(Hello {
        merchant: merchant.into(),
        software_version: "0.1.0".into(),
        last_round_seen: None,
    })
}

/// A raw quinn client with a rustls config of the test's choosing.
pub async fn raw_connect(
    addr: SocketAddr,
    tls: rustls::ClientConfig,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(tls)));
    endpoint.connect(addr, "localhost").unwrap().await
}
