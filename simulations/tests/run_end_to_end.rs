//! `hansa-sim run` end to end on real data: a small quickstart over QUIC, a fraud
//! federation with 30% dropouts and two poisoned merchants checked against its CSV, and
//! determinism with DP off.

use std::path::Path;

use hansa_sim::faults::FaultPlan;
use hansa_sim::report::{read_rounds_csv, Arm, RunResult};
use hansa_sim::run::{run_scenario, RunOptions, RunOutcome};
use hansa_sim::scenario::Scenario;

fn run(scenario: &Scenario, dir: &Path) -> RunOutcome {
    let options = RunOptions {
        quiet: true,
        output_dir: Some(dir.to_path_buf()),
    };
    run_scenario(scenario, &options).unwrap_or_else(|e| panic!("run failed: {e}"))
}

fn scenarios_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A fraud federation of 8 merchants on the card data (IID), logistic-sized MLP.
fn fraud(extra: &str, overrides: &[&str]) -> Scenario {
    let text = format!(
        r#"
        name = "fraud-test"
        seed = 5
        rounds = 3
        transport = "memory"
        [dataset]
        kind = "creditcard"
        [task]
        kind = "fraud"
        [merchants]
        count = 8
        partition = {{ kind = "iid" }}
        [training]
        local_epochs = 1
        learning_rate = 0.002
        batch_size = 512
        [model]
        hidden = [16, 8]
        {extra}
        "#
    );
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Scenario::from_toml_str(&text, "test", &overrides).unwrap()
}

fn federated_rows(result: &RunResult) -> Vec<&hansa_sim::report::RoundRow> {
    result
        .rounds
        .iter()
        .filter(|r| r.arm == Arm::Federated)
        .collect()
}

#[test]
fn quickstart_over_quic_writes_a_report_that_matches_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::load(
        &scenarios_dir().join("quickstart.toml"),
        &["rounds=2".to_string()],
    )
    .unwrap();
    let outcome = run(&scenario, dir.path());
    let result = &outcome.result;

    // Every report file, and the certificates provisioned into the run's folder.
    for file in [
        &outcome.files.rounds_csv,
        &outcome.files.rounds_json,
        &outcome.files.merchants_csv,
        &outcome.files.markdown,
        &outcome.files.metric_svg,
        &outcome.files.epsilon_svg,
        &outcome.files.lift_svg,
    ] {
        assert!(
            std::fs::metadata(file).unwrap().len() > 100,
            "{}",
            file.display()
        );
    }
    assert!(dir.path().join("certs/aggregator/cert.pem").exists());
    assert!(dir
        .path()
        .join("certs/merchants/merchant-00/cert.pem")
        .exists());

    // Countries with at least 2,000 purchases keep their merchant; the rest is `other`.
    let names: Vec<&str> = result.merchants.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(names[0], "United Kingdom");
    assert_eq!(*names.last().unwrap(), "other");
    assert!(
        result.merchants.iter().all(|m| m.examples >= 1_000),
        "{names:?}"
    );

    // Three arms, two rounds each; the federation spent a positive ε that grows.
    let (metric, rows) = read_rounds_csv(&outcome.files.rounds_csv).unwrap();
    assert_eq!(metric, "hr@10");
    assert_eq!(rows.len(), 6);
    assert_eq!(rows, result.rounds);
    let fed = federated_rows(result);
    let (e1, e2) = (fed[0].epsilon.unwrap(), fed[1].epsilon.unwrap());
    assert!(0.0 < e1 && e1 < e2 && e2 <= 10.0, "ε {e1} then {e2}");
    for r in &rows {
        // Hit rate among 100 candidates: a probability, and no arm is hopeless.
        assert!((0.0..=1.0).contains(&r.metric), "{r:?}");
    }
    let central = result.final_row(Arm::Centralised).unwrap().metric;
    assert!(
        central > 0.2,
        "centralised hr@10 {central} is not above random (0.1)"
    );

    // The Markdown states the privacy spent and the final federated metric of the CSV.
    let markdown = std::fs::read_to_string(&outcome.files.markdown).unwrap();
    assert!(markdown.contains(&format!("{e2:.2}")), "ε {e2:.2} missing");
    assert!(markdown.contains(&format!("{:.4}", fed[1].metric)));
    assert!(markdown.contains(&result.finding()));
}

