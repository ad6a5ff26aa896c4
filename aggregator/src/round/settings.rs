//! What an operator configures about the rounds: cohort, deadlines, local training,
//! privacy and secure aggregation. The `[federation]` table of the aggregator's config.

use hansa_privacy::adaptive::AdaptiveClip;
use hansa_protocol::messages::{AdaptiveClipSettings, DpMode, PrivacySettings};
use serde::{Deserialize, Serialize};

use crate::strategy::StrategyConfig;

/// The federation's round settings. Every field has a default (shown in brackets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSettings {
    /// Rounds to run in total, counting rounds committed before a restart [10].
    pub rounds: u64,
    /// Fewest nodes a round may start with [2].
    pub min_cohort: usize,
    /// Nodes sampled per round (seeded); `0` takes every connected node [0].
    pub cohort_size: usize,
    /// How long a round waits for `min_cohort` nodes before it says so and gives up,
    /// in milliseconds [60 000].
    pub cohort_wait_ms: u64,
    /// Once `min_cohort` nodes are connected, how long the round keeps gathering nodes
    /// that are arriving before it selects its cohort, in milliseconds [1 000].
    pub cohort_grace_ms: u64,
    /// How long a cohort member has for local training and its update, in milliseconds
    /// [600 000]. Stragglers past it are dropped from this round only.
    pub update_deadline_ms: u64,
    /// Deadline of each short secure-aggregation phase (keys, shares, unmasking), in
    /// milliseconds [30 000].
    pub phase_deadline_ms: u64,
    /// How long nodes have to report the evaluation of a new global model, in
    /// milliseconds [60 000].
    pub evaluation_deadline_ms: u64,
    /// Attempts at one round number (a round aborted for too few survivors is retried)
    /// before the federation stops [3].
    pub max_attempts_per_round: u32,
    /// Passes over the local data per round [1].
    pub local_epochs: u32,
    /// Local learning rate [0.01].
    pub learning_rate: f32,
    /// Local mini-batch size, in examples [256].
    pub batch_size: u32,
    /// Seed for cohort sampling, neighbour graphs and the nodes' per-round seeds [0].
    pub seed: u64,
    /// The server strategy [FedAvg].
    pub strategy: StrategyConfig,
    /// Differential privacy.
    pub privacy: PrivacyPlan,
    /// Secure aggregation.
    pub secure_aggregation: SecureAggregationPlan,
}

impl Default for FederationSettings {
    fn default() -> Self {
        Self {
            rounds: 10,
            min_cohort: 2,
            cohort_size: 0,
            cohort_wait_ms: 60_000,
            cohort_grace_ms: 1_000,
            update_deadline_ms: 600_000,
            phase_deadline_ms: 30_000,
            evaluation_deadline_ms: 60_000,
            max_attempts_per_round: 3,
            local_epochs: 1,
            learning_rate: 0.01,
            batch_size: 256,
            seed: 0,
            strategy: StrategyConfig::FedAvg,
            privacy: PrivacyPlan::default(),
            secure_aggregation: SecureAggregationPlan::default(),
        }
    }
}

/// Differential-privacy settings of the federation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyPlan {
    /// `off`, `central`, `local` or `distributed` [off].
    pub mode: DpModeName,
    /// L2 bound C on one merchant's update, in parameter units [1.0].
    pub clip_norm: f64,
    /// σ = z · C [1.0].
    pub noise_multiplier: f64,
    /// Quantisation grid step for secure aggregation, in parameter units [1e-4].
    pub grid_step: f64,
    /// δ of the reported (ε, δ) [1e-5].
    pub delta: f64,
    /// Budget: no round starts that could take ε past this [10.0].
    pub max_epsilon: f64,
    /// Adaptive clipping (distributed mode under secure aggregation only): `clip_norm`
    /// is then the starting clip norm [off].
    pub adaptive_clip: Option<AdaptiveClipSettings>,
}

impl Default for PrivacyPlan {
    fn default() -> Self {
        Self {
            mode: DpModeName::Off,
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            grid_step: 1e-4,
            delta: 1e-5,
            max_epsilon: 10.0,
            adaptive_clip: None,
        }
    }
}

