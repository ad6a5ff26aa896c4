//! `hansa-sim`: run federations in one process.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hansa_sim::demo::run_demo;

/// Hansa's simulator.
#[derive(Parser)]
#[command(name = "hansa-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// An aggregator and N nodes handshaking over loopback QUIC with mutual TLS, with a
    /// federation CA and certificates made on the spot.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        merchants: usize,
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hansa-sim: error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Demo { merchants } => match runtime.block_on(run_demo(merchants)) {
            Ok(report) => {
                println!(
                    "aggregator listening on {} (QUIC, mutual TLS)",
                    report.aggregator
                );
                println!(
                    "{:<14} {:<22} {:<8} {:<8} welcome",
                    "merchant", "from", "node", "round"
                );
                for h in &report.handshakes {
                    let peer = h
                        .peer
                        .map_or_else(|| "memory".to_string(), |p| p.to_string());
                    println!(
                        "{:<14} {:<22} {:<8} {:<8} aggregator {}",
                        h.merchant,
                        peer,
                        h.node_version,
                        h.welcome.current_round,
                        h.welcome.software_version
                    );
                }
                println!(
                    "{} nodes authenticated and exchanged hello/welcome",
                    report.handshakes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hansa-sim: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
