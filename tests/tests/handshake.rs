//! End to end over real QUIC on loopback with mutual TLS: an aggregator and three nodes
//! exchange hello and welcome; a node from another CA is refused while the others join.

use std::sync::Arc;
use std::time::Duration;

use hansa_aggregator::provision::FederationCa;
use hansa_aggregator::serve::{accept_nodes, JoinedNode, Standing, SOFTWARE_VERSION};
use hansa_node::join::{join, JoinError};
use hansa_protocol::{AggregatorEndpoint, CloseCode, Identity, LinkError, TransportSettings};
use hansa_sim::demo::run_demo;
use tokio::sync::{mpsc, watch};

struct Federation {
    ca: FederationCa,
    endpoint: Arc<AggregatorEndpoint>,
    addr: String,
    joined: mpsc::Receiver<JoinedNode>,
    _standing: watch::Sender<Standing>,
}

fn start(standing: Standing) -> Federation {
    let ca = FederationCa::create().unwrap();
    let server = ca
        .identity(
            &ca.issue_aggregator(&["localhost".into(), "127.0.0.1".into()])
                .unwrap(),
        )
        .unwrap();
    let endpoint = Arc::new(
        AggregatorEndpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &server,
            TransportSettings::default(),
        )
        .unwrap(),
    );
    let addr = endpoint.local_addr().unwrap().to_string();
    let (tx, joined) = mpsc::channel(8);
    let (standing_tx, standing_rx) = watch::channel(standing);
    tokio::spawn(accept_nodes(
        endpoint.clone(),
        tx,
        standing_rx,
        Duration::from_secs(5),
    ));
    Federation {
        ca,
        endpoint,
        addr,
        joined,
        _standing: standing_tx,
    }
}

fn merchant(ca: &FederationCa, id: &str) -> Identity {
    ca.identity(&ca.issue_merchant(id).unwrap()).unwrap()
}

async fn next_joined(federation: &mut Federation) -> JoinedNode {
    tokio::time::timeout(Duration::from_secs(10), federation.joined.recv())
        .await
        .expect("no node joined within 10 s")
        .expect("the accept loop stopped")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_and_three_nodes_exchange_hello_and_welcome() {
    let standing = Standing {
        current_round: 4,
        wants_initial_model: false,
    };
    let mut federation = start(standing);
    let mut nodes = Vec::new();
    for id in ["merchant-001", "merchant-002", "merchant-003"] {
        let identity = merchant(&federation.ca, id);
        let addr = federation.addr.clone();
        nodes.push(tokio::spawn(async move {
            join(
                &addr,
                "localhost",
                &identity,
                &TransportSettings::default(),
                Some(3),
            )
            .await
        }));
    }

    let mut seen = Vec::new();
    let mut aggregator_side = Vec::new();
    for _ in 0..3 {
        let node = next_joined(&mut federation).await;
        assert_eq!(node.hello.merchant, *node.link.merchant());
        assert_eq!(node.hello.last_round_seen, Some(3));
        assert_eq!(
            node.hello.software_version,
            hansa_node::join::SOFTWARE_VERSION
        );
        assert_eq!(node.peer.unwrap().ip().to_string(), "127.0.0.1");
        seen.push(node.link.merchant().clone());
        aggregator_side.push(node);
    }
    seen.sort();
    assert_eq!(seen, ["merchant-001", "merchant-002", "merchant-003"]);

    let mut links = Vec::new();
    for (node, id) in nodes
        .into_iter()
        .zip(["merchant-001", "merchant-002", "merchant-003"])
    {
        let (link, welcome) = node.await.unwrap().unwrap();
        assert_eq!(welcome.merchant, id);
        assert_eq!(welcome.current_round, 4);
        assert_eq!(welcome.software_version, SOFTWARE_VERSION);
        links.push(link);
    }

    // The aggregator shuts down: every node is told why.
    federation
        .endpoint
        .shutdown(CloseCode::Shutdown, "aggregator shutting down")
        .await;
    for mut link in links {
        let err = tokio::time::timeout(Duration::from_secs(5), link.recv())
            .await
            .unwrap()
            .unwrap_err();
        match err {
            LinkError::Closed { reason, .. } => {
                assert!(reason.contains("aggregator shutting down"), "{reason}")
            }
            other => panic!("expected Closed, got {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_federation_is_refused_while_the_others_join() {
    let mut federation = start(Standing::default());
    let other = FederationCa::create().unwrap();
    // Signed by another CA, but trusting this federation's CA so that it gets as far as
    // presenting its certificate.
    let rogue_credentials = other.issue_merchant("merchant-001").unwrap();
    let rogue = Identity::from_pem(
        federation.ca.cert_pem().as_bytes(),
        rogue_credentials.cert_pem.as_bytes(),
        rogue_credentials.key_pem.as_bytes(),
    )
    .unwrap();
    let err = join(
        &federation.addr,
        "localhost",
        &rogue,
        &TransportSettings::default(),
        None,
    )
    .await
    .unwrap_err();
    match &err {
        // Both CAs are called "Hansa federation CA": the signature is what fails.
        JoinError::Handshake(hansa_protocol::HandshakeError::UnknownIssuer { detail, .. }) => {
            assert!(detail.contains("BadSignature"), "{detail}")
        }
        other => panic!("expected a refusal of the certificate, got {other}"),
    }

    for id in ["merchant-002", "merchant-003", "merchant-004"] {
        let identity = merchant(&federation.ca, id);
        let (link, welcome) = join(
            &federation.addr,
            "localhost",
            &identity,
            &TransportSettings::default(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(welcome.merchant, id);
        assert_eq!(next_joined(&mut federation).await.link.merchant(), id);
        drop(link);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_handshakes_three_merchants() {
    let report = run_demo(3).await.unwrap();
    let merchants: Vec<_> = report
        .handshakes
        .iter()
        .map(|h| h.merchant.as_str())
        .collect();
    assert_eq!(merchants, ["merchant-001", "merchant-002", "merchant-003"]);
    for h in &report.handshakes {
        assert_eq!(h.welcome.merchant, h.merchant);
        assert_eq!(h.welcome.current_round, 0);
        assert_eq!(h.peer.unwrap().ip(), report.aggregator.ip());
    }
}
