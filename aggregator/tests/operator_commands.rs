//! `hansa-aggregator status` and `export` as the operator runs them: the real binary on a store.

mod common;

use std::process::Command;

use common::{fresh_dir, model, round_config};
use hansa_aggregator::store::{
    InitialSource, LedgerEntry, RoundCommit, RoundRecord, SledStore, Store, StoreOptions,
    TrainingSummary,
};
use safetensors::tensor::SafeTensors;

fn aggregator(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hansa-aggregator"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn status_and_export_read_a_store_without_a_server() {
    let dir = fresh_dir("cli");
    let store_dir = dir.join("store");
    {
        let store = SledStore::open(&store_dir, StoreOptions::default()).unwrap();
        store
            .record_initial_model(
                &model([0.0; 5]),
                InitialSource::FirstNode("merchant-a".into()),
            )
            .unwrap();
        store
            .commit_round(&RoundCommit {
                record: RoundRecord {
                    round: 1,
                    config: round_config(1),
                    strategy: "fedyogi".into(),
                    training: TrainingSummary {
                        contributors: vec!["merchant-a".into()],
                        dropped: vec!["merchant-b".into()],
                        num_examples: 42,
                        mean_train_loss: 0.125,
                    },
                    committed_at_ms: 0,
                },
                global: model([1.0, 2.0, 3.0, 4.0, 5.0]),
                ledger: LedgerEntry {
                    round: 1,
                    rho_charged: 0.0,
                    epsilon_spent: 0.0,
                    delta: 1e-6,
                    accountant: vec![],
                },
                optimizer: None,
            })
            .unwrap();
    } // the server is gone: the store's lock is released.

    let out = aggregator(&["status".as_ref(), "--store".as_ref(), store_dir.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("last committed round: 1 (initial model from first node merchant-a)"),
        "{text}"
    );
    assert!(text.contains("fedyogi"), "{text}");

    let file = dir.join("round1.safetensors");
    let out = aggregator(&[
        "export".as_ref(),
        "--store".as_ref(),
        store_dir.as_os_str(),
        "--round".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        file.as_os_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&file).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(tensors.tensor("item_embedding").unwrap().shape(), [2, 2]);
    assert_eq!(tensors.tensor("bias").unwrap().data(), 5.0f32.to_le_bytes());
}

#[test]
fn status_of_a_missing_store_fails_without_creating_one() {
    let dir = fresh_dir("cli-missing").join("no-store");
    let out = aggregator(&["status".as_ref(), "--store".as_ref(), dir.as_os_str()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!dir.exists());
}
