//! The privacy–utility sweep: the federated arm run again at each target ε of
//! `privacy.utility_epsilons`, with the noise multiplier calibrated to spend exactly it.
//!
//! Calibration goes through the same accountant the aggregator charges
//! ([`hansa_privacy::accountant::round_rho`], composed by adding ρ over `rounds` rounds
//! and turned into ε by opendp), so a run that completes all its rounds reports the
//! target ε as spent. Running the arm is left to the caller (a closure), so that this
//! module depends only on the scenario and the accountant.

use hansa_aggregator::round::FederationSettings;
use hansa_privacy::accountant::{epsilon, round_rho};
use hansa_privacy::secagg::neighbour_graph;
use hansa_protocol::messages::PrivacySettings;

use super::federation::{federation_settings, GRID_STEP};
use super::RunError;
use crate::report::UtilityRow;
use crate::scenario::{DpMode, Scenario};

/// Smallest and largest noise multiplier the calibration searches, unitless. Targets
/// outside what this range spends are refused with the range named.
const NOISE_MULTIPLIER_RANGE: (f64, f64) = (1e-3, 1e6);

/// Relative tolerance on ε at which the bisection stops: a hundredfold below the
/// 1e-6 the report promises.
const EPSILON_TOLERANCE: f64 = 1e-8;

/// What one run of the federated arm at a calibrated noise multiplier gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UtilityRun {
    /// The federated metric after the last committed round.
    pub metric: f64,
    /// ε spent after the last committed round (`None` when the run reported none).
    pub epsilon_spent: Option<f64>,
    /// Rounds committed (fewer than the scenario's when the run stopped early).
    pub rounds: u64,
}

/// ε at the scenario's δ that `scenario.rounds` rounds spend with noise multiplier `z`,
/// updates of `dimension` values and `shares` noise shares per round (distributed mode;
/// ignored otherwise). The round's privacy settings mirror the aggregator's
/// `FederationSettings::privacy_settings`.
pub fn rounds_epsilon(
    scenario: &Scenario,
    dimension: usize,
    shares: usize,
    z: f64,
) -> Result<f64, RunError> {
    let p = &scenario.privacy;
    let settings = PrivacySettings {
        mode: p.mode.into(),
        clip_norm: p.clip_norm,
        noise_multiplier: z,
        grid_step: GRID_STEP,
        noise_shares: u32::try_from(shares.max(1)).unwrap_or(u32::MAX),
    };
    let accountant = |e: hansa_privacy::PrivacyError| {
        RunError::Settings(format!("privacy accountant at noise multiplier {z}: {e}"))
    };
    let rho = round_rho(&settings, dimension, shares).map_err(accountant)?;
    epsilon(rho * scenario.rounds as f64, p.delta).map_err(accountant)
}

