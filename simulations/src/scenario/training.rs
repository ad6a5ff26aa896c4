//! The scenario's `[training]`, `[strategy]` and `[model]` tables.

use serde::{Deserialize, Serialize};

/// `[training]`: what every node does locally in a round.
///
/// ```toml
/// [training]
/// local_epochs = 1
/// learning_rate = 0.05
/// batch_size = 256
/// weight_decay = 0.0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Passes over the merchant's training data per round. Default: 1.
    #[serde(default = "default_local_epochs")]
    pub local_epochs: u32,
    /// Local optimiser step size (plain SGD / Adam as the learner chooses). Default: 0.05.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Examples per local step. Default: 256.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// L2 penalty on the weights in the local objective. Default: 0 (none).
    #[serde(default)]
    pub weight_decay: f64,
    /// How long the aggregator waits for updates before it treats a node as dropped,
    /// in milliseconds. Default: 30,000.
    #[serde(default = "default_update_deadline_ms")]
    pub update_deadline_ms: u64,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            local_epochs: default_local_epochs(),
            learning_rate: default_learning_rate(),
            batch_size: default_batch_size(),
            weight_decay: 0.0,
            update_deadline_ms: default_update_deadline_ms(),
        }
    }
}

fn default_local_epochs() -> u32 {
    1
}
fn default_learning_rate() -> f64 {
    0.05
}
fn default_batch_size() -> u32 {
    256
}
fn default_update_deadline_ms() -> u64 {
    30_000
}

/// `[strategy]`: how the aggregator turns the round's mean update into the next model.
///
/// ```toml
/// [strategy]
/// kind = "fedadam"
/// server_learning_rate = 0.01
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StrategySpec {
    /// Federated averaging: global += η · weighted mean update.
    Fedavg {
        /// Server step η applied to the mean update. Default: 1.0 (plain FedAvg).
        #[serde(default = "one_f64")]
        server_learning_rate: f64,
    },
    /// FedAvg with a proximal term μ/2 · ‖w − w_global‖² in every node's local objective.
    Fedprox {
        /// Proximal weight μ ≥ 0. Default: 0.01.
        #[serde(default = "default_mu")]
        mu: f64,
        /// Server step η. Default: 1.0.
        #[serde(default = "one_f64")]
        server_learning_rate: f64,
    },
    /// Adaptive server optimiser (Reddi et al. 2021, "Adaptive Federated Optimization").
    Fedadam(AdaptiveSpec),
    /// As `fedadam` with Yogi's additive second-moment update.
    Fedyogi(AdaptiveSpec),
    /// Coordinate-wise median of the updates (robust to a minority of poisoned nodes).
    /// Needs plain updates: refused with secure aggregation, which only reveals the sum.
    Median {},
    /// Coordinate-wise mean after dropping the largest and smallest `trim_fraction`.
    /// Needs plain updates, as `median`.
    TrimmedMean {
        /// Fraction β ∈ [0, 0.5) cut from each end per coordinate. Default: 0.1.
        #[serde(default = "default_trim_fraction")]
        trim_fraction: f64,
    },
}

impl Default for StrategySpec {
    fn default() -> Self {
        StrategySpec::Fedavg {
            server_learning_rate: 1.0,
        }
    }
}

impl StrategySpec {
    /// The strategy's name as written in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            StrategySpec::Fedavg { .. } => "fedavg",
            StrategySpec::Fedprox { .. } => "fedprox",
            StrategySpec::Fedadam(_) => "fedadam",
            StrategySpec::Fedyogi(_) => "fedyogi",
            StrategySpec::Median {} => "median",
            StrategySpec::TrimmedMean { .. } => "trimmed-mean",
        }
    }

    /// The proximal weight μ nodes add to their local objective (0 unless FedProx).
    pub fn proximal_mu(&self) -> f64 {
        match self {
            StrategySpec::Fedprox { mu, .. } => *mu,
            _ => 0.0,
        }
    }
}

/// Parameters of the adaptive server optimisers, with the paper's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveSpec {
    /// Server step η. Default: 0.01.
    #[serde(default = "default_adaptive_lr")]
    pub server_learning_rate: f64,
    /// First-moment decay β₁ ∈ [0, 1). Default: 0.9.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Second-moment decay β₂ ∈ [0, 1). Default: 0.99.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Adaptivity τ > 0 added to the root second moment. Default: 0.001.
    #[serde(default = "default_tau")]
    pub tau: f64,
}

fn one_f64() -> f64 {
    1.0
}
fn default_mu() -> f64 {
    0.01
}
fn default_trim_fraction() -> f64 {
    0.1
}
fn default_adaptive_lr() -> f64 {
    0.01
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.99
}
fn default_tau() -> f64 {
    1e-3
}

/// `[model]`: the size of the model the learners build.
///
/// ```toml
/// [model]
/// embedding_dim = 16
/// hidden = [32]
/// fraud_weight = 10.0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Recommender: width of the user and item embeddings. Default: 32.
    #[serde(default = "default_embedding_dim")]
    pub embedding_dim: u32,
    /// Fraud classifier: widths of the hidden layers, input side first; empty means
    /// logistic regression. Default: `[64]`.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<u32>,
    /// Fraud classifier: weight of a fraud example's log-loss, the same at every merchant
    /// (it also sets the shared calibration offset, ln w). Default: none, meaning
    /// √(legitimate / fraud) over all merchants' training data together, as an operator
    /// would set it from the published base rate.
    #[serde(default)]
    pub fraud_weight: Option<f64>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            embedding_dim: default_embedding_dim(),
            hidden: default_hidden(),
            fraud_weight: None,
        }
    }
}

fn default_embedding_dim() -> u32 {
    32
}
fn default_hidden() -> Vec<u32> {
    vec![64]
}
