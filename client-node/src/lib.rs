//! Hansa merchant node: data loaders, candle models, the local trainer and the node runtime.
#![warn(missing_docs)]

pub mod data;
pub mod device;
pub mod join;
pub mod learner;
pub mod metrics;
pub mod model;
pub mod trainer;
pub mod baseline;
pub mod config;
pub mod runtime;
pub mod store;
