//! The report writer: every number in the files comes from the result, and reads back.

use hansa_sim::report::{
    leave_one_out, read_rounds_csv, summary_table, write_report, Arm, MerchantRow, MetricSpec,
    PrivacySummary, RoundRow, RunResult,
};

fn row(arm: Arm, round: u64, metric: f64, epsilon: Option<f64>, drops: u32) -> RoundRow {
    RoundRow {
        arm,
        round,
        metric,
        epsilon,
        delta: epsilon.map(|_| 1e-5),
        contributors: 3 - drops,
        drops,
    }
}

fn merchant(id: &str, examples: u64, local_only: f64, federated: f64) -> MerchantRow {
    MerchantRow {
        id: id.into(),
        examples,
        local_only,
        federated,
        contribution: Some(0.0125),
    }
}

/// Three rounds of an RMSE run with distributed DP, three merchants, one of which loses.
fn result() -> RunResult {
    let mut rounds = Vec::new();
    for (r, (fed, local, central, eps)) in [
        (1.10, 1.20, 1.00, 1.25),
        (1.00, 1.15, 0.95, 2.0),
        (0.90, 1.10, 0.875, 2.5),
    ]
    .into_iter()
    .enumerate()
    {
        let r = r as u64 + 1;
        rounds.push(row(Arm::Federated, r, fed, Some(eps), u32::from(r == 2)));
        rounds.push(row(Arm::LocalOnly, r, local, Some(0.0), 0));
        rounds.push(row(Arm::Centralised, r, central, None, 0));
    }
    RunResult {
        scenario_name: "unit".into(),
        scenario_toml: "name = \"unit\"\nrounds = 3".into(),
        metric: MetricSpec {
            name: "rmse".into(),
            higher_is_better: false,
        },
        privacy: PrivacySummary {
            mode: "distributed".into(),
            clip_norm: Some(1.0),
            noise_multiplier: Some(2.0),
            secure_aggregation: true,
        },
        rounds,
        merchants: vec![
            merchant("France", 8557, 1.25, 0.95),
            merchant("Germany", 9495, 1.0, 0.9),
            // One of hundreds: a contribution too small for four decimals.
            MerchantRow {
                contribution: Some(-3.25e-5),
                ..merchant("EIRE", 8196, 0.8, 0.85)
            },
        ],
        contribution_method: "leave-one-out over the last round".into(),
        privacy_utility: Vec::new(),
    }
}

#[test]
fn rounds_csv_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let r = result();
    let files = write_report(&r, dir.path()).unwrap();
    let (name, rows) = read_rounds_csv(&files.rounds_csv).unwrap();
    assert_eq!(name, "rmse");
    assert_eq!(rows, r.rounds);
    let text = std::fs::read_to_string(&files.rounds_csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("arm,round,metric_name,metric,epsilon,delta,contributors,drops")
    );
    assert_eq!(lines.next(), Some("federated,1,rmse,1.1,1.25,0.00001,3,0"));
    assert_eq!(lines.nth(1), Some("centralised,1,rmse,1.0,,,3,0"));
}

#[test]
fn rounds_json_and_merchants_csv_carry_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(&result(), dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.rounds_json).unwrap()).unwrap();
    assert_eq!(json["metric"]["name"], "rmse");
    assert_eq!(json["rounds"].as_array().unwrap().len(), 9);
    assert_eq!(json["rounds"][6]["arm"], "federated");
    assert_eq!(json["rounds"][6]["epsilon"], 2.5);
    assert!(json["rounds"][8]["epsilon"].is_null());

    let mut reader = csv::Reader::from_path(&files.merchants_csv).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    // France: RMSE 1.25 alone, 0.95 federated: lift 0.3, 24%.
    let lift: f64 = rows[0][5].parse().unwrap();
    let percent: f64 = rows[0][6].parse().unwrap();
    assert!(
        (lift - 0.3).abs() < 1e-12 && (percent - 24.0).abs() < 1e-9,
        "{lift} {percent}"
    );
    let eire_lift: f64 = rows[2][5].parse().unwrap();
    assert!((eire_lift + 0.05).abs() < 1e-12, "{eire_lift}");
}

