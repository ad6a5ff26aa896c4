//! Crash and resume with the real binaries: an aggregator killed with SIGKILL in the
//! middle of a round restarts from its store, re-runs the interrupted round, and never
//! counts an update twice; its nodes reconnect by themselves.
//!
//! The binaries are the ones `cargo test --workspace` builds into the target folder for
//! the aggregator's and the node's own integration tests.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hansa_aggregator::provision::provision;
use hansa_aggregator::store::{SledStore, Store, StoreOptions};

const MERCHANTS: [&str; 3] = ["merchant-a", "merchant-b", "merchant-c"];
const ROUNDS: u64 = 4;

fn binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p hansa-node -p hansa-aggregator`) first",
        path.display()
    );
    path
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_configs(dir: &Path, port: u16) {
    let transport = "[transport]\nkeep_alive_interval_ms = 500\nidle_timeout_ms = 3000\n";
    let aggregator = format!(
        "listen = \"127.0.0.1:{port}\"\nstore = \"store\"\n\
         [tls]\nca_cert = \"pki/aggregator/ca.pem\"\ncert = \"pki/aggregator/cert.pem\"\nkey = \"pki/aggregator/key.pem\"\n\
         {transport}\
         [federation]\nrounds = {ROUNDS}\nmin_cohort = 3\ncohort_wait_ms = 60000\ncohort_grace_ms = 200\n\
         update_deadline_ms = 60000\nevaluation_deadline_ms = 30000\nlocal_epochs = 1\n\
         learning_rate = 0.005\nbatch_size = 1024\n"
    );
    std::fs::write(dir.join("aggregator.toml"), aggregator).unwrap();
    let movielens = hansa_tests::movielens_dir();
    for (index, merchant) in MERCHANTS.iter().enumerate() {
        let node = format!(
            "aggregator = \"127.0.0.1:{port}\"\nstore = \"{merchant}-store\"\n\
             [tls]\nca_cert = \"pki/merchants/{merchant}/ca.pem\"\ncert = \"pki/merchants/{merchant}/cert.pem\"\nkey = \"pki/merchants/{merchant}/key.pem\"\n\
             {transport}\
             [learning]\ndataset = \"movielens-100k\"\npath = \"{}\"\npart = {{ of = 3, index = {index} }}\n\
             [reconnect]\ninitial_backoff_ms = 200\nmax_backoff_ms = 1000\n",
            movielens.display()
        );
        std::fs::write(dir.join(format!("{merchant}.toml")), node).unwrap();
    }
}

/// A child process whose stderr lines arrive on a channel, killed when dropped.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn start(binary: &Path, args: &[&str], dir: &Path) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a line containing every one of `words`; panics after `timeout`.
    fn wait_for(&self, words: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if words.iter().all(|w| line.contains(w)) => return line,
                Ok(line) => seen.push(line),
                Err(e) => {
                    let tail = seen[seen.len().saturating_sub(15)..].join("\n");
                    panic!("no line with {words:?} within {timeout:?} ({e}); last lines:\n{tail}")
                }
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn aggregator_killed_mid_round_resumes_from_its_store_without_counting_twice() {
    let dir = tempfile::tempdir().unwrap();
    let merchants: Vec<String> = MERCHANTS.iter().map(|m| m.to_string()).collect();
    provision(
        &dir.path().join("pki"),
        &["127.0.0.1".to_string()],
        &merchants,
    )
    .unwrap();
    let port = free_udp_port();
    write_configs(dir.path(), port);
    let (aggregator_bin, node_bin) = (binary("hansa-aggregator"), binary("hansa-node"));
    let serve = ["serve", "--config", "aggregator.toml"];

    let mut aggregator = Process::start(&aggregator_bin, &serve, dir.path());
    aggregator.wait_for(&["listening for nodes"], Duration::from_secs(20));
    let mut nodes: Vec<Process> = MERCHANTS
        .iter()
        .map(|m| {
            let config = format!("{m}.toml");
            Process::start(&node_bin, &["join", "--config", &config], dir.path())
        })
        .collect();

    // Kill the aggregator once round 2 has started, before it commits.
    aggregator.wait_for(&["round committed", "round=1"], Duration::from_secs(120));
    aggregator.wait_for(&["round starts", "round=2"], Duration::from_secs(60));
    aggregator.child.kill().unwrap(); // SIGKILL
    aggregator.wait_exit(Duration::from_secs(10));
    drop(aggregator);

    {
        let store = SledStore::open(dir.path().join("store"), StoreOptions::default()).unwrap();
        let last = store.last_committed_round().unwrap();
        assert!(
            last == Some(1) || last == Some(2),
            "committed before the kill: {last:?}"
        );
    }

    // Restart: it resumes after the last committed round; the nodes come back by themselves.
    let mut aggregator = Process::start(&aggregator_bin, &serve, dir.path());
    aggregator.wait_for(&["federation opened"], Duration::from_secs(20));
    aggregator.wait_for(
        &["every configured round is committed"],
        Duration::from_secs(240),
    );
    assert!(aggregator.wait_exit(Duration::from_secs(20)).success());
    for node in &mut nodes {
        assert!(
            node.wait_exit(Duration::from_secs(20)).success(),
            "a node failed"
        );
    }

    let store = SledStore::open(dir.path().join("store"), StoreOptions::default()).unwrap();
    assert_eq!(store.last_committed_round().unwrap(), Some(ROUNDS));
    let rounds = store.rounds().unwrap();
    let numbers: Vec<u64> = rounds.iter().map(|r| r.round).collect();
    assert_eq!(
        numbers,
        (1..=ROUNDS).collect::<Vec<_>>(),
        "each round committed once"
    );
    for record in &rounds {
        assert_eq!(
            record.training.contributors, MERCHANTS,
            "round {}",
            record.round
        );
    }
    // One ledger entry per round: no round, and so no update, was counted twice.
    let ledger = store.ledger().unwrap();
    assert_eq!(ledger.iter().map(|e| e.round).collect::<Vec<_>>(), numbers);
    assert!(store
        .latest_checkpoint()
        .unwrap()
        .is_some_and(|(r, _)| r == ROUNDS));
    let rmse = |r| {
        let evaluation = store.evaluation(r).unwrap();
        evaluation
            .weighted_mean
            .iter()
            .find(|m| m.name == "rmse")
            .map(|m| m.value)
    };
    let (first, last) = (rmse(1).unwrap(), rmse(ROUNDS).unwrap());
    assert!(
        last < first,
        "RMSE after round {ROUNDS} ({last}) not below round 1 ({first})"
    );
    drop(store);

    // The operator's status works from the store alone.
    let status = Command::new(&aggregator_bin)
        .args(["status", "--store", "store"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("merchant-a"), "{text}");
}
