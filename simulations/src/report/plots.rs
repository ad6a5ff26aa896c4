//! SVG plots drawn with plotters: metric per round, ε per round, lift per merchant.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::{Arm, ReportError, RunResult};

const SIZE: (u32, u32) = (900, 520);
const FONT: &str = "sans-serif";
/// Most merchant names written under the lift bars; beyond it plotters picks a subset.
const MAX_NAMED_BARS: usize = 40;

fn arm_colour(arm: Arm) -> RGBColor {
    match arm {
        Arm::Federated => RGBColor(31, 119, 180),
        Arm::LocalOnly => RGBColor(255, 127, 14),
        Arm::Centralised => RGBColor(44, 160, 44),
    }
}

fn plot_error<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot {
        path: path.to_path_buf(),
        detail: format!("{e:?}"),
    }
}

/// A y range around the values with 5% padding (±1 when they are all equal or absent).
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !low.is_finite() || !high.is_finite() {
        return 0.0..1.0;
    }
    let pad = if high > low { 0.05 * (high - low) } else { 1.0 };
    (low - pad)..(high + pad)
}

/// The rounds on the x axis: first to last round in the rows (at least one round wide).
fn round_range(result: &RunResult) -> std::ops::Range<u64> {
    let first = result.rounds.iter().map(|r| r.round).min().unwrap_or(0);
    let last = result.rounds.iter().map(|r| r.round).max().unwrap_or(1);
    first..last.max(first + 1)
}

/// `metric.svg`: the metric per round, one line per arm, legend by arm name.
pub fn plot_metric(result: &RunResult, path: &Path) -> Result<(), ReportError> {
    let err = plot_error(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let caption = format!("{}: {} per round", result.scenario_name, result.metric.name);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            round_range(result),
            padded_range(result.rounds.iter().map(|r| r.metric)),
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc(result.metric.name.as_str())
        .draw()
        .map_err(&err)?;

    for arm in Arm::ALL {
        let mut points: Vec<(u64, f64)> = result
            .rounds
            .iter()
            .filter(|r| r.arm == arm)
            .map(|r| (r.round, r.metric))
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by_key(|p| p.0);
        let colour = arm_colour(arm);
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(&err)?
            .label(arm.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )
            .map_err(&err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)
}

/// `epsilon.svg`: the federation's ε spent per round. Without a DP bound the plot says so.
pub fn plot_epsilon(result: &RunResult, path: &Path) -> Result<(), ReportError> {
    let err = plot_error(path);
    let points: Vec<(u64, f64)> = result
        .rounds
        .iter()
        .filter(|r| r.arm == Arm::Federated)
        .filter_map(|r| Some((r.round, r.epsilon?)))
        .collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let caption = match result.privacy_spent() {
        Some((_, delta)) => format!(
            "{}: ε spent per round (δ = {delta:e})",
            result.scenario_name
        ),
        None => format!(
            "{}: no differential-privacy bound (DP {})",
            result.scenario_name, result.privacy.mode
        ),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            round_range(result),
            0.0..padded_range(points.iter().map(|p| p.1)).end.max(1.0),
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("ε")
        .draw()
        .map_err(&err)?;
    if !points.is_empty() {
        let colour = arm_colour(Arm::Federated);
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(&err)?
            .label("ε (federated)")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(&err)?;
    }
    root.present().map_err(&err)
}

/// `lift.svg`: each merchant's lift from joining, one bar per merchant (green = gain).
pub fn plot_lift(result: &RunResult, path: &Path) -> Result<(), ReportError> {
    let err = plot_error(path);
    let lifts: Vec<f64> = result
        .merchants
        .iter()
        .map(|m| m.lift(&result.metric))
        .collect();
    let names: Vec<&str> = result.merchants.iter().map(|m| m.id.as_str()).collect();
    let y = padded_range(lifts.iter().copied().chain([0.0]));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let caption = format!(
        "{}: lift from joining ({}, positive = gain)",
        result.scenario_name, result.metric.name
    );
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            names.get(*i).map_or_else(String::new, |n| n.to_string())
        }
        SegmentValue::Last => String::new(),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 22))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        // A discrete range includes its end: 0..n−1 gives one segment per merchant.
        .build_cartesian_2d((0..names.len().max(1) - 1).into_segmented(), y)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Limitation: thousands of merchants make a dense bar chart with a sample of
        // names; a histogram of lifts would read better at that scale (not drawn yet).
        .x_labels(names.len().clamp(1, MAX_NAMED_BARS))
        .x_label_formatter(&label)
        .y_desc(format!("lift ({})", result.metric.name))
        .draw()
        .map_err(&err)?;
    let gain = RGBColor(44, 160, 44);
    let loss = RGBColor(214, 39, 40);
    chart
        .draw_series(lifts.iter().enumerate().map(|(i, &lift)| {
            let colour = if lift > 0.0 { gain } else { loss };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), lift),
                ],
                colour.filled(),
            );
            bar.set_margin(0, 0, 6, 6);
            bar
        }))
        .map_err(&err)?;
    root.present().map_err(&err)
}
