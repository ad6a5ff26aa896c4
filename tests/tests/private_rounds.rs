//! Private rounds end to end: distributed DP under secure aggregation with dropouts (over
//! loopback QUIC with mutual TLS), and the privacy budget stopping a federation (over
//! in-memory links). Real MovieLens merchants.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hansa_aggregator::round::{DpModeName, Federation, FederationError, FederationSettings};
use hansa_aggregator::store::{SledStore, Store, StoreOptions};
use hansa_node::runtime::{Moment, Release, SessionEnd};
use hansa_privacy::accountant::{epsilon, round_rho};
use hansa_privacy::protect::decode_sum;
use hansa_protocol::messages::AdaptiveClipSettings;
use hansa_protocol::Message;
use hansa_tests::{
    drop_when, movielens_merchants, movielens_participant, spawn_node, QuicFrontDoor,
};

fn open(settings: FederationSettings, dir: &std::path::Path) -> Federation<SledStore> {
    let store = SledStore::open(dir, StoreOptions::default()).unwrap();
    Federation::open(settings, store, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_dp_round_survives_a_dropout_before_and_after_the_masked_update() {
    let mut settings = FederationSettings {
        rounds: 1,
        min_cohort: 3,
        cohort_grace_ms: 3_000,
        update_deadline_ms: 120_000,
        phase_deadline_ms: 30_000,
        evaluation_deadline_ms: 30_000,
        local_epochs: 1,
        learning_rate: 0.005,
        batch_size: 1024,
        ..FederationSettings::default()
    };
    settings.privacy.mode = DpModeName::Distributed;
    settings.privacy.clip_norm = 1.0;
    settings.privacy.noise_multiplier = 1.0;
    settings.privacy.grid_step = 1e-4;
    settings.privacy.max_epsilon = 50.0;
    settings.secure_aggregation.enabled = true;
    let dir = tempfile::tempdir().unwrap();
    let mut federation = open(settings.clone(), dir.path());

    let front_door = QuicFrontDoor::open(&federation).await.unwrap();
    // What each node released (quantised, noised, before masking), by merchant.
    let released: Arc<Mutex<BTreeMap<String, Vec<u32>>>> = Arc::default();
    let merchants = movielens_merchants(5).unwrap();
    let mut nodes = Vec::new();
    for merchant in &merchants {
        let mut participant = movielens_participant(merchant).unwrap();
        let sink = released.clone();
        let id = merchant.id.clone();
        participant.observe_releases(Box::new(move |release| {
            if let Release::Quantised { words, .. } = release {
                sink.lock().unwrap().insert(id.clone(), words.to_vec());
            }
        }));
        let drop_at: fn(&Moment<'_>) -> bool = match merchant.id.as_str() {
            // Drops before it sends its masked update: on receiving its neighbours' shares.
            "merchant-1" => |m| matches!(m, Moment::Received(Message::ShareDelivery(_))),
            // Drops right after sending its masked update: once it is in (the aggregator
            // asks for unmasking only then), before it answers.
            "merchant-3" => |m| matches!(m, Moment::Received(Message::UnmaskRequest(_))),
            _ => |_| false,
        };
        let fault = drop_when(drop_at);
        nodes.push(
            front_door
                .spawn_node(participant, &merchant.id, fault)
                .await,
        );
    }

    let summaries = federation.run().await.unwrap();
    let summary = &summaries[0];
    assert_eq!(
        summary.contributors,
        ["merchant-0", "merchant-2", "merchant-3", "merchant-4"],
        "missing: {:?}",
        summary.missing
    );
    assert_eq!(summary.missing.keys().collect::<Vec<_>>(), ["merchant-1"]);

    // The new global model is the old one plus the exact sum of what the four
    // contributors released, de-quantised and averaged (FedAvg, weight 1 each).
    let store = federation.store();
    let before = store.checkpoint(0).unwrap().unwrap().to_flat();
    let after = store.checkpoint(1).unwrap().unwrap().to_flat();
    let released = released.lock().unwrap();
    assert_eq!(
        released.len(),
        4,
        "merchant-1 never released: {:?}",
        released.keys()
    );
    let mut sum = vec![0u32; released["merchant-0"].len()];
    for merchant in &summary.contributors {
        for (s, w) in sum.iter_mut().zip(&released[merchant]) {
            *s = s.wrapping_add(*w);
        }
    }
    let decoded = decode_sum(&sum, before.len(), settings.privacy.grid_step, false).unwrap();
    assert!(
        (decoded.total_weight - 4.0).abs() < 1e-9,
        "weight {}",
        decoded.total_weight
    );
    for (i, ((b, a), s)) in before
        .iter()
        .zip(&after)
        .zip(&decoded.weighted_sum)
        .enumerate()
    {
        let expected = f64::from(*b) + s / decoded.total_weight;
        assert!(
            (f64::from(*a) - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
            "parameter {i}: global {a}, expected {expected}"
        );
    }
    assert_ne!(before, after, "the round changed the model");

    // ε is charged for the noise actually in the sum (4 shares) and persisted.
    let privacy = settings.privacy_settings(3);
    let rho = round_rho(&privacy, before.len(), 4).unwrap();
    let expected_epsilon = epsilon(rho, settings.privacy.delta).unwrap();
    assert!((summary.epsilon_spent - expected_epsilon).abs() < 1e-9);
    let ledger = store.ledger().unwrap();
    assert_eq!(ledger.len(), 1);
    assert!((ledger[0].epsilon_spent - expected_epsilon).abs() < 1e-9);
    assert!((ledger[0].rho_charged - rho).abs() < 1e-12);

    drop(federation);
    for node in nodes {
        node.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_stops_the_federation_before_the_round_that_would_exceed_it() {
    let mut settings = FederationSettings {
        rounds: 3,
        min_cohort: 3,
        cohort_grace_ms: 2_000,
        local_epochs: 1,
        learning_rate: 0.005,
        batch_size: 1024,
        ..FederationSettings::default()
    };
    settings.privacy.mode = DpModeName::Central;
    settings.privacy.clip_norm = 1.0;
    settings.privacy.noise_multiplier = 2.0;
    // Room for one round and a half.
    let merchants = movielens_merchants(3).unwrap();
    let dimension = {
        let learner = hansa_tests::movielens_learner(&merchants[0]).unwrap();
        learner.parameters().unwrap().shared().num_values()
    };
    let rho = round_rho(&settings.privacy_settings(3), dimension, 3).unwrap();
    settings.privacy.max_epsilon = epsilon(1.5 * rho, settings.privacy.delta).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut federation = open(settings.clone(), dir.path());

    let mut nodes = Vec::new();
    for merchant in &merchants {
        let participant = movielens_participant(merchant).unwrap();
        nodes.push(
            spawn_node(&federation.admissions(), participant, &merchant.id, |_| {
                false
            })
            .await,
        );
    }

    let err = federation.run().await.unwrap_err();
    let FederationError::BudgetExhausted(refusal) = &err else {
        panic!("expected a budget refusal, got {err}");
    };
    assert_eq!(refusal.round, 2);
    let one_round = epsilon(rho, settings.privacy.delta).unwrap();
    assert!((refusal.epsilon_spent - one_round).abs() < 1e-9);
    assert!(refusal.epsilon_would_spend > refusal.max_epsilon);
    let message = err.to_string();
    for words in [
        "round 2 refused",
        "Spent so far",
        "would bring it to",
        "the limit is",
    ] {
        assert!(
            message.contains(words),
            "message lacks `{words}`: {message}"
        );
    }

    let store = federation.store();
    assert_eq!(store.last_committed_round().unwrap(), Some(1));
    let ledger_before = store.ledger().unwrap();
    assert_eq!(ledger_before.len(), 1);
    drop(federation);

    // Every node was told, in the same words.
    for node in nodes {
        let (end, _) = node.await.unwrap().unwrap();
        let SessionEnd::BudgetExhausted(detail) = end else {
            panic!("node ended with {end:?}");
        };
        assert!(detail.contains("round 2 refused"), "{detail}");
    }

    // Reopened, the federation still refuses, and the ledger is unchanged.
    let mut reopened = open(settings, dir.path());
    let merchants = movielens_merchants(3).unwrap();
    let mut nodes = Vec::new();
    for merchant in &merchants {
        let participant = movielens_participant(merchant).unwrap();
        nodes.push(spawn_node(&reopened.admissions(), participant, &merchant.id, |_| false).await);
    }
    let again = reopened.run().await.unwrap_err();
    assert!(
        matches!(again, FederationError::BudgetExhausted(ref r) if r.round == 2),
        "{again}"
    );
    assert_eq!(reopened.store().ledger().unwrap(), ledger_before);
    assert_eq!(reopened.store().last_committed_round().unwrap(), Some(1));
    for node in nodes {
        node.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_clipping_moves_the_clip_norm_and_charges_the_clip_bits() {
    let mut settings = FederationSettings {
        rounds: 2,
        min_cohort: 4,
        cohort_grace_ms: 2_000,
        local_epochs: 1,
        learning_rate: 0.005,
        batch_size: 1024,
        ..FederationSettings::default()
    };
    settings.privacy.mode = DpModeName::Distributed;
    settings.privacy.clip_norm = 0.5;
    settings.privacy.noise_multiplier = 1.0;
    settings.privacy.max_epsilon = 50.0;
    settings.privacy.adaptive_clip = Some(AdaptiveClipSettings {
        target_quantile: 0.5,
        learning_rate: 0.2,
        bit_noise_std: 1.0,
    });
    settings.secure_aggregation.enabled = true;
    let dir = tempfile::tempdir().unwrap();
    let mut federation = open(settings.clone(), dir.path());
    let merchants = movielens_merchants(4).unwrap();
    let mut nodes = Vec::new();
    for merchant in &merchants {
        let participant = movielens_participant(merchant).unwrap();
        nodes.push(
            spawn_node(&federation.admissions(), participant, &merchant.id, |_| {
                false
            })
            .await,
        );
    }
    let summaries = federation.run().await.unwrap();
    assert!(summaries.iter().all(|s| s.contributors.len() == 4));

    let store = federation.store();
    let clip = |r| store.round(r).unwrap().unwrap().config.privacy.clip_norm;
    assert_eq!(clip(1), 0.5);
    // One step of exp(−η (b̄ − γ)) with b̄ in [0, 1] (plus noise): the norm moved, by at
    // most a factor e^{±0.2·(0.5 + noise)}.
    assert_ne!(clip(2), clip(1));
    assert!(
        clip(2) > 0.3 && clip(2) < 0.8,
        "clip norm after one step: {}",
        clip(2)
    );

    // Each round is charged for its update and its clip bit, both with 4 shares.
    let dimension = store.checkpoint(0).unwrap().unwrap().num_values();
    let adaptive = settings
        .adaptive_clip(settings.privacy.adaptive_clip.as_ref().unwrap(), 0.5)
        .unwrap();
    let ledger = store.ledger().unwrap();
    let mut rho_total = 0.0;
    for (entry, r) in ledger.iter().zip(1..) {
        let mut privacy = settings.privacy_settings(4);
        privacy.clip_norm = clip(r);
        let rho =
            round_rho(&privacy, dimension, 4).unwrap() + adaptive.rho_distributed(4, 4).unwrap();
        assert!(
            (entry.rho_charged - rho).abs() < 1e-12,
            "round {r}: {} vs {rho}",
            entry.rho_charged
        );
        rho_total += rho;
    }
    let expected = epsilon(rho_total, settings.privacy.delta).unwrap();
    assert!((ledger[1].epsilon_spent - expected).abs() < 1e-9);
    drop(federation);
    for node in nodes {
        node.abort();
    }
}
