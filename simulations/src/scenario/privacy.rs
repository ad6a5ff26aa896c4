//! The scenario's `[privacy]` table: differential privacy and secure aggregation.

use serde::{Deserialize, Serialize};

/// `[privacy]`: client-level differential privacy and secure aggregation (DESIGN.md
/// "Privacy model").
///
/// ```toml
/// [privacy]
/// mode = "distributed"
/// clip_norm = 1.0
/// noise_multiplier = 0.8
/// delta = 1e-5
/// max_epsilon = 10.0
///
/// [privacy.secure_aggregation]
/// enabled = true
/// neighbours = 6
/// threshold = 4
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// Where noise is added. Default: `off`.
    #[serde(default)]
    pub mode: DpMode,
    /// L2 bound C on one merchant's update, in parameter units. Default: 1.0.
    #[serde(default = "default_clip_norm")]
    pub clip_norm: f64,
    /// Noise standard deviation as a multiple of the clip norm (σ = z · C); unitless.
    /// Ignored when `mode = "off"`. Default: 1.0.
    #[serde(default = "one")]
    pub noise_multiplier: f64,
    /// δ of the reported (ε, δ) guarantee, in (0, 1). Default: 1e-5.
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// Budget ε > 0: a round that would take the spent ε above it is not started.
    /// Default: none (no limit; ε is still reported).
    #[serde(default)]
    pub max_epsilon: Option<f64>,
    /// Target ε values (at `delta`) of a privacy–utility table: after the main run, the
    /// federated arm is run again once per value with the noise multiplier calibrated so
    /// that `rounds` rounds spend exactly that ε (`max_epsilon` is not applied to these
    /// runs). Needs `mode` other than `off`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utility_epsilons: Vec<f64>,
    /// Secure aggregation of the masked updates. Default: off.
    #[serde(default)]
    pub secure_aggregation: SecureAggregationSpec,
}

impl Default for PrivacySpec {
    fn default() -> Self {
        Self {
            mode: DpMode::Off,
            clip_norm: default_clip_norm(),
            noise_multiplier: 1.0,
            delta: default_delta(),
            max_epsilon: None,
            utility_epsilons: Vec::new(),
            secure_aggregation: SecureAggregationSpec::default(),
        }
    }
}

fn default_clip_norm() -> f64 {
    1.0
}
fn one() -> f64 {
    1.0
}
fn default_delta() -> f64 {
    1e-5
}

/// Where differential-privacy noise is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DpMode {
    /// No noise (updates are still clipped to `clip_norm`).
    #[default]
    Off,
    /// The aggregator adds Gaussian noise to the sum; trusts the aggregator.
    Central,
    /// Every node adds the full noise to its own update.
    Local,
    /// Every node adds a discrete Gaussian share; needs secure aggregation.
    Distributed,
}

impl DpMode {
    /// The mode's name as written in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            DpMode::Off => "off",
            DpMode::Central => "central",
            DpMode::Local => "local",
            DpMode::Distributed => "distributed",
        }
    }
}

impl From<DpMode> for hansa_protocol::messages::DpMode {
    fn from(mode: DpMode) -> Self {
        use hansa_protocol::messages::DpMode as Wire;
        match mode {
            DpMode::Off => Wire::Off,
            DpMode::Central => Wire::Central,
            DpMode::Local => Wire::Local,
            DpMode::Distributed => Wire::Distributed,
        }
    }
}

/// `[privacy.secure_aggregation]`: SecAgg+ over a graph of `neighbours` per node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureAggregationSpec {
    /// Mask the updates so that the aggregator sees only their sum. Default: false.
    #[serde(default)]
    pub enabled: bool,
    /// Neighbours k of each node in the masking graph, at most 255 and at most the
    /// cohort size − 1. Default: none, meaning min(cohort size − 1, 255).
    #[serde(default)]
    pub neighbours: Option<u32>,
    /// Shares t of a node's secrets needed to unmask, 1 ≤ t ≤ k. Up to k − t neighbours
    /// of a node may drop. Default: none, meaning ⌊k / 2⌋ + 1 (an honest majority).
    #[serde(default)]
    pub threshold: Option<u32>,
}

impl SecureAggregationSpec {
    /// The neighbour count k for a cohort of `cohort_size`: the given value or
    /// min(cohort size − 1, 255).
    pub fn neighbours_for(&self, cohort_size: u32) -> u32 {
        self.neighbours
            .unwrap_or_else(|| cohort_size.saturating_sub(1).min(255))
    }

    /// The threshold t for `neighbours`: the given value or ⌊k / 2⌋ + 1.
    pub fn threshold_for(&self, neighbours: u32) -> u32 {
        self.threshold.unwrap_or(neighbours / 2 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_aggregation_defaults_follow_the_cohort() {
        let spec = SecureAggregationSpec {
            enabled: true,
            neighbours: None,
            threshold: None,
        };
        assert_eq!(spec.neighbours_for(8), 7);
        assert_eq!(spec.threshold_for(7), 4);
        assert_eq!(spec.neighbours_for(10_000), 255);
        assert_eq!(spec.threshold_for(255), 128);
        let given = SecureAggregationSpec {
            enabled: true,
            neighbours: Some(6),
            threshold: Some(5),
        };
        assert_eq!(given.neighbours_for(100), 6);
        assert_eq!(given.threshold_for(6), 5);
    }
}
