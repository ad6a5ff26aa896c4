//! Server-side aggregation strategies: FedAvg, FedProx, FedAdam, FedYogi, median, trimmed mean.
//!
//! A [`Strategy`] turns a round's updates (Δ = local − global of the shared tensors) and the
//! global model into the next global model. It works on flat f64 views internally and gives
//! back a [`ParameterSet`] with the global model's layout.

mod adaptive;
mod robust;
mod weighted_sum;

use hansa_protocol::messages::Update;
use hansa_protocol::{ParameterError, ParameterSet};
use serde::{Deserialize, Serialize};

pub use adaptive::{AdaptiveConfig, AdaptiveRule, OptimizerState};
pub use robust::{coordinate_median, trimmed_mean};
pub use weighted_sum::WeightedSum;

/// Errors aggregating a round.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum StrategyError {
    // Configuration.
    /// A hyper-parameter is outside its range.
    #[error("strategy setting `{name}` = {value} is outside {range}")]
    Config {
        /// Setting name.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// The strategy needs each update in clear, which secure aggregation forbids.
    #[error(
        "strategy `{0}` needs every update in clear and cannot run on a securely aggregated sum"
    )]
    NeedsIndividualUpdates(&'static str),
    /// A persisted optimiser state belongs to another rule.
    #[error("optimiser state is for {state:?} but the strategy is {strategy:?}")]
    StateRule {
        /// The rule of the state.
        state: AdaptiveRule,
        /// The rule of the strategy.
        strategy: AdaptiveRule,
    },

    // Input.
    /// The round has no updates.
    #[error("no updates to aggregate")]
    NoUpdates,
    /// An update does not have the global model's layout.
    #[error("update layout: {0}")]
    Layout(#[from] ParameterError),
    /// A flat vector has the wrong length.
    #[error("flat vector has {actual} values but the global model has {expected}")]
    Length {
        /// Values of the global model.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// An update's weight (its example count) is zero, negative or not finite.
    #[error("update weight {0} is not a positive finite number")]
    UpdateWeight(f64),
    /// The total weight of a sum is zero, negative or not finite.
    #[error("total weight {0} is not a positive finite number")]
    TotalWeight(f64),
    /// A securely aggregated sum holds NaN or infinity.
    #[error("weighted sum has a non-finite value at flat index {index}")]
    NonFiniteSum {
        /// Flat index.
        index: usize,
    },
    /// Trimming would leave no value per coordinate.
    #[error(
        "trimmed mean of {updates} updates trims {trimmed_each_side} from each side, leaving none"
    )]
    TrimmedAway {
        /// Updates in the round.
        updates: usize,
        /// Values dropped from each end.
        trimmed_each_side: usize,
    },
    /// The optimiser's moments do not match the model.
    #[error("optimiser moments hold {moments} values and the update {delta}, but the model has {expected}")]
    OptimizerLength {
        /// Values of the global model.
        expected: usize,
        /// Values of the moments.
        moments: usize,
        /// Values of the pseudo-gradient.
        delta: usize,
    },

    // Output.
    /// The step would put NaN or infinity into the global model; nothing was changed.
    #[error(
        "aggregation would make the global model non-finite at flat index {index}; round refused"
    )]
    NonFiniteModel {
        /// Flat index.
        index: usize,
    },
}

/// Which strategy a federation runs, as written in the aggregator's configuration
/// (`kind = "fed_adam"`, then the optimiser's settings).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategyConfig {
    /// FedAvg: x ← x + Σ nᵢΔᵢ / Σ nᵢ, nᵢ = examples of node i.
    FedAvg,
    /// FedProx: the server side is FedAvg; μ travels in `RoundConfig::proximal_mu` and the
    /// node's trainer adds (μ/2)‖w − x‖².
    FedProx {
        /// Proximal weight μ ≥ 0 sent to the nodes.
        mu: f32,
    },
    /// FedAdam server optimiser on the weighted mean delta.
    FedAdam(AdaptiveConfig),
    /// FedYogi server optimiser on the weighted mean delta.
    FedYogi(AdaptiveConfig),
    /// Coordinate-wise median of the deltas (secure aggregation off only).
    Median,
    /// Coordinate-wise β-trimmed mean of the deltas (secure aggregation off only).
    TrimmedMean {
        /// β in [0, 0.5): fraction dropped from each end per coordinate.
        trim_fraction: f64,
    },
}

impl StrategyConfig {
    /// Short name for logs and `status`.
    pub fn name(&self) -> &'static str {
        match self {
            StrategyConfig::FedAvg => "fedavg",
            StrategyConfig::FedProx { .. } => "fedprox",
            StrategyConfig::FedAdam(_) => "fedadam",
            StrategyConfig::FedYogi(_) => "fedyogi",
            StrategyConfig::Median => "median",
            StrategyConfig::TrimmedMean { .. } => "trimmed_mean",
        }
    }

    /// The μ to put into each round's config (0 unless FedProx).
    pub fn proximal_mu(&self) -> f32 {
        match self {
            StrategyConfig::FedProx { mu } => *mu,
            _ => 0.0,
        }
    }

    /// Whether the strategy can run on a securely aggregated sum.
    pub fn supports_secure_aggregation(&self) -> bool {
        !matches!(
            self,
            StrategyConfig::Median | StrategyConfig::TrimmedMean { .. }
        )
    }

    fn adaptive(&self) -> Option<(AdaptiveRule, &AdaptiveConfig)> {
        match self {
            StrategyConfig::FedAdam(c) => Some((AdaptiveRule::Adam, c)),
            StrategyConfig::FedYogi(c) => Some((AdaptiveRule::Yogi, c)),
            _ => None,
        }
    }

    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), StrategyError> {
        match self {
            StrategyConfig::FedProx { mu } if !(mu.is_finite() && *mu >= 0.0) => {
                Err(StrategyError::Config {
                    name: "mu",
                    value: f64::from(*mu),
                    range: ">= 0",
                })
            }
            StrategyConfig::TrimmedMean { trim_fraction }
                if !(0.0..0.5).contains(trim_fraction) =>
            {
                Err(StrategyError::Config {
                    name: "trim_fraction",
                    value: *trim_fraction,
                    range: "[0, 0.5)",
                })
            }
            StrategyConfig::FedAdam(c) | StrategyConfig::FedYogi(c) => c.validate(),
            _ => Ok(()),
        }
    }
}

