//! FedAdam and FedYogi server optimisers (Reddi et al. 2021, "Adaptive Federated Optimization").

use serde::{Deserialize, Serialize};

use super::StrategyError;

/// Which second-moment rule an adaptive server optimiser uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdaptiveRule {
    /// FedAdam: `v ← β2 v + (1 − β2) Δ²`.
    Adam,
    /// FedYogi: `v ← v − (1 − β2) Δ² sign(v − Δ²)`; `v` grows more slowly than Adam's.
    Yogi,
}

/// Hyper-parameters of FedAdam and FedYogi (Algorithm 2 of Reddi et al.).
///
/// Defaults: β1 = 0.9 and β2 = 0.99, the values the paper fixes in its experiments.
/// τ = 10⁻³ and server learning rate η = 10⁻² are starting points only: the paper tunes
/// τ and η per task on logarithmic grids, so tune both for a new model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Server learning rate η.
    pub server_learning_rate: f64,
    /// First-moment decay β1, in [0, 1).
    pub beta1: f64,
    /// Second-moment decay β2, in [0, 1).
    pub beta2: f64,
    /// Adaptivity τ > 0: added to √v, and v starts at τ² (the paper's `v₋₁ ≥ τ²`), so a
    /// step is at most η |m| / τ.
    pub tau: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            server_learning_rate: 1e-2,
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
        }
    }
}

impl AdaptiveConfig {
    /// Checks every value's range, naming the first that is out of it.
    pub fn validate(&self) -> Result<(), StrategyError> {
        let bad = |name: &'static str, value: f64, range: &'static str| {
            Err(StrategyError::Config { name, value, range })
        };
        if !(self.server_learning_rate.is_finite() && self.server_learning_rate > 0.0) {
            return bad("server_learning_rate", self.server_learning_rate, "> 0");
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return bad("beta1", self.beta1, "[0, 1)");
        }
        if !(0.0..1.0).contains(&self.beta2) {
            return bad("beta2", self.beta2, "[0, 1)");
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return bad("tau", self.tau, "> 0");
        }
        Ok(())
    }
}

/// The server optimiser's moments: persisted with each round so that a restarted
/// aggregator continues the same trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// The rule these moments belong to; a state is never applied with the other rule.
    pub rule: AdaptiveRule,
    /// Server steps taken so far (rounds applied).
    pub steps: u64,
    /// First moment m, one value per shared parameter, flat in tensor order.
    pub m: Vec<f32>,
    /// Second moment v, same layout; every value ≥ 0.
    pub v: Vec<f32>,
}

impl OptimizerState {
    /// A fresh state: m = 0 and v = τ² (so that √v + τ never starts at τ alone).
    pub fn new(rule: AdaptiveRule, num_values: usize, config: &AdaptiveConfig) -> Self {
        let v0 = (config.tau * config.tau) as f32;
        Self {
            rule,
            steps: 0,
            m: vec![0.0; num_values],
            v: vec![v0; num_values],
        }
    }
}

/// One server step: updates `state` and returns the new flat parameters `x + η m / (√v + τ)`.
///
/// Works in f64 and writes nothing back unless every new value is finite, so a bad step
/// leaves both the model and the moments as they were.
pub fn step(
    state: &mut OptimizerState,
    config: &AdaptiveConfig,
    global: &[f32],
    pseudo_gradient: &[f64],
) -> Result<Vec<f32>, StrategyError> {
    let n = global.len();
    if pseudo_gradient.len() != n || state.m.len() != n || state.v.len() != n {
        return Err(StrategyError::OptimizerLength {
            expected: n,
            moments: state.m.len(),
            delta: pseudo_gradient.len(),
        });
    }
    let (beta1, beta2, tau, eta) = (
        config.beta1,
        config.beta2,
        config.tau,
        config.server_learning_rate,
    );
    let mut m_next = Vec::with_capacity(n);
    let mut v_next = Vec::with_capacity(n);
    let mut x_next = Vec::with_capacity(n);
    for i in 0..n {
        let delta = pseudo_gradient[i];
        let delta_sq = delta * delta;
        let m = beta1 * f64::from(state.m[i]) + (1.0 - beta1) * delta;
        let v_prev = f64::from(state.v[i]);
        let v = match state.rule {
            AdaptiveRule::Adam => beta2 * v_prev + (1.0 - beta2) * delta_sq,
            AdaptiveRule::Yogi => v_prev - (1.0 - beta2) * delta_sq * sign(v_prev - delta_sq),
        };
        // Both rules keep v ≥ 0 in exact arithmetic; clamp the rounding so √ never sees < 0.
        let v = v.max(0.0);
        let x = f64::from(global[i]) + eta * m / (v.sqrt() + tau);
        if !x.is_finite() {
            return Err(StrategyError::NonFiniteModel { index: i });
        }
        m_next.push(m as f32);
        v_next.push(v as f32);
        x_next.push(x as f32);
    }
    state.m = m_next;
    state.v = v_next;
    state.steps += 1;
    Ok(x_next)
}

