//! Where every arm's models are scored: each merchant's own held-out data, or the run's
//! pooled held-out set (`evaluation.held_out = "pooled"`).

use hansa_node::learner::{HeldOut, Learner};

use super::merchants::MerchantData;
use super::RunError;

/// The held-out data of a run and its headline metric.
#[derive(Clone, Copy)]
pub struct Scoring<'a> {
    merchants: &'a [MerchantData],
    pooled: Option<&'a HeldOut>,
    metric: &'a str,
}

impl<'a> Scoring<'a> {
    /// Scores `metric` on each merchant's held-out data, or on `pooled` for all of them.
    pub fn new(
        merchants: &'a [MerchantData],
        pooled: Option<&'a HeldOut>,
        metric: &'a str,
    ) -> Self {
        Self {
            merchants,
            pooled,
            metric,
        }
    }

    /// The headline metric's name.
    pub fn metric(&self) -> &'a str {
        self.metric
    }

    /// The pooled held-out set, when the run has one.
    pub fn pooled(&self) -> Option<&'a HeldOut> {
        self.pooled
    }

    /// The held-out data merchant `index` is scored on.
    pub fn held_out(&self, index: usize) -> &'a HeldOut {
        self.pooled.unwrap_or(&self.merchants[index].held_out)
    }

    /// `learner`'s metric for merchant `index`.
    pub fn merchant(&self, learner: &dyn Learner, index: usize) -> Result<f64, RunError> {
        evaluate(learner, self.held_out(index), self.metric)
    }

    /// One model's metric for every merchant, when the model needs no merchant's private
    /// tensors (the centralised model, or any fraud model): with a pooled set it is
    /// evaluated once.
    pub fn everywhere(&self, learner: &dyn Learner) -> Result<Vec<f64>, RunError> {
        match self.pooled {
            Some(pooled) => {
                let value = evaluate(learner, pooled, self.metric)?;
                Ok(vec![value; self.merchants.len()])
            }
            None => (0..self.merchants.len())
                .map(|i| self.merchant(learner, i))
                .collect(),
        }
    }

    /// The arm's headline from per-merchant values: weighted by each merchant's held-out
    /// size, as the federation's own evaluation weighs its nodes; with a pooled set every
    /// merchant is scored on the same data and weighs the same.
    pub fn mean(&self, values: &[f64]) -> f64 {
        if self.pooled.is_some() {
            return values.iter().sum::<f64>() / values.len() as f64;
        }
        let (sum, weight) = self
            .merchants
            .iter()
            .zip(values)
            .fold((0.0, 0.0), |(s, w), (m, v)| {
                let n = m.held_out.len() as f64;
                (s + n * v, w + n)
            });
        sum / weight
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
