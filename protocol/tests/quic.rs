//! QUIC + mutual TLS on loopback: hellos, and every kind of bad input refused by name
//! while the aggregator keeps serving well-behaved nodes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{hello, raw_connect, serve, Seen, TestCa};
use hansa_protocol::messages::GlobalParameters;
use hansa_protocol::{
    connect, CloseCode, FrameError, HandshakeError, Identity, LinkError, Message, ParameterSet,
    Scope, TransportSettings, PROTOCOL_VERSION,
};
use tokio::sync::mpsc::UnboundedReceiver;

async fn next(seen: &mut UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("the aggregator reported nothing within 10 s")
        .expect("the aggregator stopped")
}

/// A good node says hello and gets its welcome: the aggregator still serves.
async fn good_node_is_served(
    ca: &TestCa,
    addr: std::net::SocketAddr,
    seen: &mut UnboundedReceiver<Seen>,
    id: &str,
) {
    let identity = ca.merchant(id, ca, false);
    let mut link = connect(addr, "localhost", &identity, &TransportSettings::default())
        .await
        .unwrap();
    link.send(&hello(id)).await.unwrap();
    match link.recv().await.unwrap() {
        Message::Welcome(w) => assert_eq!(w.merchant, id),
        other => panic!("expected a welcome, got {}", other.kind()),
    }
    match next(seen).await {
        Seen::Hello(merchant, h) => {
            assert_eq!(merchant, id);
            assert_eq!(h.merchant, id);
        }
        other => panic!("expected a hello from {id}, got {other:?}"),
    }
}

/// The close the node was given, as (code, reason).
async fn close_of(link: &mut hansa_protocol::Link) -> String {
    let err = tokio::time::timeout(Duration::from_secs(10), link.recv())
        .await
        .unwrap()
        .unwrap_err();
    match err {
        LinkError::Closed { reason, .. } => reason,
        LinkError::Refused { source, .. } => source.to_string(),
        other => panic!("expected the link closed, got {other}"),
    }
}

