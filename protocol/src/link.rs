//! A [`Link`]: one node's conversation with the aggregator, over QUIC or in memory.
//!
//! The round engine sees only this type. On the aggregator side a link's merchant is read
//! from the node's certificate; on the node side it is the node's own merchant id. Either
//! way [`Link::merchant`] names the merchant at the node end. [`Link::split`] gives a
//! sending and a receiving half so that an engine can wait on many nodes at once.
//!
//! [`LinkReceiver::recv`] is cancel-safe (a frame is read by a task of its own and handed
//! over whole), so it can sit in `tokio::select!` or under `tokio::time::timeout`.
//! [`LinkSender::send`] is not: a send dropped midway leaves the stream inside a frame,
//! and the link must then be closed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::frame::{read_frame, write_frame, FrameError};
use crate::messages::{Envelope, MerchantId, Message, PROTOCOL_VERSION};
use crate::quic::HandshakeError;

// Limitation: a QUIC link carries every message on one bidirectional stream, so a large
// message delays the small ones queued behind it on the same link (one stream per message,
// with sequence numbers, would lift it). Other nodes' links are unaffected.

/// Messages a memory link holds in flight per direction before `send` waits.
const MEMORY_LINK_CAPACITY: usize = 16;

/// Decoded messages a QUIC link reads ahead of the engine. Two keeps the stream busy while
/// bounding memory to two messages per node.
const READ_AHEAD_MESSAGES: usize = 2;

/// QUIC application close codes Hansa uses, so a peer can tell why it was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// Orderly close: the conversation is over.
    Done = 0,
    /// The peer sent a frame over the limit.
    FrameTooLarge = 1,
    /// The peer's stream ended inside a frame.
    Truncated = 2,
    /// The peer sent bytes that are not a message.
    Decode = 3,
    /// The peer speaks another protocol version.
    UnsupportedVersion = 4,
    /// The peer broke the conversation's rules (wrong first message, identity mismatch).
    ProtocolViolation = 5,
    /// The process is shutting down.
    Shutdown = 6,
}

impl CloseCode {
    /// The code for a frame error.
    pub fn for_frame_error(error: &FrameError) -> Self {
        match error {
            FrameError::FrameTooLarge { .. } => CloseCode::FrameTooLarge,
            FrameError::Truncated { .. } => CloseCode::Truncated,
            FrameError::UnsupportedVersion { .. } => CloseCode::UnsupportedVersion,
            FrameError::Decode(_) | FrameError::Encode { .. } | FrameError::Io(_) => {
                CloseCode::Decode
            }
        }
    }

    /// The QUIC varint of this code.
    pub fn varint(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self as u32)
    }
}

/// Why a link could not send or receive.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A frame from or to the merchant was refused.
    #[error("link of merchant `{merchant}`: {source}")]
    Frame {
        /// The merchant at the node end.
        merchant: MerchantId,
        /// The frame error.
        #[source]
        source: FrameError,
    },
    /// The aggregator refused this node's certificate after the node's side of the TLS
    /// handshake had finished (TLS 1.3 allows it): the refusal arrives on the link.
    #[error("link of merchant `{merchant}`: {source}")]
    Refused {
        /// The merchant at the node end.
        merchant: MerchantId,
        /// The refusal, classified by its TLS alert.
        #[source]
        source: Box<HandshakeError>,
    },
    /// The link is gone: the peer closed it, the connection was lost, or it timed out.
    #[error("link of merchant `{merchant}` closed: {reason}")]
    Closed {
        /// The merchant at the node end.
        merchant: MerchantId,
        /// What closed it, as the transport tells it.
        reason: String,
    },
}

/// One node's two-way conversation with the aggregator.
#[derive(Debug)]
pub struct Link {
    sender: LinkSender,
    receiver: LinkReceiver,
}

/// The sending half of a [`Link`].
#[derive(Debug)]
pub struct LinkSender {
    merchant: MerchantId,
    side: SendSide,
}

