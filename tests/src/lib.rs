//! Shared fixtures of Hansa's end-to-end tests: real MovieLens merchants, and nodes
//! and federations wired over in-memory links.
//!
//! ```no_run
//! let merchants = hansa_tests::movielens_merchants(3).unwrap();
//! assert_eq!(merchants.len(), 3);
//! ```
#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use std::sync::Arc;
use std::time::Duration;

use hansa_aggregator::provision::FederationCa;
use hansa_aggregator::round::{Admissions, Federation};
use hansa_aggregator::serve::accept_nodes;
use hansa_aggregator::store::Store;
use hansa_node::data::movielens::load_100k_split;
use hansa_node::data::RatingsDataset;
use hansa_node::join::join;
use hansa_node::learner::{HeldOut, Learner};
use hansa_node::model::{Feedback, Recommender, RecommenderConfig};
use hansa_node::runtime::{Moment, NodeError, Participant, SessionEnd};
use hansa_privacy::Ledger;
use hansa_protocol::{memory_pair, AggregatorEndpoint, Identity, TransportSettings};
use tokio::task::JoinHandle;

/// One merchant's share of MovieLens 100K: its users' ratings of split u1.
pub struct Merchant {
    /// Merchant id, e.g. `merchant-0`.
    pub id: String,
    /// Its training ratings (u1.base).
    pub train: RatingsDataset,
    /// Its held-out ratings (u1.test).
    pub test: RatingsDataset,
}

/// The MovieLens 100K folder: `$HANSA_DATA_DIR/movielens-100k`.
pub fn movielens_dir() -> PathBuf {
    hansa_node::data::data_dir().join("movielens-100k")
}

/// Splits MovieLens 100K (u1.base / u1.test) into `count` merchants by user id modulo
/// `count`: each merchant holds every rating of its own users, as a shop holds its
/// customers. All merchants share one item vocabulary, so item rows agree.
pub fn movielens_merchants(count: u32) -> anyhow::Result<Vec<Merchant>> {
    let (train, test) = load_100k_split(&movielens_dir(), "u1")?;
    Ok((0..count)
        .map(|m| Merchant {
            id: format!("merchant-{m}"),
            train: train.filter(|r| r.user % count == m),
            test: test.filter(|r| r.user % count == m),
        })
        .collect())
}

/// The recommender every MovieLens merchant trains: the tuned centralised settings.
pub fn movielens_learner(merchant: &Merchant) -> anyhow::Result<Box<dyn Learner>> {
    let config = RecommenderConfig {
        dim: 32,
        init_std: 0.1,
        feedback: Feedback::Explicit,
        seed: 1,
    };
    Ok(Box::new(Recommender::new(&merchant.train, config)?))
}

/// A node for `merchant` with a generous budget of its own (ε ≤ 100 at δ = 1e-5).
pub fn movielens_participant(merchant: &Merchant) -> anyhow::Result<Participant> {
    let learner = movielens_learner(merchant)?;
    let held_out = HeldOut::Ratings(merchant.test.clone());
    let ledger = Ledger::new(100.0, 1e-5)?;
    Ok(Participant::new(
        merchant.id.clone(),
        learner,
        held_out,
        0.12,
        ledger,
        None,
    )?)
}

/// Connects `participant` to a federation over an in-memory link and serves it in a
/// task; `fault` may stop the node at a chosen [`Moment`] (as if it crashed).
pub async fn spawn_node(
    admissions: &Admissions,
    mut participant: Participant,
    merchant: &str,
    mut fault: impl FnMut(Moment<'_>) -> bool + Send + 'static,
) -> JoinHandle<Result<(SessionEnd, Participant), NodeError>> {
    let (aggregator_side, mut node_side) = memory_pair(merchant);
    assert!(
        admissions.admit(aggregator_side).await,
        "the federation is gone"
    );
    tokio::spawn(async move {
        let end = participant
            .serve_with_faults(&mut node_side, &mut fault)
            .await?;
        Ok((end, participant))
    })
}

/// A fault that cuts the link once, at the first moment `matches` accepts.
pub fn drop_when(
    mut matches: impl FnMut(&Moment<'_>) -> bool + Send + 'static,
) -> impl FnMut(Moment<'_>) -> bool + Send + 'static {
    let mut fired = false;
    move |moment| {
        if !fired && matches(&moment) {
            fired = true;
            return true;
        }
        false
    }
}

/// The set of ids of `merchants`.
pub fn ids(merchants: &[Merchant]) -> BTreeSet<String> {
    merchants.iter().map(|m| m.id.clone()).collect()
}

/// A federation's front door on loopback QUIC with mutual TLS: a fresh federation CA, an
/// aggregator endpoint on 127.0.0.1, and every node that completes its hello handed to
/// the federation's roster.
pub struct QuicFrontDoor {
    ca: FederationCa,
    addr: String,
    _endpoint: Arc<AggregatorEndpoint>,
}

impl QuicFrontDoor {
    /// Opens the endpoint and starts accepting nodes for `federation`.
    pub async fn open<S: Store>(federation: &Federation<S>) -> anyhow::Result<Self> {
        let ca = FederationCa::create()?;
        let server = ca.identity(&ca.issue_aggregator(&["127.0.0.1".into()])?)?;
        let endpoint = Arc::new(AggregatorEndpoint::bind(
            "127.0.0.1:0".parse()?,
            &server,
            TransportSettings::default(),
        )?);
        let addr = endpoint.local_addr()?.to_string();
        let (joined_tx, mut joined) = tokio::sync::mpsc::channel(64);
        tokio::spawn(accept_nodes(
            endpoint.clone(),
            joined_tx,
            federation.standing(),
            Duration::from_secs(10),
        ));
        let admissions = federation.admissions();
        tokio::spawn(async move {
            while let Some(node) = joined.recv().await {
                if !admissions.admit_greeted(node).await {
                    break;
                }
            }
        });
        Ok(Self {
            ca,
            addr,
            _endpoint: endpoint,
        })
    }

    /// A certificate of this federation for `merchant`.
    pub fn merchant_identity(&self, merchant: &str) -> anyhow::Result<Identity> {
        Ok(self.ca.identity(&self.ca.issue_merchant(merchant)?)?)
    }

    /// Dials the aggregator as `merchant` over QUIC and serves rounds in a task; `fault`
    /// may stop the node at a chosen [`Moment`] (as if it crashed).
    pub async fn spawn_node(
        &self,
        mut participant: Participant,
        merchant: &str,
        mut fault: impl FnMut(Moment<'_>) -> bool + Send + 'static,
    ) -> JoinHandle<Result<(SessionEnd, Participant), NodeError>> {
        let identity = self
            .merchant_identity(merchant)
            .expect("a merchant certificate");
        let addr = self.addr.clone();
        tokio::spawn(async move {
            let settings = TransportSettings::default();
            let (mut link, welcome) = join(&addr, "127.0.0.1", &identity, &settings, None)
                .await
                .map_err(|e| NodeError::Protocol(e.to_string()))?;
            let end = participant
                .serve_welcomed(&mut link, &welcome, &mut fault)
                .await?;
            Ok((end, participant))
        })
    }
}
