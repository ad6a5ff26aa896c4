//! The sled store: round commits, atomicity of a refused commit, pruning, reopen after drop.

mod common;

use common::{fresh_dir, model, round_config};
use hansa_aggregator::store::{
    InitialSource, LedgerEntry, RoundCommit, RoundRecord, SledStore, Store, StoreError,
    StoreOptions, TrainingSummary,
};
use hansa_aggregator::strategy::{AdaptiveConfig, AdaptiveRule, OptimizerState};
use hansa_protocol::messages::{EvaluationReport, Metric};
use hansa_protocol::Round;

fn commit(round: Round, value: f32) -> RoundCommit {
    RoundCommit {
        record: RoundRecord {
            round,
            config: round_config(round),
            strategy: "fedadam".into(),
            training: TrainingSummary {
                contributors: vec!["merchant-a".into(), "merchant-b".into()],
                dropped: vec!["merchant-c".into()],
                num_examples: 300,
                mean_train_loss: 0.5 / round as f64,
            },
            committed_at_ms: 1_700_000_000_000 + round,
        },
        global: model([value; 5]),
        ledger: LedgerEntry {
            round,
            rho_charged: 0.01,
            epsilon_spent: 0.5 * round as f64,
            delta: 1e-5,
            accountant: vec![round as u8, 0xAB],
        },
        optimizer: Some(OptimizerState {
            rule: AdaptiveRule::Adam,
            steps: round,
            m: vec![value; 5],
            v: vec![1e-6; 5],
        }),
    }
}

fn open(dir: &std::path::Path, keep: usize) -> SledStore {
    SledStore::open(
        dir,
        StoreOptions {
            keep_checkpoints: keep,
        },
    )
    .unwrap()
}

#[test]
fn commits_rounds_and_reads_them_back_after_reopen() {
    let dir = fresh_dir("reopen");
    {
        let store = open(&dir, 5);
        assert_eq!(store.last_committed_round().unwrap(), None);
        store
            .record_initial_model(
                &model([0.0; 5]),
                InitialSource::File("init.safetensors".into()),
            )
            .unwrap();
        assert_eq!(store.last_committed_round().unwrap(), Some(0));
        store.commit_round(&commit(1, 1.0)).unwrap();
        store.commit_round(&commit(2, 2.0)).unwrap();
        store.record_node_seen("merchant-a", "ab12", 100).unwrap();
        store
            .record_evaluation(
                "merchant-a",
                &EvaluationReport {
                    round: 2,
                    num_examples: 10,
                    metrics: vec![Metric {
                        name: "rmse".into(),
                        value: 0.9,
                    }],
                },
            )
            .unwrap();
    } // dropped: the directory lock is released.

    let store = open(&dir, 5);
    assert_eq!(store.last_committed_round().unwrap(), Some(2));
    assert_eq!(
        store.initial_source().unwrap(),
        Some(InitialSource::File("init.safetensors".into()))
    );
    assert_eq!(store.round(2).unwrap(), Some(commit(2, 2.0).record));
    assert_eq!(store.rounds().unwrap().len(), 2);
    assert_eq!(store.checkpoint(0).unwrap(), Some(model([0.0; 5])));
    let (round, latest) = store.latest_checkpoint().unwrap().unwrap();
    assert_eq!((round, latest), (2, model([2.0; 5])));
    let ledger = store.ledger().unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[1].epsilon_spent, 1.0);
    assert_eq!(ledger[1].accountant, [2, 0xAB]);
    assert_eq!(store.optimizer_state().unwrap().unwrap().steps, 2);
    assert_eq!(store.nodes().unwrap()[0].cert_fingerprint, "ab12");
    assert_eq!(store.evaluation(2).unwrap().per_node.len(), 1);
}

#[test]
fn a_refused_commit_leaves_nothing_behind() {
    let store = open(&fresh_dir("refused"), 5);
    assert!(matches!(
        store.commit_round(&commit(1, 1.0)).unwrap_err(),
        StoreError::NotInitialised
    ));
    store
        .record_initial_model(
            &model([0.0; 5]),
            InitialSource::FirstNode("merchant-a".into()),
        )
        .unwrap();

    // Round 2 before round 1: refused inside the transaction.
    let err = store.commit_round(&commit(2, 2.0)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfOrder {
                expected: 1,
                given: 2
            }
        ),
        "{err}"
    );
    assert_eq!(store.checkpoint(2).unwrap(), None);
    assert_eq!(store.round(2).unwrap(), None);
    assert!(store.ledger().unwrap().is_empty());
    assert_eq!(store.optimizer_state().unwrap(), None);
    assert_eq!(store.last_committed_round().unwrap(), Some(0));

    // A model of another layout, and a NaN model: refused before any write.
    let mut bad = commit(1, 1.0);
    bad.global = hansa_protocol::ParameterSet::new();
    assert!(matches!(
        store.commit_round(&bad).unwrap_err(),
        StoreError::Model { round: 1, .. }
    ));
    let mut nan = commit(1, 1.0);
    nan.global = model([0.0, f32::NAN, 0.0, 0.0, 0.0]);
    assert!(matches!(
        store.commit_round(&nan).unwrap_err(),
        StoreError::Model { round: 1, .. }
    ));
    assert_eq!(store.last_committed_round().unwrap(), Some(0));

    // Committing the same round twice is refused; the first commit stands.
    store.commit_round(&commit(1, 1.0)).unwrap();
    let err = store.commit_round(&commit(1, 9.0)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfOrder {
                expected: 2,
                given: 1
            }
        ),
        "{err}"
    );
    assert_eq!(store.checkpoint(1).unwrap(), Some(model([1.0; 5])));
}

