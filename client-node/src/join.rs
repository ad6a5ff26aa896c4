//! Joining the federation: dial the aggregator, authenticate, say hello, read the welcome.

use hansa_protocol::messages::{Hello, Welcome};
use hansa_protocol::{
    connect, HandshakeError, Identity, Link, LinkError, MerchantId, Message, Round,
    TransportSettings,
};
use tracing::info;

/// The node's software version, told to the aggregator in its hello.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The aggregator's address did not resolve.
    #[error("aggregator address `{addr}` does not resolve: {reason}")]
    Resolve {
        /// The address as configured.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The QUIC or TLS handshake failed, or the aggregator refused this node's
    /// certificate (whichever side noticed first).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The link failed during hello (for instance the aggregator refused the certificate).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The aggregator answered the hello with an error.
    #[error("the aggregator refused merchant `{merchant}`: {detail}")]
    Refused {
        /// This node's merchant id.
        merchant: MerchantId,
        /// The aggregator's words.
        detail: String,
    },
    /// The aggregator answered with something other than a welcome.
    #[error("the aggregator answered the hello with `{kind}`")]
    Unexpected {
        /// The message kind.
        kind: &'static str,
    },
}

/// Dials `aggregator` (`host:port`), verifies it under `server_name`, says hello as the
/// merchant of `identity`'s certificate, and returns the link with the welcome.
pub async fn join(
    aggregator: &str,
    server_name: &str,
    identity: &Identity,
    settings: &TransportSettings,
    last_round_seen: Option<Round>,
) -> Result<(Link, Welcome), JoinError> {
    let addr = tokio::net::lookup_host(aggregator)
        .await
        .map_err(|e| JoinError::Resolve {
            addr: aggregator.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| JoinError::Resolve {
            addr: aggregator.to_string(),
            reason: "no address".into(),
        })?;
    let mut link = connect(addr, server_name, identity, settings).await?;
    let merchant = link.merchant().clone();
    let hello = Message::Hello(Hello {
        merchant: merchant.clone(),
        software_version: SOFTWARE_VERSION.to_string(),
        last_round_seen,
    });
    // A refusal of this node's certificate may only show once the link is used.
    let refused = |e: LinkError| match e {
        LinkError::Refused { source, .. } => JoinError::Handshake(*source),
        other => JoinError::Link(other),
    };
    link.send(&hello).await.map_err(refused)?;
    match link.recv().await.map_err(refused)? {
        Message::Welcome(welcome) => {
            info!(
                %merchant,
                aggregator = %addr,
                current_round = welcome.current_round,
                aggregator_version = %welcome.software_version,
                "joined the federation"
            );
            Ok((link, welcome))
        }
        Message::Error(e) => Err(JoinError::Refused {
            merchant,
            detail: e.detail,
        }),
        other => Err(JoinError::Unexpected { kind: other.kind() }),
    }
}
