//! The node's side of a round (DESIGN.md "One round"), as a state machine driven by the
//! aggregator's messages: train on the global model, protect the update, take part in
//! secure aggregation, evaluate each new global model.
//!
//! A [`Participant`] outlives connections: [`Participant::serve`] runs one link until it
//! closes, and the caller reconnects and serves again. The node keeps its own privacy
//! ledger and refuses to release an update its ledger cannot afford, whatever the
//! aggregator asks.

pub mod protect;

use hansa_privacy::accountant::round_rho;
use hansa_privacy::adaptive::AdaptiveClip;
use hansa_privacy::protect::protect_for_secagg;
use hansa_privacy::secagg::SecAggNode;
use hansa_privacy::settings::validate_privacy;
use hansa_privacy::{Ledger, PrivacyError};
use hansa_protocol::messages::{
    Decline, ErrorCode, EvaluationReport, GlobalParameters, Hello, RoundComplete, RoundConfig,
    Update,
};
use hansa_protocol::{Link, LinkError, MerchantId, Message, ParameterSet, Round};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tracing::{info, info_span, warn};

use crate::learner::{HeldOut, LearnError, Learner};
use crate::store::{NodeStore, NodeStoreError};
use crate::trainer::TrainConfig;
use protect::{delta, protect_plain, UpdateError};

/// Why a node stopped serving a link.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The aggregator broke the conversation's rules.
    #[error("aggregator: {0}")]
    Protocol(String),
    /// Local learning failed.
    #[error(transparent)]
    Learn(#[from] LearnError),
    /// The privacy layer failed.
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    /// Forming the update failed.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// The node's store failed.
    #[error(transparent)]
    Store(#[from] NodeStoreError),
}

/// How a served link ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEnd {
    /// The link closed; reconnecting may continue the federation.
    Closed(String),
    /// The aggregator said the federation's privacy budget is spent.
    BudgetExhausted(String),
}