#[test]
fn markdown_states_privacy_finals_merchants_and_finding() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(&result(), dir.path()).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(
        md.contains("| distributed | 1.000 | 2.000 | on | 2.50 | 1e-5 |"),
        "{md}"
    );
    assert!(md.contains("| federated | 3 | 0.9000 | 2.50 | 3 |"), "{md}");
    assert!(
        md.contains("| local-only | 3 | 1.1000 | 0.00 | 3 |"),
        "{md}"
    );
    assert!(md.contains("| centralised | 3 | 0.8750 | — | 3 |"), "{md}");
    assert!(
        md.contains("| France | 8557 | 1.2500 | 0.9500 | +0.3000 | 24.0 | +0.0125 |"),
        "{md}"
    );
    assert!(
        md.contains("| EIRE | 8196 | 0.8000 | 0.8500 | -0.0500 | -6.2 | -3.25e-5 |"),
        "{md}"
    );
    assert!(
        md.contains("| 2 | 1.0000 | 2.00 | 1e-5 | 2 | 1 |"),
        "round 2 had a drop: {md}"
    );
    assert!(
        md.contains(
            "The federated model beats local-only training for the majority of merchants: \
         2 of 3 gain, mean lift +0.1167 rmse (at ε = 2.50, δ = 1e-5)."
        ),
        "{md}"
    );
    assert!(md.contains("Contribution: leave-one-out over the last round."));
    assert!(md.contains("```toml\nname = \"unit\"\nrounds = 3\n```"));
}

#[test]
fn plots_exist_with_their_series_labels() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(&result(), dir.path()).unwrap();
    let metric = std::fs::read_to_string(&files.metric_svg).unwrap();
    assert!(metric.starts_with("<svg"));
    for label in [
        "federated",
        "local-only",
        "centralised",
        "unit: rmse per round",
        "round",
    ] {
        assert!(metric.contains(label), "metric.svg lacks {label}");
    }
    let eps = std::fs::read_to_string(&files.epsilon_svg).unwrap();
    assert!(eps.contains("ε (federated)") && eps.contains("δ = 1e-5"));
    let lift = std::fs::read_to_string(&files.lift_svg).unwrap();
    for label in ["France", "Germany", "EIRE", "lift (rmse)"] {
        assert!(lift.contains(label), "lift.svg lacks {label}");
    }
    // Two gain bars (green) and one loss bar (red).
    assert_eq!(lift.matches("fill=\"#2CA02C\"").count(), 2, "{lift}");
    assert_eq!(lift.matches("fill=\"#D62728\"").count(), 1);
}

#[test]
fn a_run_without_dp_and_a_losing_federation_say_so() {
    let mut r = result();
    r.privacy = PrivacySummary::none();
    for row in &mut r.rounds {
        row.epsilon = None;
        row.delta = None;
    }
    r.merchants[0].federated = 1.3; // France now loses too: 1 of 3 gain.
    assert_eq!(r.merchants_with_lift(), 1);
    assert!(r.finding().starts_with(
        "The federated model does not beat local-only training for the majority of merchants: 1 of 3 gain"
    ));
    assert!(r
        .finding()
        .ends_with("(without a differential-privacy bound)."));
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(&r, dir.path()).unwrap();
    let eps = std::fs::read_to_string(&files.epsilon_svg).unwrap();
    assert!(eps.contains("no differential-privacy bound (DP off)"));
}

#[test]
fn nan_metrics_are_refused_by_row() {
    let mut r = result();
    r.rounds[4].metric = f64::NAN;
    let dir = tempfile::tempdir().unwrap();
    let err = write_report(&r, dir.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        "round 2 of local-only: metric = NaN is not a finite number"
    );
    assert!(
        !dir.path().join("rounds.csv").exists(),
        "nothing is written"
    );
}

#[test]
fn terminal_summary_lists_arms_privacy_and_merchants() {
    let table = summary_table(&result());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "unit  (rmse)");
    assert_eq!(lines[2], "federated           3     0.9000     2.50");
    assert_eq!(lines[4], "centralised         3     0.8750        —");
    assert_eq!(
        lines[5],
        "privacy: DP distributed · ε = 2.50 · δ = 1e-5 · secure aggregation on"
    );
    assert_eq!(
        lines[7],
        "France        8557     1.2500     0.9500   +0.3000"
    );
    assert!(lines[10].starts_with("The federated model beats"));
}

#[test]
fn leave_one_out_signs_follow_the_metric_direction() {
    let rmse = MetricSpec {
        name: "rmse".into(),
        higher_is_better: false,
    };
    // With everyone RMSE 0.90; without merchant 0 it rises to 0.95 (it helped), without
    // merchant 1 it falls to 0.88 (it hurt, e.g. a poisoned merchant).
    let c = leave_one_out(&rmse, 0.90, &[0.95, 0.88]);
    assert!(
        (c[0] - 0.05).abs() < 1e-12 && (c[1] + 0.02).abs() < 1e-12,
        "{c:?}"
    );
    let auc = MetricSpec {
        name: "auc_pr".into(),
        higher_is_better: true,
    };
    let c = leave_one_out(&auc, 0.70, &[0.60]);
    assert!((c[0] - 0.10).abs() < 1e-12, "{c:?}");
}
