//! The business-value report of a run: per-round tables, a Markdown summary, SVG plots
//! and a terminal table, all from one plain [`RunResult`].
//!
//! ```
//! use hansa_sim::report::{Arm, MerchantRow, MetricSpec, PrivacySummary, RoundRow, RunResult};
//!
//! let row = |arm, round, metric| RoundRow {
//!     arm, round, metric, epsilon: None, delta: None, contributors: 2, drops: 0,
//! };
//! let result = RunResult {
//!     scenario_name: "demo".into(),
//!     scenario_toml: "name = \"demo\"".into(),
//!     metric: MetricSpec { name: "rmse".into(), higher_is_better: false },
//!     privacy: PrivacySummary::none(),
//!     rounds: vec![row(Arm::Federated, 1, 1.0), row(Arm::LocalOnly, 1, 1.2),
//!                  row(Arm::Centralised, 1, 0.95)],
//!     merchants: vec![MerchantRow {
//!         id: "merchant-000".into(), examples: 100, local_only: 1.2, federated: 1.0,
//!         contribution: None,
//!     }],
//!     contribution_method: "not measured".into(),
//!     privacy_utility: Vec::new(),
//! };
//! assert!((result.merchants[0].lift(&result.metric) - 0.2).abs() < 1e-12);
//! let dir = tempfile::tempdir().unwrap();
//! let files = hansa_sim::report::write_report(&result, dir.path()).unwrap();
//! assert!(files.markdown.exists());
//! ```

mod markdown;
mod plots;
mod tables;
mod terminal;
mod utility;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use markdown::render_markdown;
pub use plots::{plot_epsilon, plot_lift, plot_metric};
pub use tables::{read_rounds_csv, write_merchants_csv, write_rounds_csv, write_rounds_json};
pub use terminal::summary_table;
pub use utility::{read_utility_csv, write_utility_csv, UtilityRow};

/// The three arms every run compares on the same held-out data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arm {
    /// The federation: the real aggregator and nodes.
    Federated,
    /// Every merchant trains alone with the same epoch budget; the row holds the mean over
    /// merchants of their metrics on their own held-out data.
    LocalOnly,
    /// All data pooled in one place, no privacy: the upper reference.
    Centralised,
}

impl Arm {
    /// All arms, in report order.
    pub const ALL: [Arm; 3] = [Arm::Federated, Arm::LocalOnly, Arm::Centralised];

    /// The arm's name in tables and plot legends.
    pub fn name(self) -> &'static str {
        match self {
            Arm::Federated => "federated",
            Arm::LocalOnly => "local-only",
            Arm::Centralised => "centralised",
        }
    }
}

/// The evaluation metric of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// Its name, e.g. `rmse`, `hit_rate@10`, `auc_pr`.
    pub name: String,
    /// Whether larger is better (hit rate, AUC) or smaller (RMSE, log loss).
    pub higher_is_better: bool,
}

impl MetricSpec {
    /// How much better `after` is than `before`, in metric units; positive = better
    /// whichever way the metric points.
    pub fn gain(&self, before: f64, after: f64) -> f64 {
        if self.higher_is_better {
            after - before
        } else {
            before - after
        }
    }
}

/// Leave-one-out contributions: merchant i's is how much better the metric `with_all`
/// merchants is than `without[i]`, the metric of the same run without merchant i
/// (positive = the merchant helps; in metric units). State the rounds it was measured
/// over in [`RunResult::contribution_method`].
pub fn leave_one_out(metric: &MetricSpec, with_all: f64, without: &[f64]) -> Vec<f64> {
    without.iter().map(|&w| metric.gain(w, with_all)).collect()
}

/// The privacy settings and guarantee, as the report states them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacySummary {
    /// `off`, `central`, `local` or `distributed`.
    pub mode: String,
    /// Clip norm C in parameter units (`None` when updates are not clipped).
    pub clip_norm: Option<f64>,
    /// Noise multiplier z (σ = z · C); `None` with DP off.
    pub noise_multiplier: Option<f64>,
    /// Whether updates were masked by secure aggregation.
    pub secure_aggregation: bool,
}

