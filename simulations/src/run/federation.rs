//! The federated arm: the real aggregator and one real node per merchant in this
//! process, with the scenario's faults, over the chosen transport.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hansa_aggregator::round::{
    DpModeName, Federation, FederationError, FederationSettings, RoundSummary,
};
use hansa_aggregator::store::{SledStore, Store, StoreOptions};
use hansa_aggregator::strategy::{AdaptiveConfig, StrategyConfig};
use hansa_node::learner::Learner;
use hansa_node::runtime::{Moment, Participant, Release, SessionEnd};
use hansa_privacy::protect::decode_sum;
use hansa_privacy::Ledger;
use hansa_protocol::{Message, ParameterSet, Scope};
use tokio::sync::watch;
use tracing::{info, warn};

use super::merchants::{initial_part, LearnerSpec, MerchantData};
use super::scoring::{evaluate, Scoring};
use super::transport::{Connector, QuicAggregator};
use super::RunError;
use crate::faults::{DropPhase, FaultPlan};
use crate::progress::RunProgress;
use crate::scenario::{AdaptiveSpec, Attack, DpMode, Scenario, StrategySpec, Transport};

/// Grid step of the quantiser under secure aggregation, in parameter units (the engine's
/// default, fine enough that rounding is far below the DP noise).
pub(crate) const GRID_STEP: f64 = 1e-4;

/// A round of the federated arm, as the aggregator committed it.
#[derive(Debug, Clone, PartialEq)]
pub struct FederatedRound {
    /// The round (1-based).
    pub round: u64,
    /// The headline metric: the example-weighted mean over the nodes that evaluated, or
    /// the score on the pooled held-out set.
    pub metric: f64,
    /// ε spent after the round (`None` with DP off).
    pub epsilon: Option<f64>,
    /// Merchants whose updates are in the model.
    pub contributors: u32,
    /// Cohort members that dropped (or were refused) this round.
    pub drops: u32,
}

/// What the federated arm produced.
pub struct FederatedOutcome {
    /// Committed rounds in order.
    pub rounds: Vec<FederatedRound>,
    /// Why the federation stopped early, if it did (the privacy budget).
    pub stopped_early: Option<String>,
    /// The final global model (shared tensors).
    pub global: ParameterSet,
    /// Each merchant's private tensors after the run, in merchant order.
    pub private: Vec<ParameterSet>,
    /// The final round's inputs, for leave-one-out contributions.
    pub last_round: Option<LastRound>,
}

/// What went into the final committed round: the model it started from and each
/// contributor's released update (after clipping and noise, de-quantised), as the nodes
/// released them in this simulation.
#[derive(Debug, Clone)]
pub struct LastRound {
    /// The round.
    pub round: u64,
    /// The global model the round started from.
    pub previous_global: ParameterSet,
    /// (merchant id, released Δ), for the round's contributors, in merchant order.
    pub updates: Vec<(String, Vec<f32>)>,
}

/// The latest update each merchant released: merchant id → (round, Δ).
type Releases = Arc<Mutex<BTreeMap<String, (u64, Vec<f32>)>>>;

