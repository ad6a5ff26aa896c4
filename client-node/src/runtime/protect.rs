//! The node's protection step: Δ = local − global, clipped, noised as the round asks.

use hansa_privacy::PrivacyError;
use hansa_protocol::messages::{DpMode, PrivacySettings};
use hansa_protocol::{ParameterError, ParameterSet};

/// Errors forming an update.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The local model's shared tensors do not have the global model's layout.
    #[error(transparent)]
    Layout(#[from] ParameterError),
    /// Clipping or noising failed.
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
}

/// Δ = local − global over the global model's (shared) layout, flat.
pub fn delta(local: &ParameterSet, global: &ParameterSet) -> Result<Vec<f32>, UpdateError> {
    let local = local.shared();
    local.check_layout(&global.spec())?;
    let delta = local
        .to_flat()
        .iter()
        .zip(global.to_flat())
        .map(|(l, g)| l - g)
        .collect();
    Ok(delta)
}

/// Applies the round's privacy mode to a plain (not securely aggregated) update:
/// `off` sends Δ as is (plain FedAvg); otherwise hansa-privacy clips to C and, in
/// `local` mode, adds the full noise σ = z·C.
pub fn protect_plain(
    mut delta: Vec<f32>,
    privacy: &PrivacySettings,
) -> Result<Vec<f32>, UpdateError> {
    if privacy.mode != DpMode::Off {
        hansa_privacy::protect::protect_plain(&mut delta, privacy)?;
    }
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hansa_protocol::Scope;

    fn set(values: Vec<f32>) -> ParameterSet {
        let mut s = ParameterSet::new();
        s.push("w", vec![values.len()], values, Scope::Shared)
            .unwrap();
        s
    }

    fn settings(mode: DpMode) -> PrivacySettings {
        PrivacySettings {
            mode,
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            grid_step: 1e-3,
            noise_shares: 1,
        }
    }

    #[test]
    fn delta_is_local_minus_global_on_shared_tensors() {
        let mut local = set(vec![1.0, 5.0]);
        local
            .push("user", vec![1], vec![9.0], Scope::Private)
            .unwrap();
        let d = delta(&local, &set(vec![0.5, 2.0])).unwrap();
        assert_eq!(d, [0.5, 3.0]);
    }

    #[test]
    fn central_mode_clips_to_the_clip_norm() {
        let clipped = protect_plain(vec![3.0, 4.0], &settings(DpMode::Central)).unwrap();
        assert!((clipped[0] - 0.6).abs() < 1e-6 && (clipped[1] - 0.8).abs() < 1e-6);
        assert_eq!(
            protect_plain(vec![3.0, 4.0], &settings(DpMode::Off)).unwrap(),
            [3.0, 4.0]
        );
    }

    #[test]
    fn local_mode_adds_noise_of_the_configured_scale() {
        let n = 20_000;
        let noisy = protect_plain(vec![0.0; n], &settings(DpMode::Local)).unwrap();
        let var = noisy.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64;
        // σ = z·C = 1: the sample variance of 20 000 draws is within 0.05 of 1.
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn distributed_mode_without_secure_aggregation_is_refused() {
        assert!(protect_plain(vec![0.0], &settings(DpMode::Distributed)).is_err());
    }
}
