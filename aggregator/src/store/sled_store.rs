//! The [`Store`] on sled 0.34.7: one tree per table, rounds committed in one multi-tree
//! transaction and flushed before the commit returns.

use std::path::Path;
use std::time::{Duration, Instant};

use hansa_protocol::messages::EvaluationReport;
use hansa_protocol::{ParameterSet, Round, TensorSpec};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tracing::{debug, warn};

use super::{
    InitialSource, LedgerEntry, NodeEvaluation, NodeRecord, RoundCommit, RoundEvaluation,
    RoundRecord, Store, StoreError,
};
use crate::strategy::OptimizerState;

/// The layout version of the trees below; a store of another version is refused by name.
pub const SCHEMA_VERSION: u32 = 1;

const META_SCHEMA: &[u8] = b"schema_version";
const META_LAST_ROUND: &[u8] = b"last_round";
const META_INITIAL_SOURCE: &[u8] = b"initial_source";
const META_LAYOUT: &[u8] = b"layout";
/// Limitation: only the latest optimiser state is kept, so rolling back to an older
/// checkpoint restarts FedAdam/FedYogi moments from the latest round (keeping one state per
/// kept checkpoint, pruned with it, would lift this).
const OPTIMIZER_KEY: &[u8] = b"state";

/// Options of a [`SledStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Global checkpoints kept besides round 0's initial model, which is always kept.
    /// By default 5: enough to roll back a few bad rounds, at one model's size each.
    pub keep_checkpoints: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            keep_checkpoints: 5,
        }
    }
}