/// The scenario's round settings for the engine, with `merchants` merchants.
pub fn federation_settings(
    scenario: &Scenario,
    merchants: usize,
) -> Result<FederationSettings, RunError> {
    let secure = scenario.privacy.secure_aggregation.enabled;
    let cohort = scenario
        .merchants
        .cohort_size
        .map_or(merchants, |c| c as usize)
        .min(merchants);
    let min_cohort = scenario
        .merchants
        .min_cohort
        .map_or(if secure { 3 } else { 1 }, |m| m as usize);
    let mut settings = FederationSettings {
        rounds: scenario.rounds,
        min_cohort,
        cohort_size: scenario.merchants.cohort_size.map_or(0, |c| c as usize),
        // A node that fails ends its task; a short wait makes the run fail soon after.
        cohort_wait_ms: 20_000,
        // Every node is admitted before the first round (memory) or within a second of
        // it (QUIC on loopback); a dropped node reconnects at once.
        cohort_grace_ms: match scenario.transport {
            Transport::Memory => 200,
            Transport::Quic => 2_000,
        },
        update_deadline_ms: scenario.training.update_deadline_ms,
        // Every node of a simulation shares this machine's cores, so a phase in which all
        // of them must answer takes longer the more there are: 10,000 nodes need about a
        // minute per phase on 2 cores.
        phase_deadline_ms: shared_cores_deadline(20_000, merchants),
        evaluation_deadline_ms: shared_cores_deadline(60_000, merchants),
        max_attempts_per_round: 3,
        local_epochs: scenario.training.local_epochs,
        learning_rate: scenario.training.learning_rate as f32,
        batch_size: scenario.training.batch_size,
        seed: scenario.seed,
        strategy: strategy(&scenario.strategy),
        ..FederationSettings::default()
    };
    let p = &scenario.privacy;
    settings.privacy.mode = match p.mode {
        DpMode::Off => DpModeName::Off,
        DpMode::Central => DpModeName::Central,
        DpMode::Local => DpModeName::Local,
        DpMode::Distributed => DpModeName::Distributed,
    };
    settings.privacy.clip_norm = p.clip_norm;
    settings.privacy.noise_multiplier = p.noise_multiplier;
    settings.privacy.grid_step = GRID_STEP;
    settings.privacy.delta = p.delta;
    settings.privacy.max_epsilon = p.max_epsilon.unwrap_or(f64::MAX);
    settings.secure_aggregation.enabled = secure;
    if secure {
        let k = p.secure_aggregation.neighbours_for(cohort as u32).max(2);
        let t = p.secure_aggregation.threshold_for(k);
        settings.secure_aggregation.neighbours = k as usize;
        settings.secure_aggregation.threshold_fraction = threshold_fraction(k, t, cohort as u32);
    }
    settings
        .validate()
        .map_err(|e| RunError::Settings(e.to_string()))?;
    Ok(settings)
}

/// A phase deadline of `base_ms`, stretched to [`MS_PER_NODE`] per node for large
/// simulations.
fn shared_cores_deadline(base_ms: u64, nodes: usize) -> u64 {
    base_ms.max(nodes as u64 * MS_PER_NODE)
}

/// Time one simulated node may take in a phase, on the machine's shared cores.
const MS_PER_NODE: u64 = 20;

/// The engine's threshold fraction for a scenario's absolute threshold `t` of `k`
/// neighbours. The engine takes t = ⌈fraction · degree⌉, and a cohort of `cohort` nodes
/// has degree min(k, cohort − 1) (the complete graph when it is small), so the fraction
/// is taken over that degree, with t capped at it; (t − ½)/degree gives back exactly t.
pub fn threshold_fraction(k: u32, t: u32, cohort: u32) -> f64 {
    let degree = k.min(cohort.saturating_sub(1)).max(1);
    let t = t.clamp(1, degree);
    (f64::from(t) - 0.5) / f64::from(degree)
}

fn strategy(spec: &StrategySpec) -> StrategyConfig {
    let adaptive = |a: &AdaptiveSpec| AdaptiveConfig {
        server_learning_rate: a.server_learning_rate,
        beta1: a.beta1,
        beta2: a.beta2,
        tau: a.tau,
    };
    match spec {
        // Limitation: the engine's FedAvg applies the mean update with step 1; a
        // scenario's server_learning_rate ≠ 1 for fedavg / fedprox is not applied (a
        // server step in StrategyConfig::FedAvg would lift it).
        StrategySpec::Fedavg { .. } => StrategyConfig::FedAvg,
        StrategySpec::Fedprox { mu, .. } => StrategyConfig::FedProx { mu: *mu as f32 },
        StrategySpec::Fedadam(a) => StrategyConfig::FedAdam(adaptive(a)),
        StrategySpec::Fedyogi(a) => StrategyConfig::FedYogi(adaptive(a)),
        StrategySpec::Median {} => StrategyConfig::Median,
        StrategySpec::TrimmedMean { trim_fraction } => StrategyConfig::TrimmedMean {
            trim_fraction: *trim_fraction,
        },
    }
}

