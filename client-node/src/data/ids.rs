//! Dense indices for external ids (users, items, countries), shareable between parts.
//!
//! The item embedding is a shared tensor, so every merchant must index items the same
//! way: parts of one data set share one [`Vocabulary`] through an `Arc`.

use std::collections::HashMap;

/// A bijection between external ids (as written in the file) and dense `u32` indices
/// in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdMap {
    ids: Vec<String>,
    index: HashMap<String, u32>,
}

impl IdMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `id`, adding it if it is new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = u32::try_from(self.ids.len()).expect("fewer than 2^32 distinct ids");
        self.ids.push(id.to_owned());
        self.index.insert(id.to_owned(), i);
        i
    }

    /// The index of `id`, if known.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The external id at `index`.
    pub fn id(&self, index: u32) -> Option<&str> {
        self.ids.get(index as usize).map(String::as_str)
    }

    /// All external ids in index order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Number of distinct ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no id has been seen.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The id maps of one data set: users, items and (where the data has them) countries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocabulary {
    /// User (customer) ids.
    pub users: IdMap,
    /// Item (product, movie) ids.
    pub items: IdMap,
    /// Country names; empty for data without countries.
    pub countries: IdMap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_first_appearance_and_repeat() {
        let mut m = IdMap::new();
        assert_eq!(m.intern("85123A"), 0);
        assert_eq!(m.intern("71053"), 1);
        assert_eq!(m.intern("85123A"), 0);
        assert_eq!(m.get("71053"), Some(1));
        assert_eq!(m.get("nope"), None);
        assert_eq!(m.id(1), Some("71053"));
        assert_eq!(m.len(), 2);
    }
}
