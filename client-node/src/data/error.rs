//! Errors reading data sets: each names the file, the line and what was wrong.

use std::path::PathBuf;

/// Why a data set could not be read, split or fetched.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A line does not have the publisher's format.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number (the header is line 1 where there is one).
        line: u64,
        /// What was wrong, naming the field and value.
        reason: String,
    },
    /// The file's header is not the one the publisher ships.
    #[error("{path}: unexpected header {found:?}, expected {expected:?}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The header found.
        found: Vec<String>,
        /// The header expected.
        expected: Vec<String>,
    },
    /// A split or a model was asked for something the data cannot give.
    #[error("{0}")]
    Invalid(String),
    /// A download failed before its bytes could be checked.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Downloaded bytes do not have the published sha256; nothing was kept.
    #[error("checksum mismatch for {url}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The published digest (hex).
        expected: String,
        /// The digest of what arrived (hex).
        actual: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(
        path: impl Into<PathBuf>,
        line: u64,
        reason: impl Into<String>,
    ) -> Self {
        DataError::Malformed {
            path: path.into(),
            line,
            reason: reason.into(),
        }
    }
}
