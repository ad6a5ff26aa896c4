//! The aggregator's persistent state behind a small trait, with a sled implementation.
//!
//! Rounds, global checkpoints, the privacy ledger, the node registry and the server
//! optimiser's state. A round commits atomically: the global model of round r is never
//! visible without its round record and ledger entry.

mod records;
mod sled_store;

use hansa_protocol::messages::EvaluationReport;
use hansa_protocol::{ParameterError, ParameterSet, Round};

pub use records::{
    InitialSource, LedgerEntry, NodeEvaluation, NodeRecord, RoundCommit, RoundEvaluation,
    RoundRecord, TrainingSummary,
};
pub use sled_store::{SledStore, StoreOptions, SCHEMA_VERSION};

use crate::strategy::OptimizerState;

/// Errors reading or writing the aggregator's store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The backend.
    /// The store directory could not be opened.
    #[error("cannot open store at {path}: {source} (is another hansa-aggregator using it?)")]
    Open {
        /// The directory.
        path: String,
        /// Backend error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read, write or flush failed.
    #[error("store {operation} failed: {source}")]
    Backend {
        /// What was being done, e.g. `commit round 3`.
        operation: String,
        /// Backend error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored value could not be decoded (a corrupt store or one of another version).
    #[error("store value `{key}` in `{table}` cannot be decoded: {detail}")]
    Decode {
        /// Table name.
        table: &'static str,
        /// Key, printed.
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// The store was written by an incompatible version of the aggregator.
    #[error("store schema version {found} is not supported (this build reads {expected})")]
    SchemaVersion {
        /// Version in the store.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// An option is out of range.
    #[error("store option `{name}` = {value} is invalid: {reason}")]
    Option {
        /// Option name.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },

    // The round sequence.
    /// No initial model (round 0) has been recorded yet.
    #[error("store has no initial model (round 0) yet")]
    NotInitialised,
    /// An initial model was already recorded; it is never replaced.
    #[error("store already holds an initial model (round 0)")]
    AlreadyInitialised,
    /// A commit is not for the round after the last committed one.
    #[error("cannot commit round {given}: the next round to commit is {expected}")]
    OutOfOrder {
        /// The round that may be committed next.
        expected: Round,
        /// The round offered.
        given: Round,
    },
    /// The round has not been committed.
    #[error("round {0} has not been committed")]
    UnknownRound(Round),
    /// The round was committed but its checkpoint has been pruned.
    #[error("checkpoint of round {round} was pruned; checkpoints kept: {kept:?}")]
    CheckpointPruned {
        /// The round asked for.
        round: Round,
        /// Rounds whose checkpoint is kept.
        kept: Vec<Round>,
    },

    // Content.
    /// A global model does not have round 0's layout, or is not finite.
    #[error("global model of round {round}: {source}")]
    Model {
        /// Round.
        round: Round,
        /// What is wrong.
        source: ParameterError,
    },
    /// An evaluation report carries NaN or infinity.
    #[error("evaluation of round {round} from `{merchant}`: metric `{metric}` is not finite")]
    NonFiniteMetric {
        /// Round.
        round: Round,
        /// Reporting node.
        merchant: String,
        /// Metric name.
        metric: String,
    },
}

/// The aggregator's persistent state. Implemented by [`SledStore`]; another backend needs
/// only these methods.
pub trait Store {
    /// Records round 0's global model and where it came from. Fails with
    /// [`StoreError::AlreadyInitialised`] when one exists.
    fn record_initial_model(
        &self,
        model: &ParameterSet,
        source: InitialSource,
    ) -> Result<(), StoreError>;

    /// Where round 0's model came from, if recorded.
    fn initial_source(&self) -> Result<Option<InitialSource>, StoreError>;

    /// The last committed round: `None` before the initial model, 0 after it alone.
    fn last_committed_round(&self) -> Result<Option<Round>, StoreError>;

    /// Commits a round atomically: record, checkpoint, ledger entry, optimiser state, and
    /// the pruning of checkpoints beyond the last K.
    fn commit_round(&self, commit: &RoundCommit) -> Result<(), StoreError>;

    /// One committed round's record.
    fn round(&self, round: Round) -> Result<Option<RoundRecord>, StoreError>;

    /// Every committed round's record, in round order.
    fn rounds(&self) -> Result<Vec<RoundRecord>, StoreError>;

    /// The global model after `round` (0: the initial model), if its checkpoint is kept.
    fn checkpoint(&self, round: Round) -> Result<Option<ParameterSet>, StoreError>;

    /// Rounds whose checkpoint is kept, in order.
    fn checkpoint_rounds(&self) -> Result<Vec<Round>, StoreError>;

    /// The latest kept checkpoint: the model to resume from.
    fn latest_checkpoint(&self) -> Result<Option<(Round, ParameterSet)>, StoreError>;

    /// Records a node's evaluation of a committed round's model (a later report from the
    /// same node for the same round replaces the earlier one).
    fn record_evaluation(
        &self,
        merchant: &str,
        report: &EvaluationReport,
    ) -> Result<(), StoreError>;

    /// The federated evaluation of `round`: per node and example-weighted means.
    fn evaluation(&self, round: Round) -> Result<RoundEvaluation, StoreError>;

    /// Notes that `merchant` connected now (`at_ms`, Unix milliseconds) with a certificate
    /// of `cert_fingerprint`; returns the updated record.
    fn record_node_seen(
        &self,
        merchant: &str,
        cert_fingerprint: &str,
        at_ms: u64,
    ) -> Result<NodeRecord, StoreError>;

    /// Every node seen, in merchant order.
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// The privacy ledger, in round order.
    fn ledger(&self) -> Result<Vec<LedgerEntry>, StoreError>;

    /// The server optimiser's state as of the last committed round.
    fn optimizer_state(&self) -> Result<Option<OptimizerState>, StoreError>;
}
