//! The round state machine of DESIGN.md "One round": select a cohort, send the global
//! model, gather (plain or securely aggregated) updates, aggregate, charge the ledger,
//! commit, evaluate.
//!
//! A [`Federation`] is transport-agnostic: nodes reach it as [`hansa_protocol::Link`]s
//! through [`Admissions`], whether they came over QUIC or an in-memory pair. Everything
//! a round decides is committed to the [`Store`] in one step, so a crash loses at most
//! the round in flight, and a restart re-runs it from the last committed round. An
//! update is only ever counted inside the round that commits it: nothing of a round in
//! flight is persisted, so a re-run never counts an update twice.

mod cohort;
mod collect;
mod evaluate;
mod plain;
mod roster;
mod secure;
mod settings;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hansa_privacy::accountant::round_rho;
use hansa_privacy::adaptive::AdaptiveClip;
use hansa_privacy::secagg::neighbour_graph;
use hansa_privacy::{Ledger, PrivacyError};
use hansa_protocol::messages::{
    ErrorCode, ErrorMessage, GlobalParameters, RoundComplete, RoundConfig, SecAggSettings,
};
use hansa_protocol::{MerchantId, Message, ParameterSet, Round, Scope};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, info_span, warn, Instrument};

pub use cohort::{round_seed, select};
pub use roster::{Admissions, Roster, RosterEvent};
pub use settings::{
    DpModeName, FederationSettings, PrivacyPlan, SecureAggregationPlan, SettingsError,
};

use crate::serve::Standing;
use crate::store::{
    InitialSource, LedgerEntry, RoundCommit, RoundEvaluation, RoundRecord, Store, StoreError,
    TrainingSummary,
};
use crate::strategy::{Strategy, StrategyError};

/// Why the federation stopped or a round failed.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    // The operator must act.
    /// The next round would take ε past the budget; it was not started.
    #[error("{0}")]
    BudgetExhausted(hansa_privacy::BudgetRefusal),
    /// Too few nodes connected within the wait.
    #[error(
        "round {round}: {connected} node(s) connected, {needed} needed; waited {waited_ms} ms. \
         Start more nodes or lower federation.min_cohort"
    )]
    CohortTooSmall {
        /// The round that could not start.
        round: Round,
        /// Nodes connected at the end of the wait.
        connected: usize,
        /// `min_cohort`.
        needed: usize,
        /// How long the round waited, in milliseconds.
        waited_ms: u64,
    },
    /// No initial model: neither a file nor a node gave one within the wait.
    #[error("no initial model: give federation.initial_model or start a node that offers one")]
    NoInitialModel,
    /// A round failed `max_attempts_per_round` times in a row.
    #[error("round {round} failed {attempts} time(s); last: {last}")]
    RoundFailed {
        /// The round.
        round: Round,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<FederationError>,
    },
    /// A setting cannot be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),

    // One attempt at a round failed; the next attempt may succeed.
    /// The cohort was empty after selection.
    #[error("the cohort is empty")]
    EmptyCohort,
    /// No update arrived (or every one was refused).
    #[error("round {round}: no usable update arrived ({} missing)", missing.len())]
    NoContributors {
        /// The round.
        round: Round,
        /// Why each cohort member is missing.
        missing: BTreeMap<MerchantId, String>,
    },
    /// Fewer masked updates arrived than the noise shares the round provisioned for, so
    /// the sum would carry less than the configured noise; nothing was unmasked.
    #[error(
        "round {round}: {arrived} masked update(s) arrived but the noise was provisioned for \
         at least {needed}; the round was aborted before unmasking"
    )]
    TooFewNoiseShares {
        /// The round.
        round: Round,
        /// Masked updates that arrived.
        arrived: usize,
        /// Noise shares provisioned.
        needed: usize,
    },
    /// The privacy layer refused (too few survivors, a bad share, ...).
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    /// The strategy refused the round's updates.
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    /// A parameter set did not have the expected layout.
    #[error(transparent)]
    Parameters(#[from] hansa_protocol::ParameterError),

    // The aggregator itself failed.
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FederationError {
    /// True for failures of one attempt at a round, which a new attempt may not repeat.
    fn is_retryable(&self) -> bool {
        match self {
            FederationError::EmptyCohort
            | FederationError::NoContributors { .. }
            | FederationError::TooFewNoiseShares { .. } => true,
            FederationError::Privacy(e) => !matches!(e, PrivacyError::BudgetExceeded(_)),
            _ => false,
        }
    }
}

/// What one committed round did.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundSummary {
    /// The round.
    pub round: Round,
    /// Merchants whose updates are in the new global model.
    pub contributors: Vec<MerchantId>,
    /// Cohort members left out, and why.
    pub missing: BTreeMap<MerchantId, String>,
    /// ρ charged for the round.
    pub rho_charged: f64,
    /// ε spent after the round.
    pub epsilon_spent: f64,
    /// The federated evaluation of the new global model.
    pub evaluation: RoundEvaluation,
}

