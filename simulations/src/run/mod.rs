//! `hansa-sim run`: a whole simulated federation on real data, with the local-only and
//! centralised baselines, written up as the business-value report.
//!
//! The steps, each in its own module: prepare the merchants' data ([`merchants`]), run
//! the real aggregator and nodes ([`federation`], over [`transport`]), train the two
//! reference arms ([`baselines`]), measure each merchant's contribution
//! ([`contribution`]), and write the report ([`crate::report`]).

pub mod baselines;
pub mod contribution;
pub mod federation;
pub mod merchants;
pub mod scoring;
pub mod sweep;
pub mod transport;

use std::path::PathBuf;
use std::time::Instant;

use hansa_node::learner::LearnError;

use crate::faults::{FaultError, FaultPlan};
use crate::partition::PartitionError;
use crate::progress::RunProgress;
use crate::report::{
    write_report, Arm, MerchantRow, PrivacySummary, ReportError, ReportFiles, RoundRow, RunResult,
};
use crate::scenario::{DpMode, Scenario};
use merchants::{prepare, LearnerSpec};
use scoring::Scoring;

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Hide the progress bar (CI, tests). Default: false.
    pub quiet: bool,
    /// Write the report here instead of the scenario's output folder. Default: none.
    pub output_dir: Option<PathBuf>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// What the report was made from.
    pub result: RunResult,
    /// The files written.
    pub files: ReportFiles,
    /// The output folder.
    pub output_dir: PathBuf,
    /// Wall time of the whole run, in seconds.
    pub wall_s: f64,
    /// Why the federation stopped before its last round, if it did.
    pub stopped_early: Option<String>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    // The scenario cannot be run.
    /// The data split cannot be made.
    #[error("partition: {0}")]
    Partition(#[from] PartitionError),
    /// The fault plan cannot be made.
    #[error("faults: {0}")]
    Faults(#[from] FaultError),
    /// The scenario maps to engine settings the engine refuses.
    #[error("federation settings: {0}")]
    Settings(String),
    /// A scenario value this run does not support.
    #[error("{what} is not supported: {detail}")]
    Unsupported {
        /// The value.
        what: String,
        /// What is supported.
        detail: String,
    },
    /// The partition left no merchant.
    #[error("the partition left no merchant")]
    NoMerchants,

    // The data.
    /// A data file could not be read.
    #[error("data {path}: {detail}")]
    Data {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        detail: String,
    },
    /// A merchant has nothing to hold out.
    #[error("merchant `{merchant}` has no held-out data: {detail}")]
    EmptyHeldOut {
        /// The merchant's name.
        merchant: String,
        /// Why.
        detail: String,
    },

    // Running.
    /// Local learning failed.
    #[error(transparent)]
    Learn(#[from] LearnError),
    /// The aggregator's engine failed.
    #[error("aggregator: {0}")]
    Engine(String),
    /// A node failed.
    #[error("merchant `{merchant}`: {detail}")]
    Node {
        /// Its id.
        merchant: String,
        /// Why.
        detail: String,
    },
    /// The transport could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// A file or folder of the run could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Runs `scenario` end to end and writes its report. Blocking: it starts its own async
/// runtime for the federation.
pub fn run_scenario(scenario: &Scenario, options: &RunOptions) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let dir = options
        .output_dir
        .clone()
        .unwrap_or_else(|| scenario.output_dir());
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Io {
        path: dir.clone(),
        source,
    })?;

    // The poisoned merchants are chosen from the merchant count, which the data decides
    // for a natural partition: a first plan over the partition's count.
    let secure = scenario.privacy.secure_aggregation.enabled;
    let prepared = prepare_with_plan(scenario, secure)?;
    let (mut prepared, plan) = prepared;
    if let Some(poison) = &scenario.faults.poisoned {
        for &m in plan.poisoned() {
            let merchant = &mut prepared.merchants[m as usize];
            merchant.name = format!("{} (poisoned: {})", merchant.name, poison.attack.name());
        }
    }
    let merchants = &prepared.merchants;
    let metric = prepared.metric.clone();
    let spec = LearnerSpec::new(scenario, merchants)?;
    let scoring = Scoring::new(merchants, prepared.pooled_held_out.as_ref(), &metric.name);
    tracing::info!(
        merchants = merchants.len(),
        data = %prepared.data_path.display(),
        poisoned = ?plan.poisoned(),
        "merchants ready"
    );

    let mut progress = RunProgress::new(scenario.rounds, &metric.name, options.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| RunError::Io {
            path: dir.clone(),
            source,
        })?;
    let federated = runtime.block_on(federation::run_federation(
        scenario,
        merchants,
        &spec,
        &plan,
        &scoring,
        &dir,
        &mut progress,
    ))?;
    drop(runtime);
    let rounds_run = federated.rounds.len() as u64;

    progress.phase(rounds_run, "baselines");
    let local = baselines::local_only(scenario, merchants, &spec, &scoring, rounds_run)?;
    let central = baselines::centralised(scenario, merchants, &spec, &scoring, rounds_run)?;
    let federated_final = baselines::with_global(
        merchants,
        &spec,
        &federated.global,
        &federated.private,
        &scoring,
    )?;
    progress.phase(rounds_run, "contribution");
    let contributions =
        contribution::leave_one_out(merchants, &spec, &federated, &metric, &scoring)?;
    let utility = if scenario.privacy.utility_epsilons.is_empty() {
        Vec::new()
    } else {
        let dimension = federated.global.num_values();
        let shares = sweep::provisioned_shares(scenario, merchants.len())?;
        sweep::privacy_utility(scenario, dimension, shares, &mut |variant, label| {
            progress.phase(rounds_run, &format!("privacy–utility at ε = {label}"));
            let variant_dir = dir.join(format!("utility-eps-{label}"));
            let io = |source| RunError::Io {
                path: variant_dir.clone(),
                source,
            };
            std::fs::create_dir_all(&variant_dir).map_err(io)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(io)?;
            let mut quiet = RunProgress::new(variant.rounds, &metric.name, true);
            let outcome = runtime.block_on(federation::run_federation(
                variant,
                merchants,
                &spec,
                &plan,
                &scoring,
                &variant_dir,
                &mut quiet,
            ))?;
            let last = outcome.rounds.last().ok_or_else(|| {
                RunError::Engine(format!("privacy–utility run at ε = {label}: no round"))
            })?;
            Ok(sweep::UtilityRun {
                metric: last.metric,
                epsilon_spent: last.epsilon,
                rounds: outcome.rounds.len() as u64,
            })
        })?
    };
    progress.finish();

    let mut result = assemble(
        scenario,
        &metric,
        &federated,
        &local,
        &central,
        &federated_final,
        &contributions,
    );
    result.privacy_utility = utility;
    let files = write_report(&result, &dir)?;
    Ok(RunOutcome {
        result,
        files,
        output_dir: dir,
        wall_s: started.elapsed().as_secs_f64(),
        stopped_early: federated.stopped_early,
    })
}

/// Prepares the data, then builds the fault plan over the actual number of merchants.
fn prepare_with_plan(
    scenario: &Scenario,
    secure: bool,
) -> Result<(merchants::Prepared, FaultPlan), RunError> {
    // Poisoned merchants must be known before the data is prepared (label flip). For
    // `natural` partitions the count is the data's; read the partition first with no
    // flip, then again only when a label flip needs it.
    let first = prepare(scenario, &[])?;
    let count = first.merchants.len() as u32;
    let plan = FaultPlan::new(&scenario.faults, count, secure, scenario.seed)?;
    let label_flip = matches!(
        scenario.faults.poisoned.as_ref().map(|p| p.attack),
        Some(crate::scenario::Attack::LabelFlip {})
    );
    if label_flip && !plan.poisoned().is_empty() {
        return Ok((prepare(scenario, plan.poisoned())?, plan));
    }
    Ok((first, plan))
}

fn assemble(
    scenario: &Scenario,
    metric: &crate::report::MetricSpec,
    federated: &federation::FederatedOutcome,
    local: &baselines::ArmCurve,
    central: &baselines::ArmCurve,
    federated_final: &[f64],
    contributions: &contribution::Contributions,
) -> RunResult {
    let merchants_count = federated.private.len() as u32;
    let delta = (scenario.privacy.mode != DpMode::Off).then_some(scenario.privacy.delta);
    let mut rounds = Vec::new();
    for row in &federated.rounds {
        rounds.push(RoundRow {
            arm: Arm::Federated,
            round: row.round,
            metric: row.metric,
            epsilon: row.epsilon,
            delta: row.epsilon.and(delta),
            contributors: row.contributors,
            drops: row.drops,
        });
    }
    for (i, &value) in local.per_round.iter().enumerate() {
        rounds.push(RoundRow {
            arm: Arm::LocalOnly,
            round: i as u64 + 1,
            metric: value,
            epsilon: Some(0.0),
            delta: delta.or(Some(scenario.privacy.delta)),
            contributors: merchants_count,
            drops: 0,
        });
    }
    for (i, &value) in central.per_round.iter().enumerate() {
        rounds.push(RoundRow {
            arm: Arm::Centralised,
            round: i as u64 + 1,
            metric: value,
            epsilon: None,
            delta: None,
            contributors: merchants_count,
            drops: 0,
        });
    }
    let merchants = contributions
        .merchants
        .iter()
        .enumerate()
        .map(|(i, (id, examples))| MerchantRow {
            id: id.clone(),
            examples: *examples,
            local_only: local.per_merchant[i],
            federated: federated_final[i],
            contribution: contributions.values.get(i).copied().flatten(),
        })
        .collect();
    let p = &scenario.privacy;
    let privacy = PrivacySummary {
        mode: p.mode.name().to_string(),
        clip_norm: Some(p.clip_norm),
        noise_multiplier: (p.mode != DpMode::Off).then_some(p.noise_multiplier),
        secure_aggregation: p.secure_aggregation.enabled,
    };
    RunResult {
        scenario_name: scenario.name.clone(),
        scenario_toml: scenario.to_toml_string(),
        metric: metric.clone(),
        privacy,
        rounds,
        merchants,
        contribution_method: contributions.method.clone(),
        privacy_utility: Vec::new(),
    }
}