/// Runs the federated arm: opens a fresh store under `dir`, starts the transport and
/// one node task per merchant, runs every round and collects each node back.
pub async fn run_federation(
    scenario: &Scenario,
    merchants: &[MerchantData],
    spec: &LearnerSpec,
    plan: &FaultPlan,
    scoring: &Scoring<'_>,
    dir: &Path,
    progress: &mut RunProgress,
) -> Result<FederatedOutcome, RunError> {
    let metric = scoring.metric();
    let settings = federation_settings(scenario, merchants.len())?;
    let store_dir = dir.join("aggregator-store");
    if store_dir.exists() {
        // A previous run of the same scenario: start from round 0 again.
        std::fs::remove_dir_all(&store_dir).map_err(|source| RunError::Io {
            path: store_dir.clone(),
            source,
        })?;
    }
    let store = SledStore::open(&store_dir, StoreOptions::default())
        .map_err(|e| RunError::Engine(e.to_string()))?;
    // Round 0 is the first merchant's initialisation, given up front: left to "the first
    // node to offer", it would depend on which node connects first (the fraud model's
    // standardiser is fitted on the merchants' own data), and runs would differ.
    let first = merchants.first().ok_or(RunError::NoMerchants)?;
    let sample = initial_part(merchants).ok_or(RunError::NoMerchants)?;
    let mut initial_learner = spec.build(&sample)?;
    let initial = initial_learner.parameters()?.shared();
    let origin = format!("simulation: initialisation from {} onwards", first.id);
    let mut federation = Federation::open(settings.clone(), store, Some((initial, origin)))
        .map_err(|e| RunError::Engine(e.to_string()))?;

    let ids: Vec<String> = merchants.iter().map(|m| m.id.clone()).collect();
    let quic = match scenario.transport {
        Transport::Memory => None,
        Transport::Quic => Some(
            QuicAggregator::start(
                &dir.join("certs"),
                &ids,
                federation.admissions(),
                federation.standing(),
            )
            .await?,
        ),
    };
    let connector = match &quic {
        Some(q) => q.connector.clone(),
        None => Connector::Memory(federation.admissions()),
    };

    let (done_tx, done) = watch::channel(false);
    let plan = Arc::new(plan.clone());
    let releases: Releases = Arc::default();
    let mut nodes = Vec::with_capacity(merchants.len());
    for (index, merchant) in merchants.iter().enumerate() {
        let mut participant = participant(scenario, merchant, spec, &plan, index as u32)?;
        participant.observe_releases(release_recorder(merchant.id.clone(), releases.clone()));
        let node = NodeTask {
            connector: connector.clone(),
            merchant: merchant.id.clone(),
            index: index as u32,
            plan: plan.clone(),
            secure: settings.secure_aggregation.enabled,
            update_deadline_ms: settings.update_deadline_ms,
            done: done.clone(),
        };
        nodes.push(tokio::spawn(node.run(participant)));
    }

    let mut rounds = Vec::new();
    let mut last_contributors = Vec::new();
    let mut stopped_early = None;
    let dp = settings.privacy.mode != DpModeName::Off;
    for round in 1..=settings.rounds {
        progress.phase(round, "train");
        match federation.run_round_with_retries(round).await {
            Ok(summary) => {
                let pooled = match scoring.pooled() {
                    Some(held_out) => {
                        let global = federation.global().ok_or_else(|| {
                            RunError::Engine(format!("no global model after round {round}"))
                        })?;
                        initial_learner.load_shared(global)?;
                        Some(evaluate(initial_learner.as_ref(), held_out, metric)?)
                    }
                    None => None,
                };
                let row = round_row(&summary, metric, pooled, dp)?;
                progress.round_done(round, row.metric, row.epsilon);
                rounds.push(row);
                last_contributors = summary.contributors.clone();
            }
            Err(FederationError::BudgetExhausted(refusal)) => {
                warn!(round, %refusal, "privacy budget spent: the federation stops");
                stopped_early = Some(refusal.to_string());
                break;
            }
            // Rounds already committed are still worth a report (e.g. every node's own
            // budget refused the round); the reason goes with it.
            Err(e) if !rounds.is_empty() => {
                warn!(round, error = %e, "the federation stops early");
                stopped_early = Some(e.to_string());
                break;
            }
            Err(e) => return Err(RunError::Engine(e.to_string())),
        }
    }
    let global = federation
        .global()
        .cloned()
        .ok_or_else(|| RunError::Engine("no global model after the run".into()))?;

    let last_round = match rounds.last() {
        Some(last) => {
            let previous = federation
                .store()
                .checkpoint(last.round - 1)
                .map_err(|e| RunError::Engine(e.to_string()))?;
            let releases = releases.lock().expect("no recorder panics");
            previous.map(|previous_global| LastRound {
                round: last.round,
                previous_global,
                updates: last_contributors
                    .iter()
                    .filter_map(|m| {
                        let (r, delta) = releases.get(m)?;
                        (*r == last.round).then(|| (m.clone(), delta.clone()))
                    })
                    .collect(),
            })
        }
        None => None,
    };

    done_tx.send_replace(true);
    drop(federation);
    if let Some(q) = &quic {
        q.shutdown().await;
    }
    let mut private = Vec::with_capacity(nodes.len());
    for (node, merchant) in nodes.into_iter().zip(merchants) {
        let participant = node.await.map_err(|e| RunError::Node {
            merchant: merchant.id.clone(),
            detail: format!("its task failed: {e}"),
        })??;
        private.push(private_part(participant.learner())?);
    }
    Ok(FederatedOutcome {
        rounds,
        stopped_early,
        global,
        private,
        last_round,
    })
}

