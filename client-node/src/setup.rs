//! What a node learns from: the `[learning]` table of its config, turned into a learner
//! and its held-out data.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::data::creditcard::read_creditcard;
use crate::data::movielens::load_100k_split;
use crate::data::online_retail::read_online_retail;
use crate::data::split::{leave_last_out, sample_negatives, stratified_split};
use crate::data::RatingsDataset;
use crate::learner::{HeldOut, LearnError, Learner};
use crate::model::{Feedback, FraudConfig, FraudMlp, Recommender, RecommenderConfig};

/// The node's data and model. Training settings (epochs, learning rate, batch) come from
/// the aggregator's round config; what stays local is chosen here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningConfig {
    /// The data, in its publisher's format.
    pub dataset: DatasetFormat,
    /// Path of the data: the MovieLens 100K folder, or the Online Retail or card-fraud
    /// file (gzip read transparently). Relative to the config file's folder.
    pub path: PathBuf,
    /// MovieLens 100K only: which standard split to train and evaluate on ["u1"].
    #[serde(default = "default_split")]
    pub split: String,
    /// Embedding dimension of the recommender [32]. Must match every other merchant's.
    #[serde(default = "default_dim")]
    pub embedding_dim: usize,
    /// L2 penalty λ of local training [0.12 for ratings, 0.001 for purchases, 1e-4 for
    /// fraud].
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Seed of the local model's initialisation and of the held-out split [1].
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Keep only part of a public file: users (or transactions) whose index modulo `of`
    /// equals `index`. For demonstrations of several merchants over one public data set;
    /// a real merchant leaves it out and points `path` at its own data.
    #[serde(default)]
    pub part: Option<Part>,
}

/// The supported data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    /// GroupLens MovieLens 100K folder: explicit ratings, RMSE and MAE.
    #[serde(rename = "movielens-100k")]
    Movielens100k,
    /// UCI Online Retail CSV: implicit purchases, HR@10 and NDCG@10 on each customer's
    /// last new product.
    OnlineRetail,
    /// ULB card-fraud CSV: fraud MLP, ROC-AUC and AUC-PR on a stratified 20 %.
    Creditcard,
}

/// A slice of a public data set for one demonstration merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Number of parts.
    pub of: u32,
    /// This merchant's part, `0..of`.
    pub index: u32,
}

fn default_split() -> String {
    "u1".into()
}
fn default_dim() -> usize {
    32
}
fn default_seed() -> u64 {
    1
}

/// A node's learner, its held-out data and its weight decay.
pub struct LocalSetup {
    /// The model bound to the local training data.
    pub learner: Box<dyn Learner>,
    /// What the global model is evaluated on.
    pub held_out: HeldOut,
    /// λ of local training.
    pub weight_decay: f64,
}

impl LearningConfig {
    /// Loads the data (paths relative to `base`) and builds the learner.
    pub fn build(&self, base: &Path) -> Result<LocalSetup, LearnError> {
        if let Some(part) = self.part {
            if part.of == 0 || part.index >= part.of {
                return Err(LearnError::Config(format!(
                    "learning.part: index {} is not in 0..{}",
                    part.index, part.of
                )));
            }
        }
        let path = base.join(&self.path);
        let recommender = |feedback| RecommenderConfig {
            dim: self.embedding_dim,
            init_std: 0.1,
            feedback,
            seed: self.seed,
        };
        match self.dataset {
            DatasetFormat::Movielens100k => {
                let (train, test) = load_100k_split(&path, &self.split)?;
                let (train, test) = (self.keep(&train), self.keep(&test));
                Ok(LocalSetup {
                    learner: Box::new(Recommender::new(&train, recommender(Feedback::Explicit))?),
                    held_out: HeldOut::Ratings(test),
                    weight_decay: self.weight_decay.unwrap_or(0.12),
                })
            }
            DatasetFormat::OnlineRetail => {
                let (data, _) = read_online_retail(&path)?;
                let data = self.keep(&data);
                let (train, held) = leave_last_out(&data, 5);
                let cases = sample_negatives(&data, &held, 99, self.seed)?;
                Ok(LocalSetup {
                    learner: Box::new(Recommender::new(&train, recommender(Feedback::Implicit))?),
                    held_out: HeldOut::Ranking(cases),
                    weight_decay: self.weight_decay.unwrap_or(0.001),
                })
            }
            DatasetFormat::Creditcard => {
                let mut data = read_creditcard(&path)?;
                if let Some(part) = self.part {
                    let rows: Vec<usize> = (0..data.len())
                        .filter(|i| *i as u32 % part.of == part.index)
                        .collect();
                    data = data.select(&rows);
                }
                let (train, test) = stratified_split(&data, 0.2, self.seed)?;
                let config = FraudConfig {
                    seed: self.seed,
                    ..FraudConfig::default()
                };
                Ok(LocalSetup {
                    learner: Box::new(FraudMlp::new(&train, config)?),
                    held_out: HeldOut::Transactions(test),
                    weight_decay: self.weight_decay.unwrap_or(1e-4),
                })
            }
        }
    }

    /// This merchant's users of a ratings set; the item vocabulary stays whole, so item
    /// rows agree with every other merchant reading the same file.
    fn keep(&self, data: &RatingsDataset) -> RatingsDataset {
        match self.part {
            Some(part) => data.filter(|r| r.user % part.of == part.index),
            None => data.clone(),
        }
    }
}
