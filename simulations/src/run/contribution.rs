//! Each merchant's contribution, by leave-one-out on the final round: the federation's
//! metric with the round's mean update against the metric without that merchant's.

use hansa_protocol::ParameterSet;

use super::baselines::{evaluate, held_out_weighted};
use super::federation::FederatedOutcome;
use super::merchants::{LearnerSpec, MerchantData};
use super::RunError;
use crate::report::{leave_one_out as gains, MetricSpec};

/// Contributions of every merchant, in merchant order.
#[derive(Debug, Clone, PartialEq)]
pub struct Contributions {
    /// (report name, training examples) per merchant.
    pub merchants: Vec<(String, u64)>,
    /// Contribution in metric units (positive = helps); `None` for a merchant that did
    /// not contribute to the final round, or when nothing could be measured.
    pub values: Vec<Option<f64>>,
    /// How it was measured, in words, for the report.
    pub method: String,
}

/// Leave-one-out on the final round. The final round's model is rebuilt as the round's
/// starting model plus the plain mean of the contributors' released updates (FedAvg with
/// uniform weights, as under DP or secure aggregation); dropping merchant i from that
/// mean gives the model without it. Both are evaluated on every merchant's held-out data
/// (held-out-weighted mean), each merchant with its own private tensors.
// Limitation: the rebuilt round is a plain FedAvg step on the released updates; under
// FedAdam / FedYogi or example-weighted FedAvg (DP and secure aggregation off) it differs
// from the engine's step (replaying the strategy on the updates would lift it).
pub fn leave_one_out(
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    federated: &FederatedOutcome,
    metric: &MetricSpec,
) -> Result<Contributions, RunError> {
    let names = merchants
        .iter()
        .map(|m| (m.name.clone(), m.train.len() as u64))
        .collect();
    let unmeasured = |why: &str| Contributions {
        merchants: merchants
            .iter()
            .map(|m| (m.name.clone(), m.train.len() as u64))
            .collect(),
        values: vec![None; merchants.len()],
        method: format!("not measured: {why}"),
    };
    let Some(last) = &federated.last_round else {
        return Ok(unmeasured("no round was committed after round 0"));
    };
    if last.updates.len() < 2 {
        return Ok(unmeasured("fewer than two updates in the final round"));
    }

    let mut learners = Vec::with_capacity(merchants.len());
    for (merchant, own) in merchants.iter().zip(&federated.private) {
        let mut learner = spec.build(&merchant.train)?;
        if !own.is_empty() {
            learner.load_private(own)?;
        }
        learners.push(learner);
    }
    let mut score = |model: &ParameterSet| -> Result<f64, RunError> {
        let values = learners
            .iter_mut()
            .zip(merchants)
            .map(|(learner, merchant)| {
                learner.load_shared(model)?;
                evaluate(learner.as_ref(), &merchant.held_out, &metric.name)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(held_out_weighted(merchants, &values))
    };

    let base = last.previous_global.to_flat();
    let spec_layout = last.previous_global.spec();
    let model_with = |skip: Option<usize>| -> Result<ParameterSet, RunError> {
        let kept: Vec<&Vec<f32>> = last
            .updates
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, (_, delta))| delta)
            .collect();
        let n = kept.len() as f32;
        let flat: Vec<f32> = base
            .iter()
            .enumerate()
            .map(|(j, b)| {
                b + kept
                    .iter()
                    .map(|d| d.get(j).copied().unwrap_or(0.0))
                    .sum::<f32>()
                    / n
            })
            .collect();
        ParameterSet::from_flat(&spec_layout, &flat)
            .map_err(|e| RunError::Engine(format!("rebuilding the final model: {e}")))
    };

    let with_all = score(&model_with(None)?)?;
    let mut without = Vec::with_capacity(last.updates.len());
    for i in 0..last.updates.len() {
        without.push(score(&model_with(Some(i))?)?);
    }
    let measured = gains(metric, with_all, &without);
    let values = merchants
        .iter()
        .map(|m| {
            last.updates
                .iter()
                .position(|(id, _)| *id == m.id)
                .map(|i| measured[i])
        })
        .collect();
    Ok(Contributions {
        merchants: names,
        values,
        method: format!(
            "leave-one-out on the final round ({}): the round's model rebuilt as its starting \
             model plus the plain mean of the {} contributors' released (clipped, noised) \
             updates, against the same without the merchant; metric = held-out-weighted {} \
             over all merchants; {} with all = {with_all:.4}. Merchants absent from the final \
             round show no value.",
            last.round,
            last.updates.len(),
            metric.name,
            metric.name
        ),
    })
}