#[tokio::test]
async fn merchant_id_comes_from_the_certificate_and_hellos_flow_over_an_ip_name() {
    let ca = TestCa::new("federation");
    let (addr, mut seen) = serve(&ca.aggregator(), TransportSettings::default());
    let identity = ca.merchant("merchant-007", &ca, false);
    // Verified under its IP address SAN rather than a DNS name.
    let mut link = connect(addr, "127.0.0.1", &identity, &TransportSettings::default())
        .await
        .unwrap();
    assert_eq!(link.merchant(), "merchant-007");
    // The hello claims another id: the aggregator's link still says the certificate's.
    link.send(&hello("someone-else")).await.unwrap();
    match next(&mut seen).await {
        Seen::Hello(merchant, h) => {
            assert_eq!(merchant, "merchant-007");
            assert_eq!(h.merchant, "someone-else");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_parameter_set_crosses_intact() {
    let ca = TestCa::new("federation");
    let server = ca.aggregator();
    let endpoint = hansa_protocol::AggregatorEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &server,
        TransportSettings::default(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let identity = ca.merchant("merchant-001", &ca, false);
    let node = tokio::spawn(async move {
        let mut link = connect(addr, "localhost", &identity, &TransportSettings::default())
            .await
            .unwrap();
        link.send(&hello("merchant-001")).await.unwrap();
        link.recv().await.unwrap()
    });
    let mut link = endpoint.accept().await.unwrap().establish().await.unwrap();
    assert!(matches!(link.recv().await.unwrap(), Message::Hello(_)));
    let mut parameters = ParameterSet::new();
    let values: Vec<f32> = (0..300_000).map(|i| i as f32 * 0.5 - 7.0).collect();
    parameters
        .push("item_embedding", vec![1000, 300], values, Scope::Shared)
        .unwrap();
    parameters
        .push("bias", vec![], vec![-1.25], Scope::Shared)
        .unwrap();
    let sent = Message::GlobalParameters(GlobalParameters {
        round: 3,
        parameters,
    });
    link.send(&sent).await.unwrap();
    assert_eq!(node.await.unwrap(), sent);
}

#[tokio::test]
async fn a_node_without_a_client_certificate_is_refused_at_the_handshake() {
    let ca = TestCa::new("federation");
    let (addr, mut seen) = serve(&ca.aggregator(), TransportSettings::default());

    let mut roots = rustls::RootCertStore::empty();
    let ca_der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(ca.pem.as_bytes()).unwrap();
    roots.add(ca_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![hansa_protocol::tls::ALPN.to_vec()];
    // TLS 1.3 may let the client finish before the server refuses; either way the
    // connection dies with the certificate-required alert.
    if let Ok(connection) = raw_connect(addr, tls).await {
        let _ = connection.closed().await;
    }

    match next(&mut seen).await {
        Seen::Refused(HandshakeError::NoClientCertificate { peer }) => {
            assert_eq!(peer.ip().to_string(), "127.0.0.1")
        }
        other => panic!("expected NoClientCertificate, got {other:?}"),
    }
    good_node_is_served(&ca, addr, &mut seen, "merchant-002").await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let ca = TestCa::new("federation");
    let rogue = TestCa::new("rogue");
    let (addr, mut seen) = serve(&ca.aggregator(), TransportSettings::default());

    let identity = rogue.merchant("merchant-666", &ca, false);
    if let Ok(mut link) = connect(addr, "localhost", &identity, &TransportSettings::default()).await
    {
        let _ = link.send(&hello("merchant-666")).await;
        let reason = close_of(&mut link).await;
        assert!(
            reason.contains("certificate not signed by the federation CA"),
            "{reason}"
        );
    }
    match next(&mut seen).await {
        Seen::Refused(HandshakeError::UnknownIssuer { .. }) => {}
        other => panic!("expected UnknownIssuer, got {other:?}"),
    }
    good_node_is_served(&ca, addr, &mut seen, "merchant-003").await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused_at_the_handshake() {
    let ca = TestCa::new("federation");
    let (addr, mut seen) = serve(&ca.aggregator(), TransportSettings::default());

    let identity = ca.merchant("merchant-old", &ca, true);
    if let Ok(mut link) = connect(addr, "localhost", &identity, &TransportSettings::default()).await
    {
        let _ = link.send(&hello("merchant-old")).await;
        let _ = close_of(&mut link).await;
    }
    match next(&mut seen).await {
        Seen::Refused(HandshakeError::ExpiredCertificate { detail, .. }) => {
            assert!(detail.contains("expired"), "{detail}")
        }
        other => panic!("expected ExpiredCertificate, got {other:?}"),
    }
    good_node_is_served(&ca, addr, &mut seen, "merchant-004").await;
}

#[tokio::test]
async fn a_node_refuses_an_aggregator_from_another_ca() {
    let ca = TestCa::new("federation");
    let rogue = TestCa::new("rogue");
    let (addr, _seen) = serve(&rogue.aggregator(), TransportSettings::default());
    let identity = ca.merchant("merchant-005", &ca, false);
    let err = connect(addr, "localhost", &identity, &TransportSettings::default())
        .await
        .unwrap_err();
    assert!(matches!(err, HandshakeError::UnknownIssuer { .. }), "{err}");
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_that_connection_only() {
    let ca = TestCa::new("federation");
    let settings = TransportSettings {
        max_frame_bytes: 1 << 20,
        ..TransportSettings::default()
    };
    let (addr, mut seen) = serve(&ca.aggregator(), settings);

    let identity = ca.merchant("merchant-big", &ca, false);
    let mut link = connect(addr, "localhost", &identity, &TransportSettings::default())
        .await
        .unwrap();
    let mut parameters = ParameterSet::new();
    parameters
        .push("w", vec![512, 1024], vec![0.5; 512 * 1024], Scope::Shared)
        .unwrap();
    let big = Message::GlobalParameters(GlobalParameters {
        round: 1,
        parameters,
    });
    let _ = link.send(&big).await;

    match next(&mut seen).await {
        Seen::Failed(
            merchant,
            LinkError::Frame {
                source: FrameError::FrameTooLarge { len, limit },
                ..
            },
        ) => {
            assert_eq!(merchant, "merchant-big");
            assert_eq!(limit, 1 << 20);
            assert!(len > 2 << 20, "{len}");
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let reason = close_of(&mut link).await;
    // 512 Ki values of 4 bytes, plus preamble and head: the node is told why, by code.
    let code = CloseCode::FrameTooLarge as u32;
    assert!(
        reason.starts_with("closed by peer: frame of 2097"),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!("exceeds the limit of 1048576 bytes (code {code})")),
        "{reason}"
    );
    good_node_is_served(&ca, addr, &mut seen, "merchant-006").await;
}

/// Opens a raw authenticated stream and writes `bytes`, then finishes the stream.
async fn send_raw(
    ca: &TestCa,
    addr: std::net::SocketAddr,
    id: &str,
    bytes: &[u8],
) -> quinn::Connection {
    let identity: Identity = ca.merchant(id, ca, false);
    let connection = raw_connect(addr, identity.client_config().unwrap())
        .await
        .unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    connection
}

#[tokio::test]
async fn a_truncated_frame_is_named_and_the_server_keeps_serving() {
    let ca = TestCa::new("federation");
    let (addr, mut seen) = serve(&ca.aggregator(), TransportSettings::default());
    // A frame announcing 100 bytes, of which 10 arrive before the stream ends.
    let mut bytes = 100u64.to_le_bytes().to_vec();
    bytes.extend(PROTOCOL_VERSION.to_le_bytes());
    bytes.extend(90u32.to_le_bytes());
    bytes.extend([0u8; 4]);
    let _connection = send_raw(&ca, addr, "merchant-cut", &bytes).await;
    match next(&mut seen).await {
        Seen::Failed(
            merchant,
            LinkError::Frame {
                source: FrameError::Truncated { part },
                ..
            },
        ) => {
            assert_eq!(merchant, "merchant-cut");
            assert_eq!(part, "head");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    good_node_is_served(&ca, addr, &mut seen, "merchant-008").await;
}

/// Deterministic noise (a 64-bit LCG), standing in for random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

#[tokio::test]
async fn random_bytes_are_refused_by_name_and_the_server_keeps_serving() {
    let ca = TestCa::new("federation");
    let (addr, mut seen) = serve(&ca.aggregator(), TransportSettings::default());

    // Pure noise: its first eight bytes announce an absurd length.
    let junk = noise(256, 7);
    let announced = u64::from_le_bytes(junk[..8].try_into().unwrap());
    let connection = send_raw(&ca, addr, "merchant-noise", &junk).await;
    match next(&mut seen).await {
        Seen::Failed(
            _,
            LinkError::Frame {
                source: FrameError::FrameTooLarge { len, .. },
                ..
            },
        ) => {
            assert_eq!(len, announced)
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let closed = connection.closed().await;
    assert!(closed.to_string().contains("exceeds the limit"), "{closed}");

    // Noise behind a well-formed length and version: the head does not decode.
    let mut framed = 206u64.to_le_bytes().to_vec();
    framed.extend(PROTOCOL_VERSION.to_le_bytes());
    framed.extend(200u32.to_le_bytes());
    framed.extend(noise(200, 11));
    let _connection = send_raw(&ca, addr, "merchant-noise2", &framed).await;
    match next(&mut seen).await {
        Seen::Failed(
            _,
            LinkError::Frame {
                source: FrameError::Decode(_),
                ..
            },
        ) => {}
        other => panic!("expected Decode, got {other:?}"),
    }
    good_node_is_served(&ca, addr, &mut seen, "merchant-010").await;
}

#[tokio::test]
async fn an_unknown_protocol_version_is_refused_by_name() {
    let ca = TestCa::new("federation");
    let (addr, mut seen) = serve(&ca.aggregator(), TransportSettings::default());
    let identity = ca.merchant("merchant-future", &ca, false);
    let link = connect(addr, "localhost", &identity, &TransportSettings::default())
        .await
        .unwrap();
    let (mut tx, rx) = link.split();
    tx.send_with_version(PROTOCOL_VERSION + 1, &hello("merchant-future"))
        .await
        .unwrap();
    match next(&mut seen).await {
        Seen::Failed(
            _,
            LinkError::Frame {
                source: FrameError::UnsupportedVersion { got, supported },
                ..
            },
        ) => {
            assert_eq!(got, PROTOCOL_VERSION + 1);
            assert_eq!(supported, PROTOCOL_VERSION);
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    let mut link = hansa_protocol::Link::unsplit(tx, rx);
    let reason = close_of(&mut link).await;
    let expected = format!(
        "protocol version {} is not supported; this build speaks version {}",
        PROTOCOL_VERSION + 1,
        PROTOCOL_VERSION
    );
    assert!(reason.contains(&expected), "{reason}");
    good_node_is_served(&ca, addr, &mut seen, "merchant-011").await;
}