/// The noise multiplier z at which `scenario.rounds` rounds spend `target_epsilon` at the
/// scenario's δ, to within 1e-8 relative, found by bisection on log z (ε falls as z
/// grows). `dimension` is the number of shared values of an update; `shares` the noise
/// shares a round provisions for ([`provisioned_shares`]; only distributed mode uses it).
pub fn calibrate_noise_multiplier(
    scenario: &Scenario,
    dimension: usize,
    shares: usize,
    target_epsilon: f64,
) -> Result<f64, RunError> {
    if scenario.privacy.mode == DpMode::Off {
        return Err(RunError::Unsupported {
            what: "a privacy–utility table with privacy.mode = \"off\"".into(),
            detail: "calibration needs noise: use central, local or distributed".into(),
        });
    }
    if !(target_epsilon > 0.0 && target_epsilon.is_finite()) {
        return Err(RunError::Settings(format!(
            "privacy.utility_epsilons: target ε = {target_epsilon} must be finite and > 0"
        )));
    }
    let spend = |z: f64| rounds_epsilon(scenario, dimension, shares, z);
    let (smallest, largest) = NOISE_MULTIPLIER_RANGE;
    let unreachable = |z: f64, spent: f64| {
        RunError::Settings(format!(
            "privacy.utility_epsilons: target ε = {target_epsilon} is not reached by noise \
             multipliers in {smallest}..{largest} over {} rounds (z = {z} spends ε = {spent})",
            scenario.rounds
        ))
    };
    // Bracket the target from z = 1 outwards, by factors of 2: very small z would spend
    // an ε too large for opendp's conversion, so the search never starts there.
    let (mut low, mut high) = (1.0, 1.0);
    if spend(1.0)? > target_epsilon {
        loop {
            high *= 2.0;
            let spent = spend(high)?;
            if spent <= target_epsilon {
                break;
            }
            if high > largest {
                return Err(unreachable(high, spent));
            }
            low = high;
        }
    } else {
        loop {
            low /= 2.0;
            // opendp's conversion overflows for ρ of about 1e5 and more (ε in the
            // thousands): such a target is out of reach too.
            let spent = spend(low).map_err(|e| {
                RunError::Settings(format!(
                    "privacy.utility_epsilons: target ε = {target_epsilon} is not reached \
                     before the accountant fails at z = {low}: {e}"
                ))
            })?;
            if spent >= target_epsilon {
                break;
            }
            if low < smallest {
                return Err(unreachable(low, spent));
            }
            high = low;
        }
    }
    // Invariant: spend(low) ≥ target ≥ spend(high).
    for _ in 0..200 {
        let mid = (low * high).sqrt();
        let spent = spend(mid)?;
        if ((spent - target_epsilon) / target_epsilon).abs() <= EPSILON_TOLERANCE {
            return Ok(mid);
        }
        if spent > target_epsilon {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok((low * high).sqrt())
}

/// The noise shares a round provisions for, as the aggregator counts them with all
/// `merchants` connected: the cohort without secure aggregation; with it, the Shamir
/// threshold of the round's neighbour graph, at least `min_cohort`, at most the cohort.
// Limitation: in distributed mode the calibration charges the provisioned shares, the
// fewest a round completes with; a round where more masked updates arrive carries more
// noise and is charged less, so the ε spent is then below the target (never above). With
// cohort sampling (`cohort_size` below the merchant count) the cohort is assumed full.
// Calibrating on the expected arrivals would lift it, at the price of a target that can
// be exceeded.
pub fn provisioned_shares(scenario: &Scenario, merchants: usize) -> Result<usize, RunError> {
    let settings: FederationSettings = federation_settings(scenario, merchants)?;
    let cohort = match settings.cohort_size {
        0 => merchants,
        c => c.min(merchants),
    };
    if !settings.secure_aggregation.enabled {
        return Ok(cohort);
    }
    // The graph's degree depends only on the cohort's size and k, not on the ids.
    let ids: Vec<String> = (0..cohort).map(|i| i.to_string()).collect();
    let graph = neighbour_graph(&ids, settings.secure_aggregation.neighbours, settings.seed);
    let degree = graph.values().map(Vec::len).min().unwrap_or(0);
    let threshold = settings.threshold(degree);
    Ok(threshold.max(settings.min_cohort).min(cohort))
}

/// Runs the federated arm once per target ε of `scenario.privacy.utility_epsilons`, with
/// the noise multiplier calibrated by [`calibrate_noise_multiplier`] and no ε budget, and
/// returns one row per target in the order given. `run_once(variant, label)` runs the
/// federated arm of `variant` (label: the target ε, for an output folder name).
pub fn privacy_utility(
    scenario: &Scenario,
    dimension: usize,
    shares: usize,
    run_once: &mut dyn FnMut(&Scenario, &str) -> Result<UtilityRun, RunError>,
) -> Result<Vec<UtilityRow>, RunError> {
    let mut rows = Vec::with_capacity(scenario.privacy.utility_epsilons.len());
    for &target in &scenario.privacy.utility_epsilons {
        let z = calibrate_noise_multiplier(scenario, dimension, shares, target)?;
        let mut variant = scenario.clone();
        variant.privacy.noise_multiplier = z;
        variant.privacy.max_epsilon = None;
        variant.privacy.utility_epsilons.clear();
        tracing::info!(
            target_epsilon = target,
            noise_multiplier = z,
            "privacy–utility run"
        );
        let run = run_once(&variant, &format!("{target}"))?;
        rows.push(UtilityRow {
            target_epsilon: target,
            epsilon_spent: run.epsilon_spent,
            delta: scenario.privacy.delta,
            noise_multiplier: z,
            metric: run.metric,
            rounds: run.rounds,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioError;

    fn scenario(privacy: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml_str(
            &format!(
                r#"
                name = "sweep"
                rounds = 20
                transport = "memory"
                dataset = {{ kind = "creditcard" }}
                task = {{ kind = "fraud" }}
                merchants = {{ count = 10, partition = {{ kind = "iid" }} }}
                [privacy]
                {privacy}
                "#
            ),
            "test",
            &[],
        )
    }

    fn relative(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn calibrated_central_noise_spends_the_target() {
        let s = scenario("mode = \"central\"\nclip_norm = 0.5").unwrap();
        let dimension = 1_000;
        let mut previous = f64::INFINITY;
        for target in [1.0, 4.0, 10.0] {
            let z = calibrate_noise_multiplier(&s, dimension, 10, target).unwrap();
            let spent = rounds_epsilon(&s, dimension, 10, z).unwrap();
            assert!(
                relative(spent, target) < 1e-6,
                "ε {spent} for target {target}"
            );
            assert!(z < previous, "z {z} at ε {target} not below {previous}");
            previous = z;
        }
    }

    #[test]
    fn central_calibration_matches_the_gaussian_by_hand() {
        // 20 rounds, sensitivity Δ = C + s·√d/2, σ = z·C: ρ = 20·(Δ/(zC))²/2. Read z back
        // from the calibrated ε through ρ alone: z = Δ/C · √(10/ρ).
        let s = scenario("mode = \"central\"\nclip_norm = 1.0").unwrap();
        let dimension = 400;
        let z = calibrate_noise_multiplier(&s, dimension, 1, 4.0).unwrap();
        let sensitivity = 1.0 + GRID_STEP * 20.0 / 2.0;
        let rho = 20.0 * (sensitivity / z).powi(2) / 2.0;
        let eps = epsilon(rho, 1e-5).unwrap();
        assert!(relative(eps, 4.0) < 1e-6, "ε {eps}");
        // ε = ρ + 2√(ρ ln(1/δ)) bounds opendp's ε from above, so ρ is at least the
        // ρ that bound gives for ε = 4: √ρ = −√ln(1/δ) + √(ln(1/δ) + 4).
        let l = (1e5f64).ln();
        let rho_bound = ((l + 4.0).sqrt() - l.sqrt()).powi(2);
        assert!(rho >= rho_bound * (1.0 - 1e-9), "ρ {rho} < {rho_bound}");
    }

    #[test]
    fn calibrated_distributed_noise_spends_the_target() {
        let s = scenario(
            "mode = \"distributed\"\nclip_norm = 1.0\n\
             secure_aggregation = { enabled = true, neighbours = 6, threshold = 4 }",
        )
        .unwrap();
        let shares = provisioned_shares(&s, 10).unwrap();
        // k = 6 of a cohort of 10: a ring with 3 on each side, t = 4, min cohort 3.
        assert_eq!(shares, 4);
        let mut previous = f64::INFINITY;
        for target in [1.0, 4.0, 10.0] {
            let z = calibrate_noise_multiplier(&s, 2_000, shares, target).unwrap();
            let spent = rounds_epsilon(&s, 2_000, shares, z).unwrap();
            assert!(
                relative(spent, target) < 1e-6,
                "ε {spent} for target {target}"
            );
            assert!(z < previous);
            previous = z;
        }
    }

    #[test]
    fn shares_without_secure_aggregation_are_the_cohort() {
        let s = scenario("mode = \"central\"").unwrap();
        assert_eq!(provisioned_shares(&s, 10).unwrap(), 10);
    }

    #[test]
    fn unreachable_or_bad_targets_are_refused() {
        let s = scenario("mode = \"central\"").unwrap();
        let err = calibrate_noise_multiplier(&s, 100, 1, 1e12).unwrap_err();
        assert!(err.to_string().contains("is not reached"), "{err}");
        let err = calibrate_noise_multiplier(&s, 100, 1, f64::NAN).unwrap_err();
        assert!(err.to_string().contains("utility_epsilons"), "{err}");
    }

    #[test]
    fn utility_epsilons_need_dp_and_positive_values() {
        let err = scenario("mode = \"off\"\nutility_epsilons = [1.0]").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("privacy.utility_epsilons") && text.contains("off"),
            "{text}"
        );
        let err = scenario("mode = \"central\"\nutility_epsilons = [1.0, -2.0]").unwrap_err();
        assert!(
            err.to_string().contains("privacy.utility_epsilons[1]"),
            "{err}"
        );
        let ok = scenario("mode = \"central\"\nutility_epsilons = [1.0, 4.0]").unwrap();
        assert_eq!(ok.privacy.utility_epsilons, vec![1.0, 4.0]);
    }

    #[test]
    fn each_target_runs_once_with_its_calibrated_noise_and_no_budget() {
        let mut s =
            scenario("mode = \"central\"\nmax_epsilon = 2.0\nutility_epsilons = [10.0, 1.0]")
                .unwrap();
        s.rounds = 3;
        let mut seen = Vec::new();
        let rows = privacy_utility(&s, 50, 1, &mut |variant, label| {
            assert_eq!(variant.privacy.max_epsilon, None);
            assert!(variant.privacy.utility_epsilons.is_empty());
            let spent = rounds_epsilon(variant, 50, 1, variant.privacy.noise_multiplier)?;
            seen.push((label.to_string(), variant.privacy.noise_multiplier));
            Ok(UtilityRun {
                metric: 0.5,
                epsilon_spent: Some(spent),
                rounds: variant.rounds,
            })
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].0.as_str(), seen[1].0.as_str()), ("10", "1"));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].target_epsilon, 10.0);
        assert!(rows[1].noise_multiplier > rows[0].noise_multiplier);
        for row in &rows {
            assert!(relative(row.epsilon_spent.unwrap(), row.target_epsilon) < 1e-6);
            assert_eq!((row.rounds, row.delta, row.metric), (3, 1e-5, 0.5));
        }
    }
}
