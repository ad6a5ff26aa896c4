//! Gathering one answer from each member of a cohort before a phase deadline.
//!
//! A phase expects one message kind from each of a set of merchants. Whatever else
//! arrives meanwhile (a late answer to an earlier phase, a message from a node outside
//! the cohort, a second answer) is logged and ignored, never applied; a node that leaves
//! is a dropout of this phase. The round engine never waits past the deadline.

use std::collections::{BTreeMap, BTreeSet};

use hansa_protocol::{MerchantId, Message};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::roster::{Roster, RosterEvent};

/// What a phase makes of one message from an expected merchant.
pub enum Verdict<T> {
    /// The answer this phase waited for.
    Accept(T),
    /// The merchant will not answer this round (it declined, or its answer was invalid);
    /// the reason is logged.
    Refuse(String),
    /// Not this phase's message (for instance a late answer to an earlier phase).
    Ignore,
}

/// Who answered a phase, and who did not.
#[derive(Debug)]
pub struct Collected<T> {
    /// Accepted answers by merchant.
    pub answers: BTreeMap<MerchantId, T>,
    /// Merchants that left, declined, sent something invalid or missed the deadline.
    pub missing: BTreeMap<MerchantId, String>,
}

/// Waits until every merchant in `expected` has answered or been ruled out, or until
/// `deadline`. `judge` looks at each message from an expected merchant.
pub async fn collect<T>(
    roster: &mut Roster,
    phase: &'static str,
    expected: &BTreeSet<MerchantId>,
    deadline: Instant,
    mut judge: impl FnMut(&MerchantId, Message) -> Verdict<T>,
) -> Collected<T> {
    let mut answers = BTreeMap::new();
    let mut missing = BTreeMap::new();
    let outstanding = |answers: &BTreeMap<_, _>, missing: &BTreeMap<_, _>| {
        answers.len() + missing.len() < expected.len()
    };

    while outstanding(&answers, &missing) {
        let Some(event) = roster.next_event(deadline).await else {
            break;
        };
        match event {
            RosterEvent::Joined(merchant) => {
                debug!(%merchant, phase, "node joined mid-round; it waits for the next round");
            }
            RosterEvent::Left(merchant, reason) => {
                if expected.contains(&merchant) && !answers.contains_key(&merchant) {
                    info!(%merchant, phase, %reason, "dropout");
                    missing.insert(merchant, format!("left during {phase}: {reason}"));
                }
            }
            RosterEvent::Said(merchant, message) => {
                if !expected.contains(&merchant) {
                    warn!(%merchant, phase, kind = message.kind(), "message from a node outside this phase's cohort; ignored");
                    continue;
                }
                if answers.contains_key(&merchant) || missing.contains_key(&merchant) {
                    warn!(%merchant, phase, kind = message.kind(), "second message in one phase; ignored");
                    continue;
                }
                let kind = message.kind();
                match judge(&merchant, message) {
                    Verdict::Accept(answer) => {
                        answers.insert(merchant, answer);
                    }
                    Verdict::Refuse(reason) => {
                        warn!(%merchant, phase, %reason, "answer refused");
                        missing.insert(merchant, reason);
                    }
                    Verdict::Ignore => {
                        debug!(%merchant, phase, kind, "message for another phase; ignored");
                    }
                }
            }
        }
    }

    for merchant in expected {
        if !answers.contains_key(merchant) && !missing.contains_key(merchant) {
            info!(%merchant, phase, "straggler: no answer before the deadline");
            missing.insert(
                merchant.clone(),
                format!("no answer before the {phase} deadline"),
            );
        }
    }
    Collected { answers, missing }
}
