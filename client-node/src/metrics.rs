//! Evaluation metrics: rating error, top-k ranking with sampled negatives, and
//! threshold-free scores for rare-event classification.

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// No examples were given.
    #[error("{metric}: no examples")]
    Empty {
        /// The metric.
        metric: &'static str,
    },
    /// Predictions and truths differ in length.
    #[error("{metric}: {predictions} predictions but {truths} truths")]
    LengthMismatch {
        /// The metric.
        metric: &'static str,
        /// Number of predictions.
        predictions: usize,
        /// Number of truths.
        truths: usize,
    },
    /// The labels hold only one class, so the metric is undefined.
    #[error("{metric}: labels hold only one class ({positives} positives of {total})")]
    OneClass {
        /// The metric.
        metric: &'static str,
        /// Positive labels.
        positives: usize,
        /// All labels.
        total: usize,
    },
    /// A score is NaN or infinite.
    #[error("{metric}: score at index {index} is not finite")]
    NonFinite {
        /// The metric.
        metric: &'static str,
        /// Where.
        index: usize,
    },
}

fn check_pairs(metric: &'static str, a: usize, b: usize) -> Result<(), MetricError> {
    if a != b {
        return Err(MetricError::LengthMismatch {
            metric,
            predictions: a,
            truths: b,
        });
    }
    if a == 0 {
        return Err(MetricError::Empty { metric });
    }
    Ok(())
}

/// Root mean squared error.
pub fn rmse(predictions: &[f32], truths: &[f32]) -> Result<f64, MetricError> {
    check_pairs("rmse", predictions.len(), truths.len())?;
    let sse: f64 = predictions
        .iter()
        .zip(truths)
        .map(|(&p, &t)| (f64::from(p) - f64::from(t)).powi(2))
        .sum();
    Ok((sse / predictions.len() as f64).sqrt())
}

/// Mean absolute error.
pub fn mae(predictions: &[f32], truths: &[f32]) -> Result<f64, MetricError> {
    check_pairs("mae", predictions.len(), truths.len())?;
    let sae: f64 = predictions
        .iter()
        .zip(truths)
        .map(|(&p, &t)| (f64::from(p) - f64::from(t)).abs())
        .sum();
    Ok(sae / predictions.len() as f64)
}

/// 0-based rank of the positive among the negatives. Ties count against the positive
/// (a model that scores everything equally ranks it last), so scores cannot gain from ties.
pub fn rank_of_positive(positive: f32, negatives: &[f32]) -> usize {
    negatives.iter().filter(|&&n| n >= positive).count()
}

/// Hit ratio and NDCG at `k` of one case: `(1, 1/log2(rank + 2))` when the positive's rank
/// is below `k`, else `(0, 0)`. With one relevant item the ideal DCG is 1.
pub fn hit_and_ndcg(positive: f32, negatives: &[f32], k: usize) -> (f64, f64) {
    let rank = rank_of_positive(positive, negatives);
    if rank < k {
        (1.0, 1.0 / ((rank + 2) as f64).log2())
    } else {
        (0.0, 0.0)
    }
}

/// Mean HR@k and NDCG@k over cases of `(positive score, negative scores)`.
pub fn hit_rate_and_ndcg_at(
    cases: &[(f32, Vec<f32>)],
    k: usize,
) -> Result<(f64, f64), MetricError> {
    if cases.is_empty() {
        return Err(MetricError::Empty { metric: "hr@k" });
    }
    let (mut hits, mut ndcg) = (0.0, 0.0);
    for (pos, negs) in cases {
        let (h, n) = hit_and_ndcg(*pos, negs, k);
        hits += h;
        ndcg += n;
    }
    let n = cases.len() as f64;
    Ok((hits / n, ndcg / n))
}

/// Counts of `(positives, negatives)` per distinct score, highest score first, with the
/// class totals.
struct TieGroups {
    groups: Vec<(usize, usize)>,
    positives: usize,
    negatives: usize,
}

/// Sorts scores descending and groups equal scores, checking the inputs first.
fn tie_groups(
    metric: &'static str,
    scores: &[f32],
    labels: &[bool],
) -> Result<TieGroups, MetricError> {
    check_pairs(metric, scores.len(), labels.len())?;
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricError::NonFinite { metric, index });
    }
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 || positives == labels.len() {
        return Err(MetricError::OneClass {
            metric,
            positives,
            total: labels.len(),
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut last = None;
    for i in order {
        if last != Some(scores[i]) {
            groups.push((0, 0));
            last = Some(scores[i]);
        }
        let g = groups.last_mut().expect("a group was just pushed");
        if labels[i] {
            g.0 += 1;
        } else {
            g.1 += 1;
        }
    }
    Ok(TieGroups {
        groups,
        positives,
        negatives: labels.len() - positives,
    })
}

/// Area under the ROC curve: the probability that a random positive outscores a random
/// negative, ties counting one half (Mann–Whitney U).
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    let TieGroups {
        groups,
        positives: pos,
        negatives: neg,
    } = tie_groups("roc_auc", scores, labels)?;
    let mut negatives_below = neg as f64;
    let mut u = 0.0;
    for (p, n) in groups {
        negatives_below -= n as f64;
        u += p as f64 * (negatives_below + 0.5 * n as f64);
    }
    Ok(u / (pos as f64 * neg as f64))
}

/// Average precision: Σ (Rₖ − Rₖ₋₁)·Pₖ over distinct thresholds, as scikit-learn
/// computes it (tied scores enter together, no interpolation).
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    let TieGroups {
        groups,
        positives: pos,
        ..
    } = tie_groups("average_precision", scores, labels)?;
    let (mut tp, mut fp, mut ap) = (0usize, 0usize, 0.0);
    for (p, n) in groups {
        tp += p;
        fp += n;
        ap += (p as f64 / pos as f64) * (tp as f64 / (tp + fp) as f64);
    }
    Ok(ap)
}

