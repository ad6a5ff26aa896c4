//! Scenario files: the TOML description of one simulated federation, its defaults,
//! `--set` overrides and validation.
//!
//! A whole scenario, with every table (fields left out take their documented default):
//!
//! ```
//! use hansa_sim::scenario::{Scenario, Transport};
//!
//! let text = r#"
//! name = "fraud-demo"
//! seed = 7
//! rounds = 20
//! transport = "memory"
//!
//! [dataset]
//! kind = "creditcard"
//!
//! [task]
//! kind = "fraud"
//!
//! [merchants]
//! count = 8
//! partition = { kind = "dirichlet", alpha = 0.5, over = "labels" }
//!
//! [training]
//! local_epochs = 2
//! learning_rate = 0.01
//!
//! [strategy]
//! kind = "fedadam"
//!
//! [privacy]
//! mode = "central"
//! clip_norm = 0.5
//! noise_multiplier = 1.1
//! "#;
//! let scenario = Scenario::from_toml_str(text, "example", &["rounds=2".to_string()]).unwrap();
//! assert_eq!(scenario.rounds, 2);
//! assert_eq!(scenario.transport, Transport::Memory);
//! assert_eq!(scenario.training.batch_size, 256); // the default
//! ```

mod dataset;
mod evaluation;
mod faults;
mod merchants;
mod overrides;
mod privacy;
mod training;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use dataset::{
    DatasetKind, DatasetSpec, Feedback, TaskKind, TaskSpec, BUNDLED_ONLINE_RETAIL, DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
};
pub use evaluation::{EvaluationSpec, HeldOutSpec};
pub use faults::{Attack, DelaySpec, DropoutSpec, FaultsSpec, PoisonSpec, StragglerSpec};
pub use merchants::{DirichletOver, MerchantsSpec, PartitionSpec};
pub use overrides::apply_overrides;
pub use privacy::{DpMode, PrivacySpec, SecureAggregationSpec};
pub use training::{AdaptiveSpec, ModelSpec, StrategySpec, TrainingSpec};

/// One simulated federation, as read from a scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in the report and the default output folder. Required.
    pub name: String,
    /// Seed of every random choice in the run (partition, cohorts, faults, training).
    /// Same scenario and seed, same run. Default: 0.
    #[serde(default)]
    pub seed: u64,
    /// Federated rounds to run, ≥ 1. Required.
    pub rounds: u64,
    /// How nodes talk to the aggregator. Default: `quic`.
    #[serde(default)]
    pub transport: Transport,
    /// Folder the run writes its report, plots and certificates to. Default: none,
    /// meaning `runs/<name>`.
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    /// The data set. Required.
    pub dataset: DatasetSpec,
    /// What is learned. Required.
    pub task: TaskSpec,
    /// Merchants, their partition and the cohort. Required.
    pub merchants: MerchantsSpec,
    /// Local training. Default: see [`TrainingSpec`].
    #[serde(default)]
    pub training: TrainingSpec,
    /// Server optimiser. Default: FedAvg with server step 1.
    #[serde(default)]
    pub strategy: StrategySpec,
    /// Model size. Default: see [`ModelSpec`].
    #[serde(default)]
    pub model: ModelSpec,
    /// Differential privacy and secure aggregation. Default: off.
    #[serde(default)]
    pub privacy: PrivacySpec,
    /// Injected faults. Default: none.
    #[serde(default)]
    pub faults: FaultsSpec,
    /// Where the models are scored. Default: each merchant's own held-out data.
    #[serde(default)]
    pub evaluation: EvaluationSpec,
}

/// How nodes reach the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Loopback QUIC with the real mutual TLS (certificates in the output folder).
    #[default]
    Quic,
    /// In-process channels running the same protocol code; for thousands of nodes.
    Memory,
}

/// Errors reading, overriding or validating a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not TOML, or a field is unknown, missing or of the wrong type (the
    /// message names it).
    #[error("scenario {origin}: {source}")]
    Parse {
        /// The file name or other origin of the text.
        origin: String,
        /// The parser's message, which names the field.
        source: toml::de::Error,
    },
    /// A `--set` argument without `=`, or with an empty key.
    #[error("override `{arg}` must have the form key=value (e.g. rounds=2)")]
    OverrideSyntax {
        /// The argument as given.
        arg: String,
    },
    /// A `--set` key runs through a value that is not a table.
    #[error("override `{key}`: `{segment}` holds a value of type {found}, not a table")]
    OverrideThroughValue {
        /// The dotted key.
        key: String,
        /// The segment that is not a table.
        segment: String,
        /// What it holds (integer, string, ...).
        found: &'static str,
    },
    /// A `--set` key names no field of the scenario.
    #[error("override `{key}` names no scenario field: {detail}")]
    UnknownOverride {
        /// The dotted key.
        key: String,
        /// The parser's message, with the fields that are allowed there.
        detail: String,
    },
    /// A field has a value the run cannot use.
    #[error("scenario field `{field}` = {value}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `privacy.noise_multiplier`.
        field: String,
        /// The value as written.
        value: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

impl Scenario {
    /// Reads, overrides (`key=value` strings, see [`apply_overrides`]) and validates a
    /// scenario file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses, overrides and validates scenario text; `origin` names it in errors.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> Result<Self, ScenarioError> {
        let parse_error = |source| ScenarioError::Parse {
            origin: origin.to_string(),
            source,
        };
        let scenario: Scenario = if overrides.is_empty() {
            // Straight from the text, so that errors carry line and column.
            toml::from_str(text).map_err(parse_error)?
        } else {
            let mut table: toml::Table = toml::from_str(text).map_err(parse_error)?;
            apply_overrides(&mut table, overrides)?;
            deserialize_overridden(table, origin, overrides)?
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// The scenario as TOML, after overrides and with every default filled in: what the
    /// report echoes, and a file that reproduces the run.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("a scenario has only TOML-representable fields")
    }

    /// The output folder: `output_dir`, or `runs/<name>`.
    pub fn output_dir(&self) -> PathBuf {
        self.output_dir
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(&self.name))
    }
}

/// Deserialises an overridden table; an unknown field that an override introduced is
/// reported as that override's error.
fn deserialize_overridden(
    table: toml::Table,
    origin: &str,
    overrides: &[String],
) -> Result<Scenario, ScenarioError> {
    Scenario::deserialize(toml::Value::Table(table)).map_err(|source| {
        let message = source.to_string();
        let culprit = overrides.iter().find_map(|arg| {
            let key = arg.split_once('=')?.0.trim();
            let last = key.rsplit('.').next()?;
            message
                .contains(&format!("unknown field `{last}`"))
                .then(|| key.to_string())
        });
        match culprit {
            Some(key) => ScenarioError::UnknownOverride {
                key,
                detail: message.trim().to_string(),
            },
            None => ScenarioError::Parse {
                origin: origin.to_string(),
                source,
            },
        }
    })
}
