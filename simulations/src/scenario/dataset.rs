//! The scenario's `[dataset]` and `[task]` tables: which real data, and what to learn from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The environment variable that names the folder holding the data sets.
pub const DATA_DIR_ENV: &str = "HANSA_DATA_DIR";

/// Where the repository keeps its bundled copy of Online Retail (CC BY 4.0, so it may ship).
pub const BUNDLED_ONLINE_RETAIL: &str = "data/online-retail-uci";

/// Default data folder relative to the repository root when [`DATA_DIR_ENV`] is unset.
pub const DEFAULT_DATA_DIR: &str = "../shared/data";

/// `[dataset]`: which real data set the federation is built from.
///
/// ```toml
/// [dataset]
/// kind = "movielens-100k"
/// # path = "/data/ml-100k"   # optional; see `DatasetSpec::resolve_path`
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Which data set. Required.
    pub kind: DatasetKind,
    /// The data set's folder. Default: none, meaning `$HANSA_DATA_DIR/<folder>`, else the
    /// repository's bundled copy (Online Retail only), else `../shared/data/<folder>`.
    /// A relative path is taken relative to the current directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The real data sets the simulator knows how to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// UCI Online Retail: invoice lines of a UK gift-ware shop with a `Country` per line.
    OnlineRetail,
    /// GroupLens MovieLens 100K: 100,000 ratings of 943 users, with user attributes.
    #[serde(rename = "movielens-100k")]
    Movielens100k,
    /// ULB / Worldline card transactions (the stored subsample) with a fraud label.
    Creditcard,
}

impl DatasetKind {
    /// The folder name of this data set under the data directory.
    pub fn folder(self) -> &'static str {
        match self {
            DatasetKind::OnlineRetail => "online-retail-uci",
            DatasetKind::Movielens100k => "movielens-100k",
            DatasetKind::Creditcard => "creditcard-fraud-ulb",
        }
    }

    /// The name used in scenario files, e.g. `online-retail`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::OnlineRetail => "online-retail",
            DatasetKind::Movielens100k => "movielens-100k",
            DatasetKind::Creditcard => "creditcard",
        }
    }
}

impl DatasetSpec {
    /// Resolves the data set's folder.
    ///
    /// `data_dir_env` is the value of [`DATA_DIR_ENV`] (passed in so the rule is testable);
    /// `repo_root` is the repository root used for the bundled copy and the default.
    /// Order: the scenario's `path`; `$HANSA_DATA_DIR/<folder>`; for Online Retail the
    /// bundled `data/online-retail-uci` when it exists; `<repo_root>/../shared/data/<folder>`.
    pub fn resolve_path(&self, data_dir_env: Option<&str>, repo_root: &Path) -> PathBuf {
        if let Some(path) = &self.path {
            return path.clone();
        }
        if let Some(dir) = data_dir_env.filter(|d| !d.is_empty()) {
            return Path::new(dir).join(self.kind.folder());
        }
        if self.kind == DatasetKind::OnlineRetail {
            let bundled = repo_root.join(BUNDLED_ONLINE_RETAIL);
            if bundled.is_dir() {
                return bundled;
            }
        }
        repo_root.join(DEFAULT_DATA_DIR).join(self.kind.folder())
    }
}

/// `[task]`: what the federation learns.
///
/// ```toml
/// [task]
/// kind = "recommender"
/// feedback = "implicit"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Recommender or fraud classifier. Required.
    pub kind: TaskKind,
    /// Recommender only: explicit ratings (metric RMSE) or implicit purchases (metric
    /// hit rate / recall at k). Default: `explicit`. Ignored by `fraud`.
    #[serde(default)]
    pub feedback: Feedback,
}

/// The learning task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Matrix-factorisation recommender: item embeddings shared, user embeddings private.
    Recommender,
    /// Binary fraud classifier on card transactions.
    Fraud,
}

/// The kind of feedback a recommender learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feedback {
    /// Star ratings; the model regresses the rating.
    #[default]
    Explicit,
    /// Purchases or views only; the model ranks items seen against sampled negatives.
    Implicit,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: DatasetKind, path: Option<&str>) -> DatasetSpec {
        DatasetSpec {
            kind,
            path: path.map(PathBuf::from),
        }
    }

    #[test]
    fn explicit_path_wins_then_env_then_default() {
        let root = Path::new("/nonexistent/repo");
        let s = spec(DatasetKind::Movielens100k, Some("/x/ml"));
        assert_eq!(s.resolve_path(Some("/d"), root), PathBuf::from("/x/ml"));
        let s = spec(DatasetKind::Movielens100k, None);
        assert_eq!(
            s.resolve_path(Some("/d"), root),
            PathBuf::from("/d/movielens-100k")
        );
        assert_eq!(
            s.resolve_path(None, root),
            PathBuf::from("/nonexistent/repo/../shared/data/movielens-100k")
        );
        let s = spec(DatasetKind::Creditcard, None);
        assert_eq!(
            s.resolve_path(Some(""), root),
            root.join("../shared/data/creditcard-fraud-ulb")
        );
    }

    #[test]
    fn bundled_online_retail_is_used_when_present() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(BUNDLED_ONLINE_RETAIL)).unwrap();
        let s = spec(DatasetKind::OnlineRetail, None);
        assert_eq!(
            s.resolve_path(None, dir.path()),
            dir.path().join(BUNDLED_ONLINE_RETAIL)
        );
        // Another data set never falls back to the bundled folder.
        let s = spec(DatasetKind::Creditcard, None);
        assert_eq!(
            s.resolve_path(None, dir.path()),
            dir.path().join("../shared/data/creditcard-fraud-ulb")
        );
    }
}
