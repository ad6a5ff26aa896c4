//! The weighted sum Σ wᵢΔᵢ and total weight Σ wᵢ of a round's updates: FedAvg's hot loop.

use hansa_protocol::{ParameterSet, TensorSpec};

use super::StrategyError;

/// Σ wᵢΔᵢ over a round's updates, flat in the global model's tensor order, with Σ wᵢ.
///
/// This is also what secure aggregation yields after unmasking and de-quantising, so a
/// round with secure aggregation builds one with [`WeightedSum::new`] and hands it to
/// [`super::Strategy::apply_weighted_sum`]; the server optimisers then apply unchanged.
///
/// Sums are kept in f64: 100 updates of f32 summed in f32 lose about two decimal digits.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedSum {
    sum: Vec<f64>,
    total_weight: f64,
}

impl WeightedSum {
    /// Wraps an already-summed, already-weighted update: `sum[i]` is Σ wᵢΔᵢ at flat index
    /// `i`, and `total_weight` is Σ wᵢ (for FedAvg, the examples behind the sum).
    pub fn new(sum: Vec<f64>, total_weight: f64) -> Result<Self, StrategyError> {
        if !(total_weight.is_finite() && total_weight > 0.0) {
            return Err(StrategyError::TotalWeight(total_weight));
        }
        if let Some(index) = sum.iter().position(|v| !v.is_finite()) {
            return Err(StrategyError::NonFiniteSum { index });
        }
        Ok(Self { sum, total_weight })
    }

    /// An empty sum for a model of `num_values` parameters.
    pub fn zeros(num_values: usize) -> Self {
        Self {
            sum: vec![0.0; num_values],
            total_weight: 0.0,
        }
    }

    /// Adds `weight · delta`. The delta must have `layout` (the global model's shared
    /// layout) and finite values; `weight` must be finite and positive.
    pub fn add(
        &mut self,
        layout: &[TensorSpec],
        delta: &ParameterSet,
        weight: f64,
    ) -> Result<(), StrategyError> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(StrategyError::UpdateWeight(weight));
        }
        delta.check_layout(layout)?;
        if delta.num_values() != self.sum.len() {
            return Err(StrategyError::Length {
                expected: self.sum.len(),
                actual: delta.num_values(),
            });
        }
        let mut offset = 0;
        for tensor in delta.tensors() {
            let end = offset + tensor.values.len();
            accumulate(&mut self.sum[offset..end], &tensor.values, weight);
            offset = end;
        }
        self.total_weight += weight;
        Ok(())
    }

    /// Σ wᵢ so far.
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// Σ wᵢΔᵢ so far, flat.
    pub fn sum(&self) -> &[f64] {
        &self.sum
    }

    /// The weighted mean Σ wᵢΔᵢ / Σ wᵢ: the pseudo-gradient of Reddi et al.
    pub fn mean(&self) -> Result<Vec<f64>, StrategyError> {
        if !(self.total_weight.is_finite() && self.total_weight > 0.0) {
            return Err(StrategyError::TotalWeight(self.total_weight));
        }
        let inverse = 1.0 / self.total_weight;
        Ok(self.sum.iter().map(|s| s * inverse).collect())
    }
}

/// `sum[i] += weight · values[i]`; written as a plain zip so that it vectorises.
///
/// Limitation: one thread; the benchmark measures about 8 GB/s per core, so a round of
/// 100 × 1M parameters takes ~50 ms (splitting the flat range across threads would scale it).
fn accumulate(sum: &mut [f64], values: &[f32], weight: f64) {
    debug_assert_eq!(sum.len(), values.len(), "caller checked the layout");
    for (s, &v) in sum.iter_mut().zip(values) {
        *s += weight * f64::from(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hansa_protocol::Scope;

    fn delta(a: [f32; 2], b: f32) -> ParameterSet {
        let mut set = ParameterSet::new();
        set.push("w", vec![2], a.to_vec(), Scope::Shared).unwrap();
        set.push("b", vec![], vec![b], Scope::Shared).unwrap();
        set
    }

    #[test]
    fn sums_and_means_by_weight() {
        let layout = delta([0.0; 2], 0.0).spec();
        let mut sum = WeightedSum::zeros(3);
        sum.add(&layout, &delta([1.0, 2.0], 3.0), 1.0).unwrap();
        sum.add(&layout, &delta([4.0, -2.0], 0.0), 3.0).unwrap();
        // 1·[1,2,3] + 3·[4,-2,0] = [13, -4, 3]; / 4 = [3.25, -1, 0.75].
        assert_eq!(sum.sum(), [13.0, -4.0, 3.0]);
        assert_eq!(sum.total_weight(), 4.0);
        assert_eq!(sum.mean().unwrap(), [3.25, -1.0, 0.75]);
    }

    #[test]
    fn refuses_a_zero_weight_and_a_wrong_layout() {
        let layout = delta([0.0; 2], 0.0).spec();
        let mut sum = WeightedSum::zeros(3);
        let err = sum.add(&layout, &delta([1.0, 2.0], 3.0), 0.0).unwrap_err();
        assert_eq!(err, StrategyError::UpdateWeight(0.0));
        let mut other = ParameterSet::new();
        other
            .push("w", vec![3], vec![0.0; 3], Scope::Shared)
            .unwrap();
        let err = sum.add(&layout, &other, 1.0).unwrap_err();
        assert!(matches!(err, StrategyError::Layout(_)), "{err}");
        assert_eq!(sum.mean().unwrap_err(), StrategyError::TotalWeight(0.0));
    }

    #[test]
    fn new_refuses_non_finite_sums() {
        let err = WeightedSum::new(vec![1.0, f64::NAN], 2.0).unwrap_err();
        assert_eq!(err, StrategyError::NonFiniteSum { index: 1 });
        let err = WeightedSum::new(vec![1.0], -1.0).unwrap_err();
        assert_eq!(err, StrategyError::TotalWeight(-1.0));
    }
}
