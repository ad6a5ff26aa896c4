//! `hansa-aggregator`: provision a federation, serve its rounds, and inspect its store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hansa_aggregator::config::AggregatorConfig;
use hansa_aggregator::provision::{provision, Report};
use hansa_aggregator::round::Federation;
use hansa_aggregator::serve::{accept_nodes, JoinedNode};
use hansa_aggregator::status::StatusReport;
use hansa_aggregator::store::{SledStore, StoreOptions};
use hansa_protocol::{AggregatorEndpoint, CloseCode, ParameterSet};
use tokio::sync::mpsc;
use tracing::info;

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
    /// Serve the federation: accept nodes over QUIC with mutual TLS and run rounds until
    /// `federation.rounds` are committed (resuming after the last committed round).
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
    let store_dir = base.join(&config.store);
    let store = SledStore::open(
        &store_dir,
        StoreOptions {
            keep_checkpoints: config.keep_checkpoints,
        },
    )
    .with_context(|| format!("config file {}: store", config_path.display()))?;
    let initial = match &config.initial_model {
        Some(path) => {
            let path = base.join(path);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("initial model {}", path.display()))?;
            let model = ParameterSet::from_safetensors(&bytes)
                .with_context(|| format!("initial model {}", path.display()))?;
            Some((model, path.display().to_string()))
        }
        None => None,
    };
    let mut federation = Federation::open(config.federation.clone(), store, initial)
        .with_context(|| format!("opening the federation in {}", store_dir.display()))?;

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let endpoint = AggregatorEndpoint::bind(config.listen, &identity, config.transport.clone())
            .with_context(|| format!("listening on {}", config.listen))?;
        let endpoint = Arc::new(endpoint);
        // Registered before the aggregator says it listens, so no Ctrl-C is missed.
        let mut interrupt = interrupt_signal()?;
        info!(addr = %endpoint.local_addr()?, "listening for nodes");

        let (joined_tx, mut joined) = mpsc::channel::<JoinedNode>(64);
        let hello_timeout = Duration::from_millis(config.transport.hello_timeout_ms);
        tokio::spawn(accept_nodes(
            endpoint.clone(),
            joined_tx,
            federation.standing(),
            hello_timeout,
        ));
        let admissions = federation.admissions();
        tokio::spawn(async move {
            while let Some(node) = joined.recv().await {
                if !admissions.admit_greeted(node).await {
                    break;
                }
            }
        });

        let outcome = tokio::select! {
            outcome = federation.run() => Some(outcome),
            _ = interrupt.recv() => {
                info!("Ctrl-C: closing every connection; the round in flight is abandoned, committed rounds are kept");
                None
            }
        };
        endpoint
            .shutdown(CloseCode::Shutdown, "aggregator shutting down")
            .await;
        match outcome {
            Some(Ok(summaries)) => {
                info!(
                    rounds = federation.last_committed(),
                    this_run = summaries.len(),
                    "every configured round is committed"
                );
                Ok(())
            }
            Some(Err(e)) => Err(anyhow::Error::from(e).context("the federation stopped")),
            None => Ok(()),
        }
    })
}

/// SIGINT (Ctrl-C), registered now rather than on first poll.
fn interrupt_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("listening for Ctrl-C")
}
