//! The most-popular baseline: score an item by how many training users touched it.

use std::collections::HashSet;

use hansa_protocol::messages::Metric;

use crate::data::split::RankingCase;
use crate::data::RatingsDataset;
use crate::learner::{metric, LearnError};
use crate::metrics;

/// Distinct training users per item, indexed like the shared vocabulary.
pub fn item_popularity(train: &RatingsDataset) -> Vec<f32> {
    let pairs: HashSet<(u32, u32)> = train.records.iter().map(|r| (r.user, r.item)).collect();
    let mut counts = vec![0f32; train.num_items()];
    for (_, item) in pairs {
        counts[item as usize] += 1.0;
    }
    counts
}

/// HR@10 and NDCG@10 of ranking every case by item popularity (the same for every user).
pub fn most_popular_metrics(
    train: &RatingsDataset,
    cases: &[RankingCase],
) -> Result<Vec<Metric>, LearnError> {
    let popularity = item_popularity(train);
    let score = |i: u32| popularity.get(i as usize).copied().unwrap_or(0.0);
    let scored: Vec<(f32, Vec<f32>)> = cases
        .iter()
        .map(|c| {
            (
                score(c.positive),
                c.negatives.iter().map(|&j| score(j)).collect(),
            )
        })
        .collect();
    let (hr, ndcg) = metrics::hit_rate_and_ndcg_at(&scored, 10)?;
    Ok(vec![metric("hr@10", hr), metric("ndcg@10", ndcg)])
}