/// The outcome of a round's update phase, before it is committed.
pub(crate) struct Gathered {
    next_global: ParameterSet,
    contributors: Vec<MerchantId>,
    missing: BTreeMap<MerchantId, String>,
    shares_arrived: usize,
    /// Σ nᵢ; 0 when example counts stay private (secure aggregation).
    num_examples: u64,
    train_loss: Option<f64>,
    /// Noisy count of "update within the clip norm" bits (adaptive clipping).
    clip_bit_count: Option<f64>,
}

/// The aggregator's federation: its settings, store, strategy, ledger and nodes.
pub struct Federation<S: Store> {
    settings: FederationSettings,
    store: S,
    strategy: Strategy,
    ledger: Ledger,
    roster: Roster,
    global: Option<ParameterSet>,
    committed: Round,
    standing: watch::Sender<Standing>,
    rounds_started: u64,
    adaptive_clip: Option<AdaptiveClip>,
}

impl<S: Store> Federation<S> {
    /// Opens the federation on `store`, resuming after its last committed round. When the
    /// store has no model yet, `initial` (from the operator's file, with its path) becomes
    /// round 0; without it, the first node to offer its initialisation provides it.
    pub fn open(
        settings: FederationSettings,
        store: S,
        initial: Option<(ParameterSet, String)>,
    ) -> Result<Self, FederationError> {
        settings.validate()?;
        let mut global = store.latest_checkpoint()?.map(|(_, model)| model);
        if global.is_none() {
            if let Some((model, path)) = initial {
                let shared = check_initial(model)?;
                store.record_initial_model(&shared, InitialSource::File(path))?;
                global = Some(shared);
            }
        }
        let last = store.last_committed_round()?.unwrap_or(0);
        let strategy = Strategy::resume(settings.strategy, store.optimizer_state()?)?;
        let ledger = match store.ledger()?.last() {
            Some(entry) if !entry.accountant.is_empty() => Ledger::from_bytes(&entry.accountant)?,
            _ => Ledger::new(settings.privacy.max_epsilon, settings.privacy.delta)?,
        };
        // Limitation: the clip norm a round's bit count moved to is not stored; a restart
        // resumes from the clip norm of the last committed round (one step is lost).
        // Storing the adaptive state with the round would lift it.
        let adaptive_clip = match &settings.privacy.adaptive_clip {
            Some(adaptive) => {
                let clip_norm = match store.round(last)? {
                    Some(record) => record.config.privacy.clip_norm,
                    None => settings.privacy.clip_norm,
                };
                Some(settings.adaptive_clip(adaptive, clip_norm)?)
            }
            None => None,
        };
        let (standing, standing_rx) = watch::channel(Standing {
            current_round: last,
            wants_initial_model: global.is_none(),
        });
        let roster = Roster::new(standing_rx);
        info!(
            last_committed = last,
            has_model = global.is_some(),
            "federation opened"
        );
        Ok(Self {
            settings,
            store,
            strategy,
            ledger,
            roster,
            global,
            committed: last,
            standing,
            rounds_started: 0,
            adaptive_clip,
        })
    }

    /// Where new node links are handed in.
    pub fn admissions(&self) -> Admissions {
        self.roster.admissions()
    }

    /// The last committed round (0 before any training).
    pub fn last_committed(&self) -> Round {
        self.committed
    }

    /// What nodes are told in their welcome, kept current as rounds commit: hand it to
    /// [`crate::serve::accept_nodes`].
    pub fn standing(&self) -> watch::Receiver<Standing> {
        self.standing.subscribe()
    }

    /// The current global model (shared tensors), once there is one.
    pub fn global(&self) -> Option<&ParameterSet> {
        self.global.as_ref()
    }

    /// The store, for reading what was committed.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// ε spent so far at the federation's δ.
    pub fn epsilon_spent(&self) -> Result<f64, FederationError> {
        Ok(self.ledger.epsilon_spent()?)
    }

