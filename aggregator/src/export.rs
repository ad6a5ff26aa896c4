//! `hansa-aggregator export`: one round's global model to a safetensors file.

use std::path::{Path, PathBuf};

use hansa_protocol::{ParameterError, Round};

use crate::store::{Store, StoreError};

/// Errors exporting a model.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not give the model.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model could not be encoded.
    #[error("cannot encode round {round}'s model as safetensors: {source}")]
    Encode {
        /// Round.
        round: Round,
        /// Why.
        source: ParameterError,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Output path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
}

/// What was exported.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The round.
    pub round: Round,
    /// Tensors written.
    pub tensors: usize,
    /// f32 values written.
    pub values: usize,
    /// File size in bytes.
    pub bytes: usize,
}

/// Writes the global model after `round` (0: the initial model) to `out` as safetensors.
/// The file is written beside `out` and renamed into place, so a reader never sees half.
pub fn export_round(
    store: &dyn Store,
    round: Round,
    out: &Path,
) -> Result<ExportSummary, ExportError> {
    let Some(model) = store.checkpoint(round)? else {
        let committed = store
            .last_committed_round()?
            .is_some_and(|last| round <= last);
        return Err(if committed {
            StoreError::CheckpointPruned {
                round,
                kept: store.checkpoint_rounds()?,
            }
        } else {
            StoreError::UnknownRound(round)
        }
        .into());
    };
    let bytes = model
        .to_safetensors()
        .map_err(|source| ExportError::Encode { round, source })?;

    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let write_err = |source| ExportError::Write {
        path: out.to_path_buf(),
        source,
    };
    std::fs::write(&partial, &bytes).map_err(write_err)?;
    std::fs::rename(&partial, out).map_err(write_err)?;
    Ok(ExportSummary {
        round,
        tensors: model.len(),
        values: model.num_values(),
        bytes: bytes.len(),
    })
}
