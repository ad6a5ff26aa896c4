//! A progress bar per run: round, phase, current metric and ε spent; hidden in quiet mode.
//!
//! ```
//! use hansa_sim::progress::RunProgress;
//!
//! let mut progress = RunProgress::new(20, "rmse", true); // quiet: nothing is drawn
//! progress.phase(3, "train");
//! progress.round_done(3, 0.9123, Some(1.234));
//! assert_eq!(progress.message(), "round 3/20 · done · rmse 0.9123 · ε 1.23");
//! progress.finish();
//! ```

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar's layout: elapsed time, bar, rounds done, then the message.
const TEMPLATE: &str = "{elapsed_precise} [{bar:30}] {pos}/{len} rounds · {msg}";

/// The progress display of one run.
#[derive(Debug)]
pub struct RunProgress {
    bar: ProgressBar,
    total_rounds: u64,
    metric_name: String,
    round: u64,
    phase: String,
    metric: Option<f64>,
    epsilon: Option<f64>,
}

impl RunProgress {
    /// A bar for `total_rounds` rounds drawn on stderr, or hidden when `quiet` (for CI
    /// and tests; the state is still kept and [`RunProgress::message`] still works).
    pub fn new(total_rounds: u64, metric_name: &str, quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::with_draw_target(Some(total_rounds), ProgressDrawTarget::hidden())
        } else {
            let style = ProgressStyle::with_template(TEMPLATE)
                .expect("the progress template is valid")
                .progress_chars("=> ");
            ProgressBar::new(total_rounds).with_style(style)
        };
        Self {
            bar,
            total_rounds,
            metric_name: metric_name.to_string(),
            round: 0,
            phase: "start".to_string(),
            metric: None,
            epsilon: None,
        }
    }

    /// Whether the bar is hidden.
    pub fn is_quiet(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Marks the start of a phase (`select`, `train`, `aggregate`, ...) of `round`.
    pub fn phase(&mut self, round: u64, phase: &str) {
        self.round = round;
        self.phase = phase.to_string();
        self.bar.set_message(self.message());
    }

    /// Marks `round` complete with the federated metric and the ε spent so far.
    pub fn round_done(&mut self, round: u64, metric: f64, epsilon: Option<f64>) {
        self.round = round;
        self.phase = "done".to_string();
        self.metric = Some(metric);
        self.epsilon = epsilon.or(self.epsilon);
        self.bar.set_position(round.min(self.total_rounds));
        self.bar.set_message(self.message());
    }

    /// Rounds completed, as shown by the bar.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// The current message: `round r/R · phase · metric value · ε value`, leaving out
    /// what is not known yet.
    pub fn message(&self) -> String {
        let mut parts = vec![
            format!("round {}/{}", self.round, self.total_rounds),
            self.phase.clone(),
        ];
        if let Some(m) = self.metric {
            parts.push(format!("{} {m:.4}", self.metric_name));
        }
        if let Some(e) = self.epsilon {
            parts.push(format!("ε {e:.2}"));
        }
        parts.join(" · ")
    }

    /// Leaves the bar (and its last message) on screen.
    pub fn finish(&self) {
        self.bar.finish_with_message(self.message());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_tracks_round_phase_metric_and_epsilon() {
        let mut p = RunProgress::new(5, "hit_rate@10", true);
        assert!(p.is_quiet());
        assert_eq!(p.message(), "round 0/5 · start");
        p.phase(1, "train");
        assert_eq!(p.message(), "round 1/5 · train");
        p.round_done(1, 0.25, None);
        assert_eq!(p.message(), "round 1/5 · done · hit_rate@10 0.2500");
        assert_eq!(p.position(), 1);
        p.round_done(2, 0.3, Some(0.5));
        p.phase(3, "aggregate");
        // ε and the last metric stay until replaced.
        assert_eq!(
            p.message(),
            "round 3/5 · aggregate · hit_rate@10 0.3000 · ε 0.50"
        );
        p.round_done(9, 0.31, None);
        assert_eq!(p.position(), 5, "position is capped at the round count");
    }
}
