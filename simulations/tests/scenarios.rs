//! Every scenario file in scenarios/ loads and validates; overrides and bad values fail
//! with errors that name the field and the value.

use std::path::{Path, PathBuf};

use hansa_sim::scenario::{
    Attack, DatasetKind, DirichletOver, DpMode, Feedback, HeldOutSpec, PartitionSpec, Scenario,
    ScenarioError, StrategySpec, TaskKind, Transport,
};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn load(name: &str, overrides: &[&str]) -> Result<Scenario, ScenarioError> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Scenario::load(&scenarios_dir().join(name), &overrides)
}

/// A small valid scenario to break one field at a time.
const BASE: &str = r#"
name = "t"
rounds = 5
[dataset]
kind = "creditcard"
[task]
kind = "fraud"
[merchants]
count = 4
partition = { kind = "iid" }
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::from_toml_str(text, "test", &[])
}

fn with(extra: &str) -> Result<Scenario, ScenarioError> {
    parse(&format!("{BASE}\n{extra}"))
}

fn err_of(result: Result<Scenario, ScenarioError>) -> String {
    result
        .expect_err("the scenario should be refused")
        .to_string()
}

#[test]
fn every_scenario_file_loads_and_validates() {
    let mut names: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "fraud.toml",
            "movielens-dp.toml",
            "movielens-users.toml",
            "movielens.toml",
            "quickstart.toml",
            "scale.toml"
        ]
    );
    for name in &names {
        let s = load(name, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{}.toml", s.name), *name, "name matches the file");
        // Each runs in CI at reduced rounds through an override.
        assert_eq!(load(name, &["rounds=2"]).unwrap().rounds, 2);
    }
}

#[test]
fn scenario_files_say_what_the_issue_asks() {
    let q = load("quickstart.toml", &[]).unwrap();
    assert_eq!(q.dataset.kind, DatasetKind::OnlineRetail);
    assert_eq!(
        (q.task.kind, q.task.feedback),
        (TaskKind::Recommender, Feedback::Implicit)
    );
    assert!(matches!(&q.merchants.partition,
        PartitionSpec::Natural { attribute, min_examples } if attribute == "country" && *min_examples == 2000));
    assert_eq!(q.privacy.mode, DpMode::Distributed);
    assert!(q.privacy.secure_aggregation.enabled);

    let m = load("movielens.toml", &[]).unwrap();
    assert_eq!(
        (m.merchants.count, m.task.feedback, m.privacy.mode),
        (Some(10), Feedback::Explicit, DpMode::Off)
    );

    let f = load("fraud.toml", &[]).unwrap();
    assert_eq!(f.merchants.count, Some(8));
    assert!(matches!(f.merchants.partition,
        PartitionSpec::Dirichlet { alpha, over: DirichletOver::Labels, .. } if alpha == 0.5));

    let s = load("scale.toml", &[]).unwrap();
    assert_eq!(
        (s.merchants.count, s.transport, s.rounds),
        (Some(10_000), Transport::Memory, 2)
    );
    assert_eq!(s.evaluation.held_out, HeldOutSpec::Pooled);
    assert!(
        s.model.hidden.is_empty(),
        "a small model: logistic regression"
    );

    for name in ["movielens-dp.toml", "movielens-users.toml"] {
        let d = load(name, &[]).unwrap();
        assert_eq!(d.privacy.mode, DpMode::Central, "{name}");
        assert_eq!(d.privacy.utility_epsilons, [1.0, 4.0, 10.0], "{name}");
        assert_eq!(d.privacy.delta, 1e-5, "{name}");
    }
    let u = load("movielens-users.toml", &[]).unwrap();
    assert!(matches!(&u.merchants.partition,
        PartitionSpec::Natural { attribute, .. } if attribute == "user"));
    assert_eq!(u.transport, Transport::Memory);
}

