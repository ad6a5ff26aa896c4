//! Accepting nodes: the TLS handshake, the merchant's identity, and hello → welcome.
//!
//! Each arriving connection is handled in a task of its own, so a slow or hostile peer
//! never holds up the others. Nodes that complete the hello are handed on, with their
//! [`Link`], to whoever runs the rounds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hansa_protocol::messages::{ErrorCode, ErrorMessage, Hello, Welcome};
use hansa_protocol::{
    AggregatorEndpoint, Arriving, CloseCode, Link, LinkError, MerchantId, Message, Round,
};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn, Instrument};

/// The aggregator's software version, told to every node in its welcome.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the aggregator tells each node in its welcome; the round engine updates it as
/// rounds commit (through a `tokio::sync::watch` channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// The last committed round.
    pub current_round: Round,
    /// True while the federation has no initial model yet.
    pub wants_initial_model: bool,
}

/// A node that authenticated and said hello.
#[derive(Debug)]
pub struct JoinedNode {
    /// Its link; [`Link::merchant`] is the id from its certificate.
    pub link: Link,
    /// What it said in its hello.
    pub hello: Hello,
    /// Its network address (`None` over a memory link).
    pub peer: Option<SocketAddr>,
}

/// Why a node's hello was refused.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The first message was not a hello.
    #[error("merchant `{merchant}`: first message was `{kind}`, not `hello`")]
    NotHello {
        /// The merchant, from its certificate.
        merchant: MerchantId,
        /// The kind of message it sent.
        kind: &'static str,
    },
    /// The hello names another merchant than the certificate does.
    #[error("merchant `{merchant}`: hello claims to be `{claimed}`")]
    IdentityMismatch {
        /// The merchant, from its certificate.
        merchant: MerchantId,
        /// The id in the hello.
        claimed: MerchantId,
    },
    /// No hello arrived in time.
    #[error("merchant `{merchant}`: no hello within {timeout_ms} ms")]
    Timeout {
        /// The merchant, from its certificate.
        merchant: MerchantId,
        /// The wait, in milliseconds.
        timeout_ms: u64,
    },
    /// The link failed (bad frame, wrong version, closed).
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// Waits for the node's hello, checks it against the certificate, and answers with a
/// welcome carrying `standing`. A refused node is told why (the caller disconnects it).
pub async fn greet(
    link: &mut Link,
    standing: Standing,
    timeout: Duration,
) -> Result<Hello, HelloError> {
    let merchant = link.merchant().clone();
    let first = match tokio::time::timeout(timeout, link.recv()).await {
        Ok(message) => message?,
        Err(_) => {
            return Err(HelloError::Timeout {
                merchant,
                timeout_ms: timeout.as_millis() as u64,
            })
        }
    };
    let refusal = match first {
        Message::Hello(hello) if hello.merchant == merchant => {
            let welcome = Message::Welcome(Welcome {
                merchant,
                software_version: SOFTWARE_VERSION.to_string(),
                current_round: standing.current_round,
                wants_initial_model: standing.wants_initial_model,
            });
            link.send(&welcome).await?;
            return Ok(hello);
        }
        Message::Hello(hello) => HelloError::IdentityMismatch {
            merchant,
            claimed: hello.merchant,
        },
        other => HelloError::NotHello {
            merchant,
            kind: other.kind(),
        },
    };
    let code = match refusal {
        HelloError::IdentityMismatch { .. } => ErrorCode::IdentityMismatch,
        _ => ErrorCode::UnexpectedMessage,
    };
    let error = Message::Error(ErrorMessage {
        code,
        detail: refusal.to_string(),
    });
    // The refusal is what matters; a failure to deliver it changes nothing.
    let _ = link.send(&error).await;
    Err(refusal)
}

