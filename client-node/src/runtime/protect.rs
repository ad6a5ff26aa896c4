//! The node's protection step: Δ = local − global, clipped, noised as the round asks.

use hansa_privacy::clip::clip_in_place;
use hansa_privacy::noise::add_gaussian_on_grid;
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
/// `off` sends Δ as is; `central` clips to C (the aggregator adds the noise); `local`
/// clips and adds the full Gaussian noise σ = z·C from opendp.
pub fn protect_plain(
    mut delta: Vec<f32>,
    privacy: &PrivacySettings,
) -> Result<Vec<f32>, UpdateError> {
    match privacy.mode {
        DpMode::Off => Ok(delta),
        DpMode::Central => {
            clip_in_place(&mut delta, privacy.clip_norm)?;
            Ok(delta)
        }
        DpMode::Local => {
            clip_in_place(&mut delta, privacy.clip_norm)?;
            let mut noisy: Vec<f64> = delta.iter().map(|&v| f64::from(v)).collect();
            let sigma = privacy.noise_multiplier * privacy.clip_norm;
            add_gaussian_on_grid(&mut noisy, sigma, privacy.grid_step)?;
            Ok(noisy.into_iter().map(|v| v as f32).collect())
        }
        // Distributed noise only exists under secure aggregation; the aggregator's
        // settings validation refuses it without, and so does the node.
        DpMode::Distributed => Err(PrivacyError::OutOfRange {
            name: "privacy.mode",
            detail: "distributed noise needs secure aggregation".into(),
        }
        .into()),
    }
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
