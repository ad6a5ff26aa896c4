//! Unbiased randomised rounding onto a grid of step s, integers mod 2^32, and the
//! bound that keeps the cohort's sum from wrapping.
//!
//! A value x becomes ⌊x/s⌋ + Bernoulli(x/s − ⌊x/s⌋) grid steps, so its expectation is x/s
//! exactly. Rounding can lengthen a vector, which would raise the DP sensitivity; as in
//! Kairouz, Liu & Steinke (2021, "The distributed discrete Gaussian"), rounding is
//! *conditional*: it is redrawn until the rounded norm is within
//! [`Quantiser::rounded_norm_bound`], so the sensitivity in grid units is that bound.
//! Integers travel as two's-complement `u32` words; sums are taken mod 2^32 and read back
//! as `i32`, which is exact as long as the true sum stays in (−2^31, 2^31):
//! [`check_no_wrap`] refuses settings for which that could fail.

use hansa_protocol::messages::PrivacySettings;
use rand::Rng;

use crate::error::{PrivacyError, Result};
use crate::settings::positive;

/// Probability β that one unconditioned rounding exceeds the norm bound (Kairouz et al.
/// use e^{-1/2}); the bound grows with ln(1/β), the expected redraws with β.
pub const ROUNDING_BETA: f64 = 0.606_530_659_712_633_4;

/// Redraws before conditional rounding gives up; the chance of reaching it is below
/// β^64 ≈ 1e-14.
pub const MAX_ROUNDING_DRAWS: usize = 64;

/// Probability, per round, that the noise in any coordinate of the sum is larger than
/// the wrap bound allows (a union bound over coordinates with the Gaussian tail
/// P(|X| ≥ t) ≤ 2·exp(−t²/2σ²), which holds for the discrete Gaussian too).
pub const WRAP_FAILURE_PROBABILITY: f64 = 1e-12;

/// Largest magnitude a coordinate of the sum may reach: 2^31 − 1.
pub const SUM_LIMIT: f64 = 2_147_483_647.0;

/// Randomised rounding of clipped updates of a fixed dimension.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiser {
    grid_step: f64,
    clip_norm: f64,
    dimension: usize,
}

impl Quantiser {
    /// A quantiser for updates of `dimension` values clipped to `clip_norm`, onto a grid
    /// of step `grid_step` (both in parameter units).
    pub fn new(grid_step: f64, clip_norm: f64, dimension: usize) -> Result<Self> {
        Ok(Self {
            grid_step: positive("privacy.grid_step", grid_step)?,
            clip_norm: positive("privacy.clip_norm", clip_norm)?,
            dimension,
        })
    }

    /// Grid step s in parameter units.
    pub fn grid_step(&self) -> f64 {
        self.grid_step
    }

    /// L2 bound Δ₂ on a rounded update, in grid steps: the sensitivity of the sum.
    ///
    /// Δ₂² = min(c² + d/4 + √(2 ln(1/β))·(c + √d/2), (c + √d)²) with c = C/s
    /// (Kairouz et al. 2021, Theorem 2 / Algorithm 1).
    pub fn rounded_norm_bound(&self) -> f64 {
        let c = self.clip_norm / self.grid_step;
        let d = self.dimension as f64;
        let conditional =
            c * c + d / 4.0 + (2.0 * (1.0 / ROUNDING_BETA).ln()).sqrt() * (c + d.sqrt() / 2.0);
        let worst = (c + d.sqrt()).powi(2);
        conditional.min(worst).sqrt()
    }

    /// L1 bound Δ₁ on a rounded update, in grid steps: min(Δ₂², √d·Δ₂) for integer vectors.
    pub fn rounded_l1_bound(&self) -> f64 {
        let l2 = self.rounded_norm_bound();
        (l2 * l2).min((self.dimension as f64).sqrt() * l2)
    }

    /// Rounds a clipped update onto the grid as `i64` grid steps, redrawing until the
    /// rounded norm is within [`Self::rounded_norm_bound`].
    pub fn quantise<R: Rng + ?Sized>(&self, values: &[f32], rng: &mut R) -> Result<Vec<i64>> {
        if values.len() != self.dimension {
            return Err(PrivacyError::LengthMismatch {
                what: "update to quantise".into(),
                expected: self.dimension,
                actual: values.len(),
            });
        }
        let scaled: Vec<f64> = values
            .iter()
            .map(|&v| f64::from(v) / self.grid_step)
            .collect();
        if let Some(index) = scaled.iter().position(|x| !x.is_finite()) {
            return Err(PrivacyError::NonFinite {
                what: "update to quantise",
                index,
            });
        }
        let bound = self.rounded_norm_bound();
        let mut rounded = vec![0i64; values.len()];

        for _ in 0..MAX_ROUNDING_DRAWS {
            let mut norm_sq = 0.0f64;
            for (out, &x) in rounded.iter_mut().zip(&scaled) {
                let floor = x.floor();
                let up = rng.gen::<f64>() < x - floor;
                let q = floor + if up { 1.0 } else { 0.0 };
                norm_sq += q * q;
                *out = q as i64;
            }
            if norm_sq.sqrt() <= bound {
                return Ok(rounded);
            }
        }
        Err(PrivacyError::OutOfRange {
            name: "privacy.grid_step",
            detail: format!(
                "{MAX_ROUNDING_DRAWS} roundings all exceeded the norm bound {bound:.1} grid \
                 steps; is the update clipped to the clip norm?"
            ),
        })
    }
}

