//! Dataset loaders for the publishers' real formats, and where to find the files.
//!
//! Every loader takes an explicit path; [`data_dir`] and [`bundled_dir`] say where the
//! project's tests and scenarios look by default.

pub mod creditcard;
pub mod download;
pub mod error;
pub mod ids;
pub mod movielens;
pub mod online_retail;
pub mod ratings;
pub mod source;
pub mod split;

use std::path::PathBuf;

pub use creditcard::{FraudDataset, Transaction, NUM_FRAUD_FEATURES};
pub use error::DataError;
pub use ids::{IdMap, Vocabulary};
pub use ratings::{Interaction, RatingsDataset};

/// Environment variable that locates the non-bundled data sets (MovieLens, card fraud).
pub const DATA_DIR_ENV: &str = "HANSA_DATA_DIR";

/// The folder holding the non-bundled data sets.
///
/// Reads [`DATA_DIR_ENV`]; by default this is `../shared/data` relative to the repository
/// root (the folder beside the checkout), found from this crate's manifest directory.
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join("..").join("shared").join("data"),
    }
}

/// The folder of data sets committed with the project (`<repo root>/data`): Online Retail,
/// whose CC BY 4.0 licence allows redistribution.
pub fn bundled_dir() -> PathBuf {
    repo_root().join("data")
}

/// Path of the bundled Online Retail file, `data/online-retail-uci/online_retail.csv.gz`.
pub fn bundled_online_retail() -> PathBuf {
    bundled_dir()
        .join("online-retail-uci")
        .join("online_retail.csv.gz")
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
