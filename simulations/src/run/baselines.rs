//! The two reference arms on the same held-out data: every merchant alone (local-only,
//! the same epoch budget as the federation) and all training data pooled (centralised,
//! no privacy).

use hansa_node::learner::{HeldOut, Learner};
use hansa_node::trainer::TrainConfig;
use hansa_protocol::ParameterSet;

use super::merchants::{pooled_train, LearnerSpec, MerchantData};
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

/// `metric` of `learner` on `held_out`.
pub fn evaluate(learner: &dyn Learner, held_out: &HeldOut, metric: &str) -> Result<f64, RunError> {
    let metrics = learner.evaluate(held_out)?;
    metrics
        .iter()
        .find(|m| m.name == metric)
        .map(|m| m.value)
        .ok_or_else(|| RunError::Engine(format!("the learner reports no `{metric}`")))
}

/// Mean of `values` weighted by each merchant's held-out size (as the federation's
/// evaluation weighs its nodes).
pub fn held_out_weighted(merchants: &[MerchantData], values: &[f64]) -> f64 {
    let (sum, weight) = merchants
        .iter()
        .zip(values)
        .fold((0.0, 0.0), |(s, w), (m, v)| {
            let n = m.held_out.len() as f64;
            (s + n * v, w + n)
        });
    sum / weight
}

/// Local-only: every merchant trains its own model for `rounds` rounds of the
/// federation's local epochs and is evaluated on its own held-out data after each.
pub fn local_only(
    scenario: &Scenario,
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    metric: &str,
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
        for (learner, merchant) in learners.iter_mut().zip(merchants) {
            learner.train(&config, None)?;
            last.push(evaluate(learner.as_ref(), &merchant.held_out, metric)?);
        }
        per_round.push(held_out_weighted(merchants, &last));
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

/// Centralised: one model on the pooled training data, evaluated on every merchant's
/// held-out data after each round's epoch budget.
pub fn centralised(
    scenario: &Scenario,
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    metric: &str,
    rounds: u64,
) -> Result<ArmCurve, RunError> {
    let pooled = pooled_train(merchants).ok_or(RunError::NoMerchants)?;
    let mut learner = spec.build(&pooled)?;
    let mut per_round = Vec::new();
    let mut last = Vec::new();
    for round in 1..=rounds {
        learner.train(&round_training(scenario, round), None)?;
        last = merchants
            .iter()
            .map(|m| evaluate(learner.as_ref(), &m.held_out, metric))
            .collect::<Result<Vec<_>, _>>()?;
        per_round.push(held_out_weighted(merchants, &last));
    }
    Ok(ArmCurve {
        per_round,
        per_merchant: last,
    })
}

/// Each merchant's metric with `global` (shared tensors) and its own private tensors,
/// on its own held-out data.
pub fn with_global(
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    global: &ParameterSet,
    private: &[ParameterSet],
    metric: &str,
) -> Result<Vec<f64>, RunError> {
    merchants
        .iter()
        .zip(private)
        .map(|(merchant, own)| {
            let mut learner = spec.build(&merchant.train)?;
            if !own.is_empty() {
                learner.load_private(own)?;
            }
            learner.load_shared(global)?;
            evaluate(learner.as_ref(), &merchant.held_out, metric)
        })
        .collect()
}