/// Keeps each merchant's latest released update, de-quantised when it was masked.
fn release_recorder(merchant: String, releases: Releases) -> hansa_node::runtime::ReleaseObserver {
    Box::new(move |release| {
        let (round, delta) = match release {
            Release::Plain { round, values } => (round, values.to_vec()),
            Release::Quantised { round, words } => {
                let dimension = words.len().saturating_sub(1);
                match decode_sum(words, dimension, GRID_STEP, false) {
                    Ok(decoded) => (
                        round,
                        decoded.weighted_sum.iter().map(|&v| v as f32).collect(),
                    ),
                    Err(e) => {
                        warn!(%merchant, error = %e, "release not decoded; left out of contributions");
                        return;
                    }
                }
            }
        };
        releases
            .lock()
            .expect("no recorder panics")
            .insert(merchant.clone(), (round, delta));
    })
}

/// A committed round's row; its metric is `pooled` (the simulation's own score on the
/// pooled held-out set) or else the nodes' federated evaluation.
fn round_row(
    summary: &RoundSummary,
    metric: &str,
    pooled: Option<f64>,
    dp: bool,
) -> Result<FederatedRound, RunError> {
    let federated = || {
        summary
            .evaluation
            .weighted_mean
            .iter()
            .find(|m| m.name == metric)
            .map(|m| m.value)
    };
    let value = pooled.or_else(federated).ok_or_else(|| {
        RunError::Engine(format!(
            "round {}: no node reported `{metric}` (reports: {})",
            summary.round,
            summary.evaluation.per_node.len()
        ))
    })?;
    info!(
        round = summary.round,
        metric = value,
        contributors = summary.contributors.len(),
        "federated round"
    );
    Ok(FederatedRound {
        round: summary.round,
        metric: value,
        epsilon: dp.then_some(summary.epsilon_spent),
        contributors: summary.contributors.len() as u32,
        drops: summary.missing.len() as u32,
    })
}

