//! The node's protection step (clip, weight, quantise, noise share) into the words that
//! secure aggregation masks, and the aggregator's decoding of their sum.
//!
//! Layout of the words, d = number of shared parameters:
//! `[update (d words) | weight (1 word) | clip bit (1 word, adaptive clipping only)]`.
//! The aggregation weight w ∈ [0, 1] multiplies the clipped update (so its norm stays
//! within C and the sensitivity is unchanged) and travels as round(w · 2^16), masked.

use hansa_protocol::messages::{DpMode, PrivacySettings};
use rand::Rng;

use crate::accountant::share_sigma_steps;
use crate::adaptive::AdaptiveClip;
use crate::clip::{clip_in_place, ClipOutcome};
use crate::error::{PrivacyError, Result};
use crate::noise::{add_gaussian_on_grid, discrete_gaussian};
use crate::quantise::{check_no_wrap, to_words, Quantiser, SUM_LIMIT};
use crate::settings::validate_privacy;

/// Fixed-point scale of the weight word: w = 1 travels as 65 536. A cohort of up to
/// 32 767 merchants keeps the weight sum below 2^31.
pub const WEIGHT_SCALE: f64 = 65_536.0;

/// Words that follow the d update words: the weight, then the clip bit if adaptive.
pub fn extra_words(adaptive: bool) -> usize {
    1 + usize::from(adaptive)
}

/// A node's protected update, ready to mask.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectedUpdate {
    /// Quantised, weighted, noised update, weight word and optional clip-bit word.
    pub words: Vec<u32>,
    /// What clipping did.
    pub clip: ClipOutcome,
}

/// Runs the node's protection step for secure aggregation on the flat shared update
/// `delta` (Δ = local − global). In `distributed` mode each word gets a discrete
/// Gaussian share of σ_share = z·(C/s)/√noise_shares grid steps; with `adaptive`, the
/// clip bit gets a share of σ_b/√noise_shares. `cohort` is the configured cohort size,
/// used only for the wrap check.
pub fn protect_for_secagg<R: Rng + ?Sized>(
    mut delta: Vec<f32>,
    weight: f64,
    settings: &PrivacySettings,
    adaptive: Option<&AdaptiveClip>,
    cohort: usize,
    rng: &mut R,
) -> Result<ProtectedUpdate> {
    validate_privacy(settings)?;
    if !(0.0..=1.0).contains(&weight) {
        return Err(PrivacyError::OutOfRange {
            name: "aggregation weight",
            detail: format!("must lie in [0, 1], got {weight}"),
        });
    }
    if cohort as f64 * WEIGHT_SCALE >= SUM_LIMIT {
        return Err(PrivacyError::WouldWrap {
            detail: format!(
                "cohort {cohort}: the weight sum could pass 2^31 (at most 32 767 merchants)"
            ),
        });
    }
    check_no_wrap(settings, cohort, delta.len())?;

    let clip = clip_in_place(&mut delta, settings.clip_norm)?;
    delta
        .iter_mut()
        .for_each(|v| *v = (f64::from(*v) * weight) as f32);

    let quantiser = Quantiser::new(settings.grid_step, settings.clip_norm, delta.len())?;
    let mut steps = quantiser.quantise(&delta, rng)?;
    steps.push((weight * WEIGHT_SCALE).round() as i64);
    if adaptive.is_some() {
        steps.push(i64::from(clip.within_norm()));
    }

    if settings.mode == DpMode::Distributed {
        let d = delta.len();
        let noise = discrete_gaussian(d, share_sigma_steps(settings))?;
        steps[..d].iter_mut().zip(noise).for_each(|(s, n)| *s += n);
        if let Some(a) = adaptive {
            let bit_share = a.bit_noise_std / f64::from(settings.noise_shares).sqrt();
            steps[d + 1] += discrete_gaussian(1, bit_share)?[0];
        }
    }
    Ok(ProtectedUpdate {
        words: to_words(&steps),
        clip,
    })
}

/// The node's protection step without secure aggregation: clips `delta` in place and,
/// in `local` mode, adds the full noise σ = z·C (on the grid, see
/// [`crate::noise::add_gaussian_on_grid`]). `off` and `central` only clip.
pub fn protect_plain(delta: &mut [f32], settings: &PrivacySettings) -> Result<ClipOutcome> {
    validate_privacy(settings)?;
    if settings.mode == DpMode::Distributed {
        return Err(PrivacyError::OutOfRange {
            name: "privacy.mode",
            detail: "distributed mode needs secure aggregation: use protect_for_secagg".into(),
        });
    }
    let clip = clip_in_place(delta, settings.clip_norm)?;
    if settings.mode == DpMode::Local {
        let mut values: Vec<f64> = delta.iter().map(|&v| f64::from(v)).collect();
        let sigma = settings.noise_multiplier * settings.clip_norm;
        add_gaussian_on_grid(&mut values, sigma, settings.grid_step)?;
        delta
            .iter_mut()
            .zip(values)
            .for_each(|(d, v)| *d = v as f32);
    }
    Ok(clip)
}

