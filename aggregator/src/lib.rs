//! Hansa's aggregator: model-agnostic strategies, the sled store of rounds and checkpoints,
//! validation of incoming updates, and the operator's `status` and `export`.
//!
//! ```
//! use hansa_aggregator::strategy::{Strategy, StrategyConfig};
//! use hansa_protocol::messages::Update;
//! use hansa_protocol::{ParameterSet, Scope};
//!
//! let mut global = ParameterSet::new();
//! global.push("w", vec![2], vec![1.0, 1.0], Scope::Shared).unwrap();
//! let delta = |a: f32, b: f32| {
//!     let mut d = ParameterSet::new();
//!     d.push("w", vec![2], vec![a, b], Scope::Shared).unwrap();
//!     d
//! };
//! let updates = [
//!     Update { round: 1, num_examples: 1, delta: delta(4.0, 0.0), train_loss: 0.3 },
//!     Update { round: 1, num_examples: 3, delta: delta(0.0, 4.0), train_loss: 0.2 },
//! ];
//! // FedAvg: x + (1·[4, 0] + 3·[0, 4]) / 4 = [1, 1] + [1, 3].
//! let mut fedavg = Strategy::new(StrategyConfig::FedAvg).unwrap();
//! let next = fedavg.aggregate(&global, &updates).unwrap();
//! assert_eq!(next.to_flat(), [2.0, 4.0]);
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod export;
pub mod intake;
pub mod provision;
pub mod round;
pub mod serve;
pub mod status;
pub mod store;
pub mod strategy;
