//! Merchants' data: load the scenario's data set, split it into merchants, give each a
//! training part and a held-out part, and build the learner every arm trains.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hansa_node::data::creditcard::read_creditcard;
use hansa_node::data::movielens::{read_100k_users, read_ratings, RatingsFormat};
use hansa_node::data::online_retail::read_online_retail;
use hansa_node::data::split::{leave_last_out, sample_negatives, stratified_split};
use hansa_node::data::{FraudDataset, RatingsDataset, Vocabulary};
use hansa_node::learner::{HeldOut, Learner};
use hansa_node::model::{
    Feedback as ModelFeedback, FraudConfig, FraudMlp, Recommender, RecommenderConfig,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::RunError;
use crate::partition::{split, PartitionInput};
use crate::report::MetricSpec;
use crate::scenario::{Attack, DatasetKind, Feedback, Scenario, TaskKind};

/// Negatives sampled per held-out purchase for the ranking metric (the NCF protocol).
pub const RANKING_NEGATIVES: usize = 99;
/// Fewest distinct products a customer needs to have one held out (leave-last-out).
pub const MIN_ITEMS_FOR_HOLD_OUT: usize = 5;
/// Share of each merchant's examples held out (explicit ratings per user; fraud
/// stratified by class).
pub const HELD_OUT_FRACTION: f64 = 0.2;

/// A merchant's training examples.
#[derive(Debug, Clone)]
pub enum TrainPart {
    /// Ratings or purchases, over the data set's shared vocabulary.
    Ratings(RatingsDataset),
    /// Labelled card transactions.
    Transactions(FraudDataset),
}

impl TrainPart {
    /// Training examples.
    pub fn len(&self) -> usize {
        match self {
            TrainPart::Ratings(d) => d.len(),
            TrainPart::Transactions(d) => d.len(),
        }
    }

    /// True when there is nothing to train on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One merchant of the run.
#[derive(Debug, Clone)]
pub struct MerchantData {
    /// Its id on the wire and in certificates: `merchant-00`, `merchant-01`, ...
    pub id: String,
    /// The partition's readable name (`France`, `doctor+lawyer`, `merchant-003`).
    pub name: String,
    /// Its training part.
    pub train: TrainPart,
    /// Its held-out part, the same for every arm.
    pub held_out: HeldOut,
}

/// The merchants and what every arm needs to know about the task.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The merchants, in partition order.
    pub merchants: Vec<MerchantData>,
    /// The headline metric.
    pub metric: MetricSpec,
    /// The data set's folder, as resolved.
    pub data_path: PathBuf,
}

/// The headline metric of a task: `hr@10` (implicit), `rmse` (explicit),
/// `average_precision` (fraud).
pub fn metric_for(scenario: &Scenario) -> MetricSpec {
    let (name, higher_is_better) = match (scenario.task.kind, scenario.task.feedback) {
        (TaskKind::Recommender, Feedback::Implicit) => ("hr@10", true),
        (TaskKind::Recommender, Feedback::Explicit) => ("rmse", false),
        (TaskKind::Fraud, _) => ("average_precision", true),
    };
    MetricSpec {
        name: name.to_string(),
        higher_is_better,
    }
}

/// The repository root, for the bundled data: the folder above this crate.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Loads, splits and holds out. `poisoned` merchants (indices) with a label-flip attack
/// get flipped training labels.
pub fn prepare(scenario: &Scenario, poisoned: &[u32]) -> Result<Prepared, RunError> {
    let env = std::env::var(crate::scenario::DATA_DIR_ENV).ok();
    let data_path = scenario.dataset.resolve_path(env.as_deref(), &repo_root());
    let label_flip = matches!(
        scenario.faults.poisoned.as_ref().map(|p| p.attack),
        Some(Attack::LabelFlip {})
    );
    let flipped = |m: usize| label_flip && poisoned.contains(&(m as u32));
    let merchants = match scenario.dataset.kind {
        DatasetKind::OnlineRetail => online_retail(scenario, &data_path, &flipped)?,
        DatasetKind::Movielens100k => movielens(scenario, &data_path, &flipped)?,
        DatasetKind::Creditcard => creditcard(scenario, &data_path, &flipped)?,
    };
    Ok(Prepared {
        merchants,
        metric: metric_for(scenario),
        data_path,
    })
}

fn data_error(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Data {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

fn merchant_id(index: usize) -> String {
    format!("merchant-{index:02}")
}

/// Online Retail: invoice lines split by the partition, then temporal leave-last-out per
/// merchant with sampled negatives among the merchant's own purchases.
fn online_retail(
    scenario: &Scenario,
    dir: &Path,
    flipped: &dyn Fn(usize) -> bool,
) -> Result<Vec<MerchantData>, RunError> {
    let file = dir.join("online_retail.csv.gz");
    let (data, _) = read_online_retail(&file).map_err(|e| data_error(&file, e))?;
    let groups: Vec<String> = data
        .records
        .iter()
        .map(|r| {
            data.vocab
                .countries
                .id(u32::from(r.country))
                .unwrap_or("unknown")
                .to_string()
        })
        .collect();
    let items: Vec<u64> = data.records.iter().map(|r| u64::from(r.item)).collect();
    let input = PartitionInput {
        examples: data.records.len(),
        groups: Some(&groups),
        items: Some(&items),
        ..Default::default()
    };
    let partition = split(
        &scenario.merchants.partition,
        scenario.merchants.count,
        &input,
        scenario.seed,
    )?;
    let mut merchants = Vec::new();
    for (m, shard) in partition.merchants.iter().enumerate() {
        let own = select_ratings(&data, &shard.indices);
        let (train, held) = leave_last_out(&own, MIN_ITEMS_FOR_HOLD_OUT);
        let cases = sample_negatives(&own, &held, RANKING_NEGATIVES, scenario.seed ^ m as u64)
            .map_err(|e| data_error(&file, format!("merchant {}: {e}", shard.name)))?;
        if cases.is_empty() {
            return Err(RunError::EmptyHeldOut {
                merchant: shard.name.clone(),
                detail: format!(
                    "no customer has {MIN_ITEMS_FOR_HOLD_OUT} distinct products to hold one out"
                ),
            });
        }
        let train = if flipped(m) {
            flip_implicit(&train)
        } else {
            train
        };
        merchants.push(MerchantData {
            id: merchant_id(m),
            name: shard.name.clone(),
            train: TrainPart::Ratings(train),
            held_out: HeldOut::Ranking(cases),
        });
    }
    Ok(merchants)
}

/// MovieLens 100K: all 100,000 ratings split by the partition, then a per-user random
/// 80/20 split inside each merchant (a user with one rating there keeps it for training).
fn movielens(
    scenario: &Scenario,
    dir: &Path,
    flipped: &dyn Fn(usize) -> bool,
) -> Result<Vec<MerchantData>, RunError> {
    let file = dir.join("u.data");
    let mut vocab = Vocabulary::default();
    let records =
        read_ratings(&file, RatingsFormat::Tab, &mut vocab).map_err(|e| data_error(&file, e))?;
    let data = RatingsDataset::new(records, Arc::new(vocab));
    let users_file = dir.join("u.user");
    let profiles = read_100k_users(&users_file).map_err(|e| data_error(&users_file, e))?;
    let field = match &scenario.merchants.partition {
        crate::scenario::PartitionSpec::Natural { attribute, .. } => attribute.as_str(),
        crate::scenario::PartitionSpec::ByAttribute { field } => field.as_str(),
        _ => "occupation",
    };
    let attribute: HashMap<&str, String> = profiles
        .iter()
        .map(|p| {
            let value = match field {
                "gender" => p.gender.to_string(),
                "age_band" => format!("{}s", p.age / 10 * 10),
                _ => p.occupation.clone(),
            };
            (p.id.as_str(), value)
        })
        .collect();
    if !matches!(field, "occupation" | "gender" | "age_band") {
        return Err(RunError::Unsupported {
            what: format!("movielens attribute `{field}`"),
            detail: "use occupation, gender or age_band".into(),
        });
    }
    let groups: Vec<String> = data
        .records
        .iter()
        .map(|r| {
            let user = data.vocab.users.id(r.user).unwrap_or_default();
            attribute
                .get(user)
                .cloned()
                .unwrap_or_else(|| "unknown".into())
        })
        .collect();
    let labels: Vec<u64> = data
        .records
        .iter()
        .map(|r| r.value.round() as u64)
        .collect();
    let items: Vec<u64> = data.records.iter().map(|r| u64::from(r.item)).collect();
    let input = PartitionInput {
        examples: data.records.len(),
        groups: Some(&groups),
        labels: Some(&labels),
        items: Some(&items),
    };
    let partition = split(
        &scenario.merchants.partition,
        scenario.merchants.count,
        &input,
        scenario.seed,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let mut merchants = Vec::new();
    for (m, shard) in partition.merchants.iter().enumerate() {
        let own = select_ratings(&data, &shard.indices);
        let (train, test) = per_user_split(&own, HELD_OUT_FRACTION, &mut rng);
        if test.is_empty() {
            return Err(RunError::EmptyHeldOut {
                merchant: shard.name.clone(),
                detail: "no user has two ratings to hold one out".into(),
            });
        }
        let train = if flipped(m) {
            let mut t = train;
            for r in &mut t.records {
                r.value = 6.0 - r.value;
            }
            t
        } else {
            train
        };
        merchants.push(MerchantData {
            id: merchant_id(m),
            name: shard.name.clone(),
            train: TrainPart::Ratings(train),
            held_out: HeldOut::Ratings(test),
        });
    }
    Ok(merchants)
}

/// Card fraud: transactions split by the partition, then a stratified 80/20 split per
/// merchant.
fn creditcard(
    scenario: &Scenario,
    dir: &Path,
    flipped: &dyn Fn(usize) -> bool,
) -> Result<Vec<MerchantData>, RunError> {
    let file = dir.join("creditcard_sample.csv.gz");
    let data = read_creditcard(&file).map_err(|e| data_error(&file, e))?;
    let labels: Vec<u64> = data.records.iter().map(|t| u64::from(t.fraud)).collect();
    let input = PartitionInput {
        examples: data.len(),
        labels: Some(&labels),
        ..Default::default()
    };
    let partition = split(
        &scenario.merchants.partition,
        scenario.merchants.count,
        &input,
        scenario.seed,
    )?;
    let mut merchants = Vec::new();
    for (m, shard) in partition.merchants.iter().enumerate() {
        let own = data.select(&shard.indices);
        let (mut train, test) = stratified_split(&own, HELD_OUT_FRACTION, scenario.seed ^ m as u64)
            .map_err(|e| data_error(&file, e))?;
        if test.is_empty() || train.is_empty() {
            return Err(RunError::EmptyHeldOut {
                merchant: shard.name.clone(),
                detail: format!("{} transactions are too few to hold 20% out", own.len()),
            });
        }
        if flipped(m) {
            for t in &mut train.records {
                t.fraud = !t.fraud;
            }
        }
        merchants.push(MerchantData {
            id: merchant_id(m),
            name: shard.name.clone(),
            train: TrainPart::Transactions(train),
            held_out: HeldOut::Transactions(test),
        });
    }
    Ok(merchants)
}

fn select_ratings(data: &RatingsDataset, indices: &[usize]) -> RatingsDataset {
    let records = indices.iter().map(|&i| data.records[i]).collect();
    RatingsDataset::new(records, Arc::clone(&data.vocab))
}

/// Holds out `fraction` (rounded down) of each user's ratings, chosen under `rng`; a user
/// keeps at least one rating for training.
fn per_user_split(
    data: &RatingsDataset,
    fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (RatingsDataset, RatingsDataset) {
    let mut by_user: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, r) in data.records.iter().enumerate() {
        by_user.entry(r.user).or_default().push(i);
    }
    let mut test = Vec::new();
    for indices in by_user.values_mut() {
        indices.shuffle(rng);
        let n_test = ((indices.len() as f64 * fraction) as usize).min(indices.len() - 1);
        test.extend_from_slice(&indices[..n_test]);
    }
    test.sort_unstable();
    let held: std::collections::HashSet<usize> = test.iter().copied().collect();
    let train = (0..data.len())
        .filter(|i| !held.contains(i))
        .collect::<Vec<_>>();
    (select_ratings(data, &train), select_ratings(data, &test))
}

/// Label flip for purchases: every customer's purchases are replaced by the same number
/// of products they did not buy (the positives become negatives), rotating through the
/// vocabulary so that the result is deterministic.
fn flip_implicit(train: &RatingsDataset) -> RatingsDataset {
    let items = train.num_items() as u32;
    let mut bought: HashMap<u32, std::collections::HashSet<u32>> = HashMap::new();
    for r in &train.records {
        bought.entry(r.user).or_default().insert(r.item);
    }
    let mut records = train.records.clone();
    for r in &mut records {
        let own = &bought[&r.user];
        let mut j = (r.item + items / 2) % items;
        while own.contains(&j) {
            j = (j + 1) % items;
        }
        r.item = j;
    }
    RatingsDataset::new(records, Arc::clone(&train.vocab))
}

/// Model settings every arm uses.
#[derive(Debug, Clone)]
pub struct LearnerSpec {
    /// The task.
    pub task: TaskKind,
    /// Recommender feedback.
    pub feedback: Feedback,
    /// Embedding width.
    pub embedding_dim: usize,
    /// Fraud MLP hidden widths.
    pub hidden: [usize; 2],
    /// Initialisation seed, the same for every merchant (so they start from one model).
    pub seed: u64,
}

impl LearnerSpec {
    /// The learner settings of `scenario`.
    pub fn from_scenario(scenario: &Scenario) -> Result<Self, RunError> {
        let hidden = match scenario.model.hidden.as_slice() {
            [a, b] => [*a as usize, *b as usize],
            // Limitation: the fraud MLP of hansa-node has exactly two hidden layers; other
            // shapes are refused (a configurable layer list in FraudMlp would lift it).
            other if scenario.task.kind == TaskKind::Fraud => {
                return Err(RunError::Unsupported {
                    what: format!("model.hidden = {other:?}"),
                    detail: "the fraud MLP has exactly two hidden layers, e.g. [64, 32]".into(),
                })
            }
            _ => [64, 32],
        };
        Ok(Self {
            task: scenario.task.kind,
            feedback: scenario.task.feedback,
            embedding_dim: scenario.model.embedding_dim as usize,
            hidden,
            seed: scenario.seed,
        })
    }

    /// A fresh learner bound to `train`.
    pub fn build(&self, train: &TrainPart) -> Result<Box<dyn Learner>, RunError> {
        Ok(match train {
            TrainPart::Ratings(d) => {
                let feedback = match self.feedback {
                    Feedback::Explicit => ModelFeedback::Explicit,
                    Feedback::Implicit => ModelFeedback::Implicit,
                };
                let config = RecommenderConfig {
                    dim: self.embedding_dim,
                    init_std: 0.1,
                    feedback,
                    seed: self.seed,
                };
                Box::new(Recommender::new(d, config)?)
            }
            TrainPart::Transactions(d) => {
                let config = FraudConfig {
                    hidden: self.hidden,
                    fraud_weight: None,
                    seed: self.seed,
                };
                Box::new(FraudMlp::new(d, config)?)
            }
        })
    }
}

/// All merchants' training parts pooled (the centralised arm).
pub fn pooled_train(merchants: &[MerchantData]) -> Option<TrainPart> {
    let first = merchants.first()?;
    Some(match &first.train {
        TrainPart::Ratings(d) => {
            let records = merchants
                .iter()
                .filter_map(|m| match &m.train {
                    TrainPart::Ratings(d) => Some(d.records.iter().copied()),
                    TrainPart::Transactions(_) => None,
                })
                .flatten()
                .collect();
            TrainPart::Ratings(RatingsDataset::new(records, Arc::clone(&d.vocab)))
        }
        TrainPart::Transactions(_) => TrainPart::Transactions(FraudDataset {
            records: merchants
                .iter()
                .filter_map(|m| match &m.train {
                    TrainPart::Transactions(d) => Some(d.records.iter().cloned()),
                    TrainPart::Ratings(_) => None,
                })
                .flatten()
                .collect(),
        }),
    })
}