/// The aggregator's noise in `central` mode: σ = z·C on the sum of the clipped updates
/// of the merchants that reported (never scaled to the configured cohort).
pub fn add_central_noise(sum: &mut [f64], settings: &PrivacySettings) -> Result<()> {
    validate_privacy(settings)?;
    if settings.mode != DpMode::Central {
        return Err(PrivacyError::OutOfRange {
            name: "privacy.mode",
            detail: format!(
                "central noise is added in central mode only, not {:?}",
                settings.mode
            ),
        });
    }
    add_gaussian_on_grid(
        sum,
        settings.noise_multiplier * settings.clip_norm,
        settings.grid_step,
    )
}

/// The aggregator's reading of an unmasked sum.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedSum {
    /// Σ wᵢ·Δᵢ + noise, in parameter units (d values).
    pub weighted_sum: Vec<f64>,
    /// Σ wᵢ (not noised: the weight is hidden by masking only).
    pub total_weight: f64,
    /// Noisy count of clip bits, when adaptive clipping is on.
    pub clip_bit_count: Option<f64>,
}

/// Splits an unmasked sum of `dimension` update words plus extras back into values.
pub fn decode_sum(
    words: &[u32],
    dimension: usize,
    grid_step: f64,
    adaptive: bool,
) -> Result<DecodedSum> {
    let expected = dimension + extra_words(adaptive);
    if words.len() != expected {
        return Err(PrivacyError::LengthMismatch {
            what: "unmasked sum".into(),
            expected,
            actual: words.len(),
        });
    }
    let signed = |w: u32| f64::from(w as i32);
    Ok(DecodedSum {
        weighted_sum: words[..dimension]
            .iter()
            .map(|&w| signed(w) * grid_step)
            .collect(),
        total_weight: signed(words[dimension]) / WEIGHT_SCALE,
        clip_bit_count: adaptive.then(|| signed(words[dimension + 1])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn settings(mode: DpMode) -> PrivacySettings {
        PrivacySettings {
            mode,
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            grid_step: 1e-3,
            noise_shares: 3,
        }
    }

    #[test]
    fn off_mode_round_trips_the_clipped_weighted_update() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let s = PrivacySettings {
            mode: DpMode::Off,
            ..settings(DpMode::Off)
        };
        let a = protect_for_secagg(vec![3.0, 4.0], 0.5, &s, None, 3, &mut rng).unwrap();
        let b = protect_for_secagg(vec![0.1, -0.2], 1.0, &s, None, 3, &mut rng).unwrap();
        let sum: Vec<u32> = a
            .words
            .iter()
            .zip(&b.words)
            .map(|(x, y)| x.wrapping_add(*y))
            .collect();
        let decoded = decode_sum(&sum, 2, 1e-3, false).unwrap();
        // (3,4) clips to (0.6, 0.8), halved: (0.3, 0.4); plus (0.1, -0.2): (0.4, 0.2) ± 2 steps.
        assert!((decoded.weighted_sum[0] - 0.4).abs() <= 2e-3, "{decoded:?}");
        assert!((decoded.weighted_sum[1] - 0.2).abs() <= 2e-3, "{decoded:?}");
        assert_eq!(decoded.total_weight, 1.5);
        assert!(!a.clip.within_norm() && b.clip.within_norm());
    }

    #[test]
    fn distributed_mode_adds_share_noise_and_the_clip_bit() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let adaptive = AdaptiveClip::new(1.0, 0.5, 0.2, 1.0).unwrap();
        let s = settings(DpMode::Distributed);
        let p = protect_for_secagg(vec![0.0; 4000], 1.0, &s, Some(&adaptive), 3, &mut rng).unwrap();
        assert_eq!(p.words.len(), 4002);
        let decoded = decode_sum(&p.words, 4000, 1.0, true).unwrap();
        // Share σ = 1 · 1000 / √3 ≈ 577 steps on a zero update.
        let var = decoded.weighted_sum.iter().map(|x| x * x).sum::<f64>() / 4000.0;
        assert!((var.sqrt() - 577.35).abs() < 25.0, "σ = {}", var.sqrt());
        assert_eq!(decoded.total_weight, 1.0);
    }

    #[test]
    fn local_mode_noises_on_the_grid_and_central_refuses_other_modes() {
        let s = PrivacySettings {
            grid_step: 0.5,
            ..settings(DpMode::Local)
        };
        let mut delta = vec![0.0f32; 2000];
        let clip = protect_plain(&mut delta, &s).unwrap();
        assert_eq!(clip.norm_before, 0.0);
        // σ = z·C = 1, so 2 steps of 0.5: every value on the grid, spread about 1.
        assert!(delta.iter().all(|v| (v * 2.0).fract() == 0.0));
        let var = delta.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / 2000.0;
        assert!((var - 1.0).abs() < 0.15, "variance {var}");
        let err = add_central_noise(&mut [0.0], &s).unwrap_err().to_string();
        assert!(err.contains("central mode only"), "{err}");
        let err = protect_plain(&mut [0.0], &settings(DpMode::Distributed)).unwrap_err();
        assert!(err.to_string().contains("protect_for_secagg"), "{err}");
    }

    #[test]
    fn refuses_a_weight_outside_the_unit_interval() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let err = protect_for_secagg(vec![0.0], 2.0, &settings(DpMode::Off), None, 3, &mut rng)
            .unwrap_err();
        assert!(err.to_string().contains("aggregation weight"), "{err}");
    }
}
