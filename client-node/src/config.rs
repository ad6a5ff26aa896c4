//! The node's TOML config file (see `node.example.toml`).

use std::path::{Path, PathBuf};

use hansa_protocol::tls::TlsFiles;
use hansa_protocol::TransportSettings;
use serde::Deserialize;

use crate::setup::LearningConfig;

/// Everything `hansa-node join` reads from its config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The aggregator's address, `host:port`, host a DNS name or an IP address.
    pub aggregator: String,
    /// The name the aggregator's certificate must carry. Default: the host of `aggregator`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The merchant's credentials, as handed over by the operator.
    pub tls: TlsFiles,
    /// QUIC settings (keep-alive, idle timeout, frame limit); every field has a default.
    #[serde(default)]
    pub transport: TransportSettings,
    /// What the node learns from: its data and model.
    pub learning: LearningConfig,
    /// Folder of the node's own sled store (private parameters, its ledger). Default
    /// `node-store`, relative to the config file's folder.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// This merchant's own privacy budget: the node refuses to release an update that
    /// would take its ε past it, whatever the aggregator asks.
    #[serde(default)]
    pub budget: Budget,
    /// How the node reconnects after losing the aggregator.
    #[serde(default)]
    pub reconnect: Reconnect,
}

fn default_store() -> PathBuf {
    PathBuf::from("node-store")
}

/// A merchant's own (ε, δ) budget.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// Most ε this merchant will spend, at `delta`. Default 10.
    pub max_epsilon: f64,
    /// δ of the budget. Default 1e-5.
    pub delta: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_epsilon: 10.0,
            delta: 1e-5,
        }
    }
}

/// Reconnection backoff: doubles from `initial_backoff_ms` up to `max_backoff_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconnect {
    /// First wait after a lost connection, in milliseconds. Default 500.
    pub initial_backoff_ms: u64,
    /// Longest wait between attempts, in milliseconds. Default 30 000.
    pub max_backoff_ms: u64,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
        }
    }
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
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl NodeConfig {
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
            .server_name()
            .map_err(|reason| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: "aggregator",
                reason,
            })?;
        Ok(config)
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The name to verify the aggregator under: `server_name`, else the host of
    /// `aggregator` (brackets of an IPv6 literal removed).
    pub fn server_name(&self) -> Result<String, String> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let (host, port) = self
            .aggregator
            .rsplit_once(':')
            .ok_or_else(|| format!("`{}` is not host:port", self.aggregator))?;
        port.parse::<u16>()
            .map_err(|_| format!("`{}` has no valid port", self.aggregator))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{}` has no host", self.aggregator));
        }
        Ok(host.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_aggregator(aggregator: &str) -> NodeConfig {
        NodeConfig::parse(&format!(
            "aggregator = \"{aggregator}\"\n[tls]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\n\
             [learning]\ndataset = \"movielens-100k\"\npath = \"ml\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn the_example_file_parses_with_its_documented_defaults() {
        let config = NodeConfig::parse(include_str!("../node.example.toml")).unwrap();
        assert_eq!(config.aggregator, "agg.example.com:7447");
        assert_eq!(config.server_name().unwrap(), "agg.example.com");
        assert_eq!(config.tls.cert, PathBuf::from("merchant/cert.pem"));
        assert_eq!(config.transport, TransportSettings::default());
    }

    #[test]
    fn the_server_name_defaults_to_the_host() {
        assert_eq!(
            with_aggregator("10.0.0.5:7447").server_name().unwrap(),
            "10.0.0.5"
        );
        assert_eq!(with_aggregator("[::1]:7447").server_name().unwrap(), "::1");
        assert!(with_aggregator("agg.example.com").server_name().is_err());
        assert!(with_aggregator(":7447").server_name().is_err());
    }

    #[test]
    fn a_wrongly_typed_field_is_named() {
        let err = NodeConfig::parse(
            "aggregator = \"a:1\"\n[tls]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\n\
             [transport]\nidle_timeout_ms = \"long\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("idle_timeout_ms"), "{text}");
        assert!(
            text.contains("invalid type: string \"long\", expected u64"),
            "{text}"
        );
    }
}
