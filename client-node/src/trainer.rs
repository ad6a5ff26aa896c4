//! The local trainer: shuffled mini-batches, Adam, L2 penalty, optional FedProx term.

use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use hansa_protocol::ParameterSet;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::learner::LearnError;

/// How one round (or one centralised run) of local training goes.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the local data.
    pub epochs: u32,
    /// Examples per optimiser step.
    pub batch_size: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// L2 penalty coefficient λ. The recommender charges λ·‖row‖² for every embedding row
    /// and bias a batch touches (per example, as in classic MF); the fraud MLP charges
    /// λ/2·‖W‖² on its weight matrices.
    pub weight_decay: f64,
    /// FedProx μ: adds μ/2·‖w − w_global‖² over the shared tensors; 0 turns it off.
    pub proximal_mu: f64,
    /// Seeds shuffling and negative sampling; the same seed and data give the same model.
    pub seed: u64,
}

impl Default for TrainConfig {
    /// One epoch, batch 1024, learning rate 0.01, λ = 0, no proximal term, seed 0.
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 1024,
            learning_rate: 0.01,
            weight_decay: 0.0,
            proximal_mu: 0.0,
            seed: 0,
        }
    }
}

/// What a training run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainReport {
    /// Examples in one epoch (the node's aggregation weight).
    pub num_examples: u64,
    /// Mean mini-batch objective (data loss plus penalties) over the last epoch.
    pub final_loss: f64,
}

/// A model and its local data, as the trainer sees them.
pub(crate) trait Objective {
    /// Examples in one epoch.
    fn num_examples(&self) -> usize;
    /// Every trained variable.
    fn trainable(&self) -> Vec<Var>;
    /// Shared variables by parameter name (for the proximal term).
    fn shared_vars(&self) -> Vec<(String, Var)>;
    /// Mean loss of the examples at `batch`, including the L2 penalty.
    fn batch_loss(
        &self,
        batch: &[usize],
        weight_decay: f64,
        rng: &mut ChaCha8Rng,
    ) -> candle_core::Result<Tensor>;
}

/// Runs `config.epochs` epochs of Adam over `objective`.
pub(crate) fn fit(
    objective: &impl Objective,
    config: &TrainConfig,
    global: Option<&ParameterSet>,
) -> Result<TrainReport, LearnError> {
    let n = objective.num_examples();
    if n == 0 {
        return Err(LearnError::EmptyPart);
    }
    if config.batch_size == 0 {
        return Err(LearnError::Config("batch size must be at least 1".into()));
    }
    let anchors = proximal_anchors(objective, config, global)?;
    let params = ParamsAdamW {
        lr: config.learning_rate,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut adam = AdamW::new(objective.trainable(), params)?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut final_loss = f64::NAN;

    for epoch in 0..config.epochs {
        order.shuffle(&mut rng);
        let (mut total, mut batches) = (0.0, 0usize);
        for batch in order.chunks(config.batch_size) {
            let mut loss = objective.batch_loss(batch, config.weight_decay, &mut rng)?;
            if let Some(anchors) = &anchors {
                loss = (loss + proximal_term(anchors, config.proximal_mu)?)?;
            }
            adam.backward_step(&loss)?;
            total += f64::from(loss.to_scalar::<f32>()?);
            batches += 1;
        }
        final_loss = total / batches as f64;
        if !final_loss.is_finite() {
            return Err(LearnError::Diverged { epoch });
        }
        tracing::debug!(epoch, loss = final_loss, "epoch done");
    }
    Ok(TrainReport {
        num_examples: n as u64,
        final_loss,
    })
}

type Anchors = Vec<(Var, Tensor)>;

fn proximal_anchors(
    objective: &impl Objective,
    config: &TrainConfig,
    global: Option<&ParameterSet>,
) -> Result<Option<Anchors>, LearnError> {
    if config.proximal_mu == 0.0 {
        return Ok(None);
    }
    let global = global
        .ok_or_else(|| LearnError::Config("proximal_mu > 0 needs the global parameters".into()))?;
    let mut anchors = Vec::new();
    for (name, var) in objective.shared_vars() {
        let t = global
            .get(&name)
            .ok_or_else(|| LearnError::MissingTensor(name.clone()))?;
        let anchor = Tensor::from_slice(&t.values, var.shape(), var.device()).map_err(|_| {
            LearnError::ShapeMismatch {
                name: name.clone(),
                expected: var.dims().to_vec(),
                found: t.shape.clone(),
            }
        })?;
        anchors.push((var, anchor));
    }
    Ok(Some(anchors))
}

fn proximal_term(anchors: &Anchors, mu: f64) -> candle_core::Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    for (var, anchor) in anchors {
        let sq = (var.as_tensor() - anchor)?.sqr()?.sum_all()?;
        sum = Some(match sum {
            None => sq,
            Some(s) => (s + sq)?,
        });
    }
    let sum = sum.expect("a model has at least one shared tensor");
    sum.affine(mu / 2.0, 0.0)
}
