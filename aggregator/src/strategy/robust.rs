//! Coordinate-wise median and trimmed mean: robust aggregates that need every update in clear.

use super::StrategyError;

/// For each coordinate, the median of the updates' values (the mean of the two middle
/// values for an even count).
///
/// Limitation: example counts are ignored (one node, one vote), as in Yin et al. 2018; a
/// weighted median would lift it. Trimmed mean below is unweighted too.
pub fn coordinate_median(updates: &[Vec<f32>]) -> Result<Vec<f64>, StrategyError> {
    coordinate_wise(updates, |column| {
        let n = column.len();
        if n % 2 == 1 {
            column[n / 2]
        } else {
            0.5 * (column[n / 2 - 1] + column[n / 2])
        }
    })
}

/// For each coordinate, drops the ⌊β n⌋ largest and ⌊β n⌋ smallest values and averages
/// the rest (Yin et al. 2018). β is `trim_fraction` in [0, 0.5); at least one value must
/// remain, else [`StrategyError::TrimmedAway`].
pub fn trimmed_mean(updates: &[Vec<f32>], trim_fraction: f64) -> Result<Vec<f64>, StrategyError> {
    let n = updates.len();
    let trimmed = (trim_fraction * n as f64).floor() as usize;
    if n > 0 && 2 * trimmed >= n {
        return Err(StrategyError::TrimmedAway {
            updates: n,
            trimmed_each_side: trimmed,
        });
    }
    coordinate_wise(updates, |column| {
        let kept = &column[trimmed..column.len() - trimmed];
        kept.iter().sum::<f64>() / kept.len() as f64
    })
}

/// Applies `reduce` to each coordinate's values, sorted ascending.
fn coordinate_wise(
    updates: &[Vec<f32>],
    reduce: impl Fn(&[f64]) -> f64,
) -> Result<Vec<f64>, StrategyError> {
    let Some(first) = updates.first() else {
        return Err(StrategyError::NoUpdates);
    };
    let len = first.len();
    if let Some(other) = updates.iter().find(|u| u.len() != len) {
        return Err(StrategyError::Length {
            expected: len,
            actual: other.len(),
        });
    }
    // Limitation: sorts each column, O(P · n log n) with one pass per coordinate; fine for
    // cohorts of tens, slow for thousands (a selection network per column would lift it).
    let mut column = vec![0.0f64; updates.len()];
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        for (slot, update) in column.iter_mut().zip(updates) {
            *slot = f64::from(update[i]);
        }
        column.sort_unstable_by(f64::total_cmp);
        out.push(reduce(&column));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_by_hand() {
        let odd = vec![vec![1.0, 10.0], vec![3.0, -5.0], vec![2.0, 100.0]];
        assert_eq!(coordinate_median(&odd).unwrap(), [2.0, 10.0]);
        let even = vec![vec![1.0], vec![4.0], vec![2.0], vec![100.0]];
        assert_eq!(coordinate_median(&even).unwrap(), [3.0]);
    }

    #[test]
    fn trimmed_mean_drops_the_extremes_by_hand() {
        // n = 5, β = 0.2: drop one each side. Column [-100, 1, 2, 3, 50] → mean(1, 2, 3) = 2.
        let updates = vec![
            vec![1.0, 0.0],
            vec![-100.0, 0.0],
            vec![3.0, 1.0],
            vec![50.0, 1.0],
            vec![2.0, 4.0],
        ];
        // Second column sorted [0, 0, 1, 1, 4] → mean(0, 1, 1) = 2/3.
        let out = trimmed_mean(&updates, 0.2).unwrap();
        assert_eq!(out[0], 2.0);
        assert!((out[1] - 2.0 / 3.0).abs() < 1e-12, "{out:?}");
        // β = 0 is the plain mean: (1 − 100 + 3 + 50 + 2) / 5 = −8.8.
        assert!((trimmed_mean(&updates, 0.0).unwrap()[0] + 8.8).abs() < 1e-12);
    }

    #[test]
    fn refuses_trimming_everything_and_empty_input() {
        let updates = vec![vec![1.0], vec![2.0]];
        // ⌊0.49 · 2⌋ = 0: nothing is trimmed, the plain mean remains.
        assert_eq!(trimmed_mean(&updates, 0.49).unwrap(), [1.5]);
        let err = trimmed_mean(&vec![vec![1.0]; 4], 0.5).unwrap_err();
        assert_eq!(
            err,
            StrategyError::TrimmedAway {
                updates: 4,
                trimmed_each_side: 2
            }
        );
        assert_eq!(
            coordinate_median(&[]).unwrap_err(),
            StrategyError::NoUpdates
        );
    }
}