/// The sign function with sign(0) = 0, as Yogi's rule needs.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AdaptiveConfig {
        AdaptiveConfig {
            server_learning_rate: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            tau: 0.1,
        }
    }

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-6
    }

    #[test]
    fn adam_first_step_by_hand() {
        // v₀ = τ² = 0.01; Δ = 1: m = 0.1, v = 0.99·0.01 + 0.01·1 = 0.0199,
        // x = 0 + 0.1 · 0.1 / (√0.0199 + 0.1) = 0.01 / 0.241067… = 0.041482…
        let cfg = config();
        let mut state = OptimizerState::new(AdaptiveRule::Adam, 1, &cfg);
        let x = step(&mut state, &cfg, &[0.0], &[1.0]).unwrap();
        assert!(close(state.m[0], 0.1), "{:?}", state.m);
        assert!(close(state.v[0], 0.0199), "{:?}", state.v);
        let expected = 0.01 / (0.0199f64.sqrt() + 0.1);
        assert!(close(x[0], expected), "{x:?} vs {expected}");
        assert_eq!(state.steps, 1);
    }

    #[test]
    fn yogi_first_step_by_hand() {
        // v₀ = 0.01 < Δ² = 1, so sign = −1 and v = 0.01 + 0.01·1 = 0.02;
        // x = 0.5 + 0.1 · 0.1 / (√0.02 + 0.1).
        let cfg = config();
        let mut state = OptimizerState::new(AdaptiveRule::Yogi, 1, &cfg);
        let x = step(&mut state, &cfg, &[0.5], &[1.0]).unwrap();
        assert!(close(state.v[0], 0.02), "{:?}", state.v);
        assert!(close(x[0], 0.5 + 0.01 / (0.02f64.sqrt() + 0.1)), "{x:?}");
    }

    #[test]
    fn yogi_shrinks_v_when_the_gradient_is_smaller() {
        // v = 4 > Δ² = 1: v = 4 − 0.01·1 = 3.99 (Adam would give 0.99·4 + 0.01 = 3.97).
        let cfg = config();
        let mut yogi = OptimizerState::new(AdaptiveRule::Yogi, 1, &cfg);
        yogi.v[0] = 4.0;
        step(&mut yogi, &cfg, &[0.0], &[1.0]).unwrap();
        assert!(close(yogi.v[0], 3.99), "{:?}", yogi.v);
        let mut adam = OptimizerState::new(AdaptiveRule::Adam, 1, &cfg);
        adam.v[0] = 4.0;
        step(&mut adam, &cfg, &[0.0], &[1.0]).unwrap();
        assert!(close(adam.v[0], 3.97), "{:?}", adam.v);
    }

    #[test]
    fn zero_gradient_from_a_fresh_state_does_not_move_the_model() {
        // The failure this guards against: v = 0 with Δ = 0 gives 0/0 = NaN when τ is
        // not added; with v₀ = τ² and + τ the step is exactly 0.
        for rule in [AdaptiveRule::Adam, AdaptiveRule::Yogi] {
            let cfg = config();
            let mut state = OptimizerState::new(rule, 2, &cfg);
            for _ in 0..5 {
                let x = step(&mut state, &cfg, &[1.0, -2.0], &[0.0, 0.0]).unwrap();
                assert_eq!(x, [1.0, -2.0]);
            }
        }
    }

    #[test]
    fn refuses_moments_of_another_length() {
        let cfg = config();
        let mut state = OptimizerState::new(AdaptiveRule::Adam, 3, &cfg);
        let err = step(&mut state, &cfg, &[0.0, 0.0], &[1.0, 1.0]).unwrap_err();
        assert_eq!(
            err,
            StrategyError::OptimizerLength {
                expected: 2,
                moments: 3,
                delta: 2
            }
        );
        assert_eq!(state.steps, 0);
    }

    #[test]
    fn validate_names_the_bad_value() {
        let cfg = AdaptiveConfig {
            beta2: 1.0,
            ..AdaptiveConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert!(err.to_string().contains("beta2"), "{err}");
        assert!(AdaptiveConfig::default().validate().is_ok());
    }
}
