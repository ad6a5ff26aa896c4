//! `export` writes a safetensors file other tools read; `status` shows what the store holds.

mod common;

use common::{fresh_dir, model, round_config};
use hansa_aggregator::export::{export_round, ExportError};
use hansa_aggregator::status::StatusReport;
use hansa_aggregator::store::{
    InitialSource, LedgerEntry, RoundCommit, RoundRecord, SledStore, Store, StoreError,
    StoreOptions, TrainingSummary,
};
use hansa_protocol::messages::{EvaluationReport, Metric};
use hansa_protocol::Round;
use safetensors::tensor::{Dtype, SafeTensors};

fn store_with_rounds(name: &str, rounds: Round, keep: usize) -> (std::path::PathBuf, SledStore) {
    let dir = fresh_dir(name);
    let store = SledStore::open(
        &dir,
        StoreOptions {
            keep_checkpoints: keep,
        },
    )
    .unwrap();
    store
        .record_initial_model(
            &model([0.0; 5]),
            InitialSource::File("init.safetensors".into()),
        )
        .unwrap();
    for round in 1..=rounds {
        store
            .commit_round(&RoundCommit {
                record: RoundRecord {
                    round,
                    config: round_config(round),
                    strategy: "fedavg".into(),
                    training: TrainingSummary {
                        contributors: vec!["merchant-a".into(), "merchant-b".into()],
                        dropped: vec![],
                        num_examples: 200,
                        mean_train_loss: 1.0 / round as f64,
                    },
                    committed_at_ms: 0,
                },
                global: model([0.5, 1.5, 2.5, 3.5, round as f32]),
                ledger: LedgerEntry {
                    round,
                    rho_charged: 0.02,
                    epsilon_spent: 0.75 * round as f64,
                    delta: 1e-5,
                    accountant: vec![],
                },
                optimizer: None,
            })
            .unwrap();
    }
    (dir, store)
}

#[test]
fn exported_model_reads_back_with_the_safetensors_crate() {
    let (dir, store) = store_with_rounds("export", 2, 5);
    let out = dir.join("model.safetensors");
    let summary = export_round(&store, 2, &out).unwrap();
    assert_eq!((summary.round, summary.tensors, summary.values), (2, 2, 5));

    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len(), summary.bytes);
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(names, ["bias", "item_embedding"]);
    let embedding = file.tensor("item_embedding").unwrap();
    assert_eq!(embedding.dtype(), Dtype::F32);
    assert_eq!(embedding.shape(), [2, 2]);
    let values: Vec<f32> = embedding
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(values, [0.5, 1.5, 2.5, 3.5]);
    let bias = file.tensor("bias").unwrap();
    assert_eq!(bias.shape(), [] as [usize; 0]);
    assert_eq!(bias.data(), 2.0f32.to_le_bytes());
    assert!(!dir.join("model.safetensors.partial").exists());
}

#[test]
fn export_names_unknown_and_pruned_rounds() {
    let (dir, store) = store_with_rounds("export-missing", 3, 1);
    let out = dir.join("model.safetensors");
    let err = export_round(&store, 9, &out).unwrap_err();
    assert!(
        matches!(err, ExportError::Store(StoreError::UnknownRound(9))),
        "{err}"
    );
    let err = export_round(&store, 2, &out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint of round 2 was pruned; checkpoints kept: [0, 3]"
    );
    // Round 0, the initial model, is always kept.
    assert_eq!(export_round(&store, 0, &out).unwrap().round, 0);
    let err = export_round(&store, 3, &dir.join("no-such-dir").join("m.safetensors"));
    assert!(matches!(err.unwrap_err(), ExportError::Write { .. }));
}

#[test]
fn status_shows_rounds_metrics_privacy_and_nodes() {
    let (_dir, store) = store_with_rounds("status", 2, 5);
    store
        .record_node_seen("merchant-a", "0123456789abcdef0123", 86_400_000)
        .unwrap();
    for (merchant, n, rmse) in [("merchant-a", 10, 1.0), ("merchant-b", 30, 2.0)] {
        store
            .record_evaluation(
                merchant,
                &EvaluationReport {
                    round: 2,
                    num_examples: n,
                    metrics: vec![Metric {
                        name: "rmse".into(),
                        value: rmse,
                    }],
                },
            )
            .unwrap();
    }
    let report = StatusReport::read(&store).unwrap();
    assert_eq!(report.last_committed_round, Some(2));
    assert_eq!(report.privacy.as_ref().unwrap().epsilon_spent, 1.5);
    assert!((report.rho_total - 0.04).abs() < 1e-12);
    // (10·1 + 30·2) / 40 = 1.75.
    assert_eq!(report.rounds[1].evaluation.weighted_mean[0].value, 1.75);

    let text = report.to_string();
    assert!(
        text.contains("last committed round: 2 (initial model from file init.safetensors)"),
        "{text}"
    );
    assert!(
        text.contains("ε = 1.5000 at δ = 1e-5 after round 2"),
        "{text}"
    );
    assert!(text.contains("rmse=1.75000 (2 nodes)"), "{text}");
    assert!(
        text.contains("merchant-b (30 examples): rmse=2.00000"),
        "{text}"
    );
    assert!(
        text.contains("merchant-a  cert 0123456789abcdef  first seen 1970-01-02 00:00:00 UTC"),
        "{text}"
    );
}

#[test]
fn status_of_an_empty_store_says_so() {
    let store = SledStore::open(fresh_dir("status-empty"), StoreOptions::default()).unwrap();
    let text = StatusReport::read(&store).unwrap().to_string();
    assert_eq!(text, "store is empty: no initial model recorded yet\n");
}
