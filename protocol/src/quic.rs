//! QUIC endpoints over mutual TLS: the aggregator's listening endpoint and a node's dial.
//!
//! Liveness comes from QUIC keep-alives, not from training time: a node that trains for
//! an hour stays connected as long as its keep-alives arrive within the idle timeout.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::ConnectionError;
use serde::{Deserialize, Serialize};

use crate::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::link::Link;
use crate::messages::MerchantId;
use crate::tls::{common_name, Identity, TlsError};

/// Connection settings shared by both ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSettings {
    /// Interval between QUIC keep-alive packets, in milliseconds. Default 5 000.
    pub keep_alive_interval_ms: u64,
    /// A connection with no packet from the peer for this long is dead, in milliseconds.
    /// Must exceed the keep-alive interval. Default 30 000.
    pub idle_timeout_ms: u64,
    /// Hard limit on one frame, in bytes. Default 2 GiB ([`DEFAULT_MAX_FRAME_BYTES`]).
    pub max_frame_bytes: u64,
    /// How long the aggregator waits for a connected node to open its stream, in
    /// milliseconds. Default 10 000.
    pub hello_timeout_ms: u64,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            keep_alive_interval_ms: 5_000,
            idle_timeout_ms: 30_000,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            hello_timeout_ms: 10_000,
        }
    }
}

/// Per-stream receive window, in bytes. 16 MiB lets one stream fill a fast loopback or
/// LAN path (the default 1.25 MiB caps a stream near 100 MB/s at 10 ms RTT).
const STREAM_WINDOW_BYTES: u32 = 16 << 20;

impl TransportSettings {
    /// The quinn transport configuration these settings describe.
    pub fn quinn_config(&self) -> Result<quinn::TransportConfig, TransportError> {
        if self.idle_timeout_ms <= self.keep_alive_interval_ms {
            return Err(TransportError::Settings(format!(
                "idle_timeout_ms ({}) must exceed keep_alive_interval_ms ({})",
                self.idle_timeout_ms, self.keep_alive_interval_ms
            )));
        }
        let idle = quinn::IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms))
            .map_err(|_| {
                TransportError::Settings(format!(
                    "idle_timeout_ms {} too large",
                    self.idle_timeout_ms
                ))
            })?;
        let mut config = quinn::TransportConfig::default();
        config
            .keep_alive_interval(Some(Duration::from_millis(self.keep_alive_interval_ms)))
            .max_idle_timeout(Some(idle))
            .stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW_BYTES))
            .send_window(u64::from(STREAM_WINDOW_BYTES) * 2);
        Ok(config)
    }
}

/// Errors setting up an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The credentials could not be turned into a TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A setting is out of range.
    #[error("transport settings: {0}")]
    Settings(String),
    /// The UDP socket could not be bound or queried.
    #[error("UDP socket on {addr}: {source}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The I/O failure.
        source: std::io::Error,
    },
}

