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
#![warn(missing_docs)]

pub mod messages;
pub mod params;

pub use params::{ParameterError, ParameterSet, Scope, Tensor, TensorSpec};
pub use messages::{Envelope, Message, MerchantId, Round, PROTOCOL_VERSION};
