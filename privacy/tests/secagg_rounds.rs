//! Whole secure-aggregation rounds in memory: exact sums under dropouts at every phase,
//! clean aborts below the threshold, uniform-looking masked vectors, no double reveal.

use std::collections::{BTreeMap, BTreeSet};

use hansa_privacy::secagg::{neighbour_graph, SecAggNode, SecAggServer, UnmaskedSum};
use hansa_privacy::PrivacyError;
use hansa_protocol::messages::{MaskedUpdate, SecAggSettings, UnmaskRequest};
use hansa_protocol::MerchantId;
use proptest::prelude::*;

/// Who drops before each phase's message: keys, shares, masked update, unmask reply.
#[derive(Debug, Clone, Default)]
struct Dropouts {
    before_keys: BTreeSet<usize>,
    before_shares: BTreeSet<usize>,
    before_masked: BTreeSet<usize>,
    before_reply: BTreeSet<usize>,
}

fn merchant(i: usize) -> MerchantId {
    format!("merchant-{i:03}")
}

struct Outcome {
    result: Result<UnmaskedSum, PrivacyError>,
    masked: BTreeMap<MerchantId, MaskedUpdate>,
}

/// Runs one round through both state machines, routing messages as the aggregator would.
fn run_round(vectors: &[Vec<u32>], degree: usize, threshold: usize, drops: &Dropouts) -> Outcome {
    let n = vectors.len();
    let cohort: Vec<MerchantId> = (0..n).map(merchant).collect();
    let graph = neighbour_graph(&cohort, degree, 11);
    let round = 9;
    let mut masked_out = BTreeMap::new();
    let result = (|| {
        let mut server = SecAggServer::new(round, graph.clone(), threshold, vectors[0].len())?;
        let mut nodes = BTreeMap::new();
        for i in (0..n).filter(|i| !drops.before_keys.contains(i)) {
            let settings = SecAggSettings {
                neighbours: graph[&merchant(i)].clone(),
                threshold: threshold as u32,
            };
            let (node, keys) = SecAggNode::new(merchant(i), round, &settings)?;
            server.receive_keys(&merchant(i), keys)?;
            nodes.insert(i, node);
        }

        let rosters = server.key_rosters()?;
        nodes.retain(|i, _| !drops.before_shares.contains(i));
        for (i, node) in nodes.iter_mut() {
            let shares = node.on_key_roster(rosters[&merchant(*i)].clone())?;
            server.receive_shares(&merchant(*i), shares)?;
        }

        let deliveries = server.share_deliveries()?;
        nodes.retain(|i, _| !drops.before_masked.contains(i));
        for (i, node) in nodes.iter_mut() {
            node.on_share_delivery(deliveries[&merchant(*i)].clone())?;
            let masked = node.mask(vectors[*i].clone())?;
            server.receive_masked(&merchant(*i), &masked)?;
            masked_out.insert(merchant(*i), masked);
        }

        let requests = server.unmask_requests()?;
        nodes.retain(|i, _| !drops.before_reply.contains(i));
        for (i, node) in nodes.iter_mut() {
            let reply = node.on_unmask_request(&requests[&merchant(*i)])?;
            server.receive_unmask_reply(&merchant(*i), reply)?;
        }
        server.finish()
    })();
    Outcome {
        result,
        masked: masked_out,
    }
}

/// Whether the complete-graph round must succeed: every phase keeps enough holders.
fn complete_graph_recovers(n: usize, t: usize, d: &Dropouts) -> bool {
    let u1: BTreeSet<usize> = (0..n).filter(|i| !d.before_keys.contains(i)).collect();
    let u2: BTreeSet<usize> = u1
        .iter()
        .copied()
        .filter(|i| !d.before_shares.contains(i))
        .collect();
    let u3: BTreeSet<usize> = u2
        .iter()
        .copied()
        .filter(|i| !d.before_masked.contains(i))
        .collect();
    let u4: BTreeSet<usize> = u3
        .iter()
        .copied()
        .filter(|i| !d.before_reply.contains(i))
        .collect();
    let some_dropped_after_sharing = u2.len() > u3.len();
    u1.len() > t
        && u2.len() > t
        && !u3.is_empty()
        && u3.len() >= t
        && u3
            .iter()
            .all(|o| u4.iter().filter(|h| *h != o).count() >= t)
        && (!some_dropped_after_sharing || u4.len() >= t)
}

fn plaintext_sum(vectors: &[Vec<u32>], contributors: &[MerchantId]) -> Vec<u32> {
    let mut sum = vec![0u32; vectors[0].len()];
    for (i, v) in vectors.iter().enumerate() {
        if contributors.contains(&merchant(i)) {
            sum.iter_mut()
                .zip(v)
                .for_each(|(s, x)| *s = s.wrapping_add(*x));
        }
    }
    sum
}

fn check_round(
    vectors: Vec<Vec<u32>>,
    threshold: usize,
    drops: Dropouts,
) -> Result<(), TestCaseError> {
    let n = vectors.len();
    let outcome = run_round(&vectors, n, threshold, &drops);
    if complete_graph_recovers(n, threshold, &drops) {
        let sum = outcome
            .result
            .map_err(|e| TestCaseError::fail(format!("should recover: {e}")))?;
        let expected: Vec<MerchantId> = outcome.masked.keys().cloned().collect();
        prop_assert_eq!(&sum.contributors, &expected);
        prop_assert_eq!(sum.words, plaintext_sum(&vectors, &expected));
    } else {
        match outcome.result {
            Err(PrivacyError::TooFewSurvivors { .. }) => {}
            other => {
                return Err(TestCaseError::fail(format!(
                    "should abort, got {:?}",
                    other.map(|s| s.contributors)
                )))
            }
        }
    }
    Ok(())
}