/// A point in a node's conversation where a simulated fault may cut the link
/// (simulations and tests use it to drop a node at a chosen phase).
#[derive(Debug, Clone, Copy)]
pub enum Moment<'a> {
    /// The node has just received this message and not yet acted on it.
    Received(&'a Message),
    /// The node has just sent this message.
    Sent(&'a Message),
}

/// Where the node is within a round.
enum Phase {
    Idle,
    Configured(RoundConfig),
    Secure {
        config: RoundConfig,
        global: ParameterSet,
        secagg: Box<SecAggNode>,
    },
    Completed(Round),
}

/// Sees every update exactly as it leaves the node (after clipping, noise and
/// quantisation, before masking), for a merchant's audit log or a test.
pub type ReleaseObserver = Box<dyn FnMut(Release<'_>) + Send>;

/// One released update, as a [`ReleaseObserver`] sees it.
#[derive(Debug, Clone, Copy)]
pub enum Release<'a> {
    /// A plain update's values (secure aggregation off).
    Plain {
        /// The round.
        round: Round,
        /// Δ after the privacy step, flat.
        values: &'a [f32],
    },
    /// The quantised, noised words that were then masked (secure aggregation on).
    Quantised {
        /// The round.
        round: Round,
        /// The words before masking.
        words: &'a [u32],
    },
}

/// Rewrites Δ before the privacy step: how a simulation plays a poisoned merchant
/// (scaled or sign-flipped updates). Never set on a real node.
pub type UpdateTamper = Box<dyn FnMut(Round, &mut [f32]) + Send>;

/// A merchant's node: its learner, held-out data, ledger and store.
pub struct Participant {
    merchant: MerchantId,
    learner: Box<dyn Learner>,
    held_out: HeldOut,
    weight_decay: f64,
    ledger: Ledger,
    releases: u64,
    store: Option<NodeStore>,
    last_round: Option<Round>,
    phase: Phase,
    observer: Option<ReleaseObserver>,
    tamper: Option<UpdateTamper>,
}

impl Participant {
    /// A node for `merchant`. Its own budget is `ledger` unless `store` holds a saved
    /// ledger, which wins (with the private parameters it saved).
    pub fn new(
        merchant: MerchantId,
        mut learner: Box<dyn Learner>,
        held_out: HeldOut,
        weight_decay: f64,
        ledger: Ledger,
        store: Option<NodeStore>,
    ) -> Result<Self, NodeError> {
        let mut ledger = ledger;
        let mut last_round = None;
        if let Some(store) = &store {
            if let Some(saved) = store.ledger()? {
                ledger = saved;
            }
            if let Some(private) = store.private_parameters()? {
                learner.load_private(&private)?;
            }
            last_round = store.last_round()?;
        }
        let releases = ledger.entries().last().map_or(0, |e| e.round);
        Ok(Self {
            merchant,
            learner,
            held_out,
            weight_decay,
            ledger,
            releases,
            store,
            last_round,
            phase: Phase::Idle,
            observer: None,
            tamper: None,
        })
    }

    /// Calls `observer` with every update as it leaves the node.
    pub fn observe_releases(&mut self, observer: ReleaseObserver) {
        self.observer = Some(observer);
    }

    /// Lets a simulation poison this node's updates (see [`UpdateTamper`]).
    pub fn tamper_updates(&mut self, tamper: UpdateTamper) {
        self.tamper = Some(tamper);
    }

    /// The node's own ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The last round whose global model this node evaluated.
    pub fn last_round(&self) -> Option<Round> {
        self.last_round
    }

    /// The learner (for inspection by the simulator).
    pub fn learner(&self) -> &dyn Learner {
        self.learner.as_ref()
    }

    /// Says hello and serves the aggregator until the link closes.
    pub async fn serve(&mut self, link: &mut Link) -> Result<SessionEnd, NodeError> {
        self.serve_with_faults(link, |_| false).await
    }

    /// [`Participant::serve`], but stops (as if the node crashed) as soon as `fault`
    /// returns true for a [`Moment`]; the caller then drops the link.
    pub async fn serve_with_faults(
        &mut self,
        link: &mut Link,
        fault: impl FnMut(Moment<'_>) -> bool,
    ) -> Result<SessionEnd, NodeError> {
        link.send(&Message::Hello(Hello {
            merchant: self.merchant.clone(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            last_round_seen: self.last_round,
        }))
        .await?;
        let welcome = match link.recv().await? {
            Message::Welcome(welcome) => welcome,
            Message::Error(e) => return Err(NodeError::Protocol(e.detail)),
            other => {
                return Err(NodeError::Protocol(format!(
                    "expected welcome, got {}",
                    other.kind()
                )))
            }
        };
        self.serve_welcomed(link, &welcome, fault).await
    }

    /// Serves a link on which the hello and welcome were already exchanged (the node
    /// binary's `join` does that itself), until it closes.
    #[tracing::instrument(name = "node", skip_all, fields(merchant = %self.merchant))]
    pub async fn serve_welcomed(
        &mut self,
        link: &mut Link,
        welcome: &hansa_protocol::messages::Welcome,
        mut fault: impl FnMut(Moment<'_>) -> bool,
    ) -> Result<SessionEnd, NodeError> {
        info!(merchant = %self.merchant, current_round = welcome.current_round, "joined");
        if welcome.wants_initial_model {
            let initial = self.learner.parameters()?.shared();
            link.send(&Message::GlobalParameters(GlobalParameters {
                round: 0,
                parameters: initial,
            }))
            .await?;
        }
        self.phase = Phase::Idle;

        loop {
            let message = match link.recv().await {
                Ok(message) => message,
                Err(e) => return Ok(SessionEnd::Closed(e.to_string())),
            };
            if fault(Moment::Received(&message)) {
                return Ok(SessionEnd::Closed(format!(
                    "fault injected on receiving {}",
                    message.kind()
                )));
            }
            if let Message::Error(e) = &message {
                if e.code == ErrorCode::BudgetExhausted {
                    info!(merchant = %self.merchant, detail = %e.detail, "federation stopped for its privacy budget");
                    return Ok(SessionEnd::BudgetExhausted(e.detail.clone()));
                }
                warn!(merchant = %self.merchant, code = ?e.code, detail = %e.detail, "aggregator reported an error");
                continue;
            }
            let replies = run_blocking(|| self.handle(message))?;
            for reply in replies {
                link.send(&reply).await?;
                if fault(Moment::Sent(&reply)) {
                    return Ok(SessionEnd::Closed(format!(
                        "fault injected after sending {}",
                        reply.kind()
                    )));
                }
            }
        }
    }

    /// Advances the state machine by one message and returns the replies.
    pub fn handle(&mut self, message: Message) -> Result<Vec<Message>, NodeError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        match (phase, message) {
            (_, Message::RoundConfig(config)) => {
                if let Err(e) = validate_privacy(&config.privacy) {
                    return Ok(vec![decline(config.round, e.to_string())]);
                }
                self.phase = Phase::Configured(config);
                Ok(Vec::new())
            }
            (Phase::Configured(config), Message::GlobalParameters(global))
                if global.round == config.round =>
            {
                let span = info_span!("round", round = config.round, merchant = %self.merchant);
                let _entered = span.enter();
                self.start_round(config, global.parameters)
            }
            (
                Phase::Secure {
                    config,
                    global,
                    mut secagg,
                },
                Message::KeyRoster(roster),
            ) => {
                let shares = secagg.on_key_roster(roster)?;
                self.phase = Phase::Secure {
                    config,
                    global,
                    secagg,
                };
                Ok(vec![Message::EncryptedShares(shares)])
            }
            (
                Phase::Secure {
                    config,
                    global,
                    mut secagg,
                },
                Message::ShareDelivery(delivery),
            ) => {
                secagg.on_share_delivery(delivery)?;
                let reply = self.masked_update(&config, &global, &mut secagg)?;
                self.phase = Phase::Secure {
                    config,
                    global,
                    secagg,
                };
                Ok(vec![reply])
            }
            (
                Phase::Secure {
                    config,
                    global,
                    mut secagg,
                },
                Message::UnmaskRequest(request),
            ) => {
                let reply = secagg.on_unmask_request(&request)?;
                self.phase = Phase::Secure {
                    config,
                    global,
                    secagg,
                };
                Ok(vec![Message::UnmaskReply(reply)])
            }
            (_, Message::RoundComplete(complete)) => {
                self.on_round_complete(&complete);
                self.phase = Phase::Completed(complete.round);
                Ok(Vec::new())
            }
            (Phase::Completed(round), Message::GlobalParameters(global))
                if global.round == round =>
            {
                self.evaluate(round, &global.parameters)
                    .map(|report| vec![report])
            }
            (phase, other) => {
                warn!(merchant = %self.merchant, kind = other.kind(), "unexpected message; ignored");
                self.phase = phase;
                Ok(Vec::new())
            }
        }
    }

    /// Checks the node's own budget, then trains (plain) or starts secure aggregation.
    fn start_round(
        &mut self,
        config: RoundConfig,
        global: ParameterSet,
    ) -> Result<Vec<Message>, NodeError> {
        // Charged for the least noise the round may complete with: never under-counted.
        let rho = release_rho(
            &config,
            global.num_values(),
            adaptive_clip(&config)?.as_ref(),
        )?;
        if let Err(e) = self.ledger.check(self.releases + 1, rho) {
            let reason = match e {
                PrivacyError::BudgetExceeded(refusal) => format!(
                    "this merchant's own budget: spent ε = {:.4}, the round would bring it to ε = {:.4}, limit ε = {:.4}",
                    refusal.epsilon_spent, refusal.epsilon_would_spend, refusal.max_epsilon
                ),
                other => other.to_string(),
            };
            warn!(merchant = %self.merchant, round = config.round, %reason, "declining the round");
            return Ok(vec![decline(config.round, reason)]);
        }

        if let Some(settings) = &config.secure_aggregation {
            let (secagg, keys) = SecAggNode::new(self.merchant.clone(), config.round, settings)?;
            self.phase = Phase::Secure {
                config,
                global,
                secagg: Box::new(secagg),
            };
            return Ok(vec![Message::AdvertiseKeys(keys)]);
        }

        let (report, delta) = self.train(&config, &global)?;
        let protected = protect_plain(delta, &config.privacy)?;
        if let Some(observe) = &mut self.observer {
            observe(Release::Plain {
                round: config.round,
                values: &protected,
            });
        }
        let delta =
            ParameterSet::from_flat(&global.spec(), &protected).map_err(UpdateError::from)?;
        self.charge(rho)?;
        Ok(vec![Message::Update(Update {
            round: config.round,
            num_examples: report.num_examples,
            delta,
            train_loss: report.final_loss,
        })])
    }

    /// Trains, then quantises, noises and masks the update for secure aggregation.
    fn masked_update(
        &mut self,
        config: &RoundConfig,
        global: &ParameterSet,
        secagg: &mut SecAggNode,
    ) -> Result<Message, NodeError> {
        let adaptive = adaptive_clip(config)?;
        let rho = release_rho(config, global.num_values(), adaptive.as_ref())?;
        let (_, delta) = self.train(config, global)?;
        // Every contributor weighs 1 under secure aggregation: example counts stay private
        // and the sensitivity bound needs bounded weights.
        let mut rng = ChaCha20Rng::from_entropy();
        let protected = protect_for_secagg(
            delta,
            1.0,
            &config.privacy,
            adaptive.as_ref(),
            config.cohort_size as usize,
            &mut rng,
        )?;
        if let Some(observe) = &mut self.observer {
            observe(Release::Quantised {
                round: config.round,
                words: &protected.words,
            });
        }
        let masked = secagg.mask(protected.words)?;
        self.charge(rho)?;
        Ok(Message::MaskedUpdate(masked))
    }

    /// Loads the global model, trains locally, and returns Δ over the shared tensors.
    fn train(
        &mut self,
        config: &RoundConfig,
        global: &ParameterSet,
    ) -> Result<(crate::trainer::TrainReport, Vec<f32>), NodeError> {
        self.learner.load_shared(global)?;
        let train = TrainConfig {
            epochs: config.local_epochs,
            batch_size: config.batch_size as usize,
            learning_rate: f64::from(config.learning_rate),
            weight_decay: self.weight_decay,
            proximal_mu: f64::from(config.proximal_mu),
            seed: config.seed ^ merchant_seed(&self.merchant),
        };
        let report = self.learner.train(&train, Some(global))?;
        let local = self.learner.parameters()?;
        let mut delta = delta(&local, global)?;
        if let Some(tamper) = &mut self.tamper {
            tamper(config.round, &mut delta);
        }
        info!(
            merchant = %self.merchant,
            round = config.round,
            examples = report.num_examples,
            loss = report.final_loss,
            "local training done"
        );
        Ok((report, delta))
    }

    fn charge(&mut self, rho: f64) -> Result<(), NodeError> {
        self.releases += 1;
        self.ledger.charge(self.releases, rho)?;
        Ok(())
    }

    fn on_round_complete(&mut self, complete: &RoundComplete) {
        info!(
            merchant = %self.merchant,
            round = complete.round,
            contributors = complete.contributors.len(),
            federation_epsilon = complete.epsilon_spent,
            own_epsilon = self.ledger.epsilon_spent().unwrap_or(f64::NAN),
            "round complete"
        );
    }

    /// Evaluates the new global model (with this node's private tensors) and saves state.
    fn evaluate(&mut self, round: Round, global: &ParameterSet) -> Result<Message, NodeError> {
        self.learner.load_shared(global)?;
        // A node that holds nothing out (its data too small to split, with the operator
        // evaluating on data of its own) says so with an empty report rather than failing.
        let metrics = if self.held_out.is_empty() {
            Vec::new()
        } else {
            self.learner.evaluate(&self.held_out)?
        };
        self.last_round = Some(round);
        if let Some(store) = &self.store {
            let private = private_tensors(&self.learner.parameters()?)?;
            store.save(&private, &self.ledger, self.last_round)?;
        }
        Ok(Message::EvaluationReport(EvaluationReport {
            round,
            num_examples: self.held_out.len() as u64,
            metrics,
        }))
    }
}

fn private_tensors(all: &ParameterSet) -> Result<ParameterSet, LearnError> {
    let private = all
        .tensors()
        .iter()
        .filter(|t| t.scope == hansa_protocol::Scope::Private)
        .cloned()
        .collect();
    Ok(ParameterSet::from_tensors(private)?)
}

/// The round's adaptive-clipping state, when the round asks for clip bits.
fn adaptive_clip(config: &RoundConfig) -> Result<Option<AdaptiveClip>, PrivacyError> {
    config
        .adaptive_clip
        .as_ref()
        .map(|a| {
            AdaptiveClip::new(
                config.privacy.clip_norm,
                a.target_quantile,
                a.learning_rate,
                a.bit_noise_std,
            )
        })
        .transpose()
}

/// ρ this node's release costs at worst: the update with the least noise the round may
/// complete with, plus its clip bit under adaptive clipping.
fn release_rho(
    config: &RoundConfig,
    dimension: usize,
    adaptive: Option<&AdaptiveClip>,
) -> Result<f64, PrivacyError> {
    let shares = config.privacy.noise_shares;
    let update = round_rho(&config.privacy, dimension, shares as usize)?;
    let bit = match adaptive {
        Some(a) => a.rho_distributed(shares as usize, shares)?,
        None => 0.0,
    };
    Ok(update + bit)
}

fn decline(round: Round, reason: String) -> Message {
    Message::Decline(Decline { round, reason })
}

/// A stable per-merchant seed component (FNV-1a of the id), so that merchants given the
/// same round seed still shuffle differently.
fn merchant_seed(merchant: &str) -> u64 {
    merchant.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs CPU-heavy work (training) without stalling the runtime: on a multi-threaded
/// runtime other tasks (QUIC keep-alives among them) keep running meanwhile.
fn run_blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        // Limitation: on a current-thread runtime training blocks the runtime, so keep-alives
        // pause while it trains; the binaries use the multi-threaded runtime.
        _ => work(),
    }
}