#[test]
fn pooled_evaluation_is_for_the_fraud_task_only() {
    let err = err_of(load("movielens.toml", &["evaluation.held_out=\"pooled\""]));
    assert!(err.contains("evaluation.held_out"), "{err}");
    assert!(err.contains("fraud task only"), "{err}");
    let err = err_of(load("fraud.toml", &["model.fraud_weight=0"]));
    assert!(err.contains("model.fraud_weight"), "{err}");
    let err = err_of(load("fraud.toml", &["evaluation.held_out=\"everywhere\""]));
    assert!(err.contains("everywhere"), "{err}");
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = parse(BASE).unwrap();
    assert_eq!(s.seed, 0);
    assert_eq!(s.transport, Transport::Quic);
    assert_eq!(s.output_dir(), PathBuf::from("runs/t"));
    assert_eq!((s.training.local_epochs, s.training.batch_size), (1, 256));
    assert_eq!(s.training.learning_rate, 0.05);
    assert_eq!(
        s.strategy,
        StrategySpec::Fedavg {
            server_learning_rate: 1.0
        }
    );
    assert_eq!(
        (s.model.embedding_dim, s.model.hidden.clone()),
        (32, vec![64])
    );
    assert_eq!(
        (s.privacy.mode, s.privacy.delta, s.privacy.clip_norm),
        (DpMode::Off, 1e-5, 1.0)
    );
    assert!(s.faults.poisoned.is_none());
}

#[test]
fn overrides_reach_nested_fields_and_name_unknown_keys() {
    let s = load(
        "quickstart.toml",
        &[
            "privacy.noise_multiplier=0.8",
            "seed=9",
            "faults.dropout.update=0.3",
            "strategy.kind=fedyogi",
        ],
    )
    .unwrap();
    assert_eq!(s.privacy.noise_multiplier, 0.8);
    assert_eq!(s.seed, 9);
    assert_eq!(s.faults.dropout.update, 0.3);
    assert_eq!(s.strategy.name(), "fedyogi");

    let err = err_of(load("quickstart.toml", &["privacy.noise_multiplyer=0.8"]));
    assert!(
        err.starts_with("override `privacy.noise_multiplyer` names no scenario field"),
        "{err}"
    );
    assert!(
        err.contains("noise_multiplier"),
        "the allowed names are listed: {err}"
    );
    let err = err_of(load("quickstart.toml", &["rounds"]));
    assert!(err.contains("key=value"), "{err}");
}

