//! Partitioners: split n examples into one index list per merchant, from plain keys.
//!
//! They know nothing of the data sets: the caller passes, per example, a group key
//! (country, occupation), a label, or an item id, and gets back which examples each
//! merchant holds. Every index in `0..n` is used exactly once and no merchant is empty;
//! a split that cannot be made is an error that says which merchant or group.
//!
//! ```
//! use hansa_sim::partition::{iid, natural};
//!
//! let countries = ["UK", "UK", "France", "UK", "EIRE", "France"];
//! let split = natural(&countries, 2, None).unwrap();
//! assert_eq!(split.names(), vec!["UK", "France", "other"]);
//! assert_eq!(split.merchants[0].indices, vec![0, 1, 3]);
//!
//! let split = iid(10, 3, 42).unwrap();
//! assert_eq!(split.sizes(), vec![4, 3, 3]);
//! ```

mod grouped;
mod random;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use grouped::{by_attribute, natural, OTHER};
pub use random::{dirichlet, iid, MAX_DIRICHLET_ATTEMPTS};

use crate::scenario::{DirichletOver, PartitionSpec};

/// The examples one merchant holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantShard {
    /// A readable name: the group's value (`France`), the values packed together
    /// (`doctor+lawyer`) or `merchant-003`.
    pub name: String,
    /// Indices into the caller's examples, ascending.
    pub indices: Vec<usize>,
}

/// One index list per merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The merchants, in a fixed order (largest group first for key-based splits).
    pub merchants: Vec<MerchantShard>,
}

impl Partition {
    /// Each merchant's number of examples.
    pub fn sizes(&self) -> Vec<usize> {
        self.merchants.iter().map(|m| m.indices.len()).collect()
    }

    /// Each merchant's name.
    pub fn names(&self) -> Vec<&str> {
        self.merchants.iter().map(|m| m.name.as_str()).collect()
    }

    /// Mean total-variation distance between each merchant's label distribution and the
    /// pooled one, in [0, 1): 0 for identical mixes, near 1 when every merchant holds a
    /// single class that is rare overall. A measure of label (or item) skew.
    pub fn label_skew(&self, labels: &[u64]) -> f64 {
        let classes = sorted_classes(labels);
        let histogram = |indices: &mut dyn Iterator<Item = usize>| {
            let mut counts = vec![0usize; classes.len()];
            let mut total = 0usize;
            for i in indices {
                let c = classes
                    .binary_search(&labels[i])
                    .expect("label of a known class");
                counts[c] += 1;
                total += 1;
            }
            counts
                .into_iter()
                .map(|c| c as f64 / total.max(1) as f64)
                .collect::<Vec<_>>()
        };
        let pooled = histogram(&mut (0..labels.len()));
        let distances: Vec<f64> = self
            .merchants
            .iter()
            .map(|m| {
                let own = histogram(&mut m.indices.iter().copied());
                0.5 * own
                    .iter()
                    .zip(&pooled)
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f64>()
            })
            .collect();
        distances.iter().sum::<f64>() / distances.len().max(1) as f64
    }
}

/// The distinct labels, sorted.
pub(crate) fn sorted_classes(labels: &[u64]) -> Vec<u64> {
    let mut classes = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    classes
}

/// The generator of a partition: ChaCha8 from the scenario's seed, on its own stream so
/// that other random choices of the run do not shift it.
pub(crate) fn partition_rng(seed: u64) -> ChaCha8Rng {
    const PARTITION_STREAM: u64 = 0x7061_7274; // "part"
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(PARTITION_STREAM);
    rng
}