#[test]
fn dropouts_and_poisoned_merchants_are_reported_as_the_csv_says() {
    let dir = tempfile::tempdir().unwrap();
    let faults = r#"
        [faults]
        dropout = { update = 0.3 }
        poisoned = { count = 2, attack = { kind = "sign-flip" } }
    "#;
    let scenario = fraud(faults, &[]);
    let outcome = run(&scenario, dir.path());
    let result = &outcome.result;
    let (_, rows) = read_rounds_csv(&outcome.files.rounds_csv).unwrap();
    assert_eq!(rows, result.rounds);

    // Each round drops exactly the merchants the fault plan says, and the others count.
    let plan = FaultPlan::new(&scenario.faults, 8, false, scenario.seed).unwrap();
    assert_eq!(plan.poisoned().len(), 2);
    let mut total_drops = 0;
    for row in rows.iter().filter(|r| r.arm == Arm::Federated) {
        let planned = (0..8)
            .filter(|&m| plan.for_merchant(row.round, m).drop.is_some())
            .count() as u32;
        assert_eq!(row.drops, planned, "round {}", row.round);
        assert_eq!(row.contributors + row.drops, 8, "round {}", row.round);
        total_drops += row.drops;
    }
    assert!(
        total_drops > 0,
        "a 30% dropout rate over 24 draws dropped nobody"
    );

    // The poisoned merchants are named as such.
    let poisoned: Vec<&str> = result
        .merchants
        .iter()
        .filter(|m| m.id.contains("(poisoned: sign-flip)"))
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(poisoned.len(), 2, "{poisoned:?}");

    // The Markdown's final rows are the CSV's last rows, per arm.
    let markdown = std::fs::read_to_string(&outcome.files.markdown).unwrap();
    for arm in Arm::ALL {
        let last = rows
            .iter()
            .filter(|r| r.arm == arm)
            .max_by_key(|r| r.round)
            .unwrap();
        assert_eq!(last.round, 3);
        let line = format!("| {} | 3 | {:.4} |", arm.name(), last.metric);
        assert!(markdown.contains(&line), "missing `{line}`");
    }
    // Per merchant: lift = federated − local-only (average precision: higher is better),
    // and the headline counts agree with the rows.
    let gaining = result
        .merchants
        .iter()
        .filter(|m| m.federated - m.local_only > 0.0)
        .count();
    assert_eq!(result.merchants_with_lift(), gaining);
    assert!(markdown.contains(&format!("{gaining} of 8 gain")));
    // Local-only rows are the held-out-weighted mean of the merchants' own metrics.
    let merchants_csv = std::fs::read_to_string(&outcome.files.merchants_csv).unwrap();
    assert_eq!(merchants_csv.lines().count(), 9);
}

#[test]
fn the_same_seed_gives_the_same_metrics_with_dp_off() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let scenario = fraud("", &["rounds=2", "merchants.count=4"]);
    let a = run(&scenario, a_dir.path()).result;
    let b = run(&scenario, b_dir.path()).result;
    assert_eq!(a.rounds.len(), b.rounds.len());
    // Tolerance: float sums in the aggregator follow arrival order, so the last bits may
    // differ; 1e-6 in average precision.
    for (x, y) in a.rounds.iter().zip(&b.rounds) {
        assert_eq!((x.arm, x.round), (y.arm, y.round));
        assert!((x.metric - y.metric).abs() < 1e-6, "{x:?} vs {y:?}");
    }
    for (x, y) in a.merchants.iter().zip(&b.merchants) {
        assert!((x.federated - y.federated).abs() < 1e-6, "{x:?} vs {y:?}");
        assert!(
            (x.local_only - y.local_only).abs() < 1e-12,
            "{x:?} vs {y:?}"
        );
    }
}

