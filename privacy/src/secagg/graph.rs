//! The round's neighbour graph: complete for small cohorts, random k-regular (SecAgg+)
//! for large ones.

use std::collections::{BTreeMap, BTreeSet};

use hansa_protocol::MerchantId;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Each merchant's neighbours for a round.
///
/// With `degree` ≥ cohort − 1 the graph is complete (SecAgg). Otherwise the cohort is
/// shuffled with `seed` onto a ring and each merchant is joined to the ⌈degree/2⌉
/// nearest on each side (a random Harary graph, as in SecAgg+ by Bell et al. 2020), so
/// every merchant has the same even number of neighbours, ⌈degree/2⌉·2.
/// The graph is symmetric: v is u's neighbour exactly when u is v's.
pub fn neighbour_graph(
    cohort: &[MerchantId],
    degree: usize,
    seed: u64,
) -> BTreeMap<MerchantId, Vec<MerchantId>> {
    let members: BTreeSet<&MerchantId> = cohort.iter().collect();
    let n = members.len();
    let mut graph: BTreeMap<MerchantId, BTreeSet<MerchantId>> = members
        .iter()
        .map(|m| ((*m).clone(), BTreeSet::new()))
        .collect();

    if degree + 1 >= n {
        for u in &members {
            let others = members.iter().filter(|v| *v != u).map(|v| (*v).clone());
            graph.entry((*u).clone()).or_default().extend(others);
        }
    } else {
        let mut ring: Vec<&MerchantId> = members.into_iter().collect();
        ring.shuffle(&mut ChaCha20Rng::seed_from_u64(seed));
        let half = degree.div_ceil(2);
        for (i, u) in ring.iter().enumerate() {
            for step in 1..=half {
                let v = ring[(i + step) % n];
                graph.entry((*u).clone()).or_default().insert(v.clone());
                graph.entry(v.clone()).or_default().insert((*u).clone());
            }
        }
    }
    graph
        .into_iter()
        .map(|(m, set)| (m, set.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cohort(n: usize) -> Vec<MerchantId> {
        (0..n).map(|i| format!("merchant-{i:03}")).collect()
    }

    #[test]
    fn small_cohort_gets_the_complete_graph() {
        let g = neighbour_graph(&cohort(4), 10, 1);
        assert_eq!(g.len(), 4);
        assert!(g.values().all(|ns| ns.len() == 3));
        assert!(!g["merchant-000"].contains(&"merchant-000".to_string()));
    }

    #[test]
    fn large_cohort_gets_a_symmetric_regular_graph() {
        let g = neighbour_graph(&cohort(200), 20, 7);
        assert!(g.values().all(|ns| ns.len() == 20));
        for (u, ns) in &g {
            for v in ns {
                assert!(g[v].contains(u), "{u} → {v} is not symmetric");
            }
        }
        assert_ne!(
            g,
            neighbour_graph(&cohort(200), 20, 8),
            "the seed shuffles the ring"
        );
    }
}
