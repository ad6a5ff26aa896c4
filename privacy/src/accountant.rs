//! zCDP cost ρ of one round from the clip norm and the noise actually present, and its
//! conversion to (ε, δ) through opendp.
//!
//! Rounds compose by adding ρ (Bun & Steinke 2016); the composed ρ is turned into ε at
//! the federation's δ by opendp's own zCDP → approximate-DP conversion
//! (`make_zCDP_to_approxDP`), so Hansa reports exactly the ε opendp would.

use hansa_protocol::messages::{DpMode, PrivacySettings};
use opendp::combinators::ConcentratedMeasure;
use opendp::measures::ZeroConcentratedDivergence;

use crate::error::{PrivacyError, Result};
use crate::quantise::Quantiser;
use crate::settings::{open_unit, positive};

/// ρ of the Gaussian mechanism: (Δ / σ)² / 2, for L2 sensitivity Δ and noise σ in the
/// same units.
pub fn rho_gaussian(sensitivity: f64, sigma: f64) -> Result<f64> {
    let sensitivity = positive("sensitivity", sensitivity)?;
    let sigma = positive("noise sigma", sigma)?;
    Ok((sensitivity / sigma).powi(2) / 2.0)
}

/// ρ of a sum of `shares` independent discrete Gaussians N_Z(0, σ²) each, for an integer
/// input with L2 sensitivity `l2` and L1 sensitivity `l1` (grid steps).
///
/// Kairouz, Liu & Steinke (2021), Theorem 1: the sum is ½ε²-zCDP with
/// ε = min(√(Δ₂²/(mσ²) + ½τΔ₁), Δ₂/(√m σ) + τΔ₁), τ = 10 Σ_{k=1}^{m−1} e^{−2π²σ² k/(k+1)}.
/// The τ term is what the sum of discrete Gaussians loses against one discrete Gaussian
/// of the total variance; it vanishes for σ of a few grid steps or more.
pub fn rho_distributed_sum(l2: f64, l1: f64, share_sigma: f64, shares: usize) -> Result<f64> {
    let l2 = positive("L2 sensitivity", l2)?;
    let l1 = positive("L1 sensitivity", l1)?;
    let sigma = positive("noise share sigma", share_sigma)?;
    if shares == 0 {
        return Err(PrivacyError::OutOfRange {
            name: "noise shares arrived",
            detail: "no noise share arrived: the sum carries no noise".into(),
        });
    }
    let m = shares as f64;
    let tau: f64 = 10.0
        * (1..shares)
            .map(|k| {
                let k = k as f64;
                (-2.0 * std::f64::consts::PI.powi(2) * sigma * sigma * k / (k + 1.0)).exp()
            })
            .sum::<f64>();
    let eps_a = (l2 * l2 / (m * sigma * sigma) + 0.5 * tau * l1).sqrt();
    let eps_b = l2 / (m.sqrt() * sigma) + tau * l1;
    Ok(eps_a.min(eps_b).powi(2) / 2.0)
}

/// ρ charged for one round with `settings`, updates of `dimension` values, and
/// `shares_arrived` noise shares in the sum (distributed mode: the masked updates that
/// arrived, never the configured cohort). 0 when DP is off. A node checking its own
/// ledger before it sends passes the Shamir threshold t: a round that completes has more
/// than t shares in its sum, so that is its worst case.
///
/// - `central` / `local`: Gaussian with σ = z·C and sensitivity C + s·√d/2 (values are
///   rounded to the nearest grid point before noise, see [`crate::noise`]).
/// - `distributed`: the sum of `shares_arrived` discrete Gaussians of σ_share =
///   z·(C/s)/√noise_shares grid steps each, sensitivity from conditional rounding.
pub fn round_rho(
    settings: &PrivacySettings,
    dimension: usize,
    shares_arrived: usize,
) -> Result<f64> {
    crate::settings::validate_privacy(settings)?;
    let clip = settings.clip_norm;
    let z = settings.noise_multiplier;
    match settings.mode {
        DpMode::Off => Ok(0.0),
        DpMode::Central | DpMode::Local => {
            let step = positive("privacy.grid_step", settings.grid_step)?;
            let sensitivity = clip + step * (dimension as f64).sqrt() / 2.0;
            rho_gaussian(sensitivity, z * clip)
        }
        DpMode::Distributed => {
            let quantiser = Quantiser::new(settings.grid_step, clip, dimension)?;
            rho_distributed_sum(
                quantiser.rounded_norm_bound(),
                quantiser.rounded_l1_bound(),
                share_sigma_steps(settings),
                shares_arrived,
            )
        }
    }
}

