//! Per-round and per-merchant tables as CSV and JSON, and reading the round CSV back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Arm, MetricSpec, ReportError, RoundRow, RunResult};

/// One line of `rounds.csv`; empty ε/δ cells mean "no DP bound".
#[derive(Debug, Serialize, Deserialize)]
struct CsvRound {
    arm: Arm,
    round: u64,
    metric_name: String,
    metric: f64,
    epsilon: Option<f64>,
    delta: Option<f64>,
    contributors: u32,
    drops: u32,
}

/// One line of `merchants.csv`.
#[derive(Debug, Serialize)]
struct CsvMerchant<'a> {
    merchant: &'a str,
    examples: u64,
    metric_name: &'a str,
    local_only: f64,
    federated: f64,
    lift: f64,
    lift_percent: Option<f64>,
    contribution: Option<f64>,
}

fn csv_error(path: &Path) -> impl Fn(csv::Error) -> ReportError + '_ {
    move |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `rounds.csv`: arm, round, metric_name, metric, epsilon, delta, contributors,
/// drops; one line per arm and round, in the order of [`RunResult::rounds`].
pub fn write_rounds_csv(result: &RunResult, path: &Path) -> Result<(), ReportError> {
    let mut writer = csv::Writer::from_path(path).map_err(csv_error(path))?;
    for r in &result.rounds {
        writer
            .serialize(CsvRound {
                arm: r.arm,
                round: r.round,
                metric_name: result.metric.name.clone(),
                metric: r.metric,
                epsilon: r.epsilon,
                delta: r.delta,
                contributors: r.contributors,
                drops: r.drops,
            })
            .map_err(csv_error(path))?;
    }
    writer.flush().map_err(io_error(path))
}

/// Reads `rounds.csv` back: the metric name and the rows.
pub fn read_rounds_csv(path: &Path) -> Result<(String, Vec<RoundRow>), ReportError> {
    let mut reader = csv::Reader::from_path(path).map_err(csv_error(path))?;
    let mut name = String::new();
    let mut rows = Vec::new();
    for record in reader.deserialize::<CsvRound>() {
        let r = record.map_err(csv_error(path))?;
        name = r.metric_name;
        rows.push(RoundRow {
            arm: r.arm,
            round: r.round,
            metric: r.metric,
            epsilon: r.epsilon,
            delta: r.delta,
            contributors: r.contributors,
            drops: r.drops,
        });
    }
    Ok((name, rows))
}

/// The JSON document of `rounds.json`.
#[derive(Serialize)]
struct JsonRounds<'a> {
    scenario: &'a str,
    metric: &'a MetricSpec,
    rounds: &'a [RoundRow],
}

/// Writes `rounds.json`: `{ scenario, metric: { name, higher_is_better }, rounds: [...] }`,
/// ε and δ `null` where no DP bound holds.
pub fn write_rounds_json(result: &RunResult, path: &Path) -> Result<(), ReportError> {
    let doc = JsonRounds {
        scenario: &result.scenario_name,
        metric: &result.metric,
        rounds: &result.rounds,
    };
    let text = serde_json::to_string_pretty(&doc).expect("report rows serialise to JSON");
    std::fs::write(path, text + "\n").map_err(io_error(path))
}

/// Writes `merchants.csv`: merchant, examples, metric_name, local_only, federated, lift
/// (metric units, positive = gain), lift_percent, contribution.
pub fn write_merchants_csv(result: &RunResult, path: &Path) -> Result<(), ReportError> {
    let mut writer = csv::Writer::from_path(path).map_err(csv_error(path))?;
    for m in &result.merchants {
        writer
            .serialize(CsvMerchant {
                merchant: &m.id,
                examples: m.examples,
                metric_name: &result.metric.name,
                local_only: m.local_only,
                federated: m.federated,
                lift: m.lift(&result.metric),
                lift_percent: m.lift_percent(&result.metric),
                contribution: m.contribution,
            })
            .map_err(csv_error(path))?;
    }
    writer.flush().map_err(io_error(path))
}