#[test]
fn unknown_fields_in_files_are_named() {
    let err = err_of(parse(&format!("{BASE}\nroundz = 3")));
    assert!(err.contains("unknown field `roundz`"), "{err}");
    let err = err_of(with("[privacy]\nclip = 1.0"));
    assert!(err.contains("unknown field `clip`"), "{err}");
    let err = err_of(parse(
        &BASE.replace(r#"{ kind = "iid" }"#, r#"{ kind = "iid", alpha = 1.0 }"#),
    ));
    assert!(err.contains("unknown field `alpha`"), "{err}");
    let err = err_of(parse(&BASE.replace(
        r#"kind = "fraud""#,
        r#"kind = "fraud"
feedbak = "implicit""#,
    )));
    assert!(err.contains("unknown field `feedbak`"), "{err}");
}

#[test]
fn bad_numbers_are_refused_by_field_and_value() {
    assert_eq!(
        err_of(with(
            "[privacy]\nmode = \"central\"\nnoise_multiplier = nan"
        )),
        "scenario field `privacy.noise_multiplier` = NaN: must be a finite number greater than 0"
    );
    assert_eq!(
        err_of(with("[training]\nlearning_rate = -0.1")),
        "scenario field `training.learning_rate` = -0.1: must be a finite number greater than 0"
    );
    assert_eq!(
        err_of(with("[privacy]\nclip_norm = 0.0")),
        "scenario field `privacy.clip_norm` = 0: must be a finite number greater than 0"
    );
    assert_eq!(
        err_of(with("[privacy]\ndelta = 1.0")),
        "scenario field `privacy.delta` = 1: must lie strictly between 0 and 1"
    );
    assert_eq!(
        err_of(parse(&BASE.replace("rounds = 5", "rounds = 0"))),
        "scenario field `rounds` = 0: must be at least 1"
    );
    assert_eq!(
        err_of(with("[faults]\ndropout = { update = 1.5 }")),
        "scenario field `faults.dropout.update` = 1.5: must be a probability in [0, 1]"
    );
    assert_eq!(
        err_of(parse(&BASE.replace(
            r#"{ kind = "iid" }"#,
            r#"{ kind = "dirichlet", alpha = 0.0 }"#
        ))),
        "scenario field `merchants.partition.alpha` = 0: must be a finite number greater than 0"
    );
}

#[test]
fn inconsistent_settings_are_refused() {
    let base_cohort = BASE.replace("count = 4", "count = 4\ncohort_size = 5");
    assert_eq!(
        err_of(parse(&base_cohort)),
        "scenario field `merchants.cohort_size` = 5: exceeds the number of merchants (4)"
    );
    let err = err_of(with(
        "[privacy.secure_aggregation]\nenabled = true\nneighbours = 3\nthreshold = 4",
    ));
    assert_eq!(
        err,
        "scenario field `privacy.secure_aggregation.threshold` = 4: must lie in 1..=3 (privacy.secure_aggregation.neighbours)"
    );
    let err = err_of(with(
        "[privacy.secure_aggregation]\nenabled = true\nneighbours = 4",
    ));
    assert_eq!(
        err,
        "scenario field `privacy.secure_aggregation.neighbours` = 4: exceeds cohort size − 1 = 3"
    );
    let err = err_of(with("[privacy]\nmode = \"distributed\""));
    assert!(err.starts_with("scenario field `privacy.mode` = distributed: needs privacy.secure_aggregation.enabled = true"), "{err}");
    let err = err_of(with(
        "[strategy]\nkind = \"median\"\n[privacy.secure_aggregation]\nenabled = true",
    ));
    assert!(
        err.starts_with("scenario field `strategy.kind` = median"),
        "{err}"
    );
    let err = err_of(parse(&BASE.replace("count = 4\n", "")));
    assert_eq!(
        err,
        "scenario field `merchants.count` = (missing): is required for partition kind = \"iid\""
    );
    let err = err_of(parse(
        &BASE.replace(r#"kind = "creditcard""#, r#"kind = "movielens-100k""#),
    ));
    assert!(
        err.starts_with(
            "scenario field `task.kind` = fraud: does not fit dataset.kind = movielens-100k"
        ),
        "{err}"
    );
    let err = err_of(with("[faults]\ndropout = { unmask = 0.1 }"));
    assert!(err.contains("faults.dropout.unmask"), "{err}");
    let err = err_of(with(
        "[faults.poisoned]\ncount = 5\nattack = { kind = \"sign-flip\" }",
    ));
    assert_eq!(
        err,
        "scenario field `faults.poisoned.count` = 5: exceeds the number of merchants (4)"
    );
    let err = err_of(with(
        "[faults.poisoned]\nmerchants = [1, 1]\nattack = { kind = \"label-flip\" }",
    ));
    assert_eq!(
        err,
        "scenario field `faults.poisoned.merchants` = 1: is listed twice"
    );
}

#[test]
fn a_faulty_scenario_parses_in_full() {
    let s = with(
        "[faults]\ndropout = { update = 0.3 }\n\
         stragglers = { probability = 0.1, delay = { kind = \"log-normal\", median_ms = 50.0, sigma = 1.0 } }\n\
         poisoned = { count = 2, attack = { kind = \"scaled-update\", factor = 10.0 } }",
    )
    .unwrap();
    assert_eq!(s.faults.dropout.update, 0.3);
    assert_eq!(s.faults.stragglers.probability, 0.1);
    let poisoned = s.faults.poisoned.unwrap();
    assert_eq!(poisoned.count, Some(2));
    assert_eq!(poisoned.attack, Attack::ScaledUpdate { factor: 10.0 });
}

#[test]
fn natural_without_count_is_checked_once_the_count_is_known() {
    let s = load("quickstart.toml", &[]).unwrap();
    s.validate_merchant_count(9).unwrap();
    // With 5 merchants the 8 configured neighbours cannot exist.
    let err = s.validate_merchant_count(5).unwrap_err().to_string();
    assert_eq!(
        err,
        "scenario field `privacy.secure_aggregation.neighbours` = 8: exceeds cohort size − 1 = 4"
    );
}

#[test]
fn the_effective_scenario_round_trips_through_toml() {
    for name in [
        "quickstart.toml",
        "movielens.toml",
        "fraud.toml",
        "scale.toml",
    ] {
        let s = load(
            name,
            &[
                "rounds=3",
                "faults.poisoned.count=1",
                "faults.poisoned.attack.kind=sign-flip",
            ],
        )
        .unwrap();
        let text = s.to_toml_string();
        let again = Scenario::from_toml_str(&text, "echo", &[])
            .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(again, s, "{name}");
        assert!(text.contains("rounds = 3"), "{text}");
    }
}