impl PrivacySummary {
    /// No DP, no secure aggregation.
    pub fn none() -> Self {
        Self {
            mode: "off".into(),
            clip_norm: None,
            noise_multiplier: None,
            secure_aggregation: false,
        }
    }
}

/// One arm's state after one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    /// Which arm.
    pub arm: Arm,
    /// Round number, 1-based (for the baselines: the same epoch budget as that round).
    pub round: u64,
    /// The metric on held-out data.
    pub metric: f64,
    /// ε spent so far by the federation; `Some(0)` when nothing leaves a merchant
    /// (local-only), `None` when no DP bound holds (DP off, centralised).
    pub epsilon: Option<f64>,
    /// The δ that goes with `epsilon`.
    pub delta: Option<f64>,
    /// Merchants whose updates (or data) went into this round.
    pub contributors: u32,
    /// Cohort members that dropped this round.
    pub drops: u32,
}

/// One merchant's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MerchantRow {
    /// The merchant's name.
    pub id: String,
    /// Its training examples.
    pub examples: u64,
    /// Its metric when it trains alone, on its own held-out data.
    pub local_only: f64,
    /// The final global model's metric on the same held-out data.
    pub federated: f64,
    /// Its contribution to the federation by [`RunResult::contribution_method`]: how much
    /// the federated metric worsens without it (positive = it helps), in metric units.
    pub contribution: Option<f64>,
}

impl MerchantRow {
    /// Gain from joining, in metric units; positive when the federated model is better.
    pub fn lift(&self, metric: &MetricSpec) -> f64 {
        metric.gain(self.local_only, self.federated)
    }

    /// [`MerchantRow::lift`] relative to the local-only metric, in percent (`None` when
    /// the local-only metric is 0).
    pub fn lift_percent(&self, metric: &MetricSpec) -> Option<f64> {
        (self.local_only != 0.0).then(|| 100.0 * self.lift(metric) / self.local_only.abs())
    }
}

/// Everything the report is made from; the run fills it in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The scenario's name.
    pub scenario_name: String,
    /// The scenario as run (after overrides), echoed in the report.
    pub scenario_toml: String,
    /// The metric.
    pub metric: MetricSpec,
    /// The privacy settings.
    pub privacy: PrivacySummary,
    /// Per-round rows of all three arms.
    pub rounds: Vec<RoundRow>,
    /// Per-merchant rows.
    pub merchants: Vec<MerchantRow>,
    /// How `contribution` was measured, in words (e.g. "leave-one-out over the last 2
    /// rounds: metric without the merchant minus metric with it").
    pub contribution_method: String,
    /// The privacy–utility table (`privacy.utility_epsilons`): one row per target ε, in
    /// the scenario's order. Empty when none was asked for.
    #[serde(default)]
    pub privacy_utility: Vec<UtilityRow>,
}

impl RunResult {
    /// The last row of an arm (highest round).
    pub fn final_row(&self, arm: Arm) -> Option<&RoundRow> {
        self.rounds
            .iter()
            .filter(|r| r.arm == arm)
            .max_by_key(|r| r.round)
    }

    /// The final federated ε and δ, when DP bounds the run.
    pub fn privacy_spent(&self) -> Option<(f64, f64)> {
        let last = self.final_row(Arm::Federated)?;
        Some((last.epsilon?, last.delta?))
    }

    /// How many merchants gain from joining (lift > 0).
    pub fn merchants_with_lift(&self) -> usize {
        self.merchants
            .iter()
            .filter(|m| m.lift(&self.metric) > 0.0)
            .count()
    }