/// Encodes integers as two's-complement words mod 2^32 (the secure-aggregation ring).
pub fn to_words(values: &[i64]) -> Vec<u32> {
    values.iter().map(|&v| v as u32).collect()
}

/// Reads a sum of words back as signed grid steps and scales them to parameter units.
pub fn dequantise_sum(words: &[u32], grid_step: f64) -> Vec<f64> {
    words
        .iter()
        .map(|&w| f64::from(w as i32) * grid_step)
        .collect()
}

/// What [`check_no_wrap`] computed for a setting: the worst coordinate of the sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrapBound {
    /// Largest possible |signal| of one coordinate of the sum, in grid steps:
    /// n · (C/s + 1), since one coordinate is at most the clipped norm plus one step.
    pub signal_steps: f64,
    /// Noise magnitude not exceeded with probability 1 − [`WRAP_FAILURE_PROBABILITY`].
    pub noise_steps: f64,
}

/// Refuses settings under which the sum of `cohort` quantised, noised updates of
/// `dimension` values could leave (−2^31, 2^31) and wrap mod 2^32.
///
/// The noise counted is the sum's when all `cohort` members add their share:
/// variance cohort · σ² / noise_shares with σ = z · C / s in grid steps.
pub fn check_no_wrap(
    settings: &PrivacySettings,
    cohort: usize,
    dimension: usize,
) -> Result<WrapBound> {
    let clip = positive("privacy.clip_norm", settings.clip_norm)?;
    let step = positive("privacy.grid_step", settings.grid_step)?;
    let z = if settings.noise_multiplier == 0.0 {
        0.0
    } else {
        positive("privacy.noise_multiplier", settings.noise_multiplier)?
    };
    let shares = f64::from(settings.noise_shares.max(1));

    let n = cohort as f64;
    let signal_steps = n * (clip / step + 1.0);
    let sigma_total = z * clip / step * (n / shares).sqrt();
    let tail = (2.0 * (2.0 * dimension.max(1) as f64 / WRAP_FAILURE_PROBABILITY).ln()).sqrt();
    let noise_steps = sigma_total * tail;
    let bound = WrapBound {
        signal_steps,
        noise_steps,
    };

    if signal_steps + noise_steps >= SUM_LIMIT {
        return Err(PrivacyError::WouldWrap {
            detail: format!(
                "cohort {cohort}, clip norm {clip}, grid step {step}, noise multiplier {z}: a \
                 coordinate of the sum may reach {:.3e} grid steps (signal {signal_steps:.3e} + \
                 noise {noise_steps:.3e}), limit 2^31 - 1; raise the grid step",
                signal_steps + noise_steps
            ),
        });
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hansa_protocol::messages::DpMode;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn rounding_is_unbiased() {
        let values = [0.25f32, -0.7, 0.0, 1.3];
        let q = Quantiser::new(0.5, 10.0, values.len()).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let trials = 40_000;
        let mut sums = [0i64; 4];
        for _ in 0..trials {
            for (s, v) in sums.iter_mut().zip(q.quantise(&values, &mut rng).unwrap()) {
                *s += v;
            }
        }
        // Expected grid steps: 0.5, -1.4, 0, 2.6; standard error of a mean ≤ 0.5/√40000.
        for (s, x) in sums.iter().zip(values) {
            let mean = *s as f64 / trials as f64;
            assert!(
                (mean - f64::from(x) / 0.5).abs() < 0.01,
                "mean {mean} for {x}"
            );
        }
    }

    #[test]
    fn each_value_rounds_to_a_neighbouring_grid_point() {
        let q = Quantiser::new(0.1, 1.0, 3).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let r = q.quantise(&[0.25, -0.25, 0.3], &mut rng).unwrap();
        assert!(r[0] == 2 || r[0] == 3);
        assert!(r[1] == -3 || r[1] == -2);
        assert!(r[2] == 3 || r[2] == 2, "0.3/0.1 is 2.9999… in f64");
    }

    #[test]
    fn words_round_trip_through_a_wrapping_sum() {
        let a = to_words(&[-5, 7, 2_000_000_000]);
        let b = to_words(&[3, -9, -2_000_000_001]);
        let sum: Vec<u32> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
        assert_eq!(dequantise_sum(&sum, 1.0), vec![-2.0, -2.0, -1.0]);
    }

    #[test]
    fn norm_bound_matches_hand_computation() {
        // c = 10, d = 4: c² + d/4 + √(2·0.5)·(c + 1) = 100 + 1 + 11 = 112.
        let q = Quantiser::new(0.1, 1.0, 4).unwrap();
        assert!((q.rounded_norm_bound() - 112f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn refuses_a_grid_that_would_wrap_above_ten_nodes() {
        let settings = PrivacySettings {
            mode: DpMode::Distributed,
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            grid_step: 1e-8,
            noise_shares: 10,
        };
        // 10 nodes: 10 × (1e8 + 1) + 1e8 · √(10/10) · √(2 ln(2e6 / 1e-12)) ≈ 1.92e9 fits;
        // 12 nodes: 1.2e9 + 1e8 · √1.2 · 9.18 ≈ 2.21e9 is past 2^31.
        check_no_wrap(&settings, 10, 1_000_000).unwrap();
        let err = check_no_wrap(&settings, 12, 1_000_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("raise the grid step"), "{err}");
        let ok = check_no_wrap(
            &PrivacySettings {
                grid_step: 1e-5,
                ..settings
            },
            100,
            1_000_000,
        )
        .unwrap();
        assert!((ok.signal_steps - 100.0 * 100_001.0).abs() < 1.0);
    }
}
