//! Aggregator → node throughput over loopback QUIC with mutual TLS: a 100 MiB parameter
//! set through the protocol layer (framing, codec, link) next to raw quinn writing the
//! same number of bytes to a stream on the same connection settings.
//!
//! Run: `cargo bench -p hansa-protocol --bench throughput`
//! (`HANSA_BENCH_MIB` changes the size, `HANSA_BENCH_RUNS` the number of runs.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hansa_protocol::messages::{GlobalParameters, Hello};
use hansa_protocol::{
    connect, AggregatorEndpoint, Identity, Message, ParameterSet, Scope, TransportSettings,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (aggregator, node) identities under one fresh CA.
fn identities() -> (Identity, Identity) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str, sans: Vec<String>, eku| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &issuer).unwrap().pem();
        Identity::from_pem(
            ca_pem.as_bytes(),
            cert.as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .unwrap()
    };
    (
        leaf(
            "aggregator",
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        leaf("merchant-001", vec![], ExtendedKeyUsagePurpose::ClientAuth),
    )
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

/// One protocol-layer transfer: `GlobalParameters` of `values` f32s, send start to decoded.
async fn protocol_run(server: &Identity, node: &Identity, values: usize) -> Duration {
    let settings = TransportSettings::default();
    let endpoint =
        AggregatorEndpoint::bind("127.0.0.1:0".parse().unwrap(), server, settings.clone()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let node = node.clone();
    let node_task = tokio::spawn(async move {
        let mut link = connect(addr, "localhost", &node, &settings).await.unwrap();
        let hello = Message::Hello(Hello {
            merchant: "merchant-001".into(),
            software_version: "bench".into(),
            last_round_seen: None,
        });
        link.send(&hello).await.unwrap();
        let message = link.recv().await.unwrap();
        let done = Instant::now();
        let Message::GlobalParameters(g) = message else {
            panic!("wrong message")
        };
        assert_eq!(g.parameters.num_values(), values);
        done
    });
    let mut link = endpoint.accept().await.unwrap().establish().await.unwrap();
    link.recv().await.unwrap();

    let mut parameters = ParameterSet::new();
    let data: Vec<f32> = (0..values).map(|i| (i % 1000) as f32 * 1e-3).collect();
    parameters
        .push("weights", vec![values], data, Scope::Shared)
        .unwrap();
    let message = Message::GlobalParameters(GlobalParameters {
        round: 1,
        parameters,
    });

    let start = Instant::now();
    link.send(&message).await.unwrap();
    let done = node_task.await.unwrap();
    done - start
}

/// One raw-quinn transfer of `bytes` on the same TLS and transport settings.
async fn raw_run(server: &Identity, node: &Identity, bytes: usize) -> Duration {
    let settings = TransportSettings::default();
    let transport = Arc::new(settings.quinn_config().unwrap());
    let tls =
        quinn::crypto::rustls::QuicServerConfig::try_from(server.server_config().unwrap()).unwrap();
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(tls));
    server_config.transport_config(transport.clone());
    let endpoint = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr: SocketAddr = endpoint.local_addr().unwrap();

    let tls =
        quinn::crypto::rustls::QuicClientConfig::try_from(node.client_config().unwrap()).unwrap();
    let mut client_config = quinn::ClientConfig::new(Arc::new(tls));
    client_config.transport_config(transport);
    let node_task = tokio::spawn(async move {
        let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        client.set_default_client_config(client_config);
        let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(b"h").await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < bytes {
            match recv.read(&mut buf).await.unwrap() {
                Some(n) => got += n,
                None => break,
            }
        }
        let done = Instant::now();
        assert_eq!(got, bytes);
        done
    });
    let connection = endpoint.accept().await.unwrap().await.unwrap();
    let (mut send, mut recv) = connection.accept_bi().await.unwrap();
    let mut one = [0u8; 1];
    recv.read_exact(&mut one).await.unwrap();
    let payload = vec![7u8; bytes];

    let start = Instant::now();
    send.write_all(&payload).await.unwrap();
    let done = node_task.await.unwrap();
    done - start
}

fn main() {
    let mib = env_or("HANSA_BENCH_MIB", 100);
    let runs = env_or("HANSA_BENCH_RUNS", 5);
    let bytes = mib << 20;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (server, node) = identities();

    let mut raw = Vec::new();
    let mut protocol = Vec::new();
    for _ in 0..runs {
        // Alternate so that both see the same machine state.
        raw.push(mb_per_s(
            bytes,
            runtime.block_on(raw_run(&server, &node, bytes)),
        ));
        protocol.push(mb_per_s(
            bytes,
            runtime.block_on(protocol_run(&server, &node, bytes / 4)),
        ));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (raw_median, protocol_median) = (median(&mut raw), median(&mut protocol));
    println!("aggregator -> node, {mib} MiB, loopback QUIC + mTLS, {runs} runs (MB = 10^6 bytes)");
    println!("raw quinn stream:        median {raw_median:7.1} MB/s  runs {raw:.1?}");
    println!("hansa-protocol Link:     median {protocol_median:7.1} MB/s  runs {protocol:.1?}");
    println!(
        "protocol / raw:          {:.1} %",
        100.0 * protocol_median / raw_median
    );
}