#[derive(Debug)]
enum SendSide {
    Quic {
        stream: quinn::SendStream,
        connection: quinn::Connection,
        max_frame_bytes: u64,
        /// A node's own client endpoint, kept so that closing can wait for the close to
        /// reach the aggregator; `None` on the aggregator side.
        endpoint: Option<quinn::Endpoint>,
    },
    Memory(mpsc::Sender<Envelope>),
}

/// The receiving half of a [`Link`].
#[derive(Debug)]
pub struct LinkReceiver {
    merchant: MerchantId,
    side: ReceiveSide,
}

#[derive(Debug)]
enum ReceiveSide {
    /// Messages decoded by the link's reader task.
    Inbox(mpsc::Receiver<Result<Message, LinkError>>),
    Memory(mpsc::Receiver<Envelope>),
}

/// Returns `(aggregator_side, node_side)` of an in-memory link for `merchant`, with the
/// same semantics as a QUIC link (versions checked, closing by dropping) and no sockets.
pub fn memory_pair(merchant: impl Into<MerchantId>) -> (Link, Link) {
    let merchant = merchant.into();
    let (to_node, node_inbox) = mpsc::channel(MEMORY_LINK_CAPACITY);
    let (to_aggregator, aggregator_inbox) = mpsc::channel(MEMORY_LINK_CAPACITY);
    let half = |tx, rx| Link {
        sender: LinkSender {
            merchant: merchant.clone(),
            side: SendSide::Memory(tx),
        },
        receiver: LinkReceiver {
            merchant: merchant.clone(),
            side: ReceiveSide::Memory(rx),
        },
    };
    (
        half(to_node, aggregator_inbox),
        half(to_aggregator, node_inbox),
    )
}

impl Link {
    /// A link over one QUIC bidirectional stream. Spawns the stream's reader task, so it
    /// must be called inside a tokio runtime.
    pub(crate) fn over_quic(
        merchant: MerchantId,
        connection: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        max_frame_bytes: u64,
        endpoint: Option<quinn::Endpoint>,
    ) -> Self {
        let (inbox_tx, inbox) = mpsc::channel(READ_AHEAD_MESSAGES);
        tokio::spawn(read_loop(
            merchant.clone(),
            connection.clone(),
            recv,
            inbox_tx,
            max_frame_bytes,
        ));
        Self {
            sender: LinkSender {
                merchant: merchant.clone(),
                side: SendSide::Quic {
                    stream: send,
                    connection,
                    max_frame_bytes,
                    endpoint,
                },
            },
            receiver: LinkReceiver {
                merchant,
                side: ReceiveSide::Inbox(inbox),
            },
        }
    }

    /// The merchant at the node end of this link.
    pub fn merchant(&self) -> &MerchantId {
        &self.sender.merchant
    }

    /// The peer's network address; `None` for a memory link.
    pub fn remote_address(&self) -> Option<SocketAddr> {
        self.sender.remote_address()
    }

    /// Sends one message (see [`LinkSender::send`]).
    pub async fn send(&mut self, message: &Message) -> Result<(), LinkError> {
        self.sender.send(message).await
    }

    /// Receives the next message (see [`LinkReceiver::recv`]).
    pub async fn recv(&mut self) -> Result<Message, LinkError> {
        self.receiver.recv().await
    }

    /// Splits the link so that sending and receiving can happen in different tasks.
    pub fn split(self) -> (LinkSender, LinkReceiver) {
        (self.sender, self.receiver)
    }

    /// Rejoins halves split from the same link.
    pub fn unsplit(sender: LinkSender, receiver: LinkReceiver) -> Self {
        debug_assert_eq!(
            sender.merchant, receiver.merchant,
            "halves of different links"
        );
        Self { sender, receiver }
    }

    /// Closes the link with a code and a reason the peer will see (see
    /// [`LinkSender::close`]).
    pub async fn close(self, code: CloseCode, reason: &str) {
        self.sender.close(code, reason).await;
    }
}

impl LinkSender {
    /// The merchant at the node end of this link.
    pub fn merchant(&self) -> &MerchantId {
        &self.merchant
    }

    /// The peer's network address; `None` for a memory link.
    pub fn remote_address(&self) -> Option<SocketAddr> {
        match &self.side {
            SendSide::Quic { connection, .. } => Some(connection.remote_address()),
            SendSide::Memory(_) => None,
        }
    }

