//! The `Learner` contract on slices of the real data: scopes, loading, determinism,
//! the FedProx term, safetensors, and calibration.

use hansa_node::data::creditcard::read_creditcard;
use hansa_node::data::movielens::load_100k_split;
use hansa_node::data::split::stratified_split;
use hansa_node::data::{data_dir, FraudDataset, RatingsDataset};
use hansa_node::learner::{load_safetensors, save_safetensors, HeldOut, LearnError, Learner};
use hansa_node::model::{FraudConfig, FraudMlp, Recommender, RecommenderConfig};
use hansa_node::trainer::TrainConfig;
use hansa_protocol::{ParameterSet, Scope};

fn movielens_parts() -> (RatingsDataset, RatingsDataset) {
    let (train, test) = load_100k_split(&data_dir().join("movielens-100k"), "u1").unwrap();
    // Two merchants: users with odd and even MovieLens ids, one shared vocabulary.
    let odd = train.filter(|r| {
        train
            .vocab
            .users
            .id(r.user)
            .unwrap()
            .parse::<u32>()
            .unwrap()
            % 2
            == 1
    });
    (odd, test)
}

fn quick() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 512,
        learning_rate: 0.01,
        weight_decay: 0.1,
        proximal_mu: 0.0,
        seed: 3,
    }
}

