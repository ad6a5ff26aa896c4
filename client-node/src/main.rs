//! `hansa-node`: a merchant's node.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hansa_node::config::NodeConfig;
use std::time::Duration;

use hansa_node::join::{join, JoinError};
use hansa_node::runtime::{Participant, SessionEnd};
use hansa_node::store::NodeStore;
use hansa_privacy::Ledger;
use hansa_protocol::{CloseCode, HandshakeError};
use tracing::{info, warn};

/// A Hansa merchant node: joins the federation and trains next to its own data.
#[derive(Parser)]
#[command(name = "hansa-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join the federation and take part in its rounds until Ctrl-C, the aggregator's
    /// shutdown, or the privacy budget is spent; reconnects with backoff when the
    /// aggregator is lost.
    Join {
        /// The node's TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Join { config } => run(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hansa-node: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let identity = config
        .tls
        .load(base)
        .with_context(|| format!("config file {}: [tls]", config_path.display()))?;
    let merchant = identity.common_name().context("this node's certificate")?;
    let server_name = config.server_name().map_err(anyhow::Error::msg)?;
    let setup = config
        .learning
        .build(base)
        .with_context(|| format!("config file {}: [learning]", config_path.display()))?;
    let store_dir = base.join(&config.store);
    let store = NodeStore::open(&store_dir)?;
    let ledger = Ledger::new(config.budget.max_epsilon, config.budget.delta)
        .with_context(|| format!("config file {}: [budget]", config_path.display()))?;
    let mut participant = Participant::new(
        merchant.clone(),
        setup.learner,
        setup.held_out,
        setup.weight_decay,
        ledger,
        Some(store),
    )?;
    info!(%merchant, store = %store_dir.display(), "node ready");

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut backoff = Duration::from_millis(config.reconnect.initial_backoff_ms);
        let max_backoff = Duration::from_millis(config.reconnect.max_backoff_ms);
        loop {
            let session = async {
                let (mut link, welcome) = join(
                    &config.aggregator,
                    &server_name,
                    &identity,
                    &config.transport,
                    participant.last_round(),
                )
                .await?;
                let end = participant
                    .serve_welcomed(&mut link, &welcome, |_| false)
                    .await;
                anyhow::Ok((link, end))
            };
            let outcome = tokio::select! {
                outcome = session => outcome,
                signal = tokio::signal::ctrl_c() => {
                    signal.context("listening for Ctrl-C")?;
                    info!("Ctrl-C: leaving the federation");
                    return Ok(());
                }
            };
            match outcome {
                Ok((_, Ok(SessionEnd::BudgetExhausted(detail)))) => {
                    info!(%detail, "the federation's privacy budget is spent; leaving");
                    return Ok(());
                }
                Ok((_, Ok(SessionEnd::Closed(reason)))) if reason.contains(SHUTDOWN_REASON) => {
                    info!(%reason, "the aggregator shut down; leaving");
                    return Ok(());
                }
                Ok((link, Ok(SessionEnd::Closed(reason)))) => {
                    warn!(%reason, "lost the aggregator; reconnecting");
                    drop(link);
                    backoff = Duration::from_millis(config.reconnect.initial_backoff_ms);
                }
                Ok((link, Err(e))) => {
                    warn!(error = %e, "session failed; reconnecting");
                    link.close(CloseCode::ProtocolViolation, &e.to_string())
                        .await;
                }
                Err(e) if is_refusal(&e) => {
                    return Err(
                        e.context(format!("joining the aggregator at {}", config.aggregator))
                    );
                }
                Err(e) => warn!(error = %format!("{e:#}"), "cannot reach the aggregator yet"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max_backoff);
        }
    })
}

/// The reason the aggregator gives when it closes every connection on shutdown.
const SHUTDOWN_REASON: &str = "aggregator shutting down";

/// A refusal of this node's identity (or of the aggregator's) will not change by
/// retrying; an unreachable or restarting aggregator will.
fn is_refusal(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<JoinError>() {
        Some(JoinError::Refused { .. }) => true,
        Some(JoinError::Handshake(e)) => !matches!(
            e,
            HandshakeError::Connection { .. } | HandshakeError::HelloTimeout { .. }
        ),
        _ => false,
    }
}
