//! Property tests of the partitioners, the skew they produce, and splits of the real data.

use std::path::PathBuf;

use hansa_sim::partition::{
    by_attribute, dirichlet, iid, natural, split, Partition, PartitionError, PartitionInput,
};
use hansa_sim::scenario::{DirichletOver, PartitionSpec};
use proptest::prelude::*;

/// Every index in 0..n appears in exactly one merchant, and no merchant is empty.
fn assert_exact_cover(p: &Partition, n: usize) {
    let mut seen = vec![false; n];
    for m in &p.merchants {
        assert!(!m.indices.is_empty(), "merchant {} is empty", m.name);
        assert!(
            m.indices.windows(2).all(|w| w[0] < w[1]),
            "indices ascending"
        );
        for &i in &m.indices {
            assert!(i < n, "index {i} out of range");
            assert!(!seen[i], "index {i} used twice");
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "some index unused");
    assert_eq!(p.sizes().iter().sum::<usize>(), n);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn iid_covers_every_index_once(n in 1usize..2000, count in 1usize..50, seed in any::<u64>()) {
        prop_assume!(n >= count);
        let p = iid(n, count, seed).unwrap();
        assert_exact_cover(&p, n);
        let sizes = p.sizes();
        prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        prop_assert_eq!(p, iid(n, count, seed).unwrap());
    }

    #[test]
    fn dirichlet_covers_every_index_once_or_says_why(
        labels in prop::collection::vec(0u64..6, 1..1500),
        count in 1usize..12,
        alpha in 0.05f64..50.0,
        seed in any::<u64>(),
    ) {
        match dirichlet(&labels, count, alpha, 1, seed) {
            Ok(p) => {
                prop_assert_eq!(p.merchants.len(), count);
                assert_exact_cover(&p, labels.len());
                prop_assert_eq!(p, dirichlet(&labels, count, alpha, 1, seed).unwrap());
            }
            Err(PartitionError::DirichletStarved { merchant, size, .. }) => {
                prop_assert!(merchant < count && size == 0);
            }
            Err(PartitionError::TooFewExamples { examples, merchants, .. }) => {
                prop_assert!(examples < merchants);
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    #[test]
    fn natural_and_by_attribute_cover_every_index_once(
        keys in prop::collection::vec(0u8..20, 1..800),
        min_examples in 1u64..60,
        cap in 1usize..25,
    ) {
        let keys: Vec<String> = keys.iter().map(|k| format!("g{k}")).collect();
        let p = natural(&keys, min_examples, Some(cap)).unwrap();
        prop_assert!(p.merchants.len() <= cap);
        assert_exact_cover(&p, keys.len());
        let distinct = keys.iter().collect::<std::collections::BTreeSet<_>>().len();
        let count = cap.min(distinct);
        let q = by_attribute(&keys, "g", count).unwrap();
        prop_assert_eq!(q.merchants.len(), count);
        assert_exact_cover(&q, keys.len());
    }
}

/// 6,000 examples over 10 balanced classes, split 10 ways.
fn balanced_labels() -> Vec<u64> {
    (0..6000u64).map(|i| i % 10).collect()
}

#[test]
fn small_alpha_is_more_skewed_than_large_alpha() {
    let labels = balanced_labels();
    let skew = |alpha: f64| {
        // Mean over 5 seeds so one lucky draw does not decide.
        (0..5u64)
            .map(|seed| {
                dirichlet(&labels, 10, alpha, 1, seed)
                    .unwrap()
                    .label_skew(&labels)
            })
            .sum::<f64>()
            / 5.0
    };
    let (tiny, half, large) = (skew(0.1), skew(0.5), skew(100.0));
    let uniform = iid(labels.len(), 10, 0).unwrap().label_skew(&labels);
    // Measured: tiny ≈ 0.69, half ≈ 0.45, large ≈ 0.036, iid ≈ 0.043 (α = 100 is as
    // close to the pooled mix as an IID split; sampling noise decides which is lower).
    assert!(tiny > half && half > large, "{tiny} {half} {large}");
    assert!((large - uniform).abs() < 0.03, "{large} {uniform}");
    assert!(
        tiny > 0.55,
        "α = 0.1 leaves most merchants with few classes: {tiny}"
    );
    assert!(large < 0.1, "α = 100 is close to IID: {large}");
}

#[test]
fn label_skew_is_hand_checkable() {
    // Two merchants: one holds only class 0, the other only class 1; pooled is 50/50.
    let labels = [0u64, 0, 1, 1];
    let p = natural(&["a", "a", "b", "b"], 1, None).unwrap();
    assert!((p.label_skew(&labels) - 0.5).abs() < 1e-12);
    let even = natural(&["a", "b", "a", "b"], 1, None).unwrap();
    assert_eq!(even.label_skew(&labels), 0.0);
}

#[test]
fn split_dispatches_on_the_scenario_and_names_missing_inputs() {
    let labels = balanced_labels();
    let spec = PartitionSpec::Dirichlet {
        alpha: 0.5,
        over: DirichletOver::Labels,
        min_examples: 1,
    };
    let input = PartitionInput {
        examples: labels.len(),
        labels: Some(&labels),
        ..Default::default()
    };
    assert_eq!(
        split(&spec, Some(10), &input, 4).unwrap(),
        dirichlet(&labels, 10, 0.5, 1, 4).unwrap()
    );
    let items = PartitionSpec::Dirichlet {
        alpha: 0.5,
        over: DirichletOver::Items,
        min_examples: 1,
    };
    assert_eq!(
        split(&items, Some(10), &input, 4).unwrap_err().to_string(),
        "partition kind `dirichlet` needs an item id per example"
    );
    let short = PartitionInput {
        examples: 5,
        labels: Some(&labels[..3]),
        ..Default::default()
    };
    assert_eq!(
        split(&spec, Some(2), &short, 4).unwrap_err().to_string(),
        "partition kind `dirichlet` needs a label per example (3 given for 5 examples)"
    );
    assert_eq!(
        split(&PartitionSpec::Iid {}, None, &input, 4)
            .unwrap_err()
            .to_string(),
        "partition kind `iid` needs merchants.count"
    );
}

fn data_dir() -> PathBuf {
    std::env::var_os("HANSA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

#[test]
fn movielens_users_by_occupation_into_ten_merchants() {
    let path = data_dir().join("movielens-100k/u.user");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let occupations: Vec<String> = text
        .lines()
        .map(|l| {
            l.split('|')
                .nth(3)
                .expect("u.user has 5 fields")
                .to_string()
        })
        .collect();
    assert_eq!(occupations.len(), 943);
    let p = by_attribute(&occupations, "occupation", 10).unwrap();
    assert_exact_cover(&p, 943);
    // 196 students are the largest group and fill the first merchant alone.
    assert_eq!(p.merchants[0].name, "student");
    assert_eq!(p.sizes()[0], 196);
    assert_eq!(
        p.names()
            .iter()
            .map(|n| n.split('+').count())
            .sum::<usize>(),
        21
    );
    // Packing balances the rest: no merchant but the students' is above 110 users.
    assert!(
        p.sizes()[1..].iter().all(|&s| (60..=110).contains(&s)),
        "{:?}",
        p.sizes()
    );
}

#[test]
fn online_retail_by_country_groups_the_small_ones() {
    let path = data_dir().join("online-retail-uci/online_retail.csv.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut csv = csv::Reader::from_reader(reader);
    let country = csv
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "Country")
        .unwrap();
    let countries: Vec<String> = csv
        .records()
        .map(|r| r.unwrap()[country].to_string())
        .collect();
    assert_eq!(countries.len(), 541_909);
    let p = natural(&countries, 2000, None).unwrap();
    assert_eq!(
        p.names(),
        [
            "United Kingdom",
            "Germany",
            "France",
            "EIRE",
            "Spain",
            "Netherlands",
            "Belgium",
            "Switzerland",
            "other"
        ]
    );
    assert_eq!(&p.sizes()[..4], &[495_478, 9_495, 8_557, 8_196]);
    assert_eq!(
        p.sizes()[8],
        541_909 - 495_478 - 9_495 - 8_557 - 8_196 - 2_533 - 2_371 - 2_069 - 2_002
    );
}

#[test]
fn fraud_scenario_partition_is_makeable_on_the_real_labels() {
    let path = data_dir().join("creditcard-fraud-ulb/creditcard_sample.csv.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut csv = csv::Reader::from_reader(flate2::read::GzDecoder::new(file));
    let class = csv
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "Class")
        .unwrap();
    let labels: Vec<u64> = csv
        .records()
        .map(|r| r.unwrap()[class].parse().unwrap())
        .collect();
    assert_eq!(labels.len(), 57_355);
    assert_eq!(labels.iter().sum::<u64>(), 492);

    let scenario = hansa_sim::scenario::Scenario::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/fraud.toml"),
        &[],
    )
    .unwrap();
    let input = PartitionInput {
        examples: labels.len(),
        labels: Some(&labels),
        ..Default::default()
    };
    let merchants = &scenario.merchants;
    let p = split(&merchants.partition, merchants.count, &input, scenario.seed).unwrap();
    assert_eq!(p.merchants.len(), 8);
    assert_exact_cover(&p, labels.len());
    assert!(p.sizes().iter().all(|&s| s >= 100), "{:?}", p.sizes());
    // Dirichlet(0.5) makes the fraud rates differ: the highest is several times the lowest.
    let rates: Vec<f64> = p
        .merchants
        .iter()
        .map(|m| m.indices.iter().map(|&i| labels[i]).sum::<u64>() as f64 / m.indices.len() as f64)
        .collect();
    let (low, high) = rates
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    assert!(high > 3.0 * low, "fraud rates {rates:?}");
}
