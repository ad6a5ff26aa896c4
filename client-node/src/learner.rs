//! The one abstraction the node runtime and the simulator drive: a [`Learner`].

use std::path::Path;

use hansa_protocol::messages::Metric;
use hansa_protocol::{ParameterError, ParameterSet};

use crate::data::split::RankingCase;
use crate::data::{DataError, FraudDataset, RatingsDataset};
use crate::metrics::MetricError;
use crate::trainer::{TrainConfig, TrainReport};

/// Why learning, loading or evaluating failed.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// A tensor operation failed inside candle.
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
    /// A parameter set could not be built or decoded.
    #[error(transparent)]
    Parameters(#[from] ParameterError),
    /// A parameter set lacks a tensor the model has.
    #[error("parameter set has no tensor `{0}`")]
    MissingTensor(String),
    /// A given tensor's shape differs from the model's.
    #[error("tensor `{name}`: model has shape {expected:?}, given {found:?}")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The given shape.
        found: Vec<usize>,
    },
    /// A metric could not be computed.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// Data could not be read or split.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The held-out data is of the wrong kind for this task.
    #[error("{task} cannot be evaluated on {given}")]
    WrongHeldOut {
        /// The learner's task.
        task: &'static str,
        /// The held-out kind given.
        given: &'static str,
    },
    /// The local part has no training examples.
    #[error("the local part has no training examples")]
    EmptyPart,
    /// A training setting is out of range.
    #[error("training config: {0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("training diverged in epoch {epoch} (loss not finite); lower the learning rate")]
    Diverged {
        /// 0-based epoch.
        epoch: u32,
    },
    /// A parameter file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The reason.
        source: std::io::Error,
    },
}

/// Held-out data a learner is evaluated on.
#[derive(Debug, Clone)]
pub enum HeldOut {
    /// Explicit ratings: reports `rmse` and `mae`.
    Ratings(RatingsDataset),
    /// Leave-one-out cases with sampled negatives: reports `hr@10` and `ndcg@10`.
    Ranking(Vec<RankingCase>),
    /// Labelled transactions: reports `roc_auc`, `average_precision`, `recall@1%fpr`.
    Transactions(FraudDataset),
}

impl HeldOut {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            HeldOut::Ratings(_) => "ratings",
            HeldOut::Ranking(_) => "ranking cases",
            HeldOut::Transactions(_) => "transactions",
        }
    }

    /// Number of held-out examples (the weight of an evaluation report).
    pub fn len(&self) -> usize {
        match self {
            HeldOut::Ratings(d) => d.len(),
            HeldOut::Ranking(c) => c.len(),
            HeldOut::Transactions(d) => d.len(),
        }
    }

    /// True when there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A model together with a merchant's local training data.
pub trait Learner: Send {
    /// Every tensor, shared ones and private ones (marked [`hansa_protocol::Scope::Private`]).
    fn parameters(&self) -> Result<ParameterSet, LearnError>;

    /// Replaces the shared tensors with `shared` (e.g. the round's global model). Every
    /// shared tensor must be present with the model's shape; private tensors are ignored.
    fn load_shared(&mut self, shared: &ParameterSet) -> Result<(), LearnError>;

    /// Replaces the private tensors (restoring a node's own store). Shapes must match.
    fn load_private(&mut self, private: &ParameterSet) -> Result<(), LearnError>;

    /// Trains on the local data; `global` anchors the FedProx term when `proximal_mu > 0`.
    fn train(
        &mut self,
        config: &TrainConfig,
        global: Option<&ParameterSet>,
    ) -> Result<TrainReport, LearnError>;

    /// Named metrics on held-out data.
    fn evaluate(&self, held_out: &HeldOut) -> Result<Vec<Metric>, LearnError>;
}

/// Writes every tensor of `learner` to a safetensors file (scopes kept in its metadata).
pub fn save_safetensors(learner: &dyn Learner, path: &Path) -> Result<(), LearnError> {
    let bytes = learner.parameters()?.to_safetensors()?;
    std::fs::write(path, bytes).map_err(|source| LearnError::Io {
        path: path.into(),
        source,
    })
}

/// Loads shared and private tensors from a file written by [`save_safetensors`].
pub fn load_safetensors(learner: &mut dyn Learner, path: &Path) -> Result<(), LearnError> {
    let bytes = std::fs::read(path).map_err(|source| LearnError::Io {
        path: path.into(),
        source,
    })?;
    let set = ParameterSet::from_safetensors(&bytes)?;
    learner.load_shared(&set)?;
    learner.load_private(&set)
}

pub(crate) fn metric(name: &str, value: f64) -> Metric {
    Metric {
        name: name.to_owned(),
        value,
    }
}