    /// Sends one message with this build's protocol version. Tensor values are streamed
    /// from the message itself. Not cancel-safe (see the module docs).
    pub async fn send(&mut self, message: &Message) -> Result<(), LinkError> {
        self.send_with_version(PROTOCOL_VERSION, message).await
    }

    /// Sends with an explicit protocol version: for tests of version refusal only.
    #[doc(hidden)]
    pub async fn send_with_version(
        &mut self,
        version: u16,
        message: &Message,
    ) -> Result<(), LinkError> {
        match &mut self.side {
            SendSide::Quic {
                stream,
                connection,
                max_frame_bytes,
                ..
            } => match write_frame(stream, version, message, *max_frame_bytes).await {
                Ok(()) => Ok(()),
                Err(FrameError::Io(e)) => Err(gone(&self.merchant, connection, e.to_string())),
                Err(source) => Err(LinkError::Frame {
                    merchant: self.merchant.clone(),
                    source,
                }),
            },
            SendSide::Memory(tx) => {
                // Limitation: `send` borrows the message, so a memory link clones it (a
                // `send_owned` taking the message by value would avoid the copy).
                let envelope = Envelope {
                    version,
                    message: message.clone(),
                };
                tx.send(envelope).await.map_err(|_| LinkError::Closed {
                    merchant: self.merchant.clone(),
                    reason: "the other end of the memory link was dropped".into(),
                })
            }
        }
    }

    /// Closes the link with a code and a reason the peer will see. On a node, waits (at
    /// most a second) until the aggregator has been told. A memory link closes for the
    /// peer once both halves are dropped.
    pub async fn close(self, code: CloseCode, reason: &str) {
        if let SendSide::Quic {
            connection,
            endpoint,
            ..
        } = self.side
        {
            connection.close(code.varint(), reason.as_bytes());
            if let Some(endpoint) = endpoint {
                let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
            }
        }
    }
}

impl LinkReceiver {
    /// The merchant at the node end of this link.
    pub fn merchant(&self) -> &MerchantId {
        &self.merchant
    }

    /// Receives the next message. Cancel-safe. After a frame error the connection has
    /// been closed with the matching [`CloseCode`] and later calls return
    /// [`LinkError::Closed`].
    pub async fn recv(&mut self) -> Result<Message, LinkError> {
        let closed = |merchant: &MerchantId, reason: &str| LinkError::Closed {
            merchant: merchant.clone(),
            reason: reason.to_string(),
        };
        match &mut self.side {
            ReceiveSide::Inbox(inbox) => match inbox.recv().await {
                Some(result) => result,
                None => Err(closed(&self.merchant, "the link is closed")),
            },
            ReceiveSide::Memory(inbox) => match inbox.recv().await {
                Some(envelope) if envelope.version == PROTOCOL_VERSION => Ok(envelope.message),
                Some(envelope) => {
                    inbox.close();
                    Err(LinkError::Frame {
                        merchant: self.merchant.clone(),
                        source: FrameError::UnsupportedVersion {
                            got: envelope.version,
                            supported: PROTOCOL_VERSION,
                        },
                    })
                }
                None => Err(closed(
                    &self.merchant,
                    "the other end of the memory link was dropped",
                )),
            },
        }
    }
}

/// The error for a link whose connection is gone: a TLS refusal by its alert, else the
/// transport's reason, else `fallback`.
fn gone(merchant: &MerchantId, connection: &quinn::Connection, fallback: String) -> LinkError {
    let Some(reason) = connection.close_reason() else {
        return LinkError::Closed {
            merchant: merchant.clone(),
            reason: fallback,
        };
    };
    match HandshakeError::from_connection(connection.remote_address(), reason) {
        HandshakeError::Connection { source, .. } => LinkError::Closed {
            merchant: merchant.clone(),
            reason: source.to_string(),
        },
        refusal => LinkError::Refused {
            merchant: merchant.clone(),
            source: Box::new(refusal),
        },
    }
}

