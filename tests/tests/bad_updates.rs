//! Bad updates in a live round: each is refused with its reason, logged with merchant and
//! round, and the round goes on with the good ones.

use std::collections::BTreeMap;

use hansa_aggregator::round::{Federation, FederationSettings};
use hansa_aggregator::store::{SledStore, Store, StoreOptions};
use hansa_protocol::messages::{Hello, Message, Update};
use hansa_protocol::{memory_pair, Link, ParameterSet, Scope};
use hansa_tests::{movielens_merchants, movielens_participant, spawn_node};

/// How a rogue node spoils its update.
#[derive(Clone, Copy)]
enum Spoil {
    NotANumber,
    WrongShape,
    WrongName,
    PastRound,
    FutureRound,
    Twice,
}

async fn hello(link: &mut Link, merchant: &str) {
    link.send(&Message::Hello(Hello {
        merchant: merchant.into(),
        software_version: "rogue".into(),
        last_round_seen: None,
    }))
    .await
    .unwrap();
    assert!(matches!(link.recv().await.unwrap(), Message::Welcome(_)));
}

/// A node that waits for the round's global model and answers with a spoiled update.
async fn rogue(mut link: Link, merchant: &'static str, spoil: Spoil) {
    hello(&mut link, merchant).await;
    loop {
        let Ok(message) = link.recv().await else {
            return;
        };
        let Message::GlobalParameters(global) = message else {
            continue;
        };
        if global.round == 0 {
            continue;
        }
        let mut delta = global.parameters.clone();
        for values in delta.values_mut() {
            values.fill(0.0);
        }
        let mut round = global.round;
        match spoil {
            Spoil::NotANumber => delta.values_mut().next().unwrap()[0] = f32::NAN,
            Spoil::WrongShape => {
                let mut tensors = delta.into_tensors();
                let matrix = tensors.iter_mut().find(|t| t.shape.len() == 2).unwrap();
                matrix.shape = vec![matrix.values.len()];
                delta = ParameterSet::from_tensors(tensors).unwrap();
            }
            Spoil::WrongName => {
                let mut tensors = delta.into_tensors();
                tensors[0].name = "user_embedding".into();
                tensors[0].scope = Scope::Shared;
                delta = ParameterSet::from_tensors(tensors).unwrap();
            }
            Spoil::PastRound => round -= 1,
            Spoil::FutureRound => round += 1,
            Spoil::Twice => {}
        }
        let update = Message::Update(Update {
            round,
            num_examples: 10,
            delta,
            train_loss: 0.5,
        });
        link.send(&update).await.unwrap();
        if matches!(spoil, Spoil::Twice) {
            link.send(&update).await.unwrap();
        }
        // Stay connected until the federation is done with us.
        while link.recv().await.is_ok() {}
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_goes_on_without_the_bad_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), StoreOptions::default()).unwrap();
    let rogues = [
        ("rogue-nan", Spoil::NotANumber),
        ("rogue-shape", Spoil::WrongShape),
        ("rogue-name", Spoil::WrongName),
        ("rogue-past", Spoil::PastRound),
        ("rogue-future", Spoil::FutureRound),
        ("rogue-twice", Spoil::Twice),
    ];
    let settings = FederationSettings {
        rounds: 1,
        min_cohort: 3 + rogues.len(),
        update_deadline_ms: 8_000,
        evaluation_deadline_ms: 5_000,
        learning_rate: 0.005,
        batch_size: 1024,
        ..FederationSettings::default()
    };
    let mut federation = Federation::open(settings, store, None).unwrap();

    let merchants = movielens_merchants(3).unwrap();
    let mut tasks = Vec::new();
    for merchant in &merchants {
        let participant = movielens_participant(merchant).unwrap();
        tasks.push(
            spawn_node(&federation.admissions(), participant, &merchant.id, |_| {
                false
            })
            .await
            .abort_handle(),
        );
    }
    for (merchant, spoil) in rogues {
        let (aggregator_side, node_side) = memory_pair(merchant);
        assert!(federation.admissions().admit(aggregator_side).await);
        tasks.push(tokio::spawn(rogue(node_side, merchant, spoil)).abort_handle());
    }
    // A node that claims another merchant's identity in its hello is refused at once
    // (the roster greets it while the federation runs).
    let (aggregator_side, mut impostor) = memory_pair("merchant-9");
    assert!(federation.admissions().admit(aggregator_side).await);
    let impostor = tokio::spawn(async move {
        impostor
            .send(&Message::Hello(Hello {
                merchant: "merchant-0".into(),
                software_version: "x".into(),
                last_round_seen: None,
            }))
            .await
            .unwrap();
        impostor.recv().await.unwrap()
    });

    let summary = federation.run().await.unwrap().remove(0);
    let Message::Error(refusal) = impostor.await.unwrap() else {
        panic!("the impostor was not refused");
    };
    assert!(
        refusal.detail.contains("claims to be `merchant-0`"),
        "{}",
        refusal.detail
    );
    assert_eq!(
        summary.contributors,
        ["merchant-0", "merchant-1", "merchant-2", "rogue-twice"],
        "missing: {:?}",
        summary.missing
    );
    let reason = |m: &str| summary.missing.get(m).cloned().unwrap_or_default();
    let expected: BTreeMap<&str, &str> = BTreeMap::from([
        ("rogue-nan", "non-finite"),
        ("rogue-shape", "item_embedding"),
        ("rogue-name", "user_embedding"),
        ("rogue-future", "round 2"),
        // A late update for an earlier round is ignored: the node is a straggler.
        ("rogue-past", "deadline"),
    ]);
    for (merchant, words) in expected {
        assert!(
            reason(merchant).contains(words),
            "{merchant}: {}",
            reason(merchant)
        );
    }
    assert!(!summary.missing.contains_key("merchant-9"));
    // The global model stayed finite and the round committed.
    let store = federation.store();
    assert!(store.checkpoint(1).unwrap().unwrap().check_finite().is_ok());
    for task in tasks {
        task.abort();
    }
}
