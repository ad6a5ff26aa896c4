//! Candle models: matrix factorisation for recommendations, an MLP for card fraud.

pub mod fraud;
pub mod popularity;
pub mod recommender;

use candle_core::{Device, Tensor, Var};
use hansa_protocol::{ParameterSet, Scope};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::learner::LearnError;

pub use fraud::{FraudConfig, FraudMlp};
pub use recommender::{Feedback, Recommender, RecommenderConfig};

/// A model variable with its parameter name and scope.
#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub name: String,
    pub var: Var,
    pub scope: Scope,
}

/// `len` values uniform in ±`std`·√3 (so their standard deviation is `std`).
pub(crate) fn uniform(rng: &mut ChaCha8Rng, len: usize, std: f64) -> Vec<f32> {
    let bound = (std * 3f64.sqrt()) as f32;
    if bound == 0.0 {
        return vec![0.0; len];
    }
    (0..len).map(|_| rng.gen_range(-bound..bound)).collect()
}

pub(crate) fn new_var(
    values: Vec<f32>,
    shape: &[usize],
    device: &Device,
) -> candle_core::Result<Var> {
    Var::from_tensor(&Tensor::from_vec(values, shape, device)?)
}

/// All named variables as a parameter set, in model order.
pub(crate) fn to_parameter_set(vars: &[Named]) -> Result<ParameterSet, LearnError> {
    let mut set = ParameterSet::new();
    for v in vars {
        let values = v.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        set.push(v.name.as_str(), v.var.dims().to_vec(), values, v.scope)?;
    }
    Ok(set)
}

/// Sets every variable of `scope` from `set`, checking presence and shape first so that
/// a bad set changes nothing.
pub(crate) fn assign(vars: &[Named], scope: Scope, set: &ParameterSet) -> Result<(), LearnError> {
    let mut staged = Vec::new();
    for v in vars.iter().filter(|v| v.scope == scope) {
        let t = set
            .get(&v.name)
            .ok_or_else(|| LearnError::MissingTensor(v.name.clone()))?;
        if t.shape != v.var.dims() {
            return Err(LearnError::ShapeMismatch {
                name: v.name.clone(),
                expected: v.var.dims().to_vec(),
                found: t.shape.clone(),
            });
        }
        if let Some(i) = t.values.iter().position(|x| !x.is_finite()) {
            return Err(LearnError::Parameters(
                hansa_protocol::ParameterError::NonFinite {
                    name: v.name.clone(),
                    index: i,
                },
            ));
        }
        staged.push((
            &v.var,
            Tensor::from_slice(&t.values, v.var.shape(), v.var.device())?,
        ));
    }
    for (var, tensor) in staged {
        var.set(&tensor)?;
    }
    Ok(())
}
