//! The two reference arms on the same held-out data: every merchant alone (local-only,
//! the same epoch budget as the federation) and all training data pooled (centralised,
//! no privacy).

use hansa_node::trainer::TrainConfig;
use hansa_protocol::ParameterSet;

use super::merchants::{pooled_train, LearnerSpec, MerchantData};
use super::scoring::Scoring;
use super::RunError;
use crate::scenario::Scenario;

/// Per-round metrics of a reference arm.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmCurve {
    /// After each round's epoch budget: the held-out-weighted mean over merchants.
    pub per_round: Vec<f64>,
    /// Each merchant's metric on its own held-out data after the last round.
    pub per_merchant: Vec<f64>,
}

/// The local training of `round` (1-based): the federation's local epochs, batch, step
/// and weight decay, seeded by the round.
pub fn round_training(scenario: &Scenario, round: u64) -> TrainConfig {
    let t = &scenario.training;
    TrainConfig {
        epochs: t.local_epochs,
        batch_size: t.batch_size as usize,
        learning_rate: t.learning_rate,
        weight_decay: t.weight_decay,
        proximal_mu: 0.0,
        seed: scenario.seed ^ round.rotate_left(32),
    }
}

/// Local-only: every merchant trains its own model for `rounds` rounds of the
/// federation's local epochs and is scored (on its own held-out data, or the pooled set)
/// after each.
pub fn local_only(
    scenario: &Scenario,
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    scoring: &Scoring<'_>,
    rounds: u64,
) -> Result<ArmCurve, RunError> {
    let mut learners = merchants
        .iter()
        .map(|m| spec.build(&m.train))
        .collect::<Result<Vec<_>, _>>()?;
    let mut per_round = Vec::new();
    let mut last = Vec::new();
    for round in 1..=rounds {
        let config = round_training(scenario, round);
        last.clear();
        for (index, learner) in learners.iter_mut().enumerate() {
            learner.train(&config, None)?;
            last.push(scoring.merchant(learner.as_ref(), index)?);
        }
        per_round.push(scoring.mean(&last));
        tracing::debug!(
            round,
            metric = per_round[per_round.len() - 1],
            "local-only round"
        );
    }
    Ok(ArmCurve {
        per_round,
        per_merchant: last,
    })
}

/// Centralised: one model on the pooled training data, scored for every merchant after
/// each round's epoch budget.
pub fn centralised(
    scenario: &Scenario,
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    scoring: &Scoring<'_>,
    rounds: u64,
) -> Result<ArmCurve, RunError> {
    let pooled = pooled_train(merchants).ok_or(RunError::NoMerchants)?;
    let mut learner = spec.build(&pooled)?;
    let mut per_round = Vec::new();
    let mut last = Vec::new();
    for round in 1..=rounds {
        learner.train(&round_training(scenario, round), None)?;
        last = scoring.everywhere(learner.as_ref())?;
        per_round.push(scoring.mean(&last));
    }
    Ok(ArmCurve {
        per_round,
        per_merchant: last,
    })
}

/// Each merchant's metric with `global` (shared tensors) and its own private tensors.
pub fn with_global(
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    global: &ParameterSet,
    private: &[ParameterSet],
    scoring: &Scoring<'_>,
) -> Result<Vec<f64>, RunError> {
    if scoring.pooled().is_some() && private.iter().all(ParameterSet::is_empty) {
        // One model for everyone, scored once.
        let first = merchants.first().ok_or(RunError::NoMerchants)?;
        let mut learner = spec.build(&first.train)?;
        learner.load_shared(global)?;
        return scoring.everywhere(learner.as_ref());
    }
    merchants
        .iter()
        .zip(private)
        .enumerate()
        .map(|(index, (merchant, own))| {
            let mut learner = spec.build(&merchant.train)?;
            if !own.is_empty() {
                learner.load_private(own)?;
            }
            learner.load_shared(global)?;
            scoring.merchant(learner.as_ref(), index)
        })
        .collect()
}
