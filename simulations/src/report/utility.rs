//! The privacy–utility table: the federated metric at each target ε, as Markdown and CSV.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::markdown::{delta, number};
use super::{Arm, ReportError, RunResult};

/// The federated arm run once at a target ε, with the noise multiplier calibrated so that
/// the scenario's rounds spend exactly it. One line of `privacy_utility.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtilityRow {
    /// The ε the noise multiplier was calibrated to, at `delta`.
    pub target_epsilon: f64,
    /// ε the run spent after its last round (below the target when it stopped early);
    /// `None` when the run reported none.
    pub epsilon_spent: Option<f64>,
    /// δ of both ε values.
    pub delta: f64,
    /// The calibrated noise multiplier z (σ = z · C); unitless.
    pub noise_multiplier: f64,
    /// The federated metric after the last round.
    pub metric: f64,
    /// Rounds the run committed.
    pub rounds: u64,
}

/// The `## Privacy–utility` section of `report.md` (starting with a blank line), or an
/// empty string when the run has no privacy–utility rows.
pub(crate) fn render_utility(result: &RunResult) -> String {
    let rows = &result.privacy_utility;
    if rows.is_empty() {
        return String::new();
    }
    let name = &result.metric.name;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "\n## Privacy–utility\n");
    let _ = writeln!(
        out,
        "The federated arm run again per target ε, with the noise multiplier calibrated so \
         that its rounds spend exactly that ε (no budget applied).\n"
    );
    let _ = writeln!(
        out,
        "| target ε | ε spent | δ | noise multiplier | {name} (final) | rounds |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.4} | {:.4} | {} |",
            r.target_epsilon,
            number(r.epsilon_spent, 4),
            delta(Some(r.delta)),
            r.noise_multiplier,
            r.metric,
            r.rounds
        );
    }
    let reference = |arm| number(result.final_row(arm).map(|r| r.metric), 4);
    let _ = writeln!(
        out,
        "\nFor reference, this run's final {name}: centralised {} (data pooled, no \
         privacy), local-only {} (nothing shared).",
        reference(Arm::Centralised),
        reference(Arm::LocalOnly)
    );
    out
}

/// Writes `privacy_utility.csv`: target_epsilon, epsilon_spent, delta, noise_multiplier,
/// metric, rounds; one line per row, empty `epsilon_spent` when none was reported.
pub fn write_utility_csv(rows: &[UtilityRow], path: &Path) -> Result<(), ReportError> {
    let csv_error = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
    for row in rows {
        writer.serialize(row).map_err(csv_error)?;
    }
    writer.flush().map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `privacy_utility.csv` back.
pub fn read_utility_csv(path: &Path) -> Result<Vec<UtilityRow>, ReportError> {
    let csv_error = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(csv_error)?;
    reader
        .deserialize()
        .collect::<Result<_, _>>()
        .map_err(csv_error)
}

/// Refuses a row whose metric is NaN or infinite, naming its target ε.
pub(crate) fn check_finite(rows: &[UtilityRow]) -> Result<(), ReportError> {
    match rows.iter().find(|r| !r.metric.is_finite()) {
        Some(r) => Err(ReportError::NotFinite {
            place: format!("privacy–utility row at target ε = {}", r.target_epsilon),
            value: r.metric,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{MetricSpec, PrivacySummary, RoundRow};

    fn result(rows: Vec<UtilityRow>) -> RunResult {
        let row = |arm, metric| RoundRow {
            arm,
            round: 2,
            metric,
            epsilon: None,
            delta: None,
            contributors: 3,
            drops: 0,
        };
        RunResult {
            scenario_name: "u".into(),
            scenario_toml: String::new(),
            metric: MetricSpec {
                name: "rmse".into(),
                higher_is_better: false,
            },
            privacy: PrivacySummary::none(),
            rounds: vec![
                row(Arm::Federated, 1.0),
                row(Arm::LocalOnly, 1.25),
                row(Arm::Centralised, 0.9),
            ],
            merchants: Vec::new(),
            contribution_method: String::new(),
            privacy_utility: rows,
        }
    }

    fn rows() -> Vec<UtilityRow> {
        vec![
            UtilityRow {
                target_epsilon: 1.0,
                epsilon_spent: Some(1.0000000001),
                delta: 1e-5,
                noise_multiplier: 3.21456,
                metric: 1.1,
                rounds: 2,
            },
            UtilityRow {
                target_epsilon: 10.0,
                epsilon_spent: None,
                delta: 1e-5,
                noise_multiplier: 0.5,
                metric: 0.95,
                rounds: 1,
            },
        ]
    }

    #[test]
    fn section_lists_each_target_and_the_references() {
        let text = render_utility(&result(rows()));
        assert!(text.starts_with("\n## Privacy–utility\n"), "{text}");
        assert!(
            text.contains("| 1 | 1.0000 | 1e-5 | 3.2146 | 1.1000 | 2 |"),
            "{text}"
        );
        assert!(
            text.contains("| 10 | — | 1e-5 | 0.5000 | 0.9500 | 1 |"),
            "{text}"
        );
        assert!(
            text.contains(
                "final rmse: centralised 0.9000 (data pooled, no privacy), \
                 local-only 1.2500 (nothing shared)."
            ),
            "{text}"
        );
        assert_eq!(render_utility(&result(Vec::new())), "");
    }

    #[test]
    fn csv_reads_back_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("privacy_utility.csv");
        write_utility_csv(&rows(), &path).unwrap();
        assert_eq!(read_utility_csv(&path).unwrap(), rows());
        let header = std::fs::read_to_string(&path).unwrap();
        assert!(header.starts_with(
            "target_epsilon,epsilon_spent,delta,noise_multiplier,metric,rounds\n1.0,1.0000000001,"
        ));
    }

    #[test]
    fn a_nan_metric_is_refused_by_its_target() {
        let mut bad = rows();
        bad[1].metric = f64::NAN;
        let err = check_finite(&bad).unwrap_err();
        assert!(err.to_string().contains("target ε = 10"), "{err}");
    }
}
