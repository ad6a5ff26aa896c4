//! How the run's nodes reach its aggregator: in-memory links, or loopback QUIC with
//! mutual TLS and certificates provisioned into the run's folder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hansa_aggregator::provision::provision;
use hansa_aggregator::round::Admissions;
use hansa_aggregator::serve::{accept_nodes, Standing};
use hansa_node::join::join;
use hansa_node::runtime::{Moment, Participant, SessionEnd};
use hansa_protocol::{memory_pair, AggregatorEndpoint, CloseCode, Identity, TransportSettings};
use tokio::sync::{mpsc, watch};

use super::RunError;

/// The names the aggregator's certificate carries; nodes dial `localhost`.
const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// Connects a node to the federation and serves it until the link closes.
#[derive(Clone)]
pub enum Connector {
    /// In-process channels handed straight to the federation's admissions.
    Memory(Admissions),
    /// Loopback QUIC: the aggregator's address and each merchant's identity.
    Quic {
        /// Where the aggregator listens.
        addr: SocketAddr,
        /// Identity by merchant id.
        identities: Arc<BTreeMap<String, Identity>>,
        /// Transport settings shared by both ends.
        settings: TransportSettings,
    },
}

impl Connector {
    /// One session of `participant` (merchant `merchant`): connect, serve, return how it ended.
    pub async fn serve(
        &self,
        participant: &mut Participant,
        merchant: &str,
        fault: impl FnMut(Moment<'_>) -> bool + Send,
    ) -> Result<SessionEnd, RunError> {
        let node_error = |e: &dyn std::fmt::Display| RunError::Node {
            merchant: merchant.to_string(),
            detail: e.to_string(),
        };
        match self {
            Connector::Memory(admissions) => {
                let (aggregator_side, mut node_side) = memory_pair(merchant);
                if !admissions.admit(aggregator_side).await {
                    return Ok(SessionEnd::Closed("the federation is gone".into()));
                }
                participant
                    .serve_with_faults(&mut node_side, fault)
                    .await
                    .map_err(|e| node_error(&e))
            }
            Connector::Quic {
                addr,
                identities,
                settings,
            } => {
                let identity = identities.get(merchant).ok_or_else(|| RunError::Node {
                    merchant: merchant.to_string(),
                    detail: "no certificate was provisioned for it".into(),
                })?;
                let joined = join(
                    &addr.to_string(),
                    SERVER_NAMES[0],
                    identity,
                    settings,
                    participant.last_round(),
                )
                .await;
                let (mut link, welcome) = match joined {
                    Ok(joined) => joined,
                    // The federation has finished and its endpoint is gone.
                    Err(e) => return Ok(SessionEnd::Closed(e.to_string())),
                };
                let end = participant
                    .serve_welcomed(&mut link, &welcome, fault)
                    .await
                    .map_err(|e| node_error(&e));
                link.close(CloseCode::Done, "node stops").await;
                end
            }
        }
    }
}

/// A listening QUIC aggregator whose accepted nodes go to a federation's admissions.
pub struct QuicAggregator {
    endpoint: Arc<AggregatorEndpoint>,
    /// What nodes dial.
    pub connector: Connector,
}

impl QuicAggregator {
    /// Provisions a CA, the aggregator and every merchant into `certs`, listens on an
    /// ephemeral loopback port and forwards greeted nodes to `admissions`.
    pub async fn start(
        certs: &Path,
        merchants: &[String],
        admissions: Admissions,
        standing: watch::Receiver<Standing>,
    ) -> Result<Self, RunError> {
        let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
        provision(certs, &names, merchants).map_err(|e| RunError::Transport(e.to_string()))?;
        let load = |dir: &Path| {
            Identity::from_pem_files(
                &dir.join("ca.pem"),
                &dir.join("cert.pem"),
                &dir.join("key.pem"),
            )
            .map_err(|e| RunError::Transport(format!("{}: {e}", dir.display())))
        };
        let server = load(&certs.join("aggregator"))?;
        let mut identities = BTreeMap::new();
        for merchant in merchants {
            identities.insert(
                merchant.clone(),
                load(&certs.join("merchants").join(merchant))?,
            );
        }

        let settings = TransportSettings::default();
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("a loopback address");
        let endpoint = AggregatorEndpoint::bind(loopback, &server, settings.clone())
            .map_err(|e| RunError::Transport(e.to_string()))?;
        let endpoint = Arc::new(endpoint);
        let addr = endpoint
            .local_addr()
            .map_err(|e| RunError::Transport(e.to_string()))?;

        let (joined_tx, mut joined) = mpsc::channel(merchants.len().max(1));
        let hello_timeout = Duration::from_millis(settings.hello_timeout_ms);
        tokio::spawn(accept_nodes(
            endpoint.clone(),
            joined_tx,
            standing,
            hello_timeout,
        ));
        tokio::spawn(async move {
            while let Some(node) = joined.recv().await {
                if !admissions.admit_greeted(node).await {
                    break;
                }
            }
        });
        tracing::info!(%addr, certs = %certs.display(), "aggregator listening (QUIC, mutual TLS)");
        Ok(Self {
            endpoint,
            connector: Connector::Quic {
                addr,
                identities: Arc::new(identities),
                settings,
            },
        })
    }

    /// Closes the endpoint; nodes see their links close.
    pub async fn shutdown(&self) {
        self.endpoint
            .shutdown(CloseCode::Shutdown, "simulation over")
            .await;
    }
}
