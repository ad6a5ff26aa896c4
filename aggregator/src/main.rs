//! `hansa-aggregator`: provision a federation, and serve nodes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hansa_aggregator::config::AggregatorConfig;
use hansa_aggregator::provision::{provision, Report};
use hansa_aggregator::serve::{accept_nodes, JoinedNode, Standing};
use hansa_aggregator::status::StatusReport;
use hansa_aggregator::store::{SledStore, StoreOptions};
use hansa_protocol::messages::{ErrorCode, ErrorMessage};
use hansa_protocol::{AggregatorEndpoint, CloseCode, Message};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Hansa's aggregator: provisions merchants and serves federated rounds.
#[derive(Parser)]
#[command(name = "hansa-aggregator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the federation CA (once), the aggregator's certificate and one certificate
    /// per merchant. Run again to add merchants; the CA and existing merchants are kept.
    Provision {
        /// Folder for the CA and every credential.
        #[arg(long)]
        out: PathBuf,
        /// DNS name or IP address nodes will dial the aggregator by (repeatable).
        #[arg(long = "server-name", required = true)]
        server_names: Vec<String>,
        /// Merchant id to issue a certificate for (repeatable).
        #[arg(long = "merchant")]
        merchants: Vec<String>,
    },
    /// Accept nodes over QUIC with mutual TLS and greet them.
    Serve {
        /// The aggregator's TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show rounds, metrics, privacy spent and nodes from a store; needs no running server.
    Status {
        /// The aggregator's store directory.
        #[arg(long)]
        store: PathBuf,
    },
    /// Write one round's global model to a safetensors file.
    Export {
        /// The aggregator's store directory.
        #[arg(long)]
        store: PathBuf,
        /// The round whose global model to write (0: the initial model).
        #[arg(long)]
        round: u64,
        /// The .safetensors file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Provision {
            out,
            server_names,
            merchants,
        } => provision(&out, &server_names, &merchants)
            .map(|report| print_report(&out, &report))
            .map_err(anyhow::Error::from),
        Command::Serve { config } => serve(&config),
        Command::Status { store } => status(&store),
        Command::Export { store, round, out } => export(&store, round, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hansa-aggregator: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opens an existing store; sled would silently create one at a mistyped path.
fn open_store(dir: &Path) -> anyhow::Result<SledStore> {
    if !dir.is_dir() {
        anyhow::bail!("store directory {} does not exist", dir.display());
    }
    Ok(SledStore::open(dir, StoreOptions::default())?)
}

fn status(dir: &Path) -> anyhow::Result<()> {
    let store = open_store(dir)?;
    print!("{}", StatusReport::read(&store)?);
    Ok(())
}

fn export(dir: &Path, round: u64, out: &Path) -> anyhow::Result<()> {
    let store = open_store(dir)?;
    let summary = hansa_aggregator::export::export_round(&store, round, out)?;
    println!(
        "wrote round {round}'s global model to {}: {} tensors, {} values, {} bytes",
        out.display(),
        summary.tensors,
        summary.values,
        summary.bytes
    );
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn print_report(out: &Path, report: &Report) {
    if report.ca_created {
        println!("created the federation CA in {}", out.display());
    } else {
        println!("kept the existing federation CA in {}", out.display());
    }
    println!("wrote:");
    for path in &report.written {
        println!("  {}", path.display());
    }
    for merchant in &report.merchants_kept {
        println!("merchant {merchant}: already provisioned, left as it was");
    }
    for (merchant, dir) in &report.merchants_added {
        println!(
            "merchant {merchant}: hand over {} (ca.pem, cert.pem, key.pem) over a safe channel; \
             key.pem is its private key",
            dir.display()
        );
    }
    println!(
        "the aggregator uses {}; keep {} offline-safe: it signs every merchant",
        out.join("aggregator").display(),
        out.join("ca.key").display()
    );
}

fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = AggregatorConfig::load(config_path)?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let identity = config
        .tls
        .load(base)
        .with_context(|| format!("config file {}: [tls]", config_path.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let endpoint = AggregatorEndpoint::bind(config.listen, &identity, config.transport.clone())
            .with_context(|| format!("listening on {}", config.listen))?;
        let endpoint = Arc::new(endpoint);
        info!(addr = %endpoint.local_addr()?, "listening for nodes");

        let (joined_tx, mut joined) = mpsc::channel(64);
        let hello_timeout = Duration::from_millis(config.transport.hello_timeout_ms);
        // No rounds yet: the standing stays at round 0 for now.
        let (_standing_tx, standing) = watch::channel(Standing::default());
        tokio::spawn(accept_nodes(
            endpoint.clone(),
            joined_tx,
            standing,
            hello_timeout,
        ));

        loop {
            tokio::select! {
                node = joined.recv() => match node {
                    Some(node) => { tokio::spawn(hold(node)); }
                    None => break,
                },
                signal = tokio::signal::ctrl_c() => {
                    signal.context("listening for Ctrl-C")?;
                    info!("Ctrl-C: closing every connection");
                    break;
                }
            }
        }
        endpoint
            .shutdown(CloseCode::Shutdown, "aggregator shutting down")
            .await;
        Ok(())
    })
}

/// Keeps a joined node's link open until it leaves. No rounds run yet: any message is
/// answered with an error.
// Limitation: `serve` authenticates and greets nodes but runs no rounds yet (handing the
// joined nodes to the round engine in `round` would lift it).
async fn hold(node: JoinedNode) {
    let JoinedNode { mut link, .. } = node;
    let merchant = link.merchant().clone();
    loop {
        match link.recv().await {
            Ok(message) => {
                warn!(%merchant, kind = message.kind(), "message outside a round");
                let reply = Message::Error(ErrorMessage {
                    code: ErrorCode::UnexpectedMessage,
                    detail: format!("no round is running; `{}` not expected", message.kind()),
                });
                if link.send(&reply).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                info!(%merchant, reason = %e, "merchant left");
                break;
            }
        }
    }
}