/// The private tensors of a learner (user embeddings), to evaluate the final model with.
fn private_part(learner: &dyn Learner) -> Result<ParameterSet, RunError> {
    let all = learner.parameters()?;
    let private = all
        .tensors()
        .iter()
        .filter(|t| t.scope == Scope::Private)
        .cloned()
        .collect();
    Ok(ParameterSet::from_tensors(private).map_err(hansa_node::learner::LearnError::from)?)
}

/// A merchant's node, with its poisoning hook when it attacks by tampering its update.
fn participant(
    scenario: &Scenario,
    merchant: &MerchantData,
    spec: &LearnerSpec,
    plan: &Arc<FaultPlan>,
    index: u32,
) -> Result<Participant, RunError> {
    let learner = spec.build(&merchant.train)?;
    let p = &scenario.privacy;
    let ledger = Ledger::new(p.max_epsilon.unwrap_or(f64::MAX), p.delta)
        .map_err(|e| RunError::Settings(e.to_string()))?;
    let mut participant = Participant::new(
        merchant.id.clone(),
        learner,
        merchant.held_out.clone(),
        scenario.training.weight_decay,
        ledger,
        None,
    )
    .map_err(|e| RunError::Node {
        merchant: merchant.id.clone(),
        detail: e.to_string(),
    })?;
    if plan.poisoned().contains(&index) {
        let plan = plan.clone();
        participant.tamper_updates(Box::new(move |round, delta: &mut [f32]| {
            match plan.for_merchant(round, index).attack {
                Some(Attack::ScaledUpdate { factor }) => {
                    delta.iter_mut().for_each(|d| *d *= factor as f32)
                }
                Some(Attack::SignFlip {}) => delta.iter_mut().for_each(|d| *d = -*d),
                // Label flip acts on the training data (see merchants.rs).
                Some(Attack::LabelFlip {}) | None => {}
            }
        }));
    }
    Ok(participant)
}

/// One node's life: serve, and after a simulated dropout reconnect for the next round.
struct NodeTask {
    connector: Connector,
    merchant: String,
    index: u32,
    plan: Arc<FaultPlan>,
    secure: bool,
    update_deadline_ms: u64,
    done: watch::Receiver<bool>,
}

impl NodeTask {
    async fn run(self, mut participant: Participant) -> Result<Participant, RunError> {
        loop {
            let dropped = Arc::new(AtomicBool::new(false));
            let fault = fault_hook(
                self.plan.clone(),
                self.index,
                self.secure,
                self.update_deadline_ms,
                dropped.clone(),
            );
            let end = self
                .connector
                .serve(&mut participant, &self.merchant, fault)
                .await?;
            let finished = *self.done.borrow();
            match end {
                SessionEnd::Closed(_) if dropped.load(Ordering::SeqCst) && !finished => {
                    info!(merchant = %self.merchant, "simulated dropout; reconnecting");
                }
                SessionEnd::Closed(_) | SessionEnd::BudgetExhausted(_) => return Ok(participant),
            }
        }
    }
}

