//! Federated evaluation: every connected node scores the new global model on its own
//! held-out data; the store keeps each report and their example-weighted mean.

use std::collections::BTreeSet;
use std::sync::Arc;

use hansa_protocol::messages::{GlobalParameters, RoundComplete};
use hansa_protocol::{Message, ParameterSet, Round};
use tokio::time::{Duration, Instant};

use super::collect::{collect, Verdict};
use super::roster::Roster;
use crate::store::NodeEvaluation;

/// Tells every connected node that `complete.round` committed, sends the new model, and
/// gathers the evaluations that arrive before the deadline, in merchant order.
pub(super) async fn evaluate(
    roster: &mut Roster,
    complete: RoundComplete,
    global: &ParameterSet,
    deadline_ms: u64,
) -> Vec<NodeEvaluation> {
    let round: Round = complete.round;
    let complete = Arc::new(Message::RoundComplete(complete));
    let parameters = Arc::new(Message::GlobalParameters(GlobalParameters {
        round,
        parameters: global.clone(),
    }));
    let mut expected = BTreeSet::new();
    for merchant in roster.connected() {
        if roster.send(&merchant, complete.clone()).await
            && roster.send(&merchant, parameters.clone()).await
        {
            expected.insert(merchant);
        }
    }
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);
    let collected = collect(
        roster,
        "evaluation",
        &expected,
        deadline,
        |_, message| match message {
            Message::EvaluationReport(report) if report.round == round => {
                if report.metrics.iter().all(|m| m.value.is_finite()) {
                    Verdict::Accept(report)
                } else {
                    Verdict::Refuse("evaluation report with a non-finite metric".into())
                }
            }
            _ => Verdict::Ignore,
        },
    )
    .await;
    collected
        .answers
        .into_iter()
        .map(|(merchant, report)| NodeEvaluation {
            merchant,
            num_examples: report.num_examples,
            metrics: report.metrics,
        })
        .collect()
}