/// A DP mode as written in configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpModeName {
    /// No noise.
    Off,
    /// The aggregator adds the noise.
    Central,
    /// Each node adds the full noise.
    Local,
    /// Each node adds a share; needs secure aggregation.
    Distributed,
}

impl From<DpModeName> for DpMode {
    fn from(mode: DpModeName) -> Self {
        match mode {
            DpModeName::Off => DpMode::Off,
            DpModeName::Central => DpMode::Central,
            DpModeName::Local => DpMode::Local,
            DpModeName::Distributed => DpMode::Distributed,
        }
    }
}

/// Secure-aggregation settings of the federation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecureAggregationPlan {
    /// Mask updates so that the aggregator learns only their sum [false].
    pub enabled: bool,
    /// Neighbours per node; a cohort no larger than this + 1 uses the complete graph
    /// (SecAgg), a larger one a random regular graph of this degree (SecAgg+) [64].
    pub neighbours: usize,
    /// Shamir threshold as a fraction of a node's neighbours: t = ⌈fraction · k⌉, at
    /// least 2 [0.5]. A round survives as long as every neighbourhood keeps t
    /// survivors, so a lower t tolerates more dropouts; against the v1 threat model
    /// (honest-but-curious aggregator) any t ≥ 2 keeps single updates hidden, while an
    /// aggregator that lies about dropouts would need a fraction above 0.5 to be held off.
    pub threshold_fraction: f64,
}

impl Default for SecureAggregationPlan {
    fn default() -> Self {
        Self {
            enabled: false,
            neighbours: 64,
            threshold_fraction: 0.5,
        }
    }
}

/// A setting that cannot be used, named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("federation setting `{name}`: {detail}")]
pub struct SettingsError {
    /// The setting's name as written in the config file.
    pub name: &'static str,
    /// What is wrong with its value.
    pub detail: String,
}

impl FederationSettings {
    /// Checks every setting, naming the first that cannot be used.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |name, detail: String| Err(SettingsError { name, detail });
        if self.min_cohort == 0 {
            return fail("min_cohort", "must be at least 1".into());
        }
        if self.cohort_size != 0 && self.cohort_size < self.min_cohort {
            return fail(
                "cohort_size",
                format!(
                    "{} is below min_cohort {}",
                    self.cohort_size, self.min_cohort
                ),
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return fail(
                "learning_rate",
                format!("must be a positive number, got {}", self.learning_rate),
            );
        }
        if self.batch_size == 0 {
            return fail("batch_size", "must be at least 1".into());
        }
        if self.max_attempts_per_round == 0 {
            return fail("max_attempts_per_round", "must be at least 1".into());
        }
        if let Err(e) = self.strategy.validate() {
            return fail("strategy", e.to_string());
        }
        let p = &self.privacy;
        for (name, value) in [
            ("privacy.clip_norm", p.clip_norm),
            ("privacy.noise_multiplier", p.noise_multiplier),
            ("privacy.grid_step", p.grid_step),
            ("privacy.max_epsilon", p.max_epsilon),
        ] {
            // `!(x > 0)` also refuses NaN, which slips through `x <= 0`.
            if !(value.is_finite() && value > 0.0) {
                return fail(
                    name,
                    format!("must be a positive finite number, got {value}"),
                );
            }
        }
        if !(p.delta.is_finite() && p.delta > 0.0 && p.delta < 1.0) {
            return fail(
                "privacy.delta",
                format!("must lie in (0, 1), got {}", p.delta),
            );
        }
        let secure = &self.secure_aggregation;
        if p.mode == DpModeName::Distributed && !secure.enabled {
            return fail(
                "privacy.mode",
                "distributed noise needs secure_aggregation.enabled = true".into(),
            );
        }
        if let Some(adaptive) = &p.adaptive_clip {
            if p.mode != DpModeName::Distributed {
                return fail(
                    "privacy.adaptive_clip",
                    "adaptive clipping runs in distributed mode only (the clip bits travel masked with the update)".into(),
                );
            }
            if let Err(e) = self.adaptive_clip(adaptive, p.clip_norm) {
                return fail("privacy.adaptive_clip", e.to_string());
            }
        }
        if secure.enabled {
            if !self.strategy.supports_secure_aggregation() {
                return fail(
                    "strategy",
                    format!(
                        "{} needs updates in clear; turn secure aggregation off",
                        self.strategy.name()
                    ),
                );
            }
            if secure.neighbours < 2 {
                return fail(
                    "secure_aggregation.neighbours",
                    format!("must be at least 2, got {}", secure.neighbours),
                );
            }
            let f = secure.threshold_fraction;
            if !(f.is_finite() && f > 0.0 && f <= 1.0) {
                return fail(
                    "secure_aggregation.threshold_fraction",
                    format!("must lie in (0, 1], got {f}"),
                );
            }
            if self.min_cohort < 3 {
                return fail(
                    "min_cohort",
                    "secure aggregation needs at least 3 nodes per round".into(),
                );
            }
        }
        Ok(())
    }

