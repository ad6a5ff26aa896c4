//! Random partitions under the scenario's seed: IID, and Dirichlet(α) label or item skew.

use rand::seq::SliceRandom;
use rand_distr::{Dirichlet, Distribution};

use super::{partition_rng, sorted_classes, MerchantShard, Partition, PartitionError};

/// How many times a Dirichlet split is redrawn before it is declared impossible. Each
/// draw costs O(n); 100 draws of 100,000 examples take well under a second.
pub const MAX_DIRICHLET_ATTEMPTS: usize = 100;

fn merchant_name(m: usize) -> String {
    format!("merchant-{m:03}")
}

fn shards(mut parts: Vec<Vec<usize>>) -> Partition {
    let merchants = parts
        .iter_mut()
        .enumerate()
        .map(|(m, indices)| {
            indices.sort_unstable();
            MerchantShard {
                name: merchant_name(m),
                indices: std::mem::take(indices),
            }
        })
        .collect();
    Partition { merchants }
}

/// Shuffles `0..examples` under `seed` and deals it into `count` parts whose sizes
/// differ by at most one (the first `examples % count` parts get the extra example).
pub fn iid(examples: usize, count: usize, seed: u64) -> Result<Partition, PartitionError> {
    if count == 0 {
        return Err(PartitionError::NoMerchants);
    }
    if examples < count {
        return Err(PartitionError::TooFewExamples {
            examples,
            merchants: count,
            min_each: 1,
        });
    }
    let mut order: Vec<usize> = (0..examples).collect();
    order.shuffle(&mut partition_rng(seed));

    let (base, extra) = (examples / count, examples % count);
    let mut parts = Vec::with_capacity(count);
    let mut rest = order.as_slice();
    for m in 0..count {
        let (head, tail) = rest.split_at(base + usize::from(m < extra));
        parts.push(head.to_vec());
        rest = tail;
    }
    Ok(shards(parts))
}

/// Splits every class's examples across `count` merchants by proportions drawn from
/// Dirichlet(α, …, α) (the label-skew split of Hsu et al. 2019). `keys` holds the class
/// per example: the label, or the item id for item skew. Small α gives each merchant few
/// classes; large α approaches IID.
///
/// A draw that leaves any merchant with fewer than `min_examples` is redrawn, up to
/// [`MAX_DIRICHLET_ATTEMPTS`] times; then the error names the merchant that fell short.
pub fn dirichlet(
    keys: &[u64],
    count: usize,
    alpha: f64,
    min_examples: u64,
    seed: u64,
) -> Result<Partition, PartitionError> {
    if !(alpha > 0.0 && alpha.is_finite()) {
        return Err(PartitionError::BadAlpha(alpha));
    }
    if count == 0 {
        return Err(PartitionError::NoMerchants);
    }
    let min_each = min_examples.max(1);
    if (keys.len() as u64) < count as u64 * min_each {
        return Err(PartitionError::TooFewExamples {
            examples: keys.len(),
            merchants: count,
            min_each,
        });
    }

    let classes = sorted_classes(keys);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
    for (i, key) in keys.iter().enumerate() {
        let c = classes.binary_search(key).expect("key of a known class");
        members[c].push(i);
    }

    let mut rng = partition_rng(seed);
    let mut last_short = (0, 0, classes[0]);
    for _attempt in 0..MAX_DIRICHLET_ATTEMPTS {
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); count];
        // taken[m][c]: how many of class c merchant m got in this draw.
        let mut taken = vec![vec![0usize; classes.len()]; count];
        for (c, class_members) in members.iter_mut().enumerate() {
            class_members.shuffle(&mut rng);
            let shares = draw_shares(count, alpha, &mut rng)?;
            for (m, range) in cut_points(class_members.len(), &shares)
                .into_iter()
                .enumerate()
            {
                taken[m][c] = range.len();
                parts[m].extend_from_slice(&class_members[range]);
            }
        }
        debug_assert_eq!(
            parts.iter().map(Vec::len).sum::<usize>(),
            keys.len(),
            "cut points cover every example once"
        );
        match (0..count).find(|&m| (parts[m].len() as u64) < min_each) {
            None => return Ok(shards(parts)),
            Some(m) => {
                let fewest = (0..classes.len()).min_by_key(|&c| taken[m][c]).unwrap_or(0);
                last_short = (m, parts[m].len(), classes[fewest]);
            }
        }
    }
    let (merchant, size, class) = last_short;
    Err(PartitionError::DirichletStarved {
        alpha,
        attempts: MAX_DIRICHLET_ATTEMPTS,
        merchant,
        size,
        min_examples: min_each,
        class,
    })
}

