//! The Markdown report: finding, privacy spent, final metrics, merchants, rounds, scenario.

use std::fmt::Write as _;

use super::{Arm, RunResult};

/// Merchants listed in the report's table; a larger federation's rows are in
/// merchants.csv only.
const MAX_MERCHANT_ROWS: usize = 50;

/// A number with `digits` decimals, or `—` when absent.
pub(crate) fn number(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) => format!("{v:.digits$}"),
        None => "—".to_string(),
    }
}

/// A leave-one-out contribution, signed. Below 1e-3 (one merchant of hundreds) it is
/// printed in scientific notation: four decimals would leave at most one digit, or a
/// zero that hides the sign.
fn contribution(value: Option<f64>) -> String {
    match value {
        Some(v) if v != 0.0 && v.abs() < 1e-3 => format!("{v:+.2e}"),
        Some(v) => format!("{v:+.4}"),
        None => "—".to_string(),
    }
}

/// δ in scientific notation, or `—`.
pub(crate) fn delta(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |d| format!("{d:e}"))
}

/// Renders `report.md`.
pub fn render_markdown(result: &RunResult) -> String {
    let mut out = String::new();
    let metric = &result.metric;
    let direction = if metric.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# Hansa run: {}\n", result.scenario_name);
    let _ = writeln!(out, "## Finding\n\n{}\n", result.finding());

    let p = &result.privacy;
    let (eps, del) = result.privacy_spent().unzip();
    let _ = writeln!(out, "## Privacy spent\n");
    let _ = writeln!(
        out,
        "| DP mode | clip norm | noise multiplier | secure aggregation | ε spent | δ |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} |\n",
        p.mode,
        number(p.clip_norm, 3),
        number(p.noise_multiplier, 3),
        if p.secure_aggregation { "on" } else { "off" },
        number(eps, 2),
        delta(del),
    );

    let _ = writeln!(out, "## Final metrics ({}, {direction})\n", metric.name);
    let _ = writeln!(out, "| arm | round | {} | ε | contributors |", metric.name);
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for arm in Arm::ALL {
        if let Some(r) = result.final_row(arm) {
            let _ = writeln!(
                out,
                "| {} | {} | {:.4} | {} | {} |",
                arm.name(),
                r.round,
                r.metric,
                number(r.epsilon, 2),
                r.contributors
            );
        }
    }
    out.push_str(&super::utility::render_utility(result));

    let _ = writeln!(out, "\n## Per merchant\n");
    let _ = writeln!(
        out,
        "Lift is the federated minus the local-only {} ({direction}, so positive = gain).",
        metric.name
    );
    let _ = writeln!(out, "Contribution: {}.\n", result.contribution_method);
    let _ = writeln!(
        out,
        "| merchant | examples | local-only | federated | lift | lift % | contribution |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for m in result.merchants.iter().take(MAX_MERCHANT_ROWS) {
        let _ = writeln!(
            out,
            "| {} | {} | {:.4} | {:.4} | {:+.4} | {} | {} |",
            m.id,
            m.examples,
            m.local_only,
            m.federated,
            m.lift(metric),
            number(m.lift_percent(metric), 1),
            contribution(m.contribution),
        );
    }

    if result.merchants.len() > MAX_MERCHANT_ROWS {
        let _ = writeln!(
            out,
            "\nThe first {MAX_MERCHANT_ROWS} of {} merchants; all of them are in merchants.csv.",
            result.merchants.len()
        );
    }

    let _ = writeln!(out, "\n## Federated rounds\n");
    let _ = writeln!(
        out,
        "| round | {} | ε | δ | contributors | drops |",
        metric.name
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    for r in result.rounds.iter().filter(|r| r.arm == Arm::Federated) {
        let _ = writeln!(
            out,
            "| {} | {:.4} | {} | {} | {} | {} |",
            r.round,
            r.metric,
            number(r.epsilon, 2),
            delta(r.delta),
            r.contributors,
            r.drops
        );
    }

    let _ = writeln!(out, "\n## Plots\n");
    let _ = writeln!(out, "![{} per round](metric.svg)\n", metric.name);
    let _ = writeln!(out, "![ε per round](epsilon.svg)\n");
    let _ = writeln!(out, "![lift per merchant](lift.svg)\n");
    let _ = writeln!(
        out,
        "## Scenario\n\n```toml\n{}\n```",
        result.scenario_toml.trim_end()
    );
    out
}
