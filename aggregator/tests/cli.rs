//! The `hansa-aggregator` binary: provisioning, config errors, Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn aggregator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hansa-aggregator"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn provision(out: &Path, merchants: &[&str]) -> Output {
    let mut args = vec![
        "provision",
        "--out",
        out.to_str().unwrap(),
        "--server-name",
        "localhost",
        "--server-name",
        "127.0.0.1",
    ];
    for m in merchants {
        args.extend(["--merchant", m]);
    }
    aggregator(&args)
}

#[test]
fn provision_creates_the_ca_once_and_adds_merchants() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let first = provision(&out, &["merchant-001", "merchant-002"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let stdout = text(&first.stdout);
    assert!(stdout.contains("created the federation CA"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "merchant merchant-002: hand over {}",
            out.join("merchants/merchant-002").display()
        )),
        "{stdout}"
    );
    let ca = std::fs::read(out.join("ca.pem")).unwrap();

    let second = provision(&out, &["merchant-001", "merchant-003"]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let stdout = text(&second.stdout);
    assert!(
        stdout.contains("kept the existing federation CA"),
        "{stdout}"
    );
    assert!(
        stdout.contains("merchant merchant-001: already provisioned"),
        "{stdout}"
    );
    assert!(
        stdout.contains("merchant merchant-003: hand over"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca);
}

#[test]
fn provision_refuses_a_merchant_id_that_is_not_a_safe_name() {
    let dir = tempfile::tempdir().unwrap();
    let run = provision(dir.path(), &["../escape"]);
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("merchant id `../escape` is invalid"),
        "{}",
        text(&run.stderr)
    );
    assert!(
        !dir.path().join("ca.pem").exists(),
        "nothing may be written"
    );
}

fn serve_with(config: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aggregator.toml");
    std::fs::write(&path, config).unwrap();
    let run = aggregator(&["serve", "--config", path.to_str().unwrap()]);
    (run, path.display().to_string())
}

#[test]
fn a_missing_field_is_named_with_the_file() {
    let (run, path) =
        serve_with("listen = \"127.0.0.1:0\"\n[tls]\nca_cert = \"ca.pem\"\ncert = \"cert.pem\"\n");
    assert!(!run.status.success());
    let stderr = text(&run.stderr);
    assert!(stderr.contains(&format!("config file {path}")), "{stderr}");
    assert!(stderr.contains("missing field `key`"), "{stderr}");
}

#[test]
fn a_wrongly_typed_field_is_named_with_the_file() {
    let (run, path) =
        serve_with("listen = 7447\n[tls]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\n");
    assert!(!run.status.success());
    let stderr = text(&run.stderr);
    assert!(stderr.contains(&format!("config file {path}")), "{stderr}");
    assert!(stderr.contains("listen = 7447"), "{stderr}");
    assert!(stderr.contains("invalid type: integer `7447`"), "{stderr}");
}

#[test]
fn a_missing_key_file_is_named() {
    let (run, _) = serve_with("[tls]\nca_cert = \"nowhere/ca.pem\"\ncert = \"b\"\nkey = \"c\"\n");
    assert!(!run.status.success());
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("cannot read CA certificate from"),
        "{stderr}"
    );
    assert!(stderr.contains("nowhere/ca.pem"), "{stderr}");
}

#[test]
fn serve_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    assert!(provision(&dir.path().join("pki"), &[]).status.success());
    let example = include_str!("../aggregator.example.toml").replace("0.0.0.0:7447", "127.0.0.1:0");
    let config = dir.path().join("aggregator.toml");
    std::fs::write(&config, example).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_hansa-aggregator"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("listening for nodes"));
    assert!(
        listening.is_some(),
        "the aggregator never said it was listening"
    );

    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit 10 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("Ctrl-C: closing every connection")),
        "{rest:?}"
    );
}
