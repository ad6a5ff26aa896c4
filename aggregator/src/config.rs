//! The aggregator's TOML config file (see `aggregator.example.toml`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hansa_protocol::tls::TlsFiles;
use hansa_protocol::TransportSettings;
use serde::Deserialize;

use crate::round::FederationSettings;

/// Default UDP address the aggregator listens on.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7447";

/// Everything `hansa-aggregator serve` reads from its config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// UDP address and port to listen on. Default `0.0.0.0:7447`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The aggregator's credentials, as written by `hansa-aggregator provision`.
    pub tls: TlsFiles,
    /// QUIC settings (keep-alive, idle timeout, frame limit); every field has a default.
    #[serde(default)]
    pub transport: TransportSettings,
    /// Folder of the aggregator's sled store (rounds, checkpoints, ledger, nodes).
    /// Default `aggregator-store`, relative to the config file's folder.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// Global checkpoints kept besides round 0's model. Default 5.
    #[serde(default = "default_keep_checkpoints")]
    pub keep_checkpoints: usize,
    /// A safetensors file with the initial global model. Default: none, and the first
    /// node to join offers its seeded initialisation.
    #[serde(default)]
    pub initial_model: Option<PathBuf>,
    /// The rounds: cohort, deadlines, local training, strategy, privacy, secure
    /// aggregation; every field has a default (see `aggregator.example.toml`).
    #[serde(default)]
    pub federation: FederationSettings,
}

fn default_store() -> PathBuf {
    PathBuf::from("aggregator-store")
}

fn default_keep_checkpoints() -> usize {
    5
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .expect("the default listen address parses")
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A field is missing, unknown or of the wrong type; the TOML error shows the line.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml says, with the line and field.
        source: toml::de::Error,
    },
    /// A field parses but its value is unusable.
    #[error("config file {path}: field `{field}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, with its table (`federation.privacy.clip_norm`).
        field: String,
        /// Why.
        reason: String,
    },
}

impl AggregatorConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        config
            .federation
            .validate()
            .map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("federation.{}", e.name),
                reason: e.detail,
            })?;
        Ok(config)
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_with_its_documented_defaults() {
        let text = include_str!("../aggregator.example.toml");
        let config = AggregatorConfig::parse(text).unwrap();
        assert_eq!(config.listen, "0.0.0.0:7447".parse().unwrap());
        assert_eq!(config.tls.key, PathBuf::from("pki/aggregator/key.pem"));
        assert_eq!(config.transport, TransportSettings::default());
        assert_eq!(config.store, PathBuf::from("aggregator-store"));
        assert_eq!(config.federation, FederationSettings::default());
    }

    #[test]
    fn an_unusable_federation_setting_is_named_with_its_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregator.toml");
        let text = "[tls]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\n\
                    [federation.privacy]\nclip_norm = nan\n";
        std::fs::write(&path, text).unwrap();
        let err = AggregatorConfig::load(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("field `federation.privacy.clip_norm`"),
            "{err}"
        );
    }

    #[test]
    fn a_minimal_file_takes_defaults() {
        let config =
            AggregatorConfig::parse("[tls]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\n").unwrap();
        assert_eq!(config.listen.port(), 7447);
        assert_eq!(config.transport.idle_timeout_ms, 30_000);
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = AggregatorConfig::parse(
            "listen = \"127.0.0.1:1\"\nlisten_port = 3\n[tls]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen_port`"),
            "{err}"
        );
    }
}
