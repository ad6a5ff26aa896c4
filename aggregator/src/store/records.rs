//! What the store keeps: round records, evaluations, ledger entries, nodes, initial model.

use hansa_protocol::messages::{Metric, RoundConfig};
use hansa_protocol::{MerchantId, ParameterSet, Round};
use serde::{Deserialize, Serialize};

use crate::strategy::OptimizerState;

/// Where the initial global model (round 0) came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InitialSource {
    /// A safetensors file the operator gave, by its path as given.
    File(String),
    /// The seeded initialisation of the first node to join.
    FirstNode(MerchantId),
}

/// Training-side summary of a committed round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Merchants whose updates are in the aggregate.
    pub contributors: Vec<MerchantId>,
    /// Cohort members whose update did not arrive or was refused.
    pub dropped: Vec<MerchantId>,
    /// Training examples behind the aggregate (Σ nᵢ).
    pub num_examples: u64,
    /// Example-weighted mean of the contributors' final training loss.
    pub mean_train_loss: f64,
}

/// One committed round, as kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// The round.
    pub round: Round,
    /// The config the cohort received.
    pub config: RoundConfig,
    /// Strategy name, e.g. `fedadam`.
    pub strategy: String,
    /// Training summary.
    pub training: TrainingSummary,
    /// Commit time, milliseconds since the Unix epoch.
    pub committed_at_ms: u64,
}

/// The privacy ledger's entry for one round. `accountant` holds hansa-privacy's own
/// encoding of its accountant state; the store treats it as opaque bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The round charged.
    pub round: Round,
    /// Zero-concentrated DP ρ charged for this round (0 when DP is off).
    pub rho_charged: f64,
    /// ε spent so far at `delta`, after this round.
    pub epsilon_spent: f64,
    /// The federation's δ.
    pub delta: f64,
    /// Opaque accountant state from hansa-privacy.
    pub accountant: Vec<u8>,
}

/// Everything one round commits, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundCommit {
    /// The round record (its `round` must be the last committed round + 1).
    pub record: RoundRecord,
    /// The new global model (shared tensors), with round 0's layout.
    pub global: ParameterSet,
    /// The round's privacy-ledger entry.
    pub ledger: LedgerEntry,
    /// The server optimiser's state after the round (None for stateless strategies).
    pub optimizer: Option<OptimizerState>,
}

/// One node's evaluation of a round's global model on its held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEvaluation {
    /// The node.
    pub merchant: MerchantId,
    /// Held-out examples evaluated.
    pub num_examples: u64,
    /// Metric values.
    pub metrics: Vec<Metric>,
}

/// Federated evaluation of one round: each node's report and their example-weighted mean.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoundEvaluation {
    /// Reports in merchant order.
    pub per_node: Vec<NodeEvaluation>,
    /// For each metric name (in name order), Σ nᵢ vᵢ / Σ nᵢ over the nodes reporting it.
    pub weighted_mean: Vec<Metric>,
}

impl RoundEvaluation {
    /// Builds the evaluation from node reports, computing the weighted means.
    pub fn from_reports(mut per_node: Vec<NodeEvaluation>) -> Self {
        per_node.sort_by(|a, b| a.merchant.cmp(&b.merchant));
        let mut sums: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
        for node in &per_node {
            let weight = node.num_examples as f64;
            for metric in &node.metrics {
                let entry = sums.entry(metric.name.as_str()).or_default();
                entry.0 += weight * metric.value;
                entry.1 += weight;
            }
        }
        let weighted_mean = sums
            .into_iter()
            .filter(|(_, (_, weight))| *weight > 0.0)
            .map(|(name, (sum, weight))| Metric {
                name: name.to_string(),
                value: sum / weight,
            })
            .collect();
        Self {
            per_node,
            weighted_mean,
        }
    }
}

/// A node the aggregator has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The merchant id (its certificate's common name).
    pub merchant: MerchantId,
    /// SHA-256 fingerprint of its certificate, hex, as the transport reports it.
    pub cert_fingerprint: String,
    /// First connection, milliseconds since the Unix epoch.
    pub first_seen_ms: u64,
    /// Latest connection or message, milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
}
