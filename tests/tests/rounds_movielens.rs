//! Federated rounds on real MovieLens 100K merchants: an aggregator and 3 nodes in one
//! process over loopback QUIC with mutual TLS.

use hansa_aggregator::round::{Federation, FederationSettings};
use hansa_aggregator::store::{SledStore, Store, StoreOptions};
use hansa_aggregator::strategy::{AdaptiveConfig, StrategyConfig};
use hansa_tests::{movielens_merchants, movielens_participant, QuicFrontDoor};

/// Runs `rounds` rounds with `strategy` over 3 merchants and returns the example-weighted
/// held-out RMSE after each round.
async fn federated_rmse(strategy: StrategyConfig, rounds: u64) -> Vec<f64> {
    let store_dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(store_dir.path(), StoreOptions::default()).unwrap();
    let settings = FederationSettings {
        rounds,
        min_cohort: 3,
        cohort_wait_ms: 30_000,
        update_deadline_ms: 120_000,
        evaluation_deadline_ms: 60_000,
        local_epochs: 2,
        learning_rate: 0.005,
        batch_size: 1024,
        strategy,
        ..FederationSettings::default()
    };
    let mut federation = Federation::open(settings, store, None).unwrap();

    let front_door = QuicFrontDoor::open(&federation).await.unwrap();
    let merchants = movielens_merchants(3).unwrap();
    let mut nodes = Vec::new();
    for merchant in &merchants {
        let participant = movielens_participant(merchant).unwrap();
        nodes.push(
            front_door
                .spawn_node(participant, &merchant.id, |_| false)
                .await,
        );
    }

    let summaries = federation.run().await.unwrap();
    assert_eq!(summaries.len() as u64, rounds);
    for summary in &summaries {
        assert_eq!(
            summary.contributors.len(),
            3,
            "round {}: {:?}",
            summary.round,
            summary.missing
        );
        assert_eq!(summary.evaluation.per_node.len(), 3, "every node evaluates");
    }
    let store = federation.store();
    assert_eq!(store.last_committed_round().unwrap(), Some(rounds));
    let rmse: Vec<f64> = (1..=rounds)
        .map(|r| {
            let evaluation = store.evaluation(r).unwrap();
            evaluation
                .weighted_mean
                .iter()
                .find(|m| m.name == "rmse")
                .unwrap()
                .value
        })
        .collect();
    drop(federation);
    for node in nodes {
        node.abort();
    }
    rmse
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedavg_lowers_the_global_test_rmse_over_five_rounds() {
    let rmse = federated_rmse(StrategyConfig::FedAvg, 5).await;
    eprintln!("FedAvg RMSE per round: {rmse:?}");
    assert!(
        rmse.iter().all(|r| r.is_finite() && *r > 0.5 && *r < 2.0),
        "{rmse:?}"
    );
    assert!(
        rmse[4] < rmse[0],
        "RMSE after round 5 ({}) not below round 1 ({})",
        rmse[4],
        rmse[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedadam_lowers_the_global_test_rmse_over_five_rounds() {
    let adaptive = AdaptiveConfig {
        server_learning_rate: 0.05,
        ..AdaptiveConfig::default()
    };
    let rmse = federated_rmse(StrategyConfig::FedAdam(adaptive), 5).await;
    eprintln!("FedAdam RMSE per round: {rmse:?}");
    assert!(
        rmse.iter().all(|r| r.is_finite()),
        "FedAdam produced NaN: {rmse:?}"
    );
    assert!(
        rmse[4] < rmse[0],
        "RMSE after round 5 ({}) not below round 1 ({})",
        rmse[4],
        rmse[0]
    );
}
