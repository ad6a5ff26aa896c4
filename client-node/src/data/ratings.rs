//! User–item interactions (explicit ratings or purchases) as plain records.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Vocabulary;

/// Marks an interaction whose data set has no countries.
pub const NO_COUNTRY: u16 = u16::MAX;

/// One user–item event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    /// User index in the data set's [`Vocabulary::users`].
    pub user: u32,
    /// Item index in the data set's [`Vocabulary::items`]; the same in every part.
    pub item: u32,
    /// The rating (MovieLens: 1–5 stars, 0.5 steps in ratings.csv) or, for purchases,
    /// the quantity bought.
    pub value: f32,
    /// Seconds since the Unix epoch (MovieLens) or since 1970-01-01 00:00 in the shop's
    /// local time (Online Retail, which gives no time zone).
    pub timestamp: i64,
    /// Country index in [`Vocabulary::countries`], or [`NO_COUNTRY`].
    pub country: u16,
}

/// A list of interactions with the id maps they index into.
///
/// Parts made with [`RatingsDataset::filter`] share the vocabulary, so item indices agree
/// between merchants; a model builds its own local user index from the part it trains on.
#[derive(Debug, Clone)]
pub struct RatingsDataset {
    /// The interactions, in file order.
    pub records: Vec<Interaction>,
    /// Id maps shared by every part of the data set.
    pub vocab: Arc<Vocabulary>,
}

impl RatingsDataset {
    /// Wraps records and their vocabulary.
    pub fn new(records: Vec<Interaction>, vocab: Arc<Vocabulary>) -> Self {
        Self { records, vocab }
    }

    /// The part whose records satisfy `keep`, sharing this data set's vocabulary.
    pub fn filter(&self, keep: impl Fn(&Interaction) -> bool) -> Self {
        let records = self.records.iter().copied().filter(|r| keep(r)).collect();
        Self {
            records,
            vocab: Arc::clone(&self.vocab),
        }
    }

    /// Number of interactions.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when there are no interactions.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Number of items in the shared vocabulary (the rows of the item embedding).
    pub fn num_items(&self) -> usize {
        self.vocab.items.len()
    }

    /// The distinct user indices present, ascending.
    pub fn users(&self) -> Vec<u32> {
        let set: BTreeSet<u32> = self.records.iter().map(|r| r.user).collect();
        set.into_iter().collect()
    }

    /// Mean of `value` over the records; 0 for an empty part.
    pub fn mean_value(&self) -> f64 {
        if self.records.is_empty() {
            return 0.0;
        }
        self.records.iter().map(|r| f64::from(r.value)).sum::<f64>() / self.records.len() as f64
    }
}