/// Why a partition cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartitionError {
    /// Fewer examples than merchants (or than merchants × the minimum per merchant).
    #[error("cannot give {merchants} merchants at least {min_each} example(s) each from {examples} examples")]
    TooFewExamples {
        /// Examples available.
        examples: usize,
        /// Merchants asked for.
        merchants: usize,
        /// Least each merchant must hold.
        min_each: u64,
    },
    /// Zero merchants asked for.
    #[error("a partition needs at least 1 merchant, got 0")]
    NoMerchants,
    /// A key-based split has fewer distinct values than merchants.
    #[error("by-attribute on `{field}`: {values} distinct value(s) cannot fill {merchants} merchants without an empty one")]
    TooFewValues {
        /// The attribute.
        field: String,
        /// Distinct values found.
        values: usize,
        /// Merchants asked for.
        merchants: usize,
    },
    /// Dirichlet draws kept leaving a merchant with too few examples.
    #[error("dirichlet(alpha = {alpha}): after {attempts} draws merchant {merchant} still holds {size} example(s), fewer than min_examples = {min_examples}; its smallest share was of class {class}; raise alpha or lower merchants.count")]
    DirichletStarved {
        /// α.
        alpha: f64,
        /// Draws tried.
        attempts: usize,
        /// 0-based index of the merchant that ended short in the last draw.
        merchant: usize,
        /// Its size in the last draw.
        size: usize,
        /// The minimum asked for.
        min_examples: u64,
        /// The class the merchant got fewest of, as a label value.
        class: u64,
    },
    /// α so small that Dirichlet draws keep underflowing to 0/0.
    #[error("dirichlet(alpha = {alpha}): {attempts} draws in a row underflowed to 0/0; alpha is too small to sample, use alpha ≥ 0.01")]
    DirichletUnderflow {
        /// α.
        alpha: f64,
        /// Draws tried.
        attempts: usize,
    },
    /// α not finite or not positive.
    #[error("dirichlet: alpha = {0} must be a finite number greater than 0")]
    BadAlpha(f64),
    /// The input the partition kind needs was not given, or has the wrong length.
    #[error("partition kind `{kind}` needs {what}")]
    MissingInput {
        /// The partition kind.
        kind: &'static str,
        /// What is missing, e.g. "a group key per example (3 given for 5 examples)".
        what: String,
    },
}

/// Per-example inputs a partition may need; the caller fills what its data set has.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionInput<'a> {
    /// Number of examples n; every other slice, when given, has n entries.
    pub examples: usize,
    /// The grouping attribute's value per example (`natural`, `by-attribute`).
    pub groups: Option<&'a [String]>,
    /// The label per example (`dirichlet` over labels).
    pub labels: Option<&'a [u64]>,
    /// The item id per example (`dirichlet` over items).
    pub items: Option<&'a [u64]>,
}

/// Makes the partition a scenario asks for. `count` is `merchants.count` (required by
/// every kind but `natural`, for which it caps the number of merchants).
pub fn split(
    spec: &PartitionSpec,
    count: Option<u32>,
    input: &PartitionInput<'_>,
    seed: u64,
) -> Result<Partition, PartitionError> {
    let kind = spec.name();
    let n = input.examples;
    let count_or_err = || {
        count
            .map(|c| c as usize)
            .ok_or(PartitionError::MissingInput {
                kind,
                what: "merchants.count".to_string(),
            })
    };
    let partition = match spec {
        PartitionSpec::Natural { min_examples, .. } => {
            let groups = slice_for(kind, input.groups, n, "a group key per example")?;
            natural(groups, *min_examples, count.map(|c| c as usize))
        }
        PartitionSpec::Iid {} => iid(n, count_or_err()?, seed),
        PartitionSpec::Dirichlet {
            alpha,
            over,
            min_examples,
        } => {
            let keys = match over {
                DirichletOver::Labels => slice_for(kind, input.labels, n, "a label per example")?,
                DirichletOver::Items => slice_for(kind, input.items, n, "an item id per example")?,
            };
            dirichlet(keys, count_or_err()?, *alpha, *min_examples, seed)
        }
        PartitionSpec::ByAttribute { field } => {
            let groups = slice_for(kind, input.groups, n, "a group key per example")?;
            by_attribute(groups, field, count_or_err()?)
        }
    }?;
    tracing::info!(
        kind,
        merchants = partition.merchants.len(),
        examples = n,
        smallest = partition.sizes().into_iter().min().unwrap_or(0),
        "partition made"
    );
    Ok(partition)
}

/// The slice when it is present and has one entry per example.
fn slice_for<'s, T>(
    kind: &'static str,
    slice: Option<&'s [T]>,
    examples: usize,
    what: &str,
) -> Result<&'s [T], PartitionError> {
    match slice {
        Some(s) if s.len() == examples => Ok(s),
        Some(s) => Err(PartitionError::MissingInput {
            kind,
            what: format!("{what} ({} given for {examples} examples)", s.len()),
        }),
        None => Err(PartitionError::MissingInput {
            kind,
            what: what.to_string(),
        }),
    }
}
