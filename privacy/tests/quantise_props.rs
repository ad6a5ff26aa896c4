//! Property tests of the quantiser: every rounded value is a neighbouring grid point, the
//! rounded norm stays within the sensitivity bound, and words sum without wrapping.

use hansa_privacy::clip::clip_in_place;
use hansa_privacy::quantise::{dequantise_sum, to_words, Quantiser};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn rounding_stays_next_to_the_value_and_within_the_bound(
        values in proptest::collection::vec(-10.0f32..10.0, 1..200),
        step_exp in -4i32..-1,
        seed in any::<u64>(),
    ) {
        let mut values = values;
        let clip_norm = 1.0;
        clip_in_place(&mut values, clip_norm).unwrap();
        let step = 10f64.powi(step_exp);
        let q = Quantiser::new(step, clip_norm, values.len()).unwrap();
        let rounded = q.quantise(&values, &mut ChaCha20Rng::seed_from_u64(seed)).unwrap();

        for (r, v) in rounded.iter().zip(&values) {
            let x = f64::from(*v) / step;
            prop_assert!((*r as f64 - x).abs() < 1.0 + 1e-9, "{r} vs {x}");
        }
        let norm = rounded.iter().map(|r| (*r as f64).powi(2)).sum::<f64>().sqrt();
        prop_assert!(norm <= q.rounded_norm_bound());

        // Summing ten copies as words mod 2^32 gives back ten times the signed values.
        let words = to_words(&rounded);
        let mut sum = vec![0u32; words.len()];
        for _ in 0..10 {
            sum.iter_mut().zip(&words).for_each(|(s, w)| *s = s.wrapping_add(*w));
        }
        for (back, r) in dequantise_sum(&sum, 1.0).iter().zip(&rounded) {
            prop_assert_eq!(*back, (10 * r) as f64);
        }
    }
}