/// Standard deviation of one node's noise share in distributed mode, in grid steps:
/// z · (C / s) / √noise_shares, so that `noise_shares` shares carry σ = z·C in total.
pub fn share_sigma_steps(settings: &PrivacySettings) -> f64 {
    settings.noise_multiplier * settings.clip_norm
        / settings.grid_step
        / f64::from(settings.noise_shares.max(1)).sqrt()
}

/// ε at `delta` of a composed zCDP cost ρ, by opendp's conversion. 0 for ρ = 0.
pub fn epsilon(rho: f64, delta: f64) -> Result<f64> {
    let delta = open_unit("budget.delta", delta)?;
    if rho == 0.0 {
        return Ok(0.0);
    }
    let rho = positive("rho", rho)?;
    let profile = ZeroConcentratedDivergence::convert(rho).map_err(|e| PrivacyError::OpenDp {
        place: "zCDP to approximate DP",
        detail: e.to_string(),
    })?;
    profile.epsilon(delta).map_err(|e| PrivacyError::OpenDp {
        place: "privacy profile epsilon",
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opendp::combinators::{make_composition, make_zCDP_to_approxDP};
    use opendp::domains::{AtomDomain, VectorDomain};
    use opendp::measurements::make_gaussian;
    use opendp::metrics::L2Distance;

    #[test]
    fn rho_point_one_gives_the_documented_epsilon() {
        let eps = epsilon(0.1, 1e-5).unwrap();
        assert!((eps - 1.914).abs() < 5e-4, "ε = {eps}");
    }

    #[test]
    fn composed_epsilon_equals_opendps_own_composition() {
        // Three rounds of a Gaussian mechanism with sensitivity 1 and σ = 3, 4, 5.
        let sigmas = [3.0, 4.0, 5.0];
        let domain = VectorDomain::new(AtomDomain::<i32>::default());
        let metric = L2Distance::<i32>::default();
        let rounds = sigmas
            .iter()
            .map(|&s| {
                make_gaussian::<_, _, ZeroConcentratedDivergence>(
                    domain.clone(),
                    metric.clone(),
                    s,
                    None,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let composed = make_zCDP_to_approxDP(make_composition(rounds).unwrap()).unwrap();
        let opendp_eps = composed.map(&1).unwrap().epsilon(1e-5).unwrap();

        let hansa_rho: f64 = sigmas.iter().map(|&s| rho_gaussian(1.0, s).unwrap()).sum();
        let hansa_eps = epsilon(hansa_rho, 1e-5).unwrap();
        assert!(
            (hansa_eps - opendp_eps).abs() < 1e-9,
            "{hansa_eps} vs {opendp_eps}"
        );
    }

    #[test]
    fn distributed_sum_matches_one_gaussian_for_wide_shares() {
        // 4 shares of σ = 50 steps: τ ≈ 0, so ρ = Δ² / (2 · 4 · 2500).
        let rho = rho_distributed_sum(100.0, 1000.0, 50.0, 4).unwrap();
        assert!((rho - 10_000.0 / 20_000.0).abs() < 1e-12);
        // Fewer shares arrived, less noise, higher cost.
        assert!(rho_distributed_sum(100.0, 1000.0, 50.0, 3).unwrap() > rho);
    }

    #[test]
    fn central_charge_is_one_over_two_z_squared_plus_grid() {
        let settings = PrivacySettings {
            mode: DpMode::Central,
            clip_norm: 2.0,
            noise_multiplier: 1.0,
            grid_step: 1e-6,
            noise_shares: 1,
        };
        // Sensitivity 2 + 1e-6 · 10 / 2 = 2.000005; σ = 2.
        let rho = round_rho(&settings, 100, 0).unwrap();
        assert!((rho - (2.000_005f64 / 2.0).powi(2) / 2.0).abs() < 1e-12);
        let off = PrivacySettings {
            mode: DpMode::Off,
            ..settings
        };
        assert_eq!(round_rho(&off, 100, 0).unwrap(), 0.0);
    }
}
