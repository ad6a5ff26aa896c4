//! Merchants' data: load the scenario's data set, split it into merchants, give each a
//! training part and a held-out part, and build the learner every arm trains.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hansa_node::data::creditcard::read_creditcard;
use hansa_node::data::movielens::{read_100k_users, read_ratings, RatingsFormat};
use hansa_node::data::online_retail::read_online_retail;
use hansa_node::data::split::{leave_last_out, sample_negatives};
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
use crate::scenario::{Attack, DatasetKind, Feedback, HeldOutSpec, Scenario, TaskKind};

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
    /// The held-out set every model is scored on with `evaluation.held_out = "pooled"`
    /// (the merchants then hold nothing out).
    pub pooled_held_out: Option<HeldOut>,
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
    // Limitation: a label flip poisons the merchant's training data for the whole run,
    // whatever `faults.poisoned.from_round` says (swapping the learner's data at that
    // round would lift it); scaled and sign-flipped updates honour it.
    let flipped = |m: usize| label_flip && poisoned.contains(&(m as u32));
    let (merchants, pooled_held_out) = match scenario.dataset.kind {
        DatasetKind::OnlineRetail => (online_retail(scenario, &data_path, &flipped)?, None),
        DatasetKind::Movielens100k => (movielens(scenario, &data_path, &flipped)?, None),
        DatasetKind::Creditcard => creditcard(scenario, &data_path, &flipped)?,
    };
    Ok(Prepared {
        merchants,
        metric: metric_for(scenario),
        data_path,
        pooled_held_out,
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
                "user" => p.id.clone(),
                "gender" => p.gender.to_string(),
                "age_band" => format!("{}s", p.age / 10 * 10),
                _ => p.occupation.clone(),
            };
            (p.id.as_str(), value)
        })
        .collect();
    if !matches!(field, "user" | "occupation" | "gender" | "age_band") {
        return Err(RunError::Unsupported {
            what: format!("movielens attribute `{field}`"),
            detail: "use user (one merchant per user), occupation, gender or age_band".into(),
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
/// merchant; or, with a pooled held-out set, a stratified 80/20 split of the whole file
/// first and the partition over the 80%.
fn creditcard(
    scenario: &Scenario,
    dir: &Path,
    flipped: &dyn Fn(usize) -> bool,
) -> Result<(Vec<MerchantData>, Option<HeldOut>), RunError> {
    let file = dir.join("creditcard_sample.csv.gz");
    let mut data = read_creditcard(&file).map_err(|e| data_error(&file, e))?;
    let pooled = scenario.evaluation.held_out == HeldOutSpec::Pooled;
    let pooled_held_out = if pooled {
        let (train, test) = class_split(&data, scenario.seed);
        data = train;
        Some(HeldOut::Transactions(test))
    } else {
        None
    };
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
        let (mut train, test) = if pooled {
            (own, FraudDataset::default())
        } else {
            let frauds = own.num_frauds();
            if frauds < 2 || frauds == own.len() {
                return Err(RunError::EmptyHeldOut {
                    merchant: shard.name.clone(),
                    detail: format!(
                        "it holds {frauds} fraud(s) among {} transactions; both classes are \
                         needed in training and held-out data (raise merchants.partition.alpha, \
                         lower merchants.count, or set evaluation.held_out = \"pooled\")",
                        own.len()
                    ),
                });
            }
            class_split(&own, scenario.seed ^ m as u64)
        };
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
    Ok((merchants, pooled_held_out))
}

/// A stratified split that holds out [`HELD_OUT_FRACTION`] of each class, and at least
/// one example of a class with two or more (so a merchant with few frauds can still be
/// evaluated); `stratified_split` of hansa-node rounds a small class's share to zero.
fn class_split(data: &FraudDataset, seed: u64) -> (FraudDataset, FraudDataset) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut indices: Vec<usize> = (0..data.len())
            .filter(|&i| data.records[i].fraud == class)
            .collect();
        indices.shuffle(&mut rng);
        let n = indices.len();
        let share = (n as f64 * HELD_OUT_FRACTION).round() as usize;
        let n_test = if n >= 2 { share.clamp(1, n - 1) } else { 0 };
        test.extend_from_slice(&indices[..n_test]);
        train.extend_from_slice(&indices[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (data.select(&train), data.select(&test))
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
    /// Fraud MLP hidden widths (empty: logistic regression).
    pub hidden: Vec<usize>,
    /// Fraud loss weight, one for every merchant (`None` for recommenders).
    pub fraud_weight: Option<f64>,
    /// Initialisation seed, the same for every merchant (so they start from one model).
    pub seed: u64,
}

impl LearnerSpec {
    /// The learner settings of `scenario` over its prepared `merchants`. The fraud weight,
    /// when the scenario leaves it out, is √(legitimate / fraud) over every merchant's
    /// training data: one weight for the whole federation, since it sets a shared tensor.
    pub fn new(scenario: &Scenario, merchants: &[MerchantData]) -> Result<Self, RunError> {
        let fraud_weight = match scenario.task.kind {
            TaskKind::Recommender => None,
            TaskKind::Fraud => match scenario.model.fraud_weight {
                Some(w) => Some(w),
                None => Some(pooled_fraud_weight(merchants)?),
            },
        };
        Ok(Self {
            task: scenario.task.kind,
            feedback: scenario.task.feedback,
            embedding_dim: scenario.model.embedding_dim as usize,
            hidden: scenario.model.hidden.iter().map(|&w| w as usize).collect(),
            fraud_weight,
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
                    hidden: self.hidden.clone(),
                    fraud_weight: self.fraud_weight,
                    seed: self.seed,
                };
                Box::new(FraudMlp::new(d, config)?)
            }
        })
    }
}

fn pooled_fraud_weight(merchants: &[MerchantData]) -> Result<f64, RunError> {
    let (mut frauds, mut total) = (0usize, 0usize);
    for m in merchants {
        if let TrainPart::Transactions(d) = &m.train {
            frauds += d.num_frauds();
            total += d.len();
        }
    }
    if frauds == 0 || frauds == total {
        return Err(RunError::Unsupported {
            what: format!("training data with {frauds} frauds of {total} transactions"),
            detail: "the fraud task needs both classes across the merchants".into(),
        });
    }
    Ok(((total - frauds) as f64 / frauds as f64).sqrt())
}

/// Fewest training transactions the initial fraud model's standardiser is fitted on.
pub const INITIAL_SAMPLE: usize = 1_000;

/// What the round-0 model is initialised from: merchant 0's training part, or for the
/// fraud task the first merchants' parts together until they hold [`INITIAL_SAMPLE`]
/// transactions (the standardiser of a handful of rows would be meaningless).
// Limitation: those merchants' feature means and deviations reach the initial model
// unprotected; a secure-aggregated pass over feature sums and squares would lift it.
pub fn initial_part(merchants: &[MerchantData]) -> Option<TrainPart> {
    let first = merchants.first()?;
    match &first.train {
        TrainPart::Ratings(_) => Some(first.train.clone()),
        TrainPart::Transactions(_) => {
            let mut records = Vec::new();
            for m in merchants {
                if records.len() >= INITIAL_SAMPLE {
                    break;
                }
                if let TrainPart::Transactions(d) = &m.train {
                    records.extend(d.records.iter().cloned());
                }
            }
            Some(TrainPart::Transactions(FraudDataset { records }))
        }
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

#[cfg(test)]
mod tests {
    use hansa_node::data::Interaction;

    use super::*;

    fn ratings(pairs: &[(u32, u32)]) -> RatingsDataset {
        let mut vocab = Vocabulary::default();
        for i in 0..10 {
            vocab.users.intern(&format!("u{i}"));
            vocab.items.intern(&format!("i{i}"));
        }
        let records = pairs
            .iter()
            .map(|&(user, item)| Interaction {
                user,
                item,
                value: 4.0,
                timestamp: 0,
                country: 0,
            })
            .collect();
        RatingsDataset::new(records, Arc::new(vocab))
    }

    #[test]
    fn per_user_split_holds_out_a_fifth_and_keeps_one_to_train() {
        // User 0: 10 ratings → 2 held out; user 1: 4 → 0 (⌊0.8⌋); user 2: 1 → 0.
        let mut pairs: Vec<(u32, u32)> = (0..10).map(|i| (0, i)).collect();
        pairs.extend((0..4).map(|i| (1, i)));
        pairs.push((2, 5));
        let data = ratings(&pairs);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (train, test) = per_user_split(&data, 0.2, &mut rng);
        assert_eq!((train.len(), test.len()), (13, 2));
        assert!(test.records.iter().all(|r| r.user == 0));
        // Train and test partition the ratings.
        let mut all: Vec<(u32, u32)> = train
            .records
            .iter()
            .chain(&test.records)
            .map(|r| (r.user, r.item))
            .collect();
        all.sort_unstable();
        let mut expected = pairs.clone();
        expected.sort_unstable();
        assert_eq!(all, expected);
    }

    #[test]
    fn class_split_holds_out_at_least_one_fraud() {
        let records = (0..13)
            .map(|i| hansa_node::data::Transaction {
                time_s: i as f32,
                pca: [0.0; 28],
                amount: 1.0,
                fraud: i >= 10,
            })
            .collect();
        let data = FraudDataset { records };
        // 10 legitimate → 2 held out; 3 frauds → ⌊0.6⌉ = 1 held out, 2 kept to train.
        let (train, test) = class_split(&data, 3);
        assert_eq!((train.len(), test.len()), (10, 3));
        assert_eq!((train.num_frauds(), test.num_frauds()), (2, 1));
        // One fraud alone stays in training.
        let one = data.select(&[0, 1, 2, 3, 4, 10]);
        let (train, test) = class_split(&one, 3);
        assert_eq!((train.num_frauds(), test.num_frauds()), (1, 0));
        assert_eq!(test.len(), 1);
    }

    #[test]
    fn implicit_label_flip_buys_only_what_the_customer_never_bought() {
        let data = ratings(&[(0, 0), (0, 5), (1, 2)]);
        let flipped = flip_implicit(&data);
        let items: Vec<(u32, u32)> = flipped.records.iter().map(|r| (r.user, r.item)).collect();
        // 10 items: item j → (j + 5) mod 10, skipping the customer's own purchases.
        // User 0 bought 0 and 5: 0 → 5 (own) → 6; 5 → 0 (own) → 1. User 1: 2 → 7.
        assert_eq!(items, vec![(0, 6), (0, 1), (1, 7)]);
    }
}
