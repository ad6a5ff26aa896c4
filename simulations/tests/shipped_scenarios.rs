//! Every scenario in scenarios/ runs end to end at reduced size (`--set rounds=1`, and
//! fewer merchants for the large ones), as CI runs them.

use std::path::Path;

use hansa_sim::report::Arm;
use hansa_sim::run::{run_scenario, RunOptions, RunOutcome};
use hansa_sim::scenario::Scenario;

fn run_shipped(name: &str, overrides: &[&str]) -> RunOutcome {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let scenario = Scenario::load(&path, &overrides).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        quiet: true,
        output_dir: Some(dir.path().to_path_buf()),
    };
    let outcome = run_scenario(&scenario, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    // The report is complete: a final row for every arm, finite metrics, and a row for
    // every merchant.
    for arm in Arm::ALL {
        let row = outcome
            .result
            .final_row(arm)
            .unwrap_or_else(|| panic!("{name}: no {} row", arm.name()));
        assert!(row.metric.is_finite(), "{name}: {row:?}");
    }
    assert!(outcome.files.markdown.exists());
    // The folder goes with the test; keep the outcome's figures only.
    drop(dir);
    outcome
}

#[test]
fn movielens_runs_at_one_round() {
    let outcome = run_shipped("movielens.toml", &["rounds=1"]);
    assert_eq!(outcome.result.merchants.len(), 10);
    assert_eq!(outcome.result.metric.name, "rmse");
}

#[test]
fn fraud_runs_at_one_round() {
    let outcome = run_shipped("fraud.toml", &["rounds=1"]);
    assert_eq!(outcome.result.merchants.len(), 8);
}

#[test]
fn scale_runs_at_one_round_with_fewer_merchants() {
    // 10,000 nodes take minutes on CI's 2 cores; 500 run the same code paths (pooled
    // evaluation, SecAgg+ over 16 neighbours, distributed DP).
    let outcome = run_shipped("scale.toml", &["rounds=1", "merchants.count=500"]);
    let federated = outcome.result.final_row(Arm::Federated).unwrap();
    assert_eq!(federated.contributors, 500);
    assert!(federated.epsilon.unwrap() > 0.0);
}

#[test]
fn movielens_dp_runs_with_its_privacy_utility_table() {
    let outcome = run_shipped(
        "movielens-dp.toml",
        &["rounds=1", "privacy.utility_epsilons=[4.0]"],
    );
    let table = &outcome.result.privacy_utility;
    assert_eq!(table.len(), 1);
    assert!((table[0].epsilon_spent.unwrap() - 4.0).abs() < 1e-6);
}

#[test]
fn movielens_users_runs_with_fewer_users() {
    // One node per user; the 49 users with most ratings keep their node and the rest
    // are merged into one, to keep CI short.
    let outcome = run_shipped(
        "movielens-users.toml",
        &[
            "rounds=1",
            "merchants.count=50",
            "privacy.utility_epsilons=[10.0]",
        ],
    );
    assert_eq!(outcome.result.merchants.len(), 50);
    assert_eq!(outcome.result.privacy_utility.len(), 1);
}
