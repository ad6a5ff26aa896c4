//! The handshake demo: an aggregator and a few nodes meeting over loopback QUIC with
//! mutual TLS, with a freshly provisioned federation held in memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hansa_aggregator::provision::{FederationCa, ProvisionError};
use hansa_aggregator::serve::{accept_nodes, Standing};
use hansa_node::join::{join, JoinError};
use hansa_protocol::messages::Welcome;
use hansa_protocol::quic::TransportError;
use hansa_protocol::{AggregatorEndpoint, CloseCode, MerchantId, TransportSettings};
use tokio::sync::{mpsc, watch};

/// How long the demo waits for every node to join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What went wrong in the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Certificates could not be issued.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The aggregator could not listen.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A node could not join.
    #[error("merchant `{merchant}` could not join: {source}")]
    Join {
        /// The merchant.
        merchant: MerchantId,
        /// Why.
        source: JoinError,
    },
    /// Not every node joined in time.
    #[error("only {joined} of {expected} nodes joined within {JOIN_TIMEOUT:?}")]
    Timeout {
        /// Nodes the aggregator saw join.
        joined: usize,
        /// Nodes started.
        expected: usize,
    },
}

/// One node's handshake, as both ends saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    /// The merchant, as the aggregator read it from the node's certificate.
    pub merchant: MerchantId,
    /// The node's address, as the aggregator saw it.
    pub peer: Option<SocketAddr>,
    /// The software version the node announced.
    pub node_version: String,
    /// The welcome the node received.
    pub welcome: Welcome,
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Where the aggregator listened.
    pub aggregator: SocketAddr,
    /// Every node's handshake, in merchant order.
    pub handshakes: Vec<Handshake>,
}

/// Runs the demo with `merchants` nodes (ids `merchant-001`, ...).
pub async fn run_demo(merchants: usize) -> Result<DemoReport, DemoError> {
    let ca = FederationCa::create()?;
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let server = ca.identity(&ca.issue_aggregator(&names)?)?;
    let settings = TransportSettings::default();
    let endpoint = Arc::new(AggregatorEndpoint::bind(
        "127.0.0.1:0".parse().expect("a loopback address"),
        &server,
        settings.clone(),
    )?);
    let addr = endpoint.local_addr()?;

    let (joined_tx, mut joined) = mpsc::channel(merchants.max(1));
    let (_standing, standing) = watch::channel(Standing::default());
    let hello_timeout = Duration::from_millis(settings.hello_timeout_ms);
    tokio::spawn(accept_nodes(
        endpoint.clone(),
        joined_tx,
        standing,
        hello_timeout,
    ));

    let mut nodes = Vec::new();
    for i in 1..=merchants {
        let merchant = format!("merchant-{i:03}");
        let identity = ca.identity(&ca.issue_merchant(&merchant)?)?;
        let settings = settings.clone();
        nodes.push(tokio::spawn(async move {
            join(&addr.to_string(), "localhost", &identity, &settings, None)
                .await
                .map_err(|source| DemoError::Join { merchant, source })
        }));
    }

    let mut seen = Vec::new();
    let collect = async {
        while seen.len() < merchants {
            match joined.recv().await {
                Some(node) => seen.push(node),
                None => break,
            }
        }
    };
    let timed_out = tokio::time::timeout(JOIN_TIMEOUT, collect).await.is_err();
    let mut links = Vec::new();
    let mut welcomes = Vec::new();
    for node in nodes {
        let (link, welcome) = node.await.expect("a node task panicked")?;
        links.push(link);
        welcomes.push(welcome);
    }
    if timed_out || seen.len() < merchants {
        return Err(DemoError::Timeout {
            joined: seen.len(),
            expected: merchants,
        });
    }

    let mut handshakes: Vec<Handshake> = seen
        .into_iter()
        .map(|node| {
            let merchant = node.link.merchant().clone();
            let welcome = welcomes
                .iter()
                .find(|w| w.merchant == merchant)
                .cloned()
                .expect("every joined merchant got a welcome");
            Handshake {
                merchant,
                peer: node.peer,
                node_version: node.hello.software_version,
                welcome,
            }
        })
        .collect();
    handshakes.sort_by(|a, b| a.merchant.cmp(&b.merchant));

    for link in links {
        link.close(CloseCode::Done, "demo over").await;
    }
    endpoint.shutdown(CloseCode::Shutdown, "demo over").await;
    Ok(DemoReport {
        aggregator: addr,
        handshakes,
    })
}