fn dropouts(n: usize, max_each: usize) -> impl Strategy<Value = Dropouts> {
    let set = move || proptest::collection::btree_set(0..n, 0..=max_each);
    (set(), set(), set(), set()).prop_map(|(a, b, c, d)| Dropouts {
        before_keys: a,
        before_shares: b,
        before_masked: c,
        before_reply: d,
    })
}

fn vectors(n: usize, dim: usize) -> impl Strategy<Value = Vec<Vec<u32>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u32>(), dim), n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn three_nodes_sum_exactly_or_abort(v in vectors(3, 8), t in 1usize..=2, d in dropouts(3, 1)) {
        check_round(v, t, d)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn ten_nodes_sum_exactly_or_abort(v in vectors(10, 16), t in 3usize..=8, d in dropouts(10, 2)) {
        check_round(v, t, d)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]
    #[test]
    fn hundred_nodes_sum_exactly_or_abort(v in vectors(100, 4), t in 40usize..=70, d in dropouts(100, 6)) {
        check_round(v, t, d)?;
    }
}

#[test]
fn too_few_survivors_abort_with_a_clear_message() {
    let vectors = vec![vec![1u32, 2]; 4];
    let drops = Dropouts {
        before_masked: [0, 1].into(),
        ..Dropouts::default()
    };
    let err = run_round(&vectors, 3, 3, &drops).result.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("aborted") && text.contains("threshold is 3"),
        "{text}"
    );
}

#[test]
fn secagg_plus_regular_graph_recovers_with_dropouts() {
    let n = 30;
    let vectors: Vec<Vec<u32>> = (0..n)
        .map(|i| vec![i as u32, u32::MAX - i as u32, 7])
        .collect();
    let drops = Dropouts {
        before_shares: [4].into(),
        before_masked: [10, 20].into(),
        before_reply: [25].into(),
        ..Dropouts::default()
    };
    let sum = run_round(&vectors, 8, 5, &drops).result.unwrap();
    assert_eq!(sum.contributors.len(), 27);
    assert_eq!(sum.words, plaintext_sum(&vectors, &sum.contributors));
    // Hand check of the last word: 27 contributors × 7.
    assert_eq!(sum.words[2], 189);
}

#[test]
fn a_masked_zero_vector_looks_uniform() {
    // Chi-square over 256 buckets of the top and of the bottom byte, 65 536 words; the
    // critical value 377 has p ≈ 1e-6 at 255 degrees of freedom (Wilson–Hilferty).
    let len = 65_536;
    let vectors = vec![vec![0u32; len]; 3];
    let outcome = run_round(&vectors, 2, 2, &Dropouts::default());
    outcome.result.unwrap();
    let masked = &outcome.masked[&merchant(0)].masked;
    for shift in [24, 0] {
        let mut counts = [0f64; 256];
        masked
            .iter()
            .for_each(|w| counts[((w >> shift) & 0xff) as usize] += 1.0);
        let expected = len as f64 / 256.0;
        let chi2: f64 = counts
            .iter()
            .map(|c| (c - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 377.0, "chi-square {chi2} at shift {shift}");
    }
}

#[test]
fn a_node_never_reveals_both_secrets_of_one_merchant() {
    let n = 4;
    let cohort: Vec<MerchantId> = (0..n).map(merchant).collect();
    let graph = neighbour_graph(&cohort, n, 1);
    let mut server = SecAggServer::new(1, graph.clone(), 2, 2).unwrap();
    let mut nodes = Vec::new();
    for m in &cohort {
        let settings = SecAggSettings {
            neighbours: graph[m].clone(),
            threshold: 2,
        };
        let (node, keys) = SecAggNode::new(m.clone(), 1, &settings).unwrap();
        server.receive_keys(m, keys).unwrap();
        nodes.push(node);
    }
    let rosters = server.key_rosters().unwrap();
    for node in nodes.iter_mut() {
        let shares = node
            .on_key_roster(rosters[node.merchant()].clone())
            .unwrap();
        server
            .receive_shares(&node.merchant().clone(), shares)
            .unwrap();
    }
    let deliveries = server.share_deliveries().unwrap();
    let node = &mut nodes[0];
    node.on_share_delivery(deliveries[node.merchant()].clone())
        .unwrap();
    node.mask(vec![0, 0]).unwrap();

    let first = UnmaskRequest {
        round: 1,
        survivors: vec![merchant(1), merchant(2)],
        dropped: vec![merchant(3)],
    };
    node.on_unmask_request(&first).unwrap();
    let second = UnmaskRequest {
        round: 1,
        survivors: vec![merchant(3)],
        dropped: vec![],
    };
    let err = node.on_unmask_request(&second).unwrap_err();
    assert!(
        matches!(err, PrivacyError::DoubleReveal { ref merchant } if merchant == "merchant-003"),
        "{err}"
    );
    let both = UnmaskRequest {
        round: 1,
        survivors: vec![merchant(1)],
        dropped: vec![merchant(1)],
    };
    assert!(matches!(
        node.on_unmask_request(&both),
        Err(PrivacyError::DoubleReveal { .. })
    ));
}
