//! The privacy–utility table of a run on real data: one federated run per target ε, each
//! spending exactly its target, written to the Markdown report and to a CSV that reads
//! back.

use hansa_sim::report::{read_utility_csv, Arm};
use hansa_sim::run::{run_scenario, RunOptions};
use hansa_sim::scenario::Scenario;

/// A small fraud federation on the card data with central DP and two target ε.
fn scenario() -> Scenario {
    let text = r#"
        name = "privacy-utility-test"
        seed = 5
        rounds = 2
        transport = "memory"
        [dataset]
        kind = "creditcard"
        [task]
        kind = "fraud"
        [merchants]
        count = 4
        partition = { kind = "iid" }
        [training]
        local_epochs = 1
        learning_rate = 0.002
        batch_size = 512
        [model]
        hidden = [16, 8]
        [privacy]
        mode = "central"
        clip_norm = 1.0
        noise_multiplier = 1.0
        max_epsilon = 50.0
        utility_epsilons = [1.0, 10.0]
    "#;
    Scenario::from_toml_str(text, "test", &[]).unwrap()
}

#[test]
fn each_target_epsilon_is_spent_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        quiet: true,
        output_dir: Some(dir.path().to_path_buf()),
    };
    let outcome = run_scenario(&scenario(), &options).unwrap_or_else(|e| panic!("{e}"));
    let rows = &outcome.result.privacy_utility;

    // Two rows in the scenario's order; each ran both rounds and spent its target.
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, target) in rows.iter().zip([1.0, 10.0]) {
        assert_eq!(row.target_epsilon, target);
        assert_eq!(row.rounds, 2);
        assert_eq!(row.delta, 1e-5);
        let spent = row.epsilon_spent.expect("central DP reports ε");
        assert!(
            ((spent - target) / target).abs() < 1e-6,
            "target ε {target}, spent {spent}"
        );
        assert!(row.metric.is_finite(), "{row:?}");
        // Average precision is a probability.
        assert!((0.0..=1.0).contains(&row.metric), "{row:?}");
    }
    assert!(
        rows[0].noise_multiplier > rows[1].noise_multiplier,
        "ε = 1 needs more noise: {rows:?}"
    );

    // The Markdown section carries the same numbers, after the final metrics.
    let markdown = std::fs::read_to_string(&outcome.files.markdown).unwrap();
    let section = markdown
        .find("## Privacy–utility")
        .expect("a privacy–utility section");
    assert!(markdown.find("## Final metrics").unwrap() < section);
    for row in rows {
        let line = format!(
            "| {} | {:.4} | 1e-5 | {:.4} | {:.4} | 2 |",
            row.target_epsilon,
            row.epsilon_spent.unwrap(),
            row.noise_multiplier,
            row.metric
        );
        assert!(markdown.contains(&line), "missing `{line}`");
    }
    let central = outcome.result.final_row(Arm::Centralised).unwrap().metric;
    assert!(markdown.contains(&format!("{central:.4}")));

    // The CSV reads back to the very same rows, and each run had its own folder.
    let csv = outcome.files.privacy_utility_csv.as_ref().expect("a CSV");
    assert_eq!(csv, &dir.path().join("privacy_utility.csv"));
    assert_eq!(&read_utility_csv(csv).unwrap(), rows);
    assert!(dir.path().join("utility-eps-1/aggregator-store").exists());
    assert!(dir.path().join("utility-eps-10/aggregator-store").exists());
}
