//! Hansa merchant node: data loaders, candle models, the local trainer and the node runtime.
//!
//! A merchant's learning goes through one [`learner::Learner`]: build it from a part of a
//! data set, train, evaluate, and exchange its shared tensors with the federation.
//!
//! ```
//! use std::sync::Arc;
//! use hansa_node::data::{Interaction, RatingsDataset, Vocabulary};
//! use hansa_node::learner::{HeldOut, Learner};
//! use hansa_node::model::{Recommender, RecommenderConfig};
//! use hansa_node::trainer::TrainConfig;
//! use hansa_protocol::Scope;
//!
//! let mut vocab = Vocabulary::default();
//! let mut records = Vec::new();
//! for (user, item, stars) in [("ann", "tea", 5.0), ("ann", "mug", 3.0), ("bob", "tea", 4.0)] {
//!     let (user, item) = (vocab.users.intern(user), vocab.items.intern(item));
//!     records.push(Interaction { user, item, value: stars, timestamp: 0, country: 0 });
//! }
//! let ratings = RatingsDataset::new(records, Arc::new(vocab));
//!
//! let mut model = Recommender::new(&ratings, RecommenderConfig { dim: 4, ..Default::default() })?;
//! let report = model.train(&TrainConfig { epochs: 20, batch_size: 2, ..Default::default() }, None)?;
//! assert_eq!(report.num_examples, 3);
//!
//! // User tensors stay on the node; only the item side is sent.
//! let params = model.parameters()?;
//! assert_eq!(params.get("user_embedding").unwrap().scope, Scope::Private);
//! assert_eq!(params.shared().len(), 3);
//! let rmse = &model.evaluate(&HeldOut::Ratings(ratings))?[0];
//! assert_eq!(rmse.name, "rmse");
//! # Ok::<(), hansa_node::learner::LearnError>(())
//! ```
#![warn(missing_docs)]

pub mod baseline;
pub mod config;
pub mod data;
pub mod device;
pub mod join;
pub mod learner;
pub mod metrics;
pub mod model;
pub mod runtime;
pub mod setup;
pub mod store;
pub mod trainer;
