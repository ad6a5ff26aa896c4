//! Hansa's privacy layer: clipping, quantisation, opendp noise, the zCDP accountant and
//! ledger, and secure aggregation. Pure and transport-free: the node and the aggregator
//! call it with plain data and carry its secure-aggregation payloads in the opaque byte
//! fields of `hansa_protocol::messages`.
//!
//! ```
//! use hansa_privacy::{accountant, clip, Ledger};
//! use hansa_protocol::messages::{DpMode, PrivacySettings};
//!
//! // A node clips its update to C = 1 ...
//! let mut delta = vec![3.0f32, 4.0];
//! let outcome = clip::clip_in_place(&mut delta, 1.0).unwrap();
//! assert_eq!(outcome.norm_before, 5.0);
//!
//! // ... and the ledger charges the round before it runs.
//! let settings = PrivacySettings {
//!     mode: DpMode::Central,
//!     clip_norm: 1.0,
//!     noise_multiplier: 2.0,
//!     grid_step: 1e-6,
//!     noise_shares: 1,
//! };
//! let rho = accountant::round_rho(&settings, delta.len(), 1).unwrap();
//! let mut ledger = Ledger::new(3.0, 1e-5).unwrap();
//! let entry = ledger.charge(1, rho).unwrap();
//! assert!(entry.epsilon_after > 0.0 && entry.epsilon_after < 3.0);
//! ```
//!
//! The pieces of one round, in order: [`settings`] validates, [`clip`] and [`adaptive`]
//! bound the contribution, [`quantise`] and [`noise`] (through [`protect`]) make the
//! integers secure aggregation sums, [`secagg`] masks and unmasks them, [`accountant`]
//! prices the round and [`ledger`] keeps the budget.
#![warn(missing_docs)]

pub mod accountant;
pub mod adaptive;
pub mod clip;
pub mod error;
pub mod ledger;
pub mod noise;
pub mod protect;
pub mod quantise;
pub mod secagg;
pub mod settings;

pub use error::{PrivacyError, Result};
pub use ledger::{BudgetRefusal, Ledger};
