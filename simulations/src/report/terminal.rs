//! The summary table printed in the terminal at the end of a run.

use std::fmt::Write as _;

use super::markdown::{delta, number};
use super::{Arm, RunResult};

/// A plain-text table: final metric per arm, privacy spent, then one line per merchant
/// with its lift, and the finding. Columns are padded for a fixed-width terminal.
pub fn summary_table(result: &RunResult) -> String {
    let metric = &result.metric;
    let mut out = String::new();
    let _ = writeln!(out, "{}  ({})", result.scenario_name, metric.name);
    let _ = writeln!(
        out,
        "{:<14} {:>6} {:>10} {:>8}",
        "arm", "round", metric.name, "ε"
    );
    for arm in Arm::ALL {
        if let Some(r) = result.final_row(arm) {
            let _ = writeln!(
                out,
                "{:<14} {:>6} {:>10.4} {:>8}",
                arm.name(),
                r.round,
                r.metric,
                number(r.epsilon, 2)
            );
        }
    }
    let (eps, del) = result.privacy_spent().unzip();
    let _ = writeln!(
        out,
        "privacy: DP {} · ε = {} · δ = {} · secure aggregation {}",
        result.privacy.mode,
        number(eps, 2),
        delta(del),
        if result.privacy.secure_aggregation {
            "on"
        } else {
            "off"
        }
    );
    let width = result
        .merchants
        .iter()
        .map(|m| m.id.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        out,
        "{:<width$} {:>9} {:>10} {:>10} {:>9}",
        "merchant", "examples", "local", "federated", "lift"
    );
    for m in &result.merchants {
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>10.4} {:>10.4} {:>+9.4}",
            m.id,
            m.examples,
            m.local_only,
            m.federated,
            m.lift(metric)
        );
    }
    let _ = writeln!(out, "{}", result.finding());
    out
}
