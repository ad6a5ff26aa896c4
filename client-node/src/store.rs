//! The node's own sled store: its private parameters, its privacy ledger, and the last
//! round it completed. What never leaves the building survives restarts here.

use std::path::{Path, PathBuf};

use hansa_privacy::Ledger;
use hansa_protocol::{ParameterSet, Round};

const PRIVATE_KEY: &[u8] = b"private_parameters";
const LEDGER_KEY: &[u8] = b"ledger";
const LAST_ROUND_KEY: &[u8] = b"last_round";

/// Errors reading or writing the node's store.
#[derive(Debug, thiserror::Error)]
pub enum NodeStoreError {
    /// sled failed.
    #[error("node store {path}: {source}")]
    Sled {
        /// The store directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// A stored value could not be decoded.
    #[error("node store {path}: `{key}` is corrupt: {detail}")]
    Corrupt {
        /// The store directory.
        path: PathBuf,
        /// Which value.
        key: &'static str,
        /// What failed.
        detail: String,
    },
}

/// A node's persistent state.
pub struct NodeStore {
    db: sled::Db,
    path: PathBuf,
}

impl NodeStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, NodeStoreError> {
        let db = sled::open(dir).map_err(|source| NodeStoreError::Sled {
            path: dir.into(),
            source,
        })?;
        Ok(Self {
            db,
            path: dir.into(),
        })
    }

    fn sled(&self, source: sled::Error) -> NodeStoreError {
        NodeStoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, key: &'static str, detail: impl ToString) -> NodeStoreError {
        NodeStoreError::Corrupt {
            path: self.path.clone(),
            key,
            detail: detail.to_string(),
        }
    }

    /// The private tensors saved last, if any.
    pub fn private_parameters(&self) -> Result<Option<ParameterSet>, NodeStoreError> {
        let Some(bytes) = self.db.get(PRIVATE_KEY).map_err(|e| self.sled(e))? else {
            return Ok(None);
        };
        ParameterSet::from_safetensors(&bytes)
            .map(Some)
            .map_err(|e| self.corrupt("private_parameters", e))
    }

    /// The node's ledger, if one was saved.
    pub fn ledger(&self) -> Result<Option<Ledger>, NodeStoreError> {
        let Some(bytes) = self.db.get(LEDGER_KEY).map_err(|e| self.sled(e))? else {
            return Ok(None);
        };
        Ledger::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| self.corrupt("ledger", e))
    }

    /// The last round this node completed (evaluated), if any.
    pub fn last_round(&self) -> Result<Option<Round>, NodeStoreError> {
        let Some(bytes) = self.db.get(LAST_ROUND_KEY).map_err(|e| self.sled(e))? else {
            return Ok(None);
        };
        let array: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
            self.corrupt("last_round", format!("{} bytes, 8 expected", bytes.len()))
        })?;
        Ok(Some(Round::from_le_bytes(array)))
    }

    /// Saves the private tensors, the ledger and the last round together, and flushes.
    pub fn save(
        &self,
        private: &ParameterSet,
        ledger: &Ledger,
        last_round: Option<Round>,
    ) -> Result<(), NodeStoreError> {
        let private = private
            .to_safetensors()
            .map_err(|e| self.corrupt("private_parameters", e))?;
        let ledger = ledger.to_bytes().map_err(|e| self.corrupt("ledger", e))?;
        let mut batch = sled::Batch::default();
        batch.insert(PRIVATE_KEY, private);
        batch.insert(LEDGER_KEY, ledger);
        if let Some(round) = last_round {
            batch.insert(LAST_ROUND_KEY, &round.to_le_bytes());
        }
        self.db.apply_batch(batch).map_err(|e| self.sled(e))?;
        self.db.flush().map_err(|e| self.sled(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hansa_protocol::Scope;

    #[test]
    fn saved_state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut private = ParameterSet::new();
        private
            .push(
                "user_embedding",
                vec![1, 2],
                vec![0.25, -0.5],
                Scope::Private,
            )
            .unwrap();
        let mut ledger = Ledger::new(4.0, 1e-5).unwrap();
        ledger.charge(1, 0.05).unwrap();
        {
            let store = NodeStore::open(dir.path()).unwrap();
            assert!(store.private_parameters().unwrap().is_none());
            store.save(&private, &ledger, Some(1)).unwrap();
        }
        let store = NodeStore::open(dir.path()).unwrap();
        assert_eq!(store.private_parameters().unwrap().unwrap(), private);
        assert_eq!(store.ledger().unwrap().unwrap(), ledger);
        assert_eq!(store.last_round().unwrap(), Some(1));
    }
}