/// A configured strategy and, for FedAdam/FedYogi, its server-optimiser state.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    config: StrategyConfig,
    optimizer: Option<OptimizerState>,
}

impl Strategy {
    /// A strategy with a fresh optimiser state (created on the first round).
    pub fn new(config: StrategyConfig) -> Result<Self, StrategyError> {
        Self::resume(config, None)
    }

    /// A strategy continuing from a persisted optimiser state (after a restart).
    pub fn resume(
        config: StrategyConfig,
        state: Option<OptimizerState>,
    ) -> Result<Self, StrategyError> {
        config.validate()?;
        let state = match (config.adaptive(), state) {
            (Some((rule, _)), Some(state)) if state.rule != rule => {
                return Err(StrategyError::StateRule {
                    state: state.rule,
                    strategy: rule,
                })
            }
            (Some(_), state) => state,
            (None, _) => None,
        };
        Ok(Self {
            config,
            optimizer: state,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StrategyConfig {
        &self.config
    }

    /// The server-optimiser state to persist with the round (None for stateless strategies).
    pub fn optimizer_state(&self) -> Option<&OptimizerState> {
        self.optimizer.as_ref()
    }

    /// Aggregates plain updates into the next global model. `global` is the shared part of
    /// the global model; every update's delta must have its layout.
    pub fn aggregate<'a>(
        &mut self,
        global: &ParameterSet,
        updates: impl IntoIterator<Item = &'a Update>,
    ) -> Result<ParameterSet, StrategyError> {
        let updates: Vec<&Update> = updates.into_iter().collect();
        if updates.is_empty() {
            return Err(StrategyError::NoUpdates);
        }
        let layout = global.spec();
        match self.config {
            StrategyConfig::Median | StrategyConfig::TrimmedMean { .. } => {
                let mut flats = Vec::with_capacity(updates.len());
                for update in &updates {
                    update.delta.check_layout(&layout)?;
                    flats.push(update.delta.to_flat());
                }
                let delta = match self.config {
                    StrategyConfig::TrimmedMean { trim_fraction } => {
                        trimmed_mean(&flats, trim_fraction)?
                    }
                    _ => coordinate_median(&flats)?,
                };
                apply_delta(global, &delta)
            }
            _ => {
                let mut sum = WeightedSum::zeros(global.num_values());
                for update in &updates {
                    sum.add(&layout, &update.delta, update.num_examples as f64)?;
                }
                self.apply_weighted_sum(global, &sum)
            }
        }
    }

    /// Applies an already-summed, already-weighted update (what secure aggregation yields)
    /// to the global model: FedAvg/FedProx add the mean, FedAdam/FedYogi take a step.
    pub fn apply_weighted_sum(
        &mut self,
        global: &ParameterSet,
        sum: &WeightedSum,
    ) -> Result<ParameterSet, StrategyError> {
        if !self.config.supports_secure_aggregation() {
            return Err(StrategyError::NeedsIndividualUpdates(self.config.name()));
        }
        if sum.sum().len() != global.num_values() {
            return Err(StrategyError::Length {
                expected: global.num_values(),
                actual: sum.sum().len(),
            });
        }
        let mean = sum.mean()?;
        let Some((rule, adaptive)) = self.config.adaptive() else {
            return apply_delta(global, &mean);
        };
        let adaptive = *adaptive;
        let state = self
            .optimizer
            .get_or_insert_with(|| OptimizerState::new(rule, mean.len(), &adaptive));
        let mut next = state.clone();
        let flat = adaptive::step(&mut next, &adaptive, &global.to_flat(), &mean)?;
        let model = ParameterSet::from_flat(&global.spec(), &flat)?;
        *state = next;
        Ok(model)
    }
}

/// x + Δ for a flat Δ, refusing a non-finite result.
fn apply_delta(global: &ParameterSet, delta: &[f64]) -> Result<ParameterSet, StrategyError> {
    let flat = global.to_flat();
    if delta.len() != flat.len() {
        return Err(StrategyError::Length {
            expected: flat.len(),
            actual: delta.len(),
        });
    }
    let mut next = Vec::with_capacity(flat.len());
    for (index, (&x, &d)) in flat.iter().zip(delta).enumerate() {
        let value = (f64::from(x) + d) as f32;
        if !value.is_finite() {
            return Err(StrategyError::NonFiniteModel { index });
        }
        next.push(value);
    }
    Ok(ParameterSet::from_flat(&global.spec(), &next)?)
}

#[cfg(test)]
mod tests;