#[test]
fn secure_aggregation_survives_dropouts_at_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
        [privacy]
        mode = "off"
        clip_norm = 5.0
        secure_aggregation = { enabled = true, neighbours = 7, threshold = 3 }
        [faults]
        dropout = { advertise_keys = 0.1, share_keys = 0.1, update = 0.1, unmask = 0.1 }
    "#;
    let scenario = fraud(extra, &[]);
    let outcome = run(&scenario, dir.path());
    let plan = FaultPlan::new(&scenario.faults, 8, true, scenario.seed).unwrap();
    let mut cut = 0;
    for row in federated_rows(&outcome.result) {
        let phases: Vec<_> = (0..8)
            .filter_map(|m| plan.for_merchant(row.round, m).drop)
            .collect();
        // A node cut before unmasking still contributed: its masked update arrived and
        // its self mask is rebuilt from its neighbours' shares.
        let missing = phases
            .iter()
            .filter(|&&p| p != hansa_sim::faults::DropPhase::Unmask)
            .count() as u32;
        assert_eq!(
            row.drops, missing,
            "round {}: planned {phases:?}",
            row.round
        );
        assert_eq!(row.contributors, 8 - missing, "round {}", row.round);
        cut += phases.len();
    }
    assert!(cut > 0, "no phase dropout fired; pick another seed");
}

#[test]
fn hundreds_of_tiny_merchants_are_scored_on_the_pooled_held_out_set() {
    let dir = tempfile::tempdir().unwrap();
    // 300 merchants of ~150 transactions: many hold one fraud or none, which per-merchant
    // evaluation refuses; the pooled set scores them all, and a set fraud weight lets a
    // merchant without fraud train.
    let scenario = fraud(
        "fraud_weight = 10.0\n[evaluation]\nheld_out = \"pooled\"",
        &[
            "rounds=2",
            "merchants.count=300",
            "model.hidden=[]",
            "training.local_epochs=3",
            "training.learning_rate=0.5",
            "training.batch_size=32",
        ],
    );
    let per_merchant = Scenario::from_toml_str(
        &scenario
            .to_toml_string()
            .replace("held_out = \"pooled\"", "held_out = \"per-merchant\""),
        "test",
        &[],
    )
    .unwrap();
    let err = run_scenario(
        &per_merchant,
        &RunOptions {
            quiet: true,
            output_dir: Some(dir.path().join("per-merchant")),
        },
    )
    .expect_err("per-merchant evaluation of 300 IID merchants fails");
    assert!(
        err.to_string()
            .contains("set evaluation.held_out = \"pooled\""),
        "{err}"
    );

    let outcome = run(&scenario, dir.path());
    let result = &outcome.result;
    assert_eq!(result.merchants.len(), 300);
    let federated = result.final_row(Arm::Federated).unwrap();
    assert_eq!(federated.contributors, 300);
    // One global model, one held-out set: every merchant sees the same federated score,
    // and it is the federated arm's final metric.
    for m in &result.merchants {
        assert_eq!(m.federated, federated.metric, "{}", m.id);
    }
    // Merchants trained alone differ from one another, and the federation beats their mean
    // (a logistic model of 300 × ~120 transactions against each merchant's ~120).
    let local: Vec<f64> = result.merchants.iter().map(|m| m.local_only).collect();
    let mean_local = local.iter().sum::<f64>() / local.len() as f64;
    let local_row = result.final_row(Arm::LocalOnly).unwrap();
    assert!(
        (local_row.metric - mean_local).abs() < 1e-12,
        "the arm is the plain mean"
    );
    assert!(local.iter().any(|&v| (v - local[0]).abs() > 1e-6));
    assert!(
        federated.metric > mean_local,
        "federated {} vs local-only mean {mean_local}",
        federated.metric
    );
    // Leave-one-out is measured for every contributor of the final round.
    assert!(result.merchants.iter().all(|m| m.contribution.is_some()));

    let markdown = std::fs::read_to_string(&outcome.files.markdown).unwrap();
    assert!(
        markdown.contains("The first 50 of 300 merchants; all of them are in merchants.csv."),
        "{markdown}"
    );
    let merchants_csv = std::fs::read_to_string(&outcome.files.merchants_csv).unwrap();
    assert_eq!(merchants_csv.lines().count(), 301);
}
