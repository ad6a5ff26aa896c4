//! `hansa-node`: a merchant's node.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hansa_node::config::NodeConfig;
use hansa_node::join::join;
use hansa_protocol::{CloseCode, LinkError};
use tracing::info;

/// A Hansa merchant node: joins the federation and trains next to its own data.
#[derive(Parser)]
#[command(name = "hansa-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the aggregator, authenticate and say hello, then stay connected until
    /// Ctrl-C or the aggregator closes.
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
    let server_name = config.server_name().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let (mut link, _welcome) = join(
            &config.aggregator,
            &server_name,
            &identity,
            &config.transport,
            None,
        )
        .await
        .with_context(|| format!("joining the aggregator at {}", config.aggregator))?;
        // Limitation: rounds are not served yet from the binary; the node stays connected
        // and logs what arrives (the node runtime will take the link over).
        loop {
            tokio::select! {
                message = link.recv() => match message {
                    Ok(message) => info!(kind = message.kind(), "message from the aggregator"),
                    Err(LinkError::Closed { reason, .. }) => {
                        info!(%reason, "the aggregator closed the connection");
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                },
                signal = tokio::signal::ctrl_c() => {
                    signal.context("listening for Ctrl-C")?;
                    info!("Ctrl-C: leaving the federation");
                    link.close(CloseCode::Shutdown, "node shutting down").await;
                    return Ok(());
                }
            }
        }
    })
}
