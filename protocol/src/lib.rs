//! Hansa's wire protocol: parameter sets, round messages, framing, and the QUIC
//! transport with mutual TLS that carries them.
//!
//! ```
//! use hansa_protocol::params::{ParameterSet, Scope};
//!
//! let mut model = ParameterSet::new();
//! model.push("item_embedding", vec![2, 2], vec![0.1, 0.2, 0.3, 0.4], Scope::Shared).unwrap();
//! model.push("user_embedding", vec![1, 2], vec![0.5, 0.6], Scope::Private).unwrap();
//! // Only shared tensors ever leave a node.
//! assert_eq!(model.shared().num_values(), 4);
//! ```
//!
//! A round engine talks to nodes through [`Link`]s, over QUIC or in memory alike:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use hansa_protocol::link::memory_pair;
//! use hansa_protocol::messages::{Decline, Message};
//!
//! let (mut aggregator_side, mut node_side) = memory_pair("merchant-001");
//! let decline = Message::Decline(Decline { round: 1, reason: "budget spent".into() });
//! node_side.send(&decline).await.unwrap();
//! assert_eq!(aggregator_side.recv().await.unwrap(), decline);
//! assert_eq!(aggregator_side.merchant(), "merchant-001");
//! # });
//! ```
#![warn(missing_docs)]

pub mod frame;
pub mod link;
pub mod messages;
pub mod params;
pub mod quic;
pub mod tls;

pub use frame::{FrameError, DEFAULT_MAX_FRAME_BYTES};
pub use link::{memory_pair, CloseCode, Link, LinkError, LinkReceiver, LinkSender};
pub use messages::{Envelope, MerchantId, Message, Round, PROTOCOL_VERSION};
pub use params::{ParameterError, ParameterSet, Scope, Tensor, TensorSpec};
pub use quic::{connect, AggregatorEndpoint, Arriving, HandshakeError, TransportSettings};
pub use tls::{Identity, TlsError};