    /// The privacy settings sent in a round's config, for a cohort of `cohort` nodes.
    /// Distributed noise is provisioned for the fewest contributors a round can complete
    /// with, so that the sum carries at least the configured noise.
    pub fn privacy_settings(&self, shares: u32) -> PrivacySettings {
        PrivacySettings {
            mode: self.privacy.mode.into(),
            clip_norm: self.privacy.clip_norm,
            noise_multiplier: self.privacy.noise_multiplier,
            grid_step: self.privacy.grid_step,
            noise_shares: shares.max(1),
        }
    }

    /// The adaptive clipping state starting from `clip_norm`.
    pub fn adaptive_clip(
        &self,
        adaptive: &AdaptiveClipSettings,
        clip_norm: f64,
    ) -> Result<AdaptiveClip, hansa_privacy::PrivacyError> {
        AdaptiveClip::new(
            clip_norm,
            adaptive.target_quantile,
            adaptive.learning_rate,
            adaptive.bit_noise_std,
        )
    }

    /// Shamir threshold for a node with `neighbours` neighbours.
    pub fn threshold(&self, neighbours: usize) -> usize {
        let t = (self.secure_aggregation.threshold_fraction * neighbours as f64).ceil() as usize;
        t.clamp(2, neighbours.max(2))
    }

    /// True when every contributor counts alike (DP or secure aggregation on): the
    /// sensitivity argument needs bounded weights, and example counts are private.
    pub fn uniform_weights(&self) -> bool {
        self.privacy.mode != DpModeName::Off || self.secure_aggregation.enabled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(FederationSettings::default().validate(), Ok(()));
    }

    #[test]
    fn nan_clip_norm_is_refused_by_name() {
        let mut s = FederationSettings::default();
        s.privacy.clip_norm = f64::NAN;
        let err = s.validate().unwrap_err();
        assert_eq!(err.name, "privacy.clip_norm");
        assert!(err.detail.contains("NaN"), "{err}");
    }

    #[test]
    fn distributed_noise_without_secure_aggregation_is_refused() {
        let mut s = FederationSettings::default();
        s.privacy.mode = DpModeName::Distributed;
        assert_eq!(s.validate().unwrap_err().name, "privacy.mode");
        s.secure_aggregation.enabled = true;
        s.min_cohort = 3;
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn adaptive_clipping_needs_distributed_noise() {
        let mut s = FederationSettings::default();
        s.privacy.adaptive_clip = Some(AdaptiveClipSettings {
            target_quantile: 0.5,
            learning_rate: 0.2,
            bit_noise_std: 1.0,
        });
        assert_eq!(s.validate().unwrap_err().name, "privacy.adaptive_clip");
        s.privacy.mode = DpModeName::Distributed;
        s.secure_aggregation.enabled = true;
        s.min_cohort = 3;
        assert_eq!(s.validate(), Ok(()));
        s.privacy.adaptive_clip.as_mut().unwrap().target_quantile = f64::NAN;
        assert_eq!(s.validate().unwrap_err().name, "privacy.adaptive_clip");
    }

    #[test]
    fn threshold_is_half_the_neighbours_rounded_up() {
        let s = FederationSettings::default();
        assert_eq!(s.threshold(4), 2);
        assert_eq!(s.threshold(5), 3);
        // Never below 2, never above the neighbour count.
        assert_eq!(s.threshold(1), 2);
        assert_eq!(s.threshold(2), 2);
    }

    #[test]
    fn unknown_field_is_an_error_that_names_it() {
        let err = toml::from_str::<FederationSettings>("roundz = 3").unwrap_err();
        assert!(err.to_string().contains("roundz"), "{err}");
    }
}
