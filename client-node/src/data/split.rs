//! Train/test splits: stratified for fraud, temporal leave-last-out with sampled
//! negatives (the NCF protocol) for recommenders.

use std::collections::{HashMap, HashSet};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DataError, FraudDataset, RatingsDataset};

/// Splits so that train and test keep the fraud rate: each class is shuffled with `seed`
/// and its first `test_fraction` (rounded) goes to test. Both parts keep file order.
pub fn stratified_split(
    data: &FraudDataset,
    test_fraction: f64,
    seed: u64,
) -> Result<(FraudDataset, FraudDataset), DataError> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(DataError::Invalid(format!(
            "test fraction {test_fraction} is not in [0, 1)"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut test = Vec::new();
    let mut train = Vec::new();
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..data.len())
            .filter(|&i| data.records[i].fraud == class)
            .collect();
        idx.shuffle(&mut rng);
        let n_test = (idx.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((data.select(&train), data.select(&test)))
}

/// One leave-one-out ranking case: rank `positive` among `negatives` for `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankingCase {
    /// User index in the data set's vocabulary.
    pub user: u32,
    /// The held-out item.
    pub positive: u32,
    /// Items the user never interacted with, sampled uniformly without replacement.
    pub negatives: Vec<u32>,
}

/// Temporal leave-last-out: for each user with at least `min_items` distinct items, the
/// item whose first interaction is latest (ties: the later line in the file) is held
/// out with all its records; everything else, including users with fewer items, trains.
///
/// Returns the training part and the held-out `(user, item)` pairs, ordered by user.
pub fn leave_last_out(
    data: &RatingsDataset,
    min_items: usize,
) -> (RatingsDataset, Vec<(u32, u32)>) {
    // First (timestamp, line) of every user–item pair.
    let mut first_seen: HashMap<(u32, u32), (i64, usize)> = HashMap::new();
    for (line, r) in data.records.iter().enumerate() {
        first_seen
            .entry((r.user, r.item))
            .or_insert((r.timestamp, line));
    }
    let mut last_item: HashMap<u32, ((i64, usize), u32)> = HashMap::new();
    let mut distinct: HashMap<u32, usize> = HashMap::new();
    for (&(user, item), &when) in &first_seen {
        *distinct.entry(user).or_default() += 1;
        let e = last_item.entry(user).or_insert((when, item));
        if when > e.0 {
            *e = (when, item);
        }
    }
    let mut held_out: Vec<(u32, u32)> = last_item
        .into_iter()
        .filter(|(user, _)| distinct[user] >= min_items)
        .map(|(user, (_, item))| (user, item))
        .collect();
    held_out.sort_unstable();
    let held: HashSet<(u32, u32)> = held_out.iter().copied().collect();
    let train = data.filter(|r| !held.contains(&(r.user, r.item)));
    (train, held_out)
}

/// Adds `num_negatives` sampled negatives to each held-out pair: items of the shared
/// vocabulary that the user never touched in `data` (train and test together).
pub fn sample_negatives(
    data: &RatingsDataset,
    held_out: &[(u32, u32)],
    num_negatives: usize,
    seed: u64,
) -> Result<Vec<RankingCase>, DataError> {
    let mut seen: HashMap<u32, HashSet<u32>> = HashMap::new();
    for r in &data.records {
        seen.entry(r.user).or_default().insert(r.item);
    }
    let num_items = data.num_items() as u32;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cases = Vec::with_capacity(held_out.len());
    for &(user, positive) in held_out {
        let mut touched = seen.get(&user).cloned().unwrap_or_default();
        touched.insert(positive);
        if (num_items as usize).saturating_sub(touched.len()) < num_negatives {
            return Err(DataError::Invalid(format!(
                "user {user} has touched {} of {num_items} items: fewer than {num_negatives} negatives are left",
                touched.len()
            )));
        }
        let mut negatives = Vec::with_capacity(num_negatives);
        while negatives.len() < num_negatives {
            let j = rng.gen_range(0..num_items);
            if touched.insert(j) {
                negatives.push(j);
            }
        }
        cases.push(RankingCase {
            user,
            positive,
            negatives,
        });
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::ratings::NO_COUNTRY;
    use crate::data::{Interaction, Transaction, Vocabulary};

    fn interaction(user: u32, item: u32, timestamp: i64) -> Interaction {
        Interaction {
            user,
            item,
            value: 1.0,
            timestamp,
            country: NO_COUNTRY,
        }
    }

    fn vocab(items: usize) -> Arc<Vocabulary> {
        let mut v = Vocabulary::default();
        for i in 0..items {
            v.items.intern(&i.to_string());
        }
        Arc::new(v)
    }

    #[test]
    fn leave_last_out_holds_out_the_latest_new_item() {
        // User 0 buys 1, 2, 1 again (later), then 3 (last new item, two lines at t=40).
        // User 1 has only two items: below min_items, kept whole in train.
        let records = vec![
            interaction(0, 1, 10),
            interaction(0, 2, 20),
            interaction(0, 1, 50),
            interaction(0, 3, 40),
            interaction(0, 3, 40),
            interaction(1, 1, 5),
            interaction(1, 2, 6),
        ];
        let data = RatingsDataset::new(records, vocab(5));
        let (train, held) = leave_last_out(&data, 3);
        assert_eq!(held, vec![(0, 3)]);
        assert_eq!(train.len(), 5);
        assert!(train.records.iter().all(|r| r.item != 3));
    }

    #[test]
    fn negatives_are_unseen_and_distinct() {
        let records = vec![
            interaction(0, 0, 1),
            interaction(0, 1, 2),
            interaction(0, 2, 3),
        ];
        let data = RatingsDataset::new(records, vocab(6));
        let cases = sample_negatives(&data, &[(0, 2)], 3, 7).unwrap();
        let mut neg = cases[0].negatives.clone();
        neg.sort_unstable();
        assert_eq!(neg, vec![3, 4, 5]);
        assert!(sample_negatives(&data, &[(0, 2)], 4, 7).is_err());
    }

    #[test]
    fn stratified_split_keeps_class_counts() {
        let t = |fraud| Transaction {
            time_s: 0.0,
            pca: [0.0; 28],
            amount: 1.0,
            fraud,
        };
        let records: Vec<_> = (0..100).map(|i| t(i % 10 == 0)).collect();
        let data = FraudDataset { records };
        let (train, test) = stratified_split(&data, 0.2, 1).unwrap();
        assert_eq!((train.len(), train.num_frauds()), (80, 8));
        assert_eq!((test.len(), test.num_frauds()), (20, 2));
    }
}
