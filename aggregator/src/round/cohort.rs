//! Choosing a round's cohort from the connected nodes.

use hansa_protocol::{MerchantId, Round};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The cohort of `round`: every connected merchant when `size` is 0 or covers them all,
/// otherwise a sample of `size` drawn with a seed derived from `seed` and the round, so
/// that a re-run of the same round (after a crash) draws the same sample from the same
/// connected nodes. Returned in id order.
pub fn select(connected: &[MerchantId], size: usize, seed: u64, round: Round) -> Vec<MerchantId> {
    let mut cohort: Vec<MerchantId> = connected.to_vec();
    cohort.sort();
    if size == 0 || size >= cohort.len() {
        return cohort;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(round_seed(seed, round));
    cohort.shuffle(&mut rng);
    cohort.truncate(size);
    cohort.sort();
    cohort
}

/// A per-round seed: the federation seed mixed with the round number (SplitMix64's
/// finaliser, so that neighbouring rounds get unrelated seeds).
pub fn round_seed(seed: u64, round: Round) -> u64 {
    let mut z = seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchants(n: usize) -> Vec<MerchantId> {
        (0..n).map(|i| format!("merchant-{i:02}")).collect()
    }

    #[test]
    fn size_zero_takes_everyone_in_id_order() {
        let mut connected = merchants(4);
        connected.reverse();
        assert_eq!(select(&connected, 0, 7, 1), merchants(4));
    }

    #[test]
    fn sample_is_seeded_by_round_and_sized() {
        let connected = merchants(20);
        let a = select(&connected, 5, 7, 3);
        assert_eq!(a.len(), 5);
        assert_eq!(
            a,
            select(&connected, 5, 7, 3),
            "same seed and round, same cohort"
        );
        assert_ne!(
            a,
            select(&connected, 5, 7, 4),
            "another round draws another cohort"
        );
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }
}