/// The aggregator's store in a sled database directory.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    rounds: sled::Tree,
    checkpoints: sled::Tree,
    ledger: sled::Tree,
    optimizer: sled::Tree,
    evaluations: sled::Tree,
    nodes: sled::Tree,
    options: StoreOptions,
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`. sled locks the directory, so a
    /// second process opening it gets [`StoreError::Open`].
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if options.keep_checkpoints == 0 {
            return Err(StoreError::Option {
                name: "keep_checkpoints",
                value: "0".into(),
                reason: "at least the latest checkpoint must be kept to resume",
            });
        }
        let open_err = |e: sled::Error| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        };
        let db = open_waiting_for_lock(path).map_err(open_err)?;
        let tree = |name: &str| db.open_tree(name).map_err(open_err);
        let store = Self {
            meta: tree("meta")?,
            rounds: tree("rounds")?,
            checkpoints: tree("checkpoints")?,
            ledger: tree("ledger")?,
            optimizer: tree("optimizer")?,
            evaluations: tree("evaluations")?,
            nodes: tree("nodes")?,
            db,
            options,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self
            .meta
            .get(META_SCHEMA)
            .map_err(backend("read schema version"))?
        {
            None => {
                self.meta
                    .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(backend("write schema version"))?;
                Ok(())
            }
            Some(bytes) => {
                let found = u32::from_be_bytes(
                    bytes
                        .as_ref()
                        .try_into()
                        .map_err(|_| decode_err("meta", "schema_version", "not 4 bytes"))?,
                );
                if found == SCHEMA_VERSION {
                    Ok(())
                } else {
                    Err(StoreError::SchemaVersion {
                        found,
                        expected: SCHEMA_VERSION,
                    })
                }
            }
        }
    }

    fn layout(&self) -> Result<Option<Vec<TensorSpec>>, StoreError> {
        get_value(&self.meta, "meta", META_LAYOUT)
    }

    fn flush(&self, operation: &str) -> Result<(), StoreError> {
        self.db.flush().map_err(backend(operation))?;
        Ok(())
    }

    /// Removes checkpoints older than the last K, round 0 excepted. Runs after a commit so
    /// that a smaller K given on restart also prunes what an earlier run kept; a crash
    /// between commit and prune only leaves an old checkpoint for the next commit to remove.
    fn prune_checkpoints(&self, latest: Round) -> Result<(), StoreError> {
        let keep_from = latest.saturating_sub(self.options.keep_checkpoints as u64 - 1);
        for round in self.checkpoint_rounds()? {
            if round != 0 && round < keep_from {
                self.checkpoints
                    .remove(round.to_be_bytes())
                    .map_err(backend("prune checkpoint"))?;
                debug!(round, "checkpoint pruned");
            }
        }
        Ok(())
    }
}

impl Store for SledStore {
    fn record_initial_model(
        &self,
        model: &ParameterSet,
        source: InitialSource,
    ) -> Result<(), StoreError> {
        model
            .check_finite()
            .map_err(|source| StoreError::Model { round: 0, source })?;
        let checkpoint = encode_model(model, 0)?;
        let layout = encode(&model.spec())?;
        let source = encode(&source)?;
        let result = (&self.meta, &self.checkpoints).transaction(|(meta, checkpoints)| {
            if meta.get(META_LAST_ROUND)?.is_some() {
                return Err(ConflictableTransactionError::Abort(
                    StoreError::AlreadyInitialised,
                ));
            }
            checkpoints.insert(&0u64.to_be_bytes(), checkpoint.as_slice())?;
            meta.insert(META_LAYOUT, layout.as_slice())?;
            meta.insert(META_INITIAL_SOURCE, source.as_slice())?;
            meta.insert(META_LAST_ROUND, &0u64.to_be_bytes())?;
            Ok(())
        });
        transaction_result(result, "record initial model")?;
        self.flush("flush initial model")
    }

    fn initial_source(&self) -> Result<Option<InitialSource>, StoreError> {
        get_value(&self.meta, "meta", META_INITIAL_SOURCE)
    }

    fn last_committed_round(&self) -> Result<Option<Round>, StoreError> {
        let bytes = self
            .meta
            .get(META_LAST_ROUND)
            .map_err(backend("read last round"))?;
        bytes.map(|b| decode_round(&b, "meta")).transpose()
    }

    fn commit_round(&self, commit: &RoundCommit) -> Result<(), StoreError> {
        let round = commit.record.round;
        let layout = self.layout()?.ok_or(StoreError::NotInitialised)?;
        let model_err = |source| StoreError::Model { round, source };
        commit.global.check_layout(&layout).map_err(model_err)?;
        commit.global.check_finite().map_err(model_err)?;

        let key = round.to_be_bytes();
        let record = encode(&commit.record)?;
        let checkpoint = encode_model(&commit.global, round)?;
        let mut ledger_entry = commit.ledger.clone();
        ledger_entry.round = round;
        let ledger_entry = encode(&ledger_entry)?;
        let optimizer = commit.optimizer.as_ref().map(encode).transpose()?;
        let trees = (
            &self.meta,
            &self.rounds,
            &self.checkpoints,
            &self.ledger,
            &self.optimizer,
        );
        let result = trees.transaction(|(meta, rounds, checkpoints, ledger, opt)| {
            let last = match meta.get(META_LAST_ROUND)? {
                Some(bytes) => {
                    decode_round(&bytes, "meta").map_err(ConflictableTransactionError::Abort)?
                }
                None => {
                    return Err(ConflictableTransactionError::Abort(
                        StoreError::NotInitialised,
                    ))
                }
            };
            if round != last + 1 {
                return Err(ConflictableTransactionError::Abort(
                    StoreError::OutOfOrder {
                        expected: last + 1,
                        given: round,
                    },
                ));
            }
            rounds.insert(&key, record.as_slice())?;
            checkpoints.insert(&key, checkpoint.as_slice())?;
            ledger.insert(&key, ledger_entry.as_slice())?;
            match &optimizer {
                Some(state) => opt.insert(OPTIMIZER_KEY, state.as_slice())?,
                None => opt.remove(OPTIMIZER_KEY)?,
            };
            meta.insert(META_LAST_ROUND, &key)?;
            Ok(())
        });
        transaction_result(result, &format!("commit round {round}"))?;
        self.flush(&format!("flush round {round}"))?;
        self.prune_checkpoints(round)
    }

    fn round(&self, round: Round) -> Result<Option<RoundRecord>, StoreError> {
        get_value(&self.rounds, "rounds", &round.to_be_bytes())
    }

    fn rounds(&self) -> Result<Vec<RoundRecord>, StoreError> {
        all_values(&self.rounds, "rounds")
    }

    fn checkpoint(&self, round: Round) -> Result<Option<ParameterSet>, StoreError> {
        let bytes = self
            .checkpoints
            .get(round.to_be_bytes())
            .map_err(backend("read checkpoint"))?;
        bytes
            .map(|b| {
                ParameterSet::from_safetensors(&b).map_err(|e| decode_err("checkpoints", round, e))
            })
            .transpose()
    }

    fn checkpoint_rounds(&self) -> Result<Vec<Round>, StoreError> {
        self.checkpoints
            .iter()
            .keys()
            .map(|key| decode_round(&key.map_err(backend("list checkpoints"))?, "checkpoints"))
            .collect()
    }

    fn latest_checkpoint(&self) -> Result<Option<(Round, ParameterSet)>, StoreError> {
        let Some(round) = self.checkpoint_rounds()?.last().copied() else {
            return Ok(None);
        };
        Ok(self.checkpoint(round)?.map(|model| (round, model)))
    }

    fn record_evaluation(
        &self,
        merchant: &str,
        report: &EvaluationReport,
    ) -> Result<(), StoreError> {
        let round = report.round;
        if self.round(round)?.is_none() {
            return Err(StoreError::UnknownRound(round));
        }
        if let Some(metric) = report.metrics.iter().find(|m| !m.value.is_finite()) {
            return Err(StoreError::NonFiniteMetric {
                round,
                merchant: merchant.to_string(),
                metric: metric.name.clone(),
            });
        }
        let evaluation = NodeEvaluation {
            merchant: merchant.to_string(),
            num_examples: report.num_examples,
            metrics: report.metrics.clone(),
        };
        let mut key = round.to_be_bytes().to_vec();
        key.extend_from_slice(merchant.as_bytes());
        self.evaluations
            .insert(key, encode(&evaluation)?)
            .map_err(backend("record evaluation"))?;
        self.flush("flush evaluation")
    }

    fn evaluation(&self, round: Round) -> Result<RoundEvaluation, StoreError> {
        let per_node = self
            .evaluations
            .scan_prefix(round.to_be_bytes())
            .values()
            .map(|v| {
                decode(
                    &v.map_err(backend("read evaluations"))?,
                    "evaluations",
                    round,
                )
            })
            .collect::<Result<Vec<NodeEvaluation>, _>>()?;
        Ok(RoundEvaluation::from_reports(per_node))
    }

    fn record_node_seen(
        &self,
        merchant: &str,
        cert_fingerprint: &str,
        at_ms: u64,
    ) -> Result<NodeRecord, StoreError> {
        let previous: Option<NodeRecord> = get_value(&self.nodes, "nodes", merchant.as_bytes())?;
        let record = match previous {
            Some(mut record) => {
                if record.cert_fingerprint != cert_fingerprint {
                    warn!(
                        merchant,
                        old = %record.cert_fingerprint,
                        new = %cert_fingerprint,
                        "merchant's certificate changed (re-provisioned?)"
                    );
                    record.cert_fingerprint = cert_fingerprint.to_string();
                }
                record.last_seen_ms = record.last_seen_ms.max(at_ms);
                record
            }
            None => NodeRecord {
                merchant: merchant.to_string(),
                cert_fingerprint: cert_fingerprint.to_string(),
                first_seen_ms: at_ms,
                last_seen_ms: at_ms,
            },
        };
        // Limitation: read-modify-write outside a transaction; correct while one task owns
        // the registry (the round engine). Concurrent writers would need `update_and_fetch`.
        self.nodes
            .insert(merchant.as_bytes(), encode(&record)?)
            .map_err(backend("record node"))?;
        self.flush("flush node registry")?;
        Ok(record)
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        all_values(&self.nodes, "nodes")
    }

    fn ledger(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        all_values(&self.ledger, "ledger")
    }

    fn optimizer_state(&self) -> Result<Option<OptimizerState>, StoreError> {
        get_value(&self.optimizer, "optimizer", OPTIMIZER_KEY)
    }
}

/// How long `open` waits for the directory lock. sled's background threads release the
/// lock of a dropped database a moment after the drop, so a store reopened in the same
/// process (tests, a restarted engine) may briefly find it held.
const LOCK_WAIT: Duration = Duration::from_millis(1500);

fn open_waiting_for_lock(path: &Path) -> sled::Result<sled::Db> {
    let give_up = Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && Instant::now() < give_up =>
            {
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

fn backend(operation: &str) -> impl Fn(sled::Error) -> StoreError + '_ {
    move |e| StoreError::Backend {
        operation: operation.to_string(),
        source: Box::new(e),
    }
}

fn transaction_result(
    result: Result<(), TransactionError<StoreError>>,
    operation: &str,
) -> Result<(), StoreError> {
    match result {
        Ok(()) => Ok(()),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(backend(operation)(e)),
    }
}

fn decode_err(
    table: &'static str,
    key: impl std::fmt::Display,
    detail: impl ToString,
) -> StoreError {
    StoreError::Decode {
        table,
        key: key.to_string(),
        detail: detail.to_string(),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Backend {
        operation: "encode value".into(),
        source: Box::new(e),
    })
}

fn encode_model(model: &ParameterSet, round: Round) -> Result<Vec<u8>, StoreError> {
    model
        .to_safetensors()
        .map_err(|source| StoreError::Model { round, source })
}

fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    table: &'static str,
    key: impl std::fmt::Display,
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| decode_err(table, key, e))
}

fn decode_round(bytes: &[u8], table: &'static str) -> Result<Round, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| decode_err(table, format!("{bytes:?}"), "round key is not 8 bytes"))?;
    Ok(Round::from_be_bytes(array))
}

fn get_value<T: DeserializeOwned>(
    tree: &sled::Tree,
    table: &'static str,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    let bytes = tree.get(key).map_err(backend("read"))?;
    bytes
        .map(|b| decode(&b, table, String::from_utf8_lossy(key)))
        .transpose()
}

fn all_values<T: DeserializeOwned>(
    tree: &sled::Tree,
    table: &'static str,
) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .map(|entry| {
            let (key, value) = entry.map_err(backend("scan"))?;
            decode(&value, table, String::from_utf8_lossy(&key))
        })
        .collect()
}
