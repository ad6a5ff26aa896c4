//! The scenario's `[faults]` table: dropouts by phase, stragglers and poisoned merchants.

use serde::{Deserialize, Serialize};

/// `[faults]`: what goes wrong, drawn per round from the scenario's seed (see
/// [`crate::faults::FaultPlan`]). Default: nothing goes wrong.
///
/// ```toml
/// [faults]
/// dropout = { update = 0.3 }
/// stragglers = { probability = 0.1, delay = { kind = "exponential", mean_ms = 200.0 } }
/// poisoned = { count = 2, attack = { kind = "scaled-update", factor = 10.0 } }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsSpec {
    /// Per-phase dropout probabilities. Default: all 0.
    #[serde(default)]
    pub dropout: DropoutSpec,
    /// Merchants that answer late. Default: none.
    #[serde(default)]
    pub stragglers: StragglerSpec,
    /// Merchants that send malicious updates. Default: none.
    #[serde(default)]
    pub poisoned: Option<PoisonSpec>,
}

/// Probability, per round and per cohort member, of dropping at each phase of the round
/// (DESIGN.md "One round"). Phases are tried in order; a merchant that drops stays out
/// for the rest of the round. Each value is in [0, 1]; default 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    /// Before advertising its keys (secure aggregation only).
    #[serde(default)]
    pub advertise_keys: f64,
    /// Before sending its encrypted shares (secure aggregation only).
    #[serde(default)]
    pub share_keys: f64,
    /// Before sending its (masked) update: the node trained but its update never arrives.
    #[serde(default)]
    pub update: f64,
    /// After its update, before answering the unmask request (secure aggregation only).
    #[serde(default)]
    pub unmask: f64,
}

impl DropoutSpec {
    /// The four probabilities with their field names, in phase order.
    pub fn by_phase(&self) -> [(&'static str, f64); 4] {
        [
            ("advertise_keys", self.advertise_keys),
            ("share_keys", self.share_keys),
            ("update", self.update),
            ("unmask", self.unmask),
        ]
    }
}

/// `[faults.stragglers]`: a merchant straggles in a round with `probability`, and then
/// answers after a delay drawn from `delay`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StragglerSpec {
    /// Chance in [0, 1] that a cohort member straggles in a round. Default: 0.
    #[serde(default)]
    pub probability: f64,
    /// The straggler's extra delay. Default: `{ kind = "fixed", delay_ms = 0 }`.
    #[serde(default)]
    pub delay: DelaySpec,
}

/// A distribution of delays in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DelaySpec {
    /// Always the same delay.
    Fixed {
        /// Delay in ms, ≥ 0.
        delay_ms: f64,
    },
    /// Uniform on [min_ms, max_ms].
    Uniform {
        /// Shortest delay in ms, ≥ 0.
        min_ms: f64,
        /// Longest delay in ms, ≥ min_ms.
        max_ms: f64,
    },
    /// Exponential with the given mean (memoryless waiting).
    Exponential {
        /// Mean delay in ms, > 0.
        mean_ms: f64,
    },
    /// Log-normal: median · exp(σ · N(0, 1)); heavy tails as seen on real networks.
    LogNormal {
        /// Median delay in ms, > 0.
        median_ms: f64,
        /// Spread σ of the underlying normal, ≥ 0.
        sigma: f64,
    },
}

impl Default for DelaySpec {
    fn default() -> Self {
        DelaySpec::Fixed { delay_ms: 0.0 }
    }
}

/// `[faults.poisoned]`: which merchants attack, and how. Give `count` (chosen under the
/// seed) or `merchants` (0-based merchant indices), not both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisonSpec {
    /// How many merchants attack, chosen under the seed. Default: none.
    #[serde(default)]
    pub count: Option<u32>,
    /// Exactly these merchants attack (0-based indices into the partition). Default: none.
    #[serde(default)]
    pub merchants: Option<Vec<u32>>,
    /// First round (1-based) in which they attack. Default: 1.
    #[serde(default = "first_round")]
    pub from_round: u64,
    /// The attack. Required.
    pub attack: Attack,
}

fn first_round() -> u64 {
    1
}

/// A poisoning attack, applied by the attacking node to what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Attack {
    /// Trains on flipped labels (fraud ↔ legitimate; rating r → 6 − r; implicit: the
    /// positives become negatives).
    LabelFlip {},
    /// Sends its honest update multiplied by `factor` (before clipping, which bounds it).
    ScaledUpdate {
        /// Multiplier, finite and ≠ 0; e.g. 10.
        factor: f64,
    },
    /// Sends the negated honest update.
    SignFlip {},
}

impl Attack {
    /// The attack's name as written in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            Attack::LabelFlip {} => "label-flip",
            Attack::ScaledUpdate { .. } => "scaled-update",
            Attack::SignFlip {} => "sign-flip",
        }
    }
}
