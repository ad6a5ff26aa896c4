//! Strategy tests on vectors worked out by hand, and multi-round runs of the adaptive optimisers.

use hansa_protocol::messages::Update;
use hansa_protocol::{ParameterSet, Scope};

use super::*;

fn model(values: [f32; 3]) -> ParameterSet {
    let mut set = ParameterSet::new();
    set.push("w", vec![2], values[..2].to_vec(), Scope::Shared)
        .unwrap();
    set.push("b", vec![], vec![values[2]], Scope::Shared)
        .unwrap();
    set
}

fn update(delta: [f32; 3], num_examples: u64) -> Update {
    Update {
        round: 1,
        num_examples,
        delta: model(delta),
        train_loss: 0.5,
    }
}

#[test]
fn fedavg_weights_by_example_count() {
    // Mean delta = (10·[1, 0, 2] + 30·[−1, 4, 2]) / 40 = [−0.5, 3, 2].
    let global = model([1.0, 1.0, 1.0]);
    let updates = [update([1.0, 0.0, 2.0], 10), update([-1.0, 4.0, 2.0], 30)];
    let mut fedavg = Strategy::new(StrategyConfig::FedAvg).unwrap();
    let next = fedavg.aggregate(&global, &updates).unwrap();
    assert_eq!(next.to_flat(), [0.5, 4.0, 3.0]);
    assert_eq!(next.spec(), global.spec());
    assert!(fedavg.optimizer_state().is_none());
}

#[test]
fn fedprox_server_side_is_fedavg_and_reports_mu() {
    let config = StrategyConfig::FedProx { mu: 0.01 };
    assert_eq!(config.proximal_mu(), 0.01);
    assert_eq!(StrategyConfig::FedAvg.proximal_mu(), 0.0);
    let global = model([0.0, 0.0, 0.0]);
    let updates = [update([2.0, 2.0, 2.0], 1), update([0.0, 0.0, 4.0], 1)];
    let next = Strategy::new(config)
        .unwrap()
        .aggregate(&global, &updates)
        .unwrap();
    assert_eq!(next.to_flat(), [1.0, 1.0, 3.0]);
}

#[test]
fn weighted_sum_entry_matches_plain_aggregation() {
    // What secure aggregation yields: Σ nᵢΔᵢ = 10·[1,0,2] + 30·[−1,4,2] = [−20, 120, 80], Σ nᵢ = 40.
    let global = model([1.0, 1.0, 1.0]);
    let sum = WeightedSum::new(vec![-20.0, 120.0, 80.0], 40.0).unwrap();
    for config in [
        StrategyConfig::FedAvg,
        StrategyConfig::FedAdam(AdaptiveConfig::default()),
        StrategyConfig::FedYogi(AdaptiveConfig::default()),
    ] {
        let updates = [update([1.0, 0.0, 2.0], 10), update([-1.0, 4.0, 2.0], 30)];
        let plain = Strategy::new(config)
            .unwrap()
            .aggregate(&global, &updates)
            .unwrap();
        let summed = Strategy::new(config)
            .unwrap()
            .apply_weighted_sum(&global, &sum)
            .unwrap();
        assert_eq!(plain, summed, "{}", config.name());
    }
}

#[test]
fn fedadam_first_round_by_hand() {
    // η = 0.1, β1 = 0.9, β2 = 0.99, τ = 0.1; Δ = [1, −1, 0].
    // m = [0.1, −0.1, 0]; v = 0.99·0.01 + 0.01·Δ² = [0.0199, 0.0199, 0.0099];
    // x = 0.1·m / (√v + 0.1) = ±0.01 / 0.241067 = ±0.041482, and 0 for the last.
    let cfg = AdaptiveConfig {
        server_learning_rate: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        tau: 0.1,
    };
    let mut adam = Strategy::new(StrategyConfig::FedAdam(cfg)).unwrap();
    let next = adam
        .aggregate(&model([0.0; 3]), &[update([1.0, -1.0, 0.0], 5)])
        .unwrap()
        .to_flat();
    let step = 0.01 / (0.0199f64.sqrt() + 0.1);
    assert!((f64::from(next[0]) - step).abs() < 1e-6, "{next:?}");
    assert!((f64::from(next[1]) + step).abs() < 1e-6, "{next:?}");
    assert_eq!(next[2], 0.0);
    assert_eq!(adam.optimizer_state().unwrap().steps, 1);
}