/// The fault hook of one session: on each round's config it looks up the merchant's
/// faults for that round and cuts the link at the planned phase. A straggler whose delay
/// reaches the update deadline is cut at the update phase, as the aggregator would.
fn fault_hook(
    plan: Arc<FaultPlan>,
    index: u32,
    secure: bool,
    update_deadline_ms: u64,
    dropped: Arc<AtomicBool>,
) -> impl FnMut(Moment<'_>) -> bool + Send {
    let mut armed: Option<DropPhase> = None;
    let mut round = 0;
    move |moment| {
        if let Moment::Received(Message::RoundConfig(config)) = moment {
            round = config.round;
            let faults = plan.for_merchant(config.round, index);
            // Limitation: a straggler below the deadline is not slowed down (it would
            // only add wall time: the round waits for it); one at or past the deadline is
            // dropped at the update phase. Real delays in the node runtime would lift it.
            let late = faults.delay_ms >= update_deadline_ms as f64;
            armed = faults.drop.or(late.then_some(DropPhase::Update));
            return false;
        }
        let Some(phase) = armed else {
            return false;
        };
        let fires = match (phase, moment) {
            (DropPhase::AdvertiseKeys, Moment::Received(Message::GlobalParameters(g))) => {
                g.round == round
            }
            (DropPhase::ShareKeys, Moment::Received(Message::KeyRoster(_))) => true,
            (DropPhase::Update, Moment::Received(Message::GlobalParameters(g))) => {
                !secure && g.round == round
            }
            (DropPhase::Update, Moment::Received(Message::ShareDelivery(_))) => true,
            (DropPhase::Unmask, Moment::Received(Message::UnmaskRequest(_))) => true,
            _ => false,
        };
        if fires {
            armed = None;
            dropped.store(true, Ordering::SeqCst);
        }
        fires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_threshold_becomes_the_engines_fraction() {
        let engine_t = |k: u32, t: u32, cohort: u32| {
            let mut s = FederationSettings::default();
            s.secure_aggregation.threshold_fraction = threshold_fraction(k, t, cohort);
            s.threshold(k.min(cohort - 1) as usize)
        };
        // 16 neighbours, t = 9, a large cohort: the engine's ⌈f · 16⌉ is 9.
        assert_eq!(engine_t(16, 9, 10_000), 9);
        assert!((threshold_fraction(16, 9, 10_000) - 8.5 / 16.0).abs() < 1e-12);
        // quickstart: k = 8, t = 5, but 7 merchants give degree 6: t stays 5.
        assert_eq!(engine_t(8, 5, 7), 5);
        // t above the degree is capped at it.
        assert_eq!(engine_t(8, 8, 5), 4);
        for k in 2..40 {
            for t in 2..=k {
                assert_eq!(engine_t(k, t, 1_000), t as usize, "k {k} t {t}");
            }
        }
    }

    #[test]
    fn scenario_maps_onto_the_engine_settings() {
        let scenario = Scenario::from_toml_str(
            r#"
            name = "m"
            rounds = 4
            seed = 9
            transport = "memory"
            dataset = { kind = "creditcard" }
            task = { kind = "fraud" }
            merchants = { count = 6, partition = { kind = "iid" } }
            training = { local_epochs = 2, learning_rate = 0.5, batch_size = 64 }
            strategy = { kind = "fedadam", server_learning_rate = 0.02 }
            [privacy]
            mode = "distributed"
            clip_norm = 0.5
            noise_multiplier = 1.5
            max_epsilon = 8.0
            secure_aggregation = { enabled = true, neighbours = 4, threshold = 3 }
            "#,
            "test",
            &[],
        )
        .unwrap();
        let s = federation_settings(&scenario, 6).unwrap();
        assert_eq!(
            (s.rounds, s.seed, s.local_epochs, s.batch_size),
            (4, 9, 2, 64)
        );
        assert_eq!(s.learning_rate, 0.5);
        assert_eq!(s.min_cohort, 3, "secure aggregation needs three");
        assert_eq!(s.privacy.mode, DpModeName::Distributed);
        assert_eq!(
            (s.privacy.clip_norm, s.privacy.noise_multiplier),
            (0.5, 1.5)
        );
        assert_eq!(s.privacy.max_epsilon, 8.0);
        assert_eq!(s.secure_aggregation.neighbours, 4);
        assert_eq!(s.threshold(4), 3);
        let StrategyConfig::FedAdam(adaptive) = s.strategy else {
            panic!("{:?}", s.strategy);
        };
        assert_eq!(adaptive.server_learning_rate, 0.02);
    }
}