    /// Runs rounds until `settings.rounds` are committed. A budget refusal stops the
    /// federation before the round that would exceed it, and every node is told why.
    pub async fn run(&mut self) -> Result<Vec<RoundSummary>, FederationError> {
        let mut summaries = Vec::new();
        while self.last_committed() < self.settings.rounds {
            let round = self.last_committed() + 1;
            let summary = self.run_round_with_retries(round).await?;
            summaries.push(summary);
        }
        Ok(summaries)
    }

    /// Runs `round`, retrying an attempt that failed for reasons a new cohort may not
    /// repeat (dropouts, too few survivors).
    pub async fn run_round_with_retries(
        &mut self,
        round: Round,
    ) -> Result<RoundSummary, FederationError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let span = info_span!("round", round, attempt);
            match self.run_round(round).instrument(span).await {
                Ok(summary) => return Ok(summary),
                Err(FederationError::Privacy(PrivacyError::BudgetExceeded(refusal))) => {
                    return Err(self.refuse_for_budget(refusal).await);
                }
                Err(FederationError::BudgetExhausted(refusal)) => {
                    return Err(self.refuse_for_budget(refusal).await);
                }
                Err(e) if e.is_retryable() && attempt < self.settings.max_attempts_per_round => {
                    warn!(round, attempt, error = %e, "round aborted; nothing was applied; retrying");
                }
                Err(e) if e.is_retryable() => {
                    return Err(FederationError::RoundFailed {
                        round,
                        attempts: attempt,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt at `round`: nothing is persisted unless it commits.
    pub async fn run_round(&mut self, round: Round) -> Result<RoundSummary, FederationError> {
        let connected = self.wait_for_cohort(round).await?;
        self.rounds_started += 1;
        let global = self.global.clone().ok_or(FederationError::NoInitialModel)?;
        let cohort = select(
            &connected,
            self.settings.cohort_size,
            self.settings.seed,
            round,
        );
        if cohort.is_empty() {
            return Err(FederationError::EmptyCohort);
        }

        let configs = self.round_configs(round, &cohort);
        let privacy = configs.values().next().map(|c| c.privacy.clone());
        let privacy = privacy.ok_or(FederationError::EmptyCohort)?;
        // The budget is checked for the least noise the round can complete with.
        let shares = privacy.noise_shares as usize;
        let worst_rho = round_rho(&privacy, global.num_values(), shares)?
            + self.clip_bit_rho(shares, privacy.noise_shares)?;
        self.ledger.check(round, worst_rho)?;
        info!(
            cohort = cohort.len(),
            rho_at_most = worst_rho,
            "round starts"
        );

        let gathered = if self.settings.secure_aggregation.enabled {
            let deadlines = secure::SecureDeadlines {
                phase_ms: self.settings.phase_deadline_ms,
                update_ms: self.settings.update_deadline_ms,
            };
            let needed = privacy.noise_shares as usize;
            secure::run(
                &mut self.roster,
                configs.clone(),
                &global,
                &mut self.strategy,
                deadlines,
                needed,
                self.adaptive_clip.is_some(),
            )
            .await?
        } else {
            let uniform = self.settings.uniform_weights();
            plain::run(
                &mut self.roster,
                configs.clone(),
                &global,
                &mut self.strategy,
                uniform,
            )
            .await?
        };

        let arrived = gathered.shares_arrived;
        let rho = round_rho(&privacy, global.num_values(), arrived)?
            + self.clip_bit_rho(arrived, privacy.noise_shares)?;
        let clip_bit_count = gathered.clip_bit_count;
        let summary = self.commit(round, &configs, gathered, rho)?;
        if let (Some(adaptive), Some(count)) = (&mut self.adaptive_clip, clip_bit_count) {
            let before = adaptive.clip_norm;
            let after = adaptive.update(count, arrived)?;
            info!(
                round,
                clip_norm_before = before,
                clip_norm_after = after,
                "adaptive clipping moved the clip norm"
            );
        }
        let complete = RoundComplete {
            round,
            contributors: summary.contributors.clone(),
            rho_charged: summary.rho_charged,
            epsilon_spent: summary.epsilon_spent,
            delta: self.ledger.delta(),
        };
        let global = self.global.clone().unwrap_or_default();
        let reports = evaluate::evaluate(
            &mut self.roster,
            complete,
            &global,
            self.settings.evaluation_deadline_ms,
        )
        .await;
        for report in &reports {
            let message = hansa_protocol::messages::EvaluationReport {
                round,
                num_examples: report.num_examples,
                metrics: report.metrics.clone(),
            };
            self.store.record_evaluation(&report.merchant, &message)?;
        }
        let evaluation = self.store.evaluation(round)?;
        info!(
            round,
            contributors = summary.contributors.len(),
            epsilon = summary.epsilon_spent,
            metrics = ?evaluation.weighted_mean,
            "round committed"
        );
        Ok(RoundSummary {
            evaluation,
            ..summary
        })
    }

    /// Charges the ledger and commits the round's model, record and ledger entry at once.
    fn commit(
        &mut self,
        round: Round,
        configs: &BTreeMap<MerchantId, RoundConfig>,
        gathered: Gathered,
        rho: f64,
    ) -> Result<RoundSummary, FederationError> {
        let mut ledger = self.ledger.clone();
        let entry = ledger.charge(round, rho)?.clone();
        let config = configs
            .values()
            .next()
            .cloned()
            .ok_or(FederationError::EmptyCohort)?;
        let record = RoundRecord {
            round,
            config,
            strategy: self.settings.strategy.name().to_string(),
            training: TrainingSummary {
                contributors: gathered.contributors.clone(),
                dropped: gathered.missing.keys().cloned().collect(),
                num_examples: gathered.num_examples,
                mean_train_loss: gathered.train_loss.unwrap_or(f64::NAN),
            },
            committed_at_ms: now_ms(),
        };
        let commit = RoundCommit {
            record,
            global: gathered.next_global.clone(),
            ledger: LedgerEntry {
                round,
                rho_charged: rho,
                epsilon_spent: entry.epsilon_after,
                delta: ledger.delta(),
                accountant: ledger.to_bytes()?,
            },
            optimizer: self.strategy.optimizer_state().cloned(),
        };
        self.store.commit_round(&commit)?;

        self.ledger = ledger;
        self.global = Some(gathered.next_global);
        self.committed = round;
        self.standing.send_modify(|s| s.current_round = round);
        Ok(RoundSummary {
            round,
            contributors: gathered.contributors,
            missing: gathered.missing,
            rho_charged: rho,
            epsilon_spent: entry.epsilon_after,
            evaluation: RoundEvaluation::default(),
        })
    }

    /// ρ of the noisy clip-bit count of adaptive clipping (0 without it).
    fn clip_bit_rho(&self, arrived: usize, noise_shares: u32) -> Result<f64, FederationError> {
        match &self.adaptive_clip {
            Some(adaptive) => Ok(adaptive.rho_distributed(arrived, noise_shares)?),
            None => Ok(0.0),
        }
    }

    /// Each cohort member's config: the same settings, its own neighbours.
    fn round_configs(
        &self,
        round: Round,
        cohort: &[MerchantId],
    ) -> BTreeMap<MerchantId, RoundConfig> {
        let s = &self.settings;
        let seed = round_seed(s.seed, round);
        let (graph, threshold, shares) = if s.secure_aggregation.enabled {
            let graph = neighbour_graph(cohort, s.secure_aggregation.neighbours, seed);
            let degree = graph.values().map(Vec::len).min().unwrap_or(0);
            let threshold = s.threshold(degree);
            // Noise is provisioned for the fewest contributors a round may finish with;
            // a round with fewer is aborted before unmasking (see secure::run).
            let shares = noise_shares(cohort.len(), threshold, s);
            (Some(graph), threshold, shares)
        } else {
            (None, 0, cohort.len())
        };
        let mut privacy = s.privacy_settings(shares as u32);
        if let Some(adaptive) = &self.adaptive_clip {
            privacy.clip_norm = adaptive.clip_norm;
        }
        cohort
            .iter()
            .map(|merchant| {
                let secure_aggregation = graph.as_ref().map(|g| SecAggSettings {
                    neighbours: g.get(merchant).cloned().unwrap_or_default(),
                    threshold: threshold as u32,
                });
                let config = RoundConfig {
                    round,
                    cohort_size: cohort.len() as u32,
                    local_epochs: s.local_epochs,
                    learning_rate: s.learning_rate,
                    batch_size: s.batch_size,
                    proximal_mu: s.strategy.proximal_mu(),
                    privacy: privacy.clone(),
                    secure_aggregation,
                    adaptive_clip: s.privacy.adaptive_clip.clone(),
                    update_deadline_ms: s.update_deadline_ms,
                    seed,
                };
                (merchant.clone(), config)
            })
            .collect()
    }

    /// Waits until `min_cohort` nodes are connected and there is a global model (taking
    /// the first node's initialisation as round 0 when the store has none), then gathers
    /// arriving nodes for `cohort_grace_ms` more.
    async fn wait_for_cohort(&mut self, round: Round) -> Result<Vec<MerchantId>, FederationError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.settings.cohort_wait_ms);
        let mut grace_until: Option<Instant> = None;
        loop {
            let ready = self.global.is_some() && self.roster.len() >= self.settings.min_cohort;
            // The grace is for nodes still arriving: at start-up, or while some node that
            // was here before is away.
            let settled = self.rounds_started > 0 && self.roster.all_known_connected();
            if ready && settled {
                return Ok(self.roster.connected());
            }
            if ready && grace_until.is_none() {
                grace_until =
                    Some(Instant::now() + Duration::from_millis(self.settings.cohort_grace_ms));
            }
            let Some(event) = self
                .roster
                .next_event(grace_until.unwrap_or(deadline))
                .await
            else {
                if grace_until.is_some() {
                    if self.roster.len() >= self.settings.min_cohort {
                        return Ok(self.roster.connected());
                    }
                    // A node left during the grace: wait for the cohort again.
                    grace_until = None;
                    continue;
                }
                if self.global.is_none() {
                    return Err(FederationError::NoInitialModel);
                }
                return Err(FederationError::CohortTooSmall {
                    round,
                    connected: self.roster.len(),
                    needed: self.settings.min_cohort,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            };
            match event {
                RosterEvent::Said(merchant, Message::GlobalParameters(offer))
                    if self.global.is_none() && offer.round == 0 =>
                {
                    self.accept_initial_model(&merchant, offer)?;
                }
                RosterEvent::Said(merchant, message) => {
                    info!(%merchant, kind = message.kind(), "message between rounds; ignored");
                }
                RosterEvent::Joined(_) | RosterEvent::Left(..) => {}
            }
        }
    }

    fn accept_initial_model(
        &mut self,
        merchant: &MerchantId,
        offer: GlobalParameters,
    ) -> Result<(), FederationError> {
        match check_initial(offer.parameters) {
            Ok(model) => {
                self.store
                    .record_initial_model(&model, InitialSource::FirstNode(merchant.clone()))?;
                info!(%merchant, values = model.num_values(), "initial model from the first node");
                self.global = Some(model);
                self.standing.send_modify(|s| s.wants_initial_model = false);
            }
            Err(e) => warn!(%merchant, error = %e, "initial model offer refused"),
        }
        Ok(())
    }

    /// Tells every connected node why the federation stops, and returns the error.
    async fn refuse_for_budget(
        &mut self,
        refusal: hansa_privacy::BudgetRefusal,
    ) -> FederationError {
        warn!(%refusal, "privacy budget: no further round");
        let message = Arc::new(Message::Error(ErrorMessage {
            code: ErrorCode::BudgetExhausted,
            detail: refusal.to_string(),
        }));
        for merchant in self.roster.connected() {
            self.roster.send(&merchant, message.clone()).await;
        }
        FederationError::BudgetExhausted(refusal)
    }
}

/// Noise shares a secure round provisions: the fewest contributors it may finish with,
/// at least the Shamir threshold and at least `min_cohort`.
fn noise_shares(cohort: usize, threshold: usize, settings: &FederationSettings) -> usize {
    threshold.max(settings.min_cohort).min(cohort)
}

/// An initial model must be finite and hold only shared tensors.
fn check_initial(model: ParameterSet) -> Result<ParameterSet, FederationError> {
    model.check_finite()?;
    let shared = model.shared();
    if shared.is_empty() {
        return Err(hansa_protocol::ParameterError::LayoutMismatch(
            "the initial model has no shared tensor".into(),
        )
        .into());
    }
    if shared.len() != model.len() {
        warn!(
            private = model.len() - shared.len(),
            "initial model carried private tensors; only the shared ones are kept"
        );
    }
    debug_assert!(shared.tensors().iter().all(|t| t.scope == Scope::Shared));
    Ok(shared)
}

/// Sends each cohort member its round config and the global model; returns those reached.
pub(crate) async fn send_round_start(
    roster: &mut Roster,
    configs: BTreeMap<MerchantId, RoundConfig>,
    global: &ParameterSet,
) -> BTreeSet<MerchantId> {
    let round = configs.values().next().map_or(0, |c| c.round);
    let parameters = Arc::new(Message::GlobalParameters(GlobalParameters {
        round,
        parameters: global.clone(),
    }));
    let mut reached = BTreeSet::new();
    for (merchant, config) in configs {
        if roster
            .send(&merchant, Arc::new(Message::RoundConfig(config)))
            .await
            && roster.send(&merchant, parameters.clone()).await
        {
            reached.insert(merchant);
        }
    }
    reached
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
