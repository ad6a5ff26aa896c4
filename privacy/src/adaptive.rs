//! Adaptive clipping by the quantile method of Andrew et al. (2021), with its privacy cost.
//!
//! Each merchant reports one bit, "my update norm was within C", alongside its update.
//! The aggregator sees the bit count only with Gaussian noise of standard deviation
//! `bit_noise_std` (sensitivity 1: one merchant changes the count by at most 1), and
//! moves C geometrically towards the target quantile:
//! C ← C · exp(−η · (b̄ − γ)), with b̄ the noisy fraction of bits.
//! The bit count is a second release every round, so [`AdaptiveClip::rho_per_round`]
//! must be charged to the ledger on top of the update's ρ (an earlier framework forgot it).

use serde::{Deserialize, Serialize};

use crate::error::{PrivacyError, Result};
use crate::settings::positive;

/// State and settings of the quantile-tracking clip norm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveClip {
    /// Current clip norm C, in parameter units.
    pub clip_norm: f64,
    /// Target quantile γ of update norms to fall within C, in (0, 1); 0.5 is the median.
    pub target_quantile: f64,
    /// Geometric learning rate η of the clip norm; Andrew et al. use 0.2.
    pub learning_rate: f64,
    /// Standard deviation σ_b of the noise on the bit count, in bits.
    pub bit_noise_std: f64,
}

impl AdaptiveClip {
    /// Creates the state after validating every setting by name.
    pub fn new(
        clip_norm: f64,
        target_quantile: f64,
        learning_rate: f64,
        bit_noise_std: f64,
    ) -> Result<Self> {
        positive("adaptive_clip.clip_norm", clip_norm)?;
        crate::settings::open_unit("adaptive_clip.target_quantile", target_quantile)?;
        positive("adaptive_clip.learning_rate", learning_rate)?;
        positive("adaptive_clip.bit_noise_std", bit_noise_std)?;
        Ok(Self {
            clip_norm,
            target_quantile,
            learning_rate,
            bit_noise_std,
        })
    }

    /// zCDP cost of releasing the noisy bit count once: ρ = 1 / (2 σ_b²).
    pub fn rho_per_round(&self) -> f64 {
        1.0 / (2.0 * self.bit_noise_std * self.bit_noise_std)
    }

    /// zCDP cost of the bit count in `distributed` mode, where each of the `shares_arrived`
    /// contributors added a discrete Gaussian share of σ_b / √noise_shares: the sum of
    /// those shares with sensitivity 1 ([`crate::accountant::rho_distributed_sum`]).
    pub fn rho_distributed(&self, shares_arrived: usize, noise_shares: u32) -> Result<f64> {
        let share_sigma = self.bit_noise_std / f64::from(noise_shares.max(1)).sqrt();
        crate::accountant::rho_distributed_sum(1.0, 1.0, share_sigma, shares_arrived)
    }

    /// Moves the clip norm from the noisy count of "within C" bits over `reports`
    /// merchants (the cohort that actually reported). Returns the new clip norm.
    pub fn update(&mut self, noisy_bit_count: f64, reports: usize) -> Result<f64> {
        if reports == 0 {
            return Err(PrivacyError::OutOfRange {
                name: "adaptive_clip.reports",
                detail: "cannot update the clip norm from 0 reports".into(),
            });
        }
        if !noisy_bit_count.is_finite() {
            return Err(PrivacyError::NonFinite {
                what: "noisy bit count",
                index: 0,
            });
        }
        let fraction = noisy_bit_count / reports as f64;
        self.clip_norm *= (-self.learning_rate * (fraction - self.target_quantile)).exp();
        Ok(self.clip_norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_towards_the_quantile() {
        let mut a = AdaptiveClip::new(1.0, 0.5, 0.2, 1.0).unwrap();
        // All 10 within C: fraction 1, C shrinks by exp(-0.2 * 0.5).
        let c = a.update(10.0, 10).unwrap();
        assert!((c - (-0.1f64).exp()).abs() < 1e-12);
        // None within C: C grows by exp(0.2 * 0.5), back to 1.
        let c = a.update(0.0, 10).unwrap();
        assert!((c - 1.0).abs() < 1e-12);
    }

    #[test]
    fn charges_the_bit_release() {
        let a = AdaptiveClip::new(1.0, 0.5, 0.2, 2.0).unwrap();
        assert_eq!(a.rho_per_round(), 0.125);
        // 4 shares of σ_b/√4 = 1 each arrived out of 4: the full σ_b = 2, same cost
        // (τ = 10·Σ e^{−2π²k/(k+1)} ≈ 5.4e-4 adds a little).
        let rho = a.rho_distributed(4, 4).unwrap();
        assert!((0.125..0.1255).contains(&rho), "{rho}");
        // Only 2 arrived: half the variance, twice the cost.
        assert!((a.rho_distributed(2, 4).unwrap() - 0.25).abs() < 1e-3);
    }

    #[test]
    fn refuses_bad_settings_by_name() {
        let err = AdaptiveClip::new(1.0, 1.5, 0.2, 1.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("target_quantile"), "{err}");
        let err = AdaptiveClip::new(1.0, 0.5, 0.2, f64::NAN)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bit_noise_std"), "{err}");
    }
}