#[test]
fn initial_model_is_recorded_once() {
    let store = open(&fresh_dir("initial"), 5);
    store
        .record_initial_model(
            &model([0.0; 5]),
            InitialSource::FirstNode("merchant-b".into()),
        )
        .unwrap();
    let err = store
        .record_initial_model(&model([1.0; 5]), InitialSource::File("other".into()))
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyInitialised), "{err}");
    assert_eq!(store.checkpoint(0).unwrap(), Some(model([0.0; 5])));
}

#[test]
fn keeps_the_last_k_checkpoints_and_round_zero() {
    let dir = fresh_dir("prune");
    {
        let store = open(&dir, 3);
        store
            .record_initial_model(&model([0.0; 5]), InitialSource::File("init".into()))
            .unwrap();
        for round in 1..=6 {
            store.commit_round(&commit(round, round as f32)).unwrap();
        }
        assert_eq!(store.checkpoint_rounds().unwrap(), [0, 4, 5, 6]);
        // Records and ledger are never pruned.
        assert_eq!(store.rounds().unwrap().len(), 6);
        assert_eq!(store.ledger().unwrap().len(), 6);
    }
    // A smaller K on restart prunes on the next commit.
    let store = open(&dir, 1);
    store.commit_round(&commit(7, 7.0)).unwrap();
    assert_eq!(store.checkpoint_rounds().unwrap(), [0, 7]);
    assert!(SledStore::open(
        &dir,
        StoreOptions {
            keep_checkpoints: 0
        }
    )
    .is_err());
}

#[test]
fn a_store_in_use_cannot_be_opened_again() {
    let dir = fresh_dir("locked");
    let _store = open(&dir, 5);
    let err = SledStore::open(&dir, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains("another hansa-aggregator"),
        "{err}"
    );
}

#[test]
fn evaluation_is_weighted_by_examples_and_refuses_nan() {
    let store = open(&fresh_dir("evaluation"), 5);
    store
        .record_initial_model(&model([0.0; 5]), InitialSource::File("init".into()))
        .unwrap();
    store.commit_round(&commit(1, 1.0)).unwrap();
    let report = |n, rmse, hr| EvaluationReport {
        round: 1,
        num_examples: n,
        metrics: vec![
            Metric {
                name: "rmse".into(),
                value: rmse,
            },
            Metric {
                name: "hr@10".into(),
                value: hr,
            },
        ],
    };
    store
        .record_evaluation("merchant-b", &report(30, 1.0, 0.2))
        .unwrap();
    store
        .record_evaluation("merchant-a", &report(10, 2.0, 0.6))
        .unwrap();
    let evaluation = store.evaluation(1).unwrap();
    assert_eq!(evaluation.per_node[0].merchant, "merchant-a");
    // rmse: (10·2 + 30·1) / 40 = 1.25; hr@10: (10·0.6 + 30·0.2) / 40 = 0.3. Names in order.
    let means: Vec<(&str, f64)> = evaluation
        .weighted_mean
        .iter()
        .map(|m| (m.name.as_str(), m.value))
        .collect();
    assert_eq!(means[0].0, "hr@10");
    assert!((means[0].1 - 0.3).abs() < 1e-12, "{means:?}");
    assert_eq!(means[1], ("rmse", 1.25));

    let err = store
        .record_evaluation("merchant-c", &report(5, f64::NAN, 0.1))
        .unwrap_err();
    assert!(err.to_string().contains("`rmse`"), "{err}");
    let err = store.record_evaluation(
        "merchant-c",
        &EvaluationReport {
            round: 9,
            ..report(5, 1.0, 0.1)
        },
    );
    assert!(matches!(err.unwrap_err(), StoreError::UnknownRound(9)));
}

#[test]
fn node_registry_keeps_first_seen_and_updates_last_seen() {
    let store = open(&fresh_dir("nodes"), 5);
    store.record_node_seen("merchant-b", "ff00", 500).unwrap();
    store.record_node_seen("merchant-a", "aa11", 100).unwrap();
    let again = store.record_node_seen("merchant-b", "ff01", 900).unwrap();
    assert_eq!((again.first_seen_ms, again.last_seen_ms), (500, 900));
    assert_eq!(again.cert_fingerprint, "ff01");
    let nodes = store.nodes().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].merchant, "merchant-a");
}

#[test]
fn optimizer_state_persists_and_is_cleared_by_a_stateless_round() {
    let store = open(&fresh_dir("optimizer"), 5);
    store
        .record_initial_model(&model([0.0; 5]), InitialSource::File("init".into()))
        .unwrap();
    let state = OptimizerState::new(AdaptiveRule::Yogi, 5, &AdaptiveConfig::default());
    let mut first = commit(1, 1.0);
    first.optimizer = Some(state.clone());
    store.commit_round(&first).unwrap();
    assert_eq!(store.optimizer_state().unwrap(), Some(state));
    let mut second = commit(2, 2.0);
    second.optimizer = None;
    store.commit_round(&second).unwrap();
    assert_eq!(store.optimizer_state().unwrap(), None);
}
