//! The scenario's `[merchants]` table: how many merchants, how the data is split, the cohort.

use serde::{Deserialize, Serialize};

/// `[merchants]`: the federation's members and each round's cohort.
///
/// ```toml
/// [merchants]
/// count = 8
/// cohort_size = 8
/// min_cohort = 6
/// partition = { kind = "dirichlet", alpha = 0.5, over = "labels" }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantsSpec {
    /// Number of merchants. Required for `iid`, `dirichlet` and `by-attribute`. For
    /// `natural` it is optional: when set, the `count − 1` largest groups keep their own
    /// merchant and the rest are merged into one `other` merchant. Default: none.
    #[serde(default)]
    pub count: Option<u32>,
    /// Merchants asked to train in each round. Default: none, meaning every merchant.
    #[serde(default)]
    pub cohort_size: Option<u32>,
    /// Fewest updates a round needs to be aggregated; fewer and the round fails.
    /// Default: none, meaning the whole cohort is not required (one update suffices
    /// without secure aggregation; the secure-aggregation threshold applies with it).
    #[serde(default)]
    pub min_cohort: Option<u32>,
    /// How examples are assigned to merchants. Required.
    pub partition: PartitionSpec,
}

/// How examples are assigned to merchants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PartitionSpec {
    /// One merchant per value of the data set's own grouping (Online Retail: `country`;
    /// MovieLens: a user attribute such as `occupation`), with small groups merged.
    Natural {
        /// The grouping attribute, e.g. `country`. Required.
        attribute: String,
        /// Groups with fewer examples than this are merged into `other`. Default: 1
        /// (no merging by size).
        #[serde(default = "one")]
        min_examples: u64,
    },
    /// Examples shuffled under the seed and dealt into `count` equal parts (sizes differ
    /// by at most one).
    Iid {},
    /// Label or item skew: each class's examples are split across merchants by
    /// proportions drawn from Dirichlet(α, …, α). Small α: each merchant sees few classes.
    Dirichlet {
        /// Concentration α > 0; 0.1 is very skewed, 100 is close to IID. Required.
        alpha: f64,
        /// What the classes are. Default: `labels`.
        #[serde(default)]
        over: DirichletOver,
        /// Fewest examples a merchant may end with; draws are repeated (up to a fixed
        /// number of attempts) until every merchant has this many. Default: 1.
        #[serde(default = "one")]
        min_examples: u64,
    },
    /// The values of `field` are packed whole into `count` merchants, largest value first
    /// to the merchant with the fewest examples so far (a balanced split that never cuts
    /// one value's examples across merchants).
    ByAttribute {
        /// The attribute, e.g. `occupation` or `age_band`. Required.
        field: String,
    },
}

fn one() -> u64 {
    1
}

/// The classes a Dirichlet partition skews over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirichletOver {
    /// The task's label (fraud / legitimate; a rating value).
    #[default]
    Labels,
    /// The item an example concerns (a product, a film).
    Items,
}

impl PartitionSpec {
    /// The partition's name as written in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            PartitionSpec::Natural { .. } => "natural",
            PartitionSpec::Iid {} => "iid",
            PartitionSpec::Dirichlet { .. } => "dirichlet",
            PartitionSpec::ByAttribute { .. } => "by-attribute",
        }
    }
}