/// Ten rounds in which the updates shrink to zero and then flip sign: the pattern that put
/// NaN into the global model after round two in another framework.
#[test]
fn fedadam_and_fedyogi_stay_finite_over_many_rounds() {
    for config in [
        StrategyConfig::FedAdam(AdaptiveConfig::default()),
        StrategyConfig::FedYogi(AdaptiveConfig::default()),
    ] {
        let mut strategy = Strategy::new(config).unwrap();
        let mut global = model([0.5, -0.5, 0.0]);
        let scales = [1.0f32, 0.0, 0.0, -1.0, 1e-20, 1e3, -1e3, 0.5, 0.0, 1.0];
        for (round, scale) in scales.into_iter().enumerate() {
            let updates = [
                update([scale, -scale, 0.0], 3),
                update([scale * 0.5, scale, 0.0], 1),
            ];
            global = strategy.aggregate(&global, &updates).unwrap();
            assert!(
                global.check_finite().is_ok(),
                "{} round {round}: {:?}",
                config.name(),
                global.to_flat()
            );
            let state = strategy.optimizer_state().unwrap();
            assert!(state.v.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
        assert_eq!(strategy.optimizer_state().unwrap().steps, 10);
        // The third coordinate never had a non-zero update: it must not have moved.
        assert_eq!(global.to_flat()[2], 0.0, "{}", config.name());
    }
}

#[test]
fn resumed_optimizer_continues_the_same_trajectory() {
    let config = StrategyConfig::FedYogi(AdaptiveConfig::default());
    let rounds = [[1.0, 2.0, -1.0], [0.5, -2.0, 0.0], [0.1, 0.1, 0.1]];

    let mut straight = Strategy::new(config).unwrap();
    let mut global = model([0.0; 3]);
    for delta in rounds {
        global = straight.aggregate(&global, &[update(delta, 2)]).unwrap();
    }

    // Run one round, persist the state through postcard as the store does, resume.
    let mut first = Strategy::new(config).unwrap();
    let mut resumed_global = first
        .aggregate(&model([0.0; 3]), &[update(rounds[0], 2)])
        .unwrap();
    let bytes = postcard::to_allocvec(first.optimizer_state().unwrap()).unwrap();
    let state: OptimizerState = postcard::from_bytes(&bytes).unwrap();
    let mut resumed = Strategy::resume(config, Some(state)).unwrap();
    for delta in &rounds[1..] {
        resumed_global = resumed
            .aggregate(&resumed_global, &[update(*delta, 2)])
            .unwrap();
    }
    assert_eq!(resumed_global, global);
    assert_eq!(resumed.optimizer_state(), straight.optimizer_state());
}

#[test]
fn resume_refuses_a_state_of_the_other_rule() {
    let state = OptimizerState::new(AdaptiveRule::Adam, 3, &AdaptiveConfig::default());
    let err = Strategy::resume(
        StrategyConfig::FedYogi(AdaptiveConfig::default()),
        Some(state),
    )
    .unwrap_err();
    assert_eq!(
        err,
        StrategyError::StateRule {
            state: AdaptiveRule::Adam,
            strategy: AdaptiveRule::Yogi
        }
    );
}

#[test]
fn median_and_trimmed_mean_ignore_an_outlier() {
    let global = model([0.0; 3]);
    let updates = [
        update([1.0, 1.0, 1.0], 1),
        update([2.0, 2.0, 2.0], 1),
        update([3.0, 3.0, 3.0], 1),
        update([1000.0, -1000.0, 4.0], 100),
    ];
    // Median of [1, 2, 3, 1000] = 2.5; of [−1000, 1, 2, 3] = 1.5; of [1, 2, 3, 4] = 2.5.
    let median = Strategy::new(StrategyConfig::Median)
        .unwrap()
        .aggregate(&global, &updates)
        .unwrap();
    assert_eq!(median.to_flat(), [2.5, 1.5, 2.5]);
    // β = 0.25 of 4: one dropped each side → mean of the middle two, same as the median here.
    let trimmed = Strategy::new(StrategyConfig::TrimmedMean {
        trim_fraction: 0.25,
    })
    .unwrap()
    .aggregate(&global, &updates)
    .unwrap();
    assert_eq!(trimmed.to_flat(), [2.5, 1.5, 2.5]);
}

#[test]
fn robust_strategies_refuse_a_secure_sum() {
    let sum = WeightedSum::new(vec![1.0, 1.0, 1.0], 1.0).unwrap();
    let err = Strategy::new(StrategyConfig::Median)
        .unwrap()
        .apply_weighted_sum(&model([0.0; 3]), &sum)
        .unwrap_err();
    assert_eq!(err, StrategyError::NeedsIndividualUpdates("median"));
    assert!(!StrategyConfig::Median.supports_secure_aggregation());
    assert!(StrategyConfig::FedAvg.supports_secure_aggregation());
}

#[test]
fn aggregate_refuses_empty_rounds_and_wrong_layouts() {
    let global = model([0.0; 3]);
    let mut fedavg = Strategy::new(StrategyConfig::FedAvg).unwrap();
    assert_eq!(
        fedavg.aggregate(&global, &[]).unwrap_err(),
        StrategyError::NoUpdates
    );
    let mut bad = update([0.0; 3], 1);
    bad.delta = ParameterSet::new();
    bad.delta
        .push("w", vec![3], vec![0.0; 3], Scope::Shared)
        .unwrap();
    let err = fedavg.aggregate(&global, &[bad]).unwrap_err();
    assert!(matches!(err, StrategyError::Layout(_)), "{err}");
}

#[test]
fn overflow_to_infinity_is_refused_not_committed() {
    let global = model([f32::MAX, 0.0, 0.0]);
    let err = Strategy::new(StrategyConfig::FedAvg)
        .unwrap()
        .aggregate(&global, &[update([f32::MAX, 0.0, 0.0], 1)])
        .unwrap_err();
    assert_eq!(err, StrategyError::NonFiniteModel { index: 0 });
}

#[test]
fn config_reads_from_toml_with_paper_defaults() {
    let config: StrategyConfig =
        toml::from_str("kind = \"fed_yogi\"\nserver_learning_rate = 0.1\n").unwrap();
    let StrategyConfig::FedYogi(adaptive) = config else {
        panic!("parsed {config:?}");
    };
    assert_eq!(adaptive.server_learning_rate, 0.1);
    assert_eq!(
        (adaptive.beta1, adaptive.beta2, adaptive.tau),
        (0.9, 0.99, 1e-3)
    );
    let config: StrategyConfig = toml::from_str("kind = \"fed_avg\"").unwrap();
    assert_eq!(config, StrategyConfig::FedAvg);
    let bad = StrategyConfig::TrimmedMean { trim_fraction: 0.5 };
    assert!(Strategy::new(bad)
        .unwrap_err()
        .to_string()
        .contains("trim_fraction"));
}