/// Highest recall (true-positive rate) at a threshold whose false-positive rate is at most
/// `max_fpr` (0.01 for the reported `recall@1%fpr`). Tied scores pass a threshold together.
pub fn recall_at_fpr(scores: &[f32], labels: &[bool], max_fpr: f64) -> Result<f64, MetricError> {
    let TieGroups {
        groups,
        positives: pos,
        negatives: neg,
    } = tie_groups("recall@fpr", scores, labels)?;
    let (mut tp, mut fp, mut best) = (0usize, 0usize, 0.0);
    for (p, n) in groups {
        tp += p;
        fp += n;
        if fp as f64 / neg as f64 > max_fpr {
            break;
        }
        best = tp as f64 / pos as f64;
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn rating_errors_by_hand() {
        // Errors 1, -2, 0: squares 1+4+0 = 5, abs 1+2+0 = 3.
        close(
            rmse(&[4.0, 1.0, 3.0], &[3.0, 3.0, 3.0]).unwrap(),
            (5.0f64 / 3.0).sqrt(),
        );
        close(mae(&[4.0, 1.0, 3.0], &[3.0, 3.0, 3.0]).unwrap(), 1.0);
        assert!(matches!(
            rmse(&[1.0], &[]),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(mae(&[], &[]), Err(MetricError::Empty { .. })));
    }

    #[test]
    fn ranking_with_a_tie() {
        // One negative above, one tied (counts against): rank 2.
        let negs = [0.9, 0.5, 0.1];
        assert_eq!(rank_of_positive(0.5, &negs), 2);
        assert_eq!(hit_and_ndcg(0.5, &negs, 2), (0.0, 0.0));
        let (h, n) = hit_and_ndcg(0.5, &negs, 3);
        close(h, 1.0);
        close(n, 0.5); // 1 / log2(4)
                       // A constant model never hits.
        assert_eq!(hit_and_ndcg(1.0, &[1.0; 99], 10), (0.0, 0.0));
        let (hr, ndcg) =
            hit_rate_and_ndcg_at(&[(0.5, negs.to_vec()), (1.0, negs.to_vec())], 3).unwrap();
        close(hr, 1.0);
        close(ndcg, (0.5 + 1.0) / 2.0);
    }

    #[test]
    fn roc_auc_by_hand() {
        // scikit-learn's documented example.
        close(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
            0.75,
        );
        // Pairs (pos, neg): (.5,.5)=½, (.5,.2)=1, (.9,.5)=1, (.9,.2)=1 → 3.5/4.
        close(
            roc_auc(&[0.5, 0.5, 0.2, 0.9], &[true, false, false, true]).unwrap(),
            0.875,
        );
        assert!(matches!(
            roc_auc(&[0.1, 0.2], &[true, true]),
            Err(MetricError::OneClass { .. })
        ));
    }

    #[test]
    fn average_precision_by_hand() {
        // 0.8 (pos): P=1, R=½; 0.4 (neg); 0.35 (pos): P=⅔, R=1 → ½·1 + ½·⅔.
        close(
            average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
            5.0 / 6.0,
        );
        // 0.9 (pos): P=1, R=½; tie at 0.5 (pos+neg) enters at once: P=⅔, R=1.
        close(
            average_precision(&[0.5, 0.5, 0.2, 0.9], &[true, false, false, true]).unwrap(),
            5.0 / 6.0,
        );
        // Tie of everything: precision at the only threshold is the base rate.
        close(
            average_precision(&[0.3; 4], &[true, false, false, false]).unwrap(),
            0.25,
        );
    }

    #[test]
    fn recall_at_fpr_by_hand() {
        // Thresholds: .9 → tpr ⅓ fpr 0; .8 → fpr ½; .7 → tpr ⅔ fpr ½; .6 → fpr 1.
        let s = [0.9, 0.8, 0.7, 0.6, 0.5];
        let l = [true, false, true, false, true];
        close(recall_at_fpr(&s, &l, 0.5).unwrap(), 2.0 / 3.0);
        close(recall_at_fpr(&s, &l, 0.01).unwrap(), 1.0 / 3.0);
        // A tie of a positive and a negative at the top crosses fpr 0 together: recall 0.
        close(
            recall_at_fpr(&[0.9, 0.9, 0.1], &[true, false, false], 0.01).unwrap(),
            0.0,
        );
        assert!(matches!(
            recall_at_fpr(&[f32::NAN, 0.1], &[true, false], 0.01),
            Err(MetricError::NonFinite { index: 0, .. })
        ));
    }
}