fn distance(a: &ParameterSet, b: &ParameterSet) -> f64 {
    a.to_flat()
        .iter()
        .zip(b.to_flat())
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn recommender_marks_user_tensors_private_and_items_shared() {
    let (part, _) = movielens_parts();
    let model = Recommender::new(&part, RecommenderConfig::default()).unwrap();
    let params = model.parameters().unwrap();
    let scope = |n: &str| params.get(n).unwrap().scope;
    assert_eq!(scope("item_embedding"), Scope::Shared);
    assert_eq!(scope("global_bias"), Scope::Shared);
    assert_eq!(scope("user_embedding"), Scope::Private);
    assert_eq!(scope("user_bias"), Scope::Private);
    // Items index the whole shared vocabulary (1,682 movies in u1); users only this part's.
    assert_eq!(params.get("item_embedding").unwrap().shape, vec![1682, 32]);
    let users = model.user_keys().len();
    assert_eq!(params.get("user_embedding").unwrap().shape, vec![users, 32]);
    assert!(model
        .user_keys()
        .iter()
        .all(|k| k.parse::<u32>().unwrap() % 2 == 1));
    // Initial embeddings have the configured spread (std 0.1), not candle's default of 1.
    let q = &params.get("item_embedding").unwrap().values;
    let std = (q.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / q.len() as f64).sqrt();
    assert!((std - 0.1).abs() < 0.005, "init std {std}");
}

#[test]
fn same_seed_same_model() {
    let (part, _) = movielens_parts();
    let run = || {
        let mut m = Recommender::new(&part, RecommenderConfig::default()).unwrap();
        let report = m.train(&quick(), None).unwrap();
        (m.parameters().unwrap(), report)
    };
    let (a, ra) = run();
    let (b, rb) = run();
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    assert_eq!(ra.num_examples, part.len() as u64);
}

#[test]
fn load_shared_replaces_only_shared_tensors_and_checks_shapes() {
    let (part, test) = movielens_parts();
    let mut trained = Recommender::new(&part, RecommenderConfig::default()).unwrap();
    trained.train(&quick(), None).unwrap();
    let mut fresh = Recommender::new(
        &part,
        RecommenderConfig {
            seed: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let before = fresh.parameters().unwrap();

    fresh
        .load_shared(&trained.parameters().unwrap().shared())
        .unwrap();
    let after = fresh.parameters().unwrap();
    assert_eq!(after.shared(), trained.parameters().unwrap().shared());
    assert_eq!(after.get("user_embedding"), before.get("user_embedding"));

    let mut wrong = ParameterSet::new();
    for t in after.shared().tensors() {
        let (shape, values) = if t.name == "item_embedding" {
            (vec![1, 32], vec![0.0; 32])
        } else {
            (t.shape.clone(), t.values.clone())
        };
        wrong.push(t.name.clone(), shape, values, t.scope).unwrap();
    }
    let err = fresh.load_shared(&wrong).unwrap_err();
    assert!(
        matches!(err, LearnError::ShapeMismatch { ref name, .. } if name == "item_embedding"),
        "{err}"
    );
    assert_eq!(
        fresh.parameters().unwrap(),
        after,
        "a rejected set changes nothing"
    );

    let err = fresh
        .evaluate(&HeldOut::Transactions(FraudDataset::default()))
        .unwrap_err();
    assert!(matches!(err, LearnError::WrongHeldOut { .. }));
    let metrics = fresh.evaluate(&HeldOut::Ratings(test)).unwrap();
    assert_eq!(
        metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["rmse", "mae"]
    );
}

#[test]
fn proximal_term_keeps_shared_tensors_near_the_global_model() {
    let (part, _) = movielens_parts();
    let global = Recommender::new(&part, RecommenderConfig::default())
        .unwrap()
        .parameters()
        .unwrap()
        .shared();
    let drift = |mu: f64| {
        let mut m = Recommender::new(&part, RecommenderConfig::default()).unwrap();
        m.train(
            &TrainConfig {
                proximal_mu: mu,
                ..quick()
            },
            Some(&global),
        )
        .unwrap();
        distance(&m.parameters().unwrap().shared(), &global)
    };
    let (free, held) = (drift(0.0), drift(50.0));
    assert!(
        held < 0.5 * free,
        "drift with mu=50: {held}, without: {free}"
    );
    let mut m = Recommender::new(&part, RecommenderConfig::default()).unwrap();
    let err = m
        .train(
            &TrainConfig {
                proximal_mu: 1.0,
                ..quick()
            },
            None,
        )
        .unwrap_err();
    assert!(matches!(err, LearnError::Config(_)), "{err}");
}

#[test]
fn safetensors_round_trip_restores_every_tensor() {
    let (part, _) = movielens_parts();
    let mut a = Recommender::new(&part, RecommenderConfig::default()).unwrap();
    a.train(&quick(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("merchant.safetensors");
    save_safetensors(&a, &file).unwrap();
    let mut b = Recommender::new(
        &part,
        RecommenderConfig {
            seed: 5,
            ..Default::default()
        },
    )
    .unwrap();
    load_safetensors(&mut b, &file).unwrap();
    assert_eq!(b.parameters().unwrap(), a.parameters().unwrap());
}

#[test]
fn fraud_scores_are_calibrated_to_the_base_rate() {
    let path = data_dir()
        .join("creditcard-fraud-ulb")
        .join("creditcard_sample.csv.gz");
    let data = read_creditcard(&path).unwrap();
    let (train, test) = stratified_split(&data, 0.2, 7).unwrap();
    let mut mlp = FraudMlp::new(&train, FraudConfig::default()).unwrap();
    mlp.train(
        &TrainConfig {
            epochs: 3,
            batch_size: 256,
            learning_rate: 0.002,
            weight_decay: 1e-4,
            proximal_mu: 0.0,
            seed: 1,
        },
        None,
    )
    .unwrap();
    let scores = mlp.predict(&test).unwrap();
    let mean = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / scores.len() as f64;
    let rate = test.num_frauds() as f64 / test.len() as f64;
    // Without the prior correction the mean score would be near w·rate ≈ 10× the rate.
    assert!(
        mean > 0.5 * rate && mean < 2.0 * rate,
        "mean score {mean} vs fraud rate {rate}"
    );
    let params = mlp.parameters().unwrap();
    assert!(params.tensors().iter().all(|t| t.scope == Scope::Shared));
    assert_eq!(params.get("standardiser.mean").unwrap().shape, vec![29]);
}

#[test]
fn fraud_model_depth_is_configurable() {
    let path = data_dir()
        .join("creditcard-fraud-ulb")
        .join("creditcard_sample.csv.gz");
    let data = read_creditcard(&path).unwrap();
    let (train, test) = stratified_split(&data, 0.2, 7).unwrap();
    let shapes = |mlp: &FraudMlp| -> Vec<(String, Vec<usize>)> {
        let params = mlp.parameters().unwrap();
        params
            .tensors()
            .iter()
            .filter(|t| t.name.starts_with("layer"))
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect()
    };
    let owned = |v: &[(&str, &[usize])]| -> Vec<(String, Vec<usize>)> {
        v.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
    };

    // No hidden layer: logistic regression over the 29 features.
    let config = |hidden: Vec<usize>| FraudConfig {
        hidden,
        ..FraudConfig::default()
    };
    let mut logistic = FraudMlp::new(&train, config(vec![])).unwrap();
    assert_eq!(
        shapes(&logistic),
        owned(&[("layer1.weight", &[1, 29]), ("layer1.bias", &[1])])
    );
    logistic
        .train(
            &TrainConfig {
                epochs: 3,
                batch_size: 256,
                learning_rate: 0.01,
                weight_decay: 1e-4,
                proximal_mu: 0.0,
                seed: 1,
            },
            None,
        )
        .unwrap();
    let metrics = logistic.evaluate(&HeldOut::Transactions(test)).unwrap();
    let auc = metrics.iter().find(|m| m.name == "roc_auc").unwrap().value;
    assert!(auc > 0.9, "logistic regression ROC-AUC {auc}");

    let deep = FraudMlp::new(&train, config(vec![16, 8, 4])).unwrap();
    assert_eq!(
        shapes(&deep),
        owned(&[
            ("layer1.weight", &[16, 29]),
            ("layer1.bias", &[16]),
            ("layer2.weight", &[8, 16]),
            ("layer2.bias", &[8]),
            ("layer3.weight", &[4, 8]),
            ("layer3.bias", &[4]),
            ("layer4.weight", &[1, 4]),
            ("layer4.bias", &[1]),
        ])
    );

    let err = FraudMlp::new(&train, config(vec![8, 0]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("hidden layer 1 has width 0"), "{err}");
}

#[test]
fn a_set_fraud_weight_lets_a_node_train_without_frauds() {
    let path = data_dir()
        .join("creditcard-fraud-ulb")
        .join("creditcard_sample.csv.gz");
    let data = read_creditcard(&path).unwrap();
    let legit: Vec<usize> = (0..data.len())
        .filter(|&i| !data.records[i].fraud)
        .take(6)
        .collect();
    let small = data.select(&legit);

    let err = FraudMlp::new(&small, FraudConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("0 frauds of 6 transactions"), "{err}");

    let mut mlp = FraudMlp::new(
        &small,
        FraudConfig {
            hidden: vec![],
            fraud_weight: Some(10.0),
            seed: 2,
        },
    )
    .unwrap();
    assert_eq!(mlp.fraud_weight(), 10.0);
    let offset = mlp.parameters().unwrap();
    let offset = offset.get("calibration.logit_offset").unwrap().values[0];
    assert!((f64::from(offset) - 10f64.ln()).abs() < 1e-6, "{offset}");
    let report = mlp.train(&quick(), None).unwrap();
    assert!(report.final_loss.is_finite() && report.final_loss > 0.0);

    let empty = data.select(&[]);
    let err = FraudMlp::new(&empty, FraudConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no transactions"), "{err}");
}