/// Accepts nodes until the endpoint closes or `joined` is dropped, handing on each node
/// that completes its hello. Refusals are logged with the peer address and the reason.
pub async fn accept_nodes(
    endpoint: Arc<AggregatorEndpoint>,
    joined: mpsc::Sender<JoinedNode>,
    standing: watch::Receiver<Standing>,
    hello_timeout: Duration,
) {
    loop {
        let arriving = tokio::select! {
            arriving = endpoint.accept() => arriving,
            () = joined.closed() => return,
        };
        let Some(arriving) = arriving else { return };
        let peer = arriving.remote_address();
        let joined = joined.clone();
        let standing = *standing.borrow();
        let span = tracing::info_span!("node", %peer);
        tokio::spawn(
            async move {
                if let Some(node) = admit(arriving, standing, hello_timeout).await {
                    let _ = joined.send(node).await;
                }
            }
            .instrument(span),
        );
    }
}

/// Handshake and hello for one connection; `None` (logged) when the node is refused.
async fn admit(arriving: Arriving, standing: Standing, timeout: Duration) -> Option<JoinedNode> {
    let peer = arriving.remote_address();
    let mut link = match arriving.establish().await {
        Ok(link) => link,
        Err(e) => {
            warn!(%peer, reason = %e, "refused at the handshake");
            return None;
        }
    };
    let merchant = link.merchant().clone();
    match greet(&mut link, standing, timeout).await {
        Ok(hello) => {
            info!(
                %merchant,
                %peer,
                software_version = %hello.software_version,
                "merchant joined"
            );
            Some(JoinedNode {
                link,
                hello,
                peer: Some(peer),
            })
        }
        Err(e) => {
            warn!(%merchant, %peer, reason = %e, "hello refused");
            link.close(CloseCode::ProtocolViolation, &e.to_string())
                .await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hansa_protocol::memory_pair;

    fn hello(merchant: &str) -> Message {
        Message::Hello(Hello {
            merchant: merchant.into(),
            software_version: "9.9.9".into(),
            last_round_seen: Some(4),
        })
    }

    #[tokio::test]
    async fn a_matching_hello_is_welcomed_with_the_current_round() {
        let (mut aggregator, mut node) = memory_pair("merchant-001");
        node.send(&hello("merchant-001")).await.unwrap();
        let standing = Standing {
            current_round: 5,
            wants_initial_model: true,
        };
        let got = greet(&mut aggregator, standing, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(got.last_round_seen, Some(4));
        match node.recv().await.unwrap() {
            Message::Welcome(w) => {
                assert_eq!(w.merchant, "merchant-001");
                assert_eq!(w.current_round, 5);
                assert!(w.wants_initial_model);
                assert_eq!(w.software_version, SOFTWARE_VERSION);
            }
            other => panic!("{}", other.kind()),
        }
    }

    #[tokio::test]
    async fn a_hello_claiming_another_merchant_is_refused_and_told() {
        let (mut aggregator, mut node) = memory_pair("merchant-001");
        node.send(&hello("merchant-002")).await.unwrap();
        let err = greet(&mut aggregator, Standing::default(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HelloError::IdentityMismatch { merchant, claimed }
                if merchant == "merchant-001" && claimed == "merchant-002"),
            "{err}"
        );
        match node.recv().await.unwrap() {
            Message::Error(e) => assert_eq!(e.code, ErrorCode::IdentityMismatch),
            other => panic!("{}", other.kind()),
        }
    }

    #[tokio::test]
    async fn another_first_message_is_refused() {
        let (mut aggregator, mut node) = memory_pair("m");
        let decline = Message::Decline(hansa_protocol::messages::Decline {
            round: 1,
            reason: "no".into(),
        });
        node.send(&decline).await.unwrap();
        let err = greet(&mut aggregator, Standing::default(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                HelloError::NotHello {
                    kind: "decline",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (mut aggregator, _node) = memory_pair("m");
        let err = greet(
            &mut aggregator,
            Standing::default(),
            Duration::from_millis(20),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, HelloError::Timeout { timeout_ms: 20, .. }),
            "{err}"
        );
    }
}