/// Why a connection did not become a [`Link`]. TLS refusals are told apart by the alert the
/// handshake ended with, on whichever side raised it.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The node presented no client certificate.
    #[error("peer {peer}: no client certificate presented")]
    NoClientCertificate {
        /// Remote address.
        peer: SocketAddr,
    },
    /// A certificate does not chain to the federation CA: its issuer is unknown, or it
    /// names the CA but the CA's signature does not verify (another CA of the same name).
    #[error("peer {peer}: certificate not signed by the federation CA ({detail})")]
    UnknownIssuer {
        /// Remote address.
        peer: SocketAddr,
        /// The TLS layer's words.
        detail: String,
    },
    /// A certificate is outside its validity period.
    #[error("peer {peer}: certificate expired or not yet valid ({detail})")]
    ExpiredCertificate {
        /// Remote address.
        peer: SocketAddr,
        /// The TLS layer's words.
        detail: String,
    },
    /// Any other TLS refusal (bad name, bad signature, wrong ALPN, ...).
    #[error("peer {peer}: TLS handshake refused (alert {alert}): {detail}")]
    Tls {
        /// Remote address.
        peer: SocketAddr,
        /// TLS alert number.
        alert: u8,
        /// The TLS layer's words.
        detail: String,
    },
    /// The certificate was accepted but names no usable merchant.
    #[error("peer {peer}: {source}")]
    Identity {
        /// Remote address.
        peer: SocketAddr,
        /// Why.
        source: TlsError,
    },
    /// The node connected but opened no stream in time.
    #[error("peer {peer}: no stream opened within {timeout_ms} ms")]
    HelloTimeout {
        /// Remote address.
        peer: SocketAddr,
        /// The wait, in milliseconds.
        timeout_ms: u64,
    },
    /// The connection failed for a reason other than TLS.
    #[error("peer {peer}: connection failed: {source}")]
    Connection {
        /// Remote address.
        peer: SocketAddr,
        /// quinn's error.
        source: ConnectionError,
    },
    /// The dial could not start (bad server name, endpoint closed).
    #[error("cannot dial {peer}: {reason}")]
    Dial {
        /// Remote address.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The local endpoint could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// TLS alert numbers (RFC 8446 §6) that name a certificate problem.
const ALERT_CERTIFICATE_EXPIRED: u8 = 45;
/// Sent by rustls for a certificate whose signature does not verify (`BadSignature`).
const ALERT_DECRYPT_ERROR: u8 = 51;
const ALERT_UNKNOWN_CA: u8 = 48;
const ALERT_CERTIFICATE_REQUIRED: u8 = 116;

impl HandshakeError {
    /// Classifies a connection failure by its TLS alert, if it carries one.
    pub fn from_connection(peer: SocketAddr, source: ConnectionError) -> Self {
        let (code, detail) = match &source {
            ConnectionError::TransportError(e) => (u64::from(e.code), e.reason.clone()),
            ConnectionError::ConnectionClosed(c) => (
                u64::from(c.error_code),
                String::from_utf8_lossy(&c.reason).into_owned(),
            ),
            _ => return HandshakeError::Connection { peer, source },
        };
        // QUIC carries a TLS alert as transport error 0x100 + alert (RFC 9001 §4.8).
        let Some(alert) = code.checked_sub(0x100).and_then(|a| u8::try_from(a).ok()) else {
            return HandshakeError::Connection { peer, source };
        };
        match alert {
            ALERT_CERTIFICATE_REQUIRED => HandshakeError::NoClientCertificate { peer },
            ALERT_UNKNOWN_CA | ALERT_DECRYPT_ERROR => {
                HandshakeError::UnknownIssuer { peer, detail }
            }
            ALERT_CERTIFICATE_EXPIRED => HandshakeError::ExpiredCertificate { peer, detail },
            alert => HandshakeError::Tls {
                peer,
                alert,
                detail,
            },
        }
    }
}

/// The aggregator's listening endpoint.
#[derive(Debug)]
pub struct AggregatorEndpoint {
    endpoint: quinn::Endpoint,
    settings: TransportSettings,
}

impl AggregatorEndpoint {
    /// Binds a UDP socket on `addr` and serves QUIC with mutual TLS for `identity`
    /// (the aggregator's certificate and key, and the federation CA).
    /// Must be called inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        identity: &Identity,
        settings: TransportSettings,
    ) -> Result<Self, TransportError> {
        let tls = QuicServerConfig::try_from(identity.server_config()?)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(tls));
        config.transport_config(Arc::new(settings.quinn_config()?));
        let endpoint = quinn::Endpoint::server(config, addr)
            .map_err(|source| TransportError::Socket { addr, source })?;
        Ok(Self { endpoint, settings })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint
            .local_addr()
            .map_err(|source| TransportError::Socket {
                addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                source,
            })
    }

    /// Waits for the next connection attempt; `None` once the endpoint is closed.
    /// Handshakes run in [`Arriving::establish`], so one slow or hostile peer never holds
    /// up the accept loop.
    pub async fn accept(&self) -> Option<Arriving> {
        let incoming = self.endpoint.accept().await?;
        Some(Arriving {
            incoming,
            settings: self.settings.clone(),
        })
    }

    /// Stops accepting, closes every connection with `code` and `reason`, and waits (at
    /// most a second) for the peers to be told.
    pub async fn shutdown(&self, code: crate::link::CloseCode, reason: &str) {
        self.endpoint.close(code.varint(), reason.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// A connection attempt not yet authenticated.
#[derive(Debug)]
#[must_use = "an arriving connection must be established or dropped"]
pub struct Arriving {
    incoming: quinn::Incoming,
    settings: TransportSettings,
}

impl Arriving {
    /// The peer's address, before anything about it is verified.
    pub fn remote_address(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Runs the TLS handshake (client certificate required), reads the merchant id from
    /// the certificate's common name and accepts the node's stream.
    pub async fn establish(self) -> Result<Link, HandshakeError> {
        let peer = self.incoming.remote_address();
        let connection = match self.incoming.await {
            Ok(connection) => connection,
            Err(e) => return Err(HandshakeError::from_connection(peer, e)),
        };
        let merchant = peer_merchant(&connection)
            .map_err(|source| HandshakeError::Identity { peer, source })?;

        let timeout = Duration::from_millis(self.settings.hello_timeout_ms);
        let (send, recv) = match tokio::time::timeout(timeout, connection.accept_bi()).await {
            Ok(Ok(streams)) => streams,
            Ok(Err(e)) => return Err(HandshakeError::from_connection(peer, e)),
            Err(_) => {
                connection.close(
                    crate::link::CloseCode::ProtocolViolation.varint(),
                    b"no stream opened in time",
                );
                return Err(HandshakeError::HelloTimeout {
                    peer,
                    timeout_ms: self.settings.hello_timeout_ms,
                });
            }
        };
        Ok(Link::over_quic(
            merchant,
            connection,
            send,
            recv,
            self.settings.max_frame_bytes,
            None,
        ))
    }
}

/// The merchant id in the peer's (already verified) certificate.
fn peer_merchant(connection: &quinn::Connection) -> Result<MerchantId, TlsError> {
    let certs = connection
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| TlsError::CommonName("the peer presented no certificate".into()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::CommonName("the peer's certificate chain is empty".into()))?;
    common_name(leaf)
}

/// Dials the aggregator at `addr`, verifying it under `server_name` (a DNS name or an IP
/// address in its certificate) against the federation CA and presenting `identity`.
/// The link is ready to send; its merchant is this node's own (its certificate's common
/// name). A refusal of this node's certificate by the aggregator surfaces on the first
/// `recv`, as TLS 1.3 lets the client finish before the server has checked it.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    identity: &Identity,
    settings: &TransportSettings,
) -> Result<Link, HandshakeError> {
    let merchant = identity
        .common_name()
        .map_err(|source| HandshakeError::Identity { peer: addr, source })?;
    let tls = QuicClientConfig::try_from(identity.client_config().map_err(TransportError::from)?)
        .map_err(|e| TransportError::Tls(TlsError::Quic(e.to_string())))?;
    let mut config = quinn::ClientConfig::new(Arc::new(tls));
    config.transport_config(Arc::new(settings.quinn_config()?));

    let local: SocketAddr = if addr.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(local).map_err(|source| TransportError::Socket {
        addr: local,
        source,
    })?;
    endpoint.set_default_client_config(config);

    let connecting = endpoint
        .connect(addr, server_name)
        .map_err(|e| HandshakeError::Dial {
            peer: addr,
            reason: e.to_string(),
        })?;
    let connection = connecting
        .await
        .map_err(|e| HandshakeError::from_connection(addr, e))?;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| HandshakeError::from_connection(addr, e))?;
    Ok(Link::over_quic(
        merchant,
        connection,
        send,
        recv,
        settings.max_frame_bytes,
        Some(endpoint),
    ))
}
