//! Each merchant's contribution, by leave-one-out on the final round: the federation's
//! metric with the round's mean update against the metric without that merchant's.

use hansa_protocol::ParameterSet;

use super::federation::FederatedOutcome;
use super::merchants::{LearnerSpec, MerchantData};
use super::scoring::Scoring;
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
/// mean gives the model without it. Both are scored as the run scores the federated arm:
/// on every merchant's held-out data (held-out-weighted mean, each merchant with its own
/// private tensors), or once on the pooled held-out set.
// Limitation: the rebuilt round is a plain FedAvg step on the released updates; under
// FedAdam / FedYogi or example-weighted FedAvg (DP and secure aggregation off) it differs
// from the engine's step (replaying the strategy on the updates would lift it).
pub fn leave_one_out(
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    federated: &FederatedOutcome,
    metric: &MetricSpec,
    scoring: &Scoring<'_>,
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

    // With a pooled set and no private tensors one learner scores every model.
    let shared_only =
        scoring.pooled().is_some() && federated.private.iter().all(ParameterSet::is_empty);
    let mut learners = Vec::with_capacity(merchants.len());
    for (merchant, own) in merchants.iter().zip(&federated.private) {
        let mut learner = spec.build(&merchant.train)?;
        if !own.is_empty() {
            learner.load_private(own)?;
        }
        learners.push(learner);
        if shared_only {
            break;
        }
    }
    let mut score = |model: &ParameterSet| -> Result<f64, RunError> {
        if shared_only {
            learners[0].load_shared(model)?;
            return Ok(scoring.everywhere(learners[0].as_ref())?[0]);
        }
        let values = learners
            .iter_mut()
            .enumerate()
            .map(|(index, learner)| {
                learner.load_shared(model)?;
                scoring.merchant(learner.as_ref(), index)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(scoring.mean(&values))
    };

    // The sum of all released updates once; each model without one merchant subtracts
    // its update (linear in the updates, so 10,000 merchants stay cheap).
    let base = last.previous_global.to_flat();
    let spec_layout = last.previous_global.spec();
    let mut total = vec![0f64; base.len()];
    for (_, delta) in &last.updates {
        for (t, d) in total.iter_mut().zip(delta) {
            *t += f64::from(*d);
        }
    }
    let model_with = |skip: Option<usize>| -> Result<ParameterSet, RunError> {
        let mut n = last.updates.len() as f64;
        let left_out = skip.map(|i| &last.updates[i].1);
        if left_out.is_some() {
            n -= 1.0;
        }
        let flat: Vec<f32> = base
            .iter()
            .enumerate()
            .map(|(j, b)| {
                let sum = total[j]
                    - left_out
                        .and_then(|d| d.get(j))
                        .map_or(0.0, |&d| f64::from(d));
                b + (sum / n) as f32
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
             updates, against the same without the merchant; metric = {} {} over all \
             merchants; {} with all = {with_all:.4}. Merchants absent from the final round \
             show no value",
            last.round,
            last.updates.len(),
            if scoring.pooled().is_some() {
                "pooled held-out"
            } else {
                "held-out-weighted"
            },
            metric.name,
            metric.name
        ),
    })
}