/// One draw of merchant shares from Dirichlet(α, …, α). With a tiny α every gamma
/// variate can underflow to 0 and the draw is 0/0; such draws are repeated, and after
/// [`MAX_DIRICHLET_ATTEMPTS`] of them α is refused as too small to sample.
fn draw_shares(
    count: usize,
    alpha: f64,
    rng: &mut impl rand::Rng,
) -> Result<Vec<f64>, PartitionError> {
    if count == 1 {
        return Ok(vec![1.0]);
    }
    let dirichlet =
        Dirichlet::new_with_size(alpha, count).map_err(|_| PartitionError::BadAlpha(alpha))?;
    for _ in 0..MAX_DIRICHLET_ATTEMPTS {
        let shares = dirichlet.sample(rng);
        if shares.iter().all(|p| p.is_finite()) {
            return Ok(shares);
        }
    }
    Err(PartitionError::DirichletUnderflow {
        alpha,
        attempts: MAX_DIRICHLET_ATTEMPTS,
    })
}

/// Splits `0..len` into consecutive ranges with the given shares: range m ends at
/// round(len × (p₀ + … + p_m)), and the last ends at `len`, so every index is used once.
fn cut_points(len: usize, shares: &[f64]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::with_capacity(shares.len());
    let mut start = 0;
    let mut cumulative = 0.0;
    for (m, p) in shares.iter().enumerate() {
        cumulative += p;
        let end = if m + 1 == shares.len() {
            len
        } else {
            ((len as f64 * cumulative).round() as usize).clamp(start, len)
        };
        ranges.push(start..end);
        start = end;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_points_cover_every_index_once() {
        assert_eq!(cut_points(10, &[0.25, 0.25, 0.5]), vec![0..3, 3..5, 5..10]);
        assert_eq!(cut_points(3, &[0.0, 1.0]), vec![0..0, 0..3]);
        // Rounding never runs past the end.
        assert_eq!(cut_points(1, &[0.6, 0.6]), vec![0..1, 1..1]);
    }

    #[test]
    fn an_alpha_too_small_to_sample_is_refused() {
        let keys = vec![0u64, 1, 0, 1];
        assert_eq!(
            dirichlet(&keys, 2, 1e-300, 1, 0),
            Err(PartitionError::DirichletUnderflow {
                alpha: 1e-300,
                attempts: MAX_DIRICHLET_ATTEMPTS
            })
        );
    }

    #[test]
    fn iid_sizes_and_determinism() {
        let a = iid(10, 3, 7).unwrap();
        assert_eq!(a.sizes(), vec![4, 3, 3]);
        assert_eq!(a, iid(10, 3, 7).unwrap());
        assert_ne!(a, iid(10, 3, 8).unwrap());
        assert_eq!(
            iid(2, 3, 7).unwrap_err().to_string(),
            "cannot give 3 merchants at least 1 example(s) each from 2 examples"
        );
    }

    #[test]
    fn dirichlet_refuses_bad_alpha_and_names_the_starved_merchant() {
        let keys = vec![0u64; 20];
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                dirichlet(&keys, 2, bad, 1, 0),
                Err(PartitionError::BadAlpha(_))
            ));
        }
        // 20 examples of one class over 4 merchants, each needing 5: only an exact
        // quarter split works, which Dirichlet(0.05) never draws.
        let err = dirichlet(&keys, 4, 0.05, 5, 3).unwrap_err();
        match &err {
            PartitionError::DirichletStarved {
                merchant,
                size,
                min_examples,
                class,
                ..
            } => {
                assert!(*merchant < 4);
                assert!(*size < 5);
                assert_eq!((*min_examples, *class), (5, 0));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("min_examples = 5"), "{err}");
    }
}
