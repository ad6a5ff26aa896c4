//! The scenario's `[evaluation]` table: where every arm's models are scored.

use serde::{Deserialize, Serialize};

/// `[evaluation]`: the held-out data every arm (federated, local-only, centralised) is
/// scored on.
///
/// ```toml
/// [evaluation]
/// held_out = "pooled"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSpec {
    /// `per-merchant` or `pooled`. Default: `per-merchant`.
    #[serde(default)]
    pub held_out: HeldOutSpec,
}

/// Whose data the metric is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeldOutSpec {
    /// Each merchant holds out a fifth of its own data and the nodes evaluate the global
    /// model themselves (federated evaluation, example-weighted).
    #[default]
    PerMerchant,
    /// A stratified fifth of the whole data set is held out before the partition and
    /// kept by the simulation, which scores every model on it; the nodes train on all of
    /// their part and report no metric. For thousands of tiny merchants (the fraud task
    /// only), where a merchant's own share holds no fraud to rank.
    Pooled,
}

impl HeldOutSpec {
    /// The name as written in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            HeldOutSpec::PerMerchant => "per-merchant",
            HeldOutSpec::Pooled => "pooled",
        }
    }
}