/// Reads frames from one stream until it ends, fails, or nobody listens any more.
/// A frame error closes the connection with its [`CloseCode`] and the error's text.
async fn read_loop(
    merchant: MerchantId,
    connection: quinn::Connection,
    mut stream: quinn::RecvStream,
    inbox: mpsc::Sender<Result<Message, LinkError>>,
    max_frame_bytes: u64,
) {
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut stream, max_frame_bytes) => frame,
            () = inbox.closed() => return,
        };
        let item = match frame {
            Ok(Some(message)) => Ok(message),
            Ok(None) => {
                debug!(%merchant, "peer finished its stream");
                Err(gone(
                    &merchant,
                    &connection,
                    "the peer finished its stream".into(),
                ))
            }
            Err(FrameError::Io(e)) => Err(gone(&merchant, &connection, e.to_string())),
            Err(source) => {
                let code = CloseCode::for_frame_error(&source);
                warn!(
                    %merchant,
                    peer = %connection.remote_address(),
                    error = %source,
                    "closing the connection on a bad frame"
                );
                connection.close(code.varint(), source.to_string().as_bytes());
                Err(LinkError::Frame {
                    merchant: merchant.clone(),
                    source,
                })
            }
        };
        let stop = item.is_err();
        if inbox.send(item).await.is_err() || stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Decline, Hello};

    fn hello() -> Message {
        Message::Hello(Hello {
            merchant: "merchant-004".into(),
            software_version: "0.1.0".into(),
            last_round_seen: None,
        })
    }

    #[tokio::test]
    async fn memory_pair_carries_messages_both_ways() {
        let (mut aggregator, mut node) = memory_pair("merchant-004");
        assert_eq!(aggregator.merchant(), "merchant-004");
        assert_eq!(node.merchant(), "merchant-004");
        assert_eq!(aggregator.remote_address(), None);
        node.send(&hello()).await.unwrap();
        assert_eq!(aggregator.recv().await.unwrap(), hello());
        let decline = Message::Decline(Decline {
            round: 3,
            reason: "budget".into(),
        });
        aggregator.send(&decline).await.unwrap();
        assert_eq!(node.recv().await.unwrap(), decline);
    }

    #[tokio::test]
    async fn split_halves_work_from_separate_tasks() {
        let (aggregator, mut node) = memory_pair("m");
        let (mut tx, mut rx) = aggregator.split();
        let echo = tokio::spawn(async move {
            let message = rx.recv().await.unwrap();
            tx.send(&message).await.unwrap();
        });
        node.send(&hello()).await.unwrap();
        assert_eq!(node.recv().await.unwrap(), hello());
        echo.await.unwrap();
    }

    #[tokio::test]
    async fn dropping_one_side_closes_the_other() {
        let (aggregator, mut node) = memory_pair("merchant-009");
        drop(aggregator);
        let err = node.recv().await.unwrap_err();
        assert!(
            matches!(&err, LinkError::Closed { merchant, .. } if merchant == "merchant-009"),
            "{err}"
        );
        assert!(matches!(
            node.send(&hello()).await,
            Err(LinkError::Closed { .. })
        ));
    }

    #[tokio::test]
    async fn memory_link_refuses_an_unknown_version() {
        let (mut aggregator, node) = memory_pair("m");
        let (mut tx, _rx) = node.split();
        tx.send_with_version(42, &hello()).await.unwrap();
        let err = aggregator.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                LinkError::Frame {
                    source: FrameError::UnsupportedVersion {
                        got: 42,
                        supported: PROTOCOL_VERSION
                    },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn close_codes_follow_the_frame_error() {
        let too_large = FrameError::FrameTooLarge { len: 10, limit: 5 };
        assert_eq!(
            CloseCode::for_frame_error(&too_large),
            CloseCode::FrameTooLarge
        );
        assert_eq!(CloseCode::FrameTooLarge.varint().into_inner(), 1);
        let version = FrameError::UnsupportedVersion {
            got: 2,
            supported: 1,
        };
        assert_eq!(
            CloseCode::for_frame_error(&version).varint().into_inner(),
            4
        );
    }
}
