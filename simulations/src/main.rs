//! `hansa-sim`: run federations in one process.

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hansa_sim::demo::run_demo;
use hansa_sim::report::summary_table;
use hansa_sim::run::{run_scenario, RunOptions};
use hansa_sim::scenario::Scenario;

/// Hansa's simulator.
#[derive(Parser)]
#[command(name = "hansa-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario end to end: the federation on real data, the local-only and
    /// centralised baselines, and the report (CSV, JSON, Markdown, SVG) in its folder.
    Run {
        /// The scenario file, e.g. scenarios/quickstart.toml.
        scenario: PathBuf,
        /// Overrides `key=value` (dotted keys), e.g. `--set rounds=2`; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Output folder (default: the scenario's `output_dir`, else runs/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar (CI).
        #[arg(long)]
        quiet: bool,
    },
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // A run draws a progress bar; its log stays at warnings unless RUST_LOG asks.
        let level = match cli.command {
            Command::Run { .. } => "warn",
            Command::Demo { .. } => "info",
        };
        tracing_subscriber::EnvFilter::new(level)
    });
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
        Command::Run {
            scenario,
            overrides,
            out,
            quiet,
        } => run(&scenario, &overrides, out, quiet),
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

/// `hansa-sim run`: loads the scenario, runs it and prints the summary.
fn run(
    path: &std::path::Path,
    overrides: &[String],
    out: Option<PathBuf>,
    quiet: bool,
) -> ExitCode {
    let scenario = match Scenario::load(path, overrides) {
        Ok(scenario) => scenario,
        Err(e) => {
            eprintln!("hansa-sim: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = RunOptions {
        quiet,
        output_dir: out,
    };
    match run_scenario(&scenario, &options) {
        Ok(outcome) => {
            println!("{}", summary_table(&outcome.result));
            if let Some(why) = &outcome.stopped_early {
                println!("stopped early: {why}");
            }
            println!(
                "report: {} ({:.1} s)",
                outcome.files.markdown.display(),
                outcome.wall_s
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hansa-sim: error: {e}");
            ExitCode::FAILURE
        }
    }
}
