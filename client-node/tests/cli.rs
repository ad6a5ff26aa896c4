//! The `hansa-node` binary: config errors exit non-zero naming file, field and reason.

use std::process::{Command, Output};

fn join_with(config: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_hansa-node"))
        .args(["join", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    (run, path.display().to_string())
}

fn stderr(run: &Output) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

const TLS: &str = "[tls]\nca_cert = \"ca.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n";
const LEARNING: &str = "[learning]\ndataset = \"movielens-100k\"\npath = \"ml\"\n";

#[test]
fn a_missing_field_is_named_with_the_file() {
    let (run, path) = join_with(TLS);
    assert_eq!(run.status.code(), Some(1));
    let text = stderr(&run);
    assert!(text.contains(&format!("config file {path}")), "{text}");
    assert!(text.contains("missing field `aggregator`"), "{text}");
}

#[test]
fn a_wrongly_typed_field_is_named_with_the_file() {
    let config =
        format!("aggregator = \"127.0.0.1:7447\"\n{TLS}[transport]\nkeep_alive_interval_ms = -5\n");
    let (run, path) = join_with(&config);
    assert_eq!(run.status.code(), Some(1));
    let text = stderr(&run);
    assert!(text.contains(&format!("config file {path}")), "{text}");
    assert!(text.contains("keep_alive_interval_ms = -5"), "{text}");
    assert!(
        text.contains("invalid value: integer `-5`, expected u64"),
        "{text}"
    );
}

#[test]
fn an_unknown_field_is_named() {
    let config = format!("aggregator = \"127.0.0.1:7447\"\nretries = 3\n{TLS}");
    let (run, _) = join_with(&config);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("unknown field `retries`"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn an_aggregator_without_a_port_is_named() {
    let config = format!("aggregator = \"agg.example.com\"\n{TLS}{LEARNING}");
    let (run, path) = join_with(&config);
    assert_eq!(run.status.code(), Some(1));
    let text = stderr(&run);
    assert!(
        text.contains(&format!(
            "config file {path}: field `aggregator`: `agg.example.com` is not host:port"
        )),
        "{text}"
    );
}
