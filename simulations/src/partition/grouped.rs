//! Key-based partitions: one merchant per group (`natural`) or groups packed into a
//! fixed number of merchants (`by-attribute`). Neither uses randomness.

use std::collections::BTreeMap;

use super::{MerchantShard, Partition, PartitionError};

/// The name of the merchant that holds the merged small groups.
pub const OTHER: &str = "other";

/// The examples of each distinct key, largest group first (ties by key, so the order
/// does not depend on the input order).
fn groups_by_size<K: AsRef<str>>(keys: &[K]) -> Vec<(String, Vec<usize>)> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        groups.entry(key.as_ref()).or_default().push(i);
    }
    let mut groups: Vec<(String, Vec<usize>)> = groups
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    groups
}

/// One merchant per distinct key, largest first. Groups with fewer than `min_examples`
/// examples are merged into a last merchant named [`OTHER`]; with `max_merchants`, only
/// the `max_merchants − 1` largest groups keep their own merchant when there are more.
/// A group that is itself called `other` is merged with the small ones.
pub fn natural<K: AsRef<str>>(
    keys: &[K],
    min_examples: u64,
    max_merchants: Option<usize>,
) -> Result<Partition, PartitionError> {
    if max_merchants == Some(0) {
        return Err(PartitionError::NoMerchants);
    }
    if keys.is_empty() {
        return Err(PartitionError::TooFewExamples {
            examples: 0,
            merchants: 1,
            min_each: 1,
        });
    }

    let groups = groups_by_size(keys);
    let group_count = groups.len();
    let fits_cap =
        |kept: usize| max_merchants.is_none_or(|cap| group_count <= cap || kept + 1 < cap);
    let mut merchants = Vec::new();
    let mut other = Vec::new();
    for (name, indices) in groups {
        let big_enough = indices.len() as u64 >= min_examples;
        if big_enough && name != OTHER && fits_cap(merchants.len()) {
            merchants.push(MerchantShard { name, indices });
        } else {
            other.extend(indices);
        }
    }

    if !other.is_empty() {
        other.sort_unstable();
        merchants.push(MerchantShard {
            name: OTHER.to_string(),
            indices: other,
        });
    }
    Ok(Partition { merchants })
}

/// Packs the distinct values of `field` (one key per example) whole into `count`
/// merchants: largest value first, each to the merchant with the fewest examples so far
/// (ties to the lowest index). A merchant is named after its values joined by `+`.
/// Fewer distinct values than merchants is an error (a merchant would be empty).
pub fn by_attribute<K: AsRef<str>>(
    keys: &[K],
    field: &str,
    count: usize,
) -> Result<Partition, PartitionError> {
    if count == 0 {
        return Err(PartitionError::NoMerchants);
    }
    let groups = groups_by_size(keys);
    if groups.len() < count {
        return Err(PartitionError::TooFewValues {
            field: field.to_string(),
            values: groups.len(),
            merchants: count,
        });
    }

    let mut names: Vec<Vec<String>> = vec![Vec::new(); count];
    let mut indices: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (value, members) in groups {
        let smallest = (0..count)
            .min_by_key(|&m| (indices[m].len(), m))
            .expect("count ≥ 1");
        names[smallest].push(value);
        indices[smallest].extend(members);
    }

    let merchants = names
        .into_iter()
        .zip(indices)
        .map(|(values, mut idx)| {
            idx.sort_unstable();
            MerchantShard {
                name: values.join("+"),
                indices: idx,
            }
        })
        .collect();
    Ok(Partition { merchants })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_merges_small_groups_into_other() {
        //            0     1    2    3     4    5    6    7
        let keys = ["UK", "FR", "UK", "DE", "FR", "UK", "NL", "UK"];
        let p = natural(&keys, 2, None).unwrap();
        assert_eq!(p.names(), vec!["UK", "FR", OTHER]);
        assert_eq!(p.merchants[0].indices, vec![0, 2, 5, 7]);
        assert_eq!(p.merchants[1].indices, vec![1, 4]);
        assert_eq!(p.merchants[2].indices, vec![3, 6]);
        // No merging: DE and NL (one each) are ordered by name.
        let p = natural(&keys, 1, None).unwrap();
        assert_eq!(p.names(), vec!["UK", "FR", "DE", "NL"]);
    }

    #[test]
    fn natural_caps_the_number_of_merchants() {
        let keys = ["UK", "FR", "UK", "DE", "FR", "UK", "NL", "UK"];
        let p = natural(&keys, 1, Some(2)).unwrap();
        assert_eq!(p.names(), vec!["UK", OTHER]);
        assert_eq!(p.sizes(), vec![4, 4]);
        // A cap at or above the number of groups changes nothing.
        assert_eq!(
            natural(&keys, 1, Some(4)).unwrap().sizes(),
            vec![4, 2, 1, 1]
        );
        assert_eq!(natural(&keys, 1, Some(3)).unwrap().sizes(), vec![4, 2, 2]);
        assert_eq!(natural(&keys, 1, Some(0)), Err(PartitionError::NoMerchants));
        let none: [&str; 0] = [];
        assert!(natural(&none, 1, None).is_err());
    }

    #[test]
    fn by_attribute_packs_values_into_balanced_merchants() {
        // a: 5, b: 3, c: 2, d: 2 examples.
        let keys = ["a", "a", "a", "a", "a", "b", "b", "b", "c", "c", "d", "d"];
        let p = by_attribute(&keys, "occupation", 2).unwrap();
        // a → m0 (5); b → m1 (3); c → m1 (5); d → m0 (tie 5/5, lowest index) → 7.
        assert_eq!(p.names(), vec!["a+d", "b+c"]);
        assert_eq!(p.sizes(), vec![7, 5]);
        assert_eq!(p.merchants[1].indices, vec![5, 6, 7, 8, 9]);
    }

    #[test]
    fn by_attribute_refuses_fewer_values_than_merchants() {
        let keys = ["a", "b", "a"];
        let err = by_attribute(&keys, "age_band", 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "by-attribute on `age_band`: 2 distinct value(s) cannot fill 3 merchants without an empty one"
        );
    }
}