    /// One plain sentence: does the federation beat training alone for most merchants?
    pub fn finding(&self) -> String {
        let total = self.merchants.len();
        if total == 0 {
            return "No merchant results were recorded.".to_string();
        }
        let gaining = self.merchants_with_lift();
        let verdict = if 2 * gaining > total {
            "beats"
        } else {
            "does not beat"
        };
        let mean_lift = self
            .merchants
            .iter()
            .map(|m| m.lift(&self.metric))
            .sum::<f64>()
            / total as f64;
        let privacy = match self.privacy_spent() {
            Some((eps, delta)) => format!("at ε = {eps:.2}, δ = {delta:e}"),
            None => "without a differential-privacy bound".to_string(),
        };
        format!(
            "The federated model {verdict} local-only training for the majority of merchants: \
             {gaining} of {total} gain, mean lift {mean_lift:+.4} {} ({privacy}).",
            self.metric.name
        )
    }
}

/// The files a report consists of.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// Per-round rows, CSV.
    pub rounds_csv: PathBuf,
    /// Per-round rows, JSON.
    pub rounds_json: PathBuf,
    /// Per-merchant rows, CSV.
    pub merchants_csv: PathBuf,
    /// The Markdown report.
    pub markdown: PathBuf,
    /// Metric per round, three arms.
    pub metric_svg: PathBuf,
    /// ε per round.
    pub epsilon_svg: PathBuf,
    /// Lift per merchant.
    pub lift_svg: PathBuf,
    /// The privacy–utility table, CSV; `None` when the run has no such rows.
    pub privacy_utility_csv: Option<PathBuf>,
}

/// Errors writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written or read.
    #[error("report file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A CSV file could not be written or parsed.
    #[error("report CSV {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        source: csv::Error,
    },
    /// A plot could not be drawn.
    #[error("plot {path}: {detail}")]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// The drawing backend's message.
        detail: String,
    },
    /// A row cannot be reported (a NaN or infinite metric).
    #[error("{place}: metric = {value} is not a finite number")]
    NotFinite {
        /// Which row, e.g. "round 3 of federated".
        place: String,
        /// The value.
        value: f64,
    },
}

/// Writes every report file into `dir` (created if missing) and returns their paths.
pub fn write_report(result: &RunResult, dir: &Path) -> Result<ReportFiles, ReportError> {
    check_finite(result)?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = ReportFiles {
        rounds_csv: dir.join("rounds.csv"),
        rounds_json: dir.join("rounds.json"),
        merchants_csv: dir.join("merchants.csv"),
        markdown: dir.join("report.md"),
        metric_svg: dir.join("metric.svg"),
        epsilon_svg: dir.join("epsilon.svg"),
        lift_svg: dir.join("lift.svg"),
        privacy_utility_csv: (!result.privacy_utility.is_empty())
            .then(|| dir.join("privacy_utility.csv")),
    };

    write_rounds_csv(result, &files.rounds_csv)?;
    write_rounds_json(result, &files.rounds_json)?;
    write_merchants_csv(result, &files.merchants_csv)?;
    if let Some(path) = &files.privacy_utility_csv {
        write_utility_csv(&result.privacy_utility, path)?;
    }

    plot_metric(result, &files.metric_svg)?;
    plot_epsilon(result, &files.epsilon_svg)?;
    plot_lift(result, &files.lift_svg)?;

    let markdown = render_markdown(result);
    std::fs::write(&files.markdown, markdown).map_err(|source| ReportError::Io {
        path: files.markdown.clone(),
        source,
    })?;
    Ok(files)
}

/// Refuses NaN or infinite metrics before anything is written, naming the row.
fn check_finite(result: &RunResult) -> Result<(), ReportError> {
    for r in &result.rounds {
        if !r.metric.is_finite() {
            return Err(ReportError::NotFinite {
                place: format!("round {} of {}", r.round, r.arm.name()),
                value: r.metric,
            });
        }
    }
    for m in &result.merchants {
        for (what, value) in [("local-only", m.local_only), ("federated", m.federated)] {
            if !value.is_finite() {
                return Err(ReportError::NotFinite {
                    place: format!("merchant {} ({what})", m.id),
                    value,
                });
            }
        }
    }
    utility::check_finite(&result.privacy_utility)
}
