//! `hansa-aggregator status`: rounds, metrics, privacy spent and nodes, read from the store.

use std::fmt;

use hansa_protocol::messages::Metric;
use hansa_protocol::Round;

use crate::store::{
    InitialSource, LedgerEntry, NodeRecord, RoundEvaluation, RoundRecord, Store, StoreError,
};

/// One committed round with its federated evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundStatus {
    /// The round's record.
    pub record: RoundRecord,
    /// Its evaluation so far (empty when no node has reported yet).
    pub evaluation: RoundEvaluation,
}

/// Everything `status` shows, read from a store; needs no running server.
///
/// Limitation: sled locks its directory for one process, so `status` on the store of a
/// running aggregator fails with "is another hansa-aggregator using it?" (a status query
/// over the server's own connection, or a read-only snapshot, would lift this).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// Last committed round (`None`: the store has no initial model yet).
    pub last_committed_round: Option<Round>,
    /// Where round 0's model came from.
    pub initial_source: Option<InitialSource>,
    /// Rounds whose global checkpoint is kept.
    pub checkpoint_rounds: Vec<Round>,
    /// Committed rounds, in order.
    pub rounds: Vec<RoundStatus>,
    /// The latest privacy-ledger entry: ε spent so far.
    pub privacy: Option<LedgerEntry>,
    /// Total zero-concentrated DP ρ charged over all rounds.
    pub rho_total: f64,
    /// Every node seen.
    pub nodes: Vec<NodeRecord>,
}

impl StatusReport {
    /// Reads the report from `store`.
    pub fn read(store: &dyn Store) -> Result<Self, StoreError> {
        let rounds = store
            .rounds()?
            .into_iter()
            .map(|record| {
                let evaluation = store.evaluation(record.round)?;
                Ok(RoundStatus { record, evaluation })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let ledger = store.ledger()?;
        Ok(Self {
            last_committed_round: store.last_committed_round()?,
            initial_source: store.initial_source()?,
            checkpoint_rounds: store.checkpoint_rounds()?,
            rounds,
            rho_total: ledger.iter().map(|e| e.rho_charged).sum(),
            privacy: ledger.last().cloned(),
            nodes: store.nodes()?,
        })
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(last) = self.last_committed_round else {
            return writeln!(f, "store is empty: no initial model recorded yet");
        };
        let source = match &self.initial_source {
            Some(InitialSource::File(path)) => format!("file {path}"),
            Some(InitialSource::FirstNode(merchant)) => format!("first node {merchant}"),
            None => "unknown".into(),
        };
        writeln!(
            f,
            "last committed round: {last} (initial model from {source})"
        )?;
        writeln!(f, "checkpoints kept: {:?}", self.checkpoint_rounds)?;
        match &self.privacy {
            Some(entry) => writeln!(
                f,
                "privacy spent: ε = {:.4} at δ = {:e} after round {} (ρ total {:.6})",
                entry.epsilon_spent, entry.delta, entry.round, self.rho_total
            )?,
            None => writeln!(f, "privacy spent: nothing (no round committed)")?,
        }

        writeln!(f, "\nrounds ({}):", self.rounds.len())?;
        writeln!(
            f,
            "{:>5}  {:<12}  {:>12}  {:>7}  {:>9}  {:>10}  evaluation (example-weighted mean)",
            "round", "strategy", "contributors", "dropped", "examples", "train loss"
        )?;
        for round in &self.rounds {
            let r = &round.record;
            writeln!(
                f,
                "{:>5}  {:<12}  {:>12}  {:>7}  {:>9}  {:>10.5}  {}",
                r.round,
                r.strategy,
                r.training.contributors.len(),
                r.training.dropped.len(),
                r.training.num_examples,
                r.training.mean_train_loss,
                metrics_line(
                    &round.evaluation.weighted_mean,
                    round.evaluation.per_node.len()
                ),
            )?;
            for node in &round.evaluation.per_node {
                writeln!(
                    f,
                    "{:>5}    {} ({} examples): {}",
                    "",
                    node.merchant,
                    node.num_examples,
                    metrics_line(&node.metrics, 1)
                )?;
            }
        }

        writeln!(f, "\nnodes ({}):", self.nodes.len())?;
        for node in &self.nodes {
            writeln!(
                f,
                "  {}  cert {}  first seen {}  last seen {}",
                node.merchant,
                short_fingerprint(&node.cert_fingerprint),
                utc_time(node.first_seen_ms),
                utc_time(node.last_seen_ms)
            )?;
        }
        Ok(())
    }
}

fn metrics_line(metrics: &[Metric], reports: usize) -> String {
    if reports == 0 || metrics.is_empty() {
        return "-".into();
    }
    let values: Vec<String> = metrics
        .iter()
        .map(|m| format!("{}={:.5}", m.name, m.value))
        .collect();
    if reports == 1 {
        values.join(" ")
    } else {
        format!("{} ({reports} nodes)", values.join(" "))
    }
}

fn short_fingerprint(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

/// Unix milliseconds as `YYYY-MM-DD hh:mm:ss UTC` (proleptic Gregorian calendar).
pub fn utc_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil-from-days for day counts since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_by_hand() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        // 2000-03-01 is day 11017; + 12:34:56.
        assert_eq!(
            utc_time((11_017 * 86_400 + 12 * 3600 + 34 * 60 + 56) * 1000 + 999),
            "2000-03-01 12:34:56 UTC"
        );
        // 2024-02-29 (leap day) is day 19782.
        assert_eq!(utc_time(19_782 * 86_400 * 1000), "2024-02-29 00:00:00 UTC");
    }
}
