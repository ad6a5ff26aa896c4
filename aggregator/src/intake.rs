//! Validation of incoming updates against the round they claim to answer.
//!
//! The round engine offers every [`Update`] to the round's [`RoundIntake`]; a refused
//! update comes back as an [`UpdateRejection`] that names the merchant, the round and the
//! reason, which the engine logs before going on without that update.

use std::collections::{BTreeMap, BTreeSet};

use hansa_protocol::messages::{RoundConfig, Update};
use hansa_protocol::{MerchantId, ParameterError, Round, TensorSpec};

/// Why an update was not accepted into a round.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum UpdateRejection {
    // Who and when.
    /// The update answers a round that is already over.
    #[error("update from `{merchant}` is for past round {given}; round {expected} is running")]
    PastRound {
        /// Sender.
        merchant: MerchantId,
        /// Round running now.
        expected: Round,
        /// Round the update names.
        given: Round,
    },
    /// The update answers a round that has not started.
    #[error("update from `{merchant}` is for future round {given}; round {expected} is running")]
    FutureRound {
        /// Sender.
        merchant: MerchantId,
        /// Round running now.
        expected: Round,
        /// Round the update names.
        given: Round,
    },
    /// The sender was not selected for this round.
    #[error("update from `{merchant}` refused: not in the cohort of round {round}")]
    NotInCohort {
        /// Sender.
        merchant: MerchantId,
        /// Round.
        round: Round,
    },
    /// The sender already has an accepted update in this round; the first one stands.
    #[error("second update from `{merchant}` in round {round} refused; the first one stands")]
    Duplicate {
        /// Sender.
        merchant: MerchantId,
        /// Round.
        round: Round,
    },

    // Content.
    /// Tensor names, shapes or order differ from the global model's.
    #[error("update from `{merchant}` in round {round} has the wrong layout: {source}")]
    Layout {
        /// Sender.
        merchant: MerchantId,
        /// Round.
        round: Round,
        /// What differs.
        source: ParameterError,
    },
    /// A tensor's value count does not fill its shape (possible after decoding from the wire).
    #[error("update from `{merchant}` in round {round}: tensor `{tensor}` has {actual} values, its shape needs {expected}")]
    Length {
        /// Sender.
        merchant: MerchantId,
        /// Round.
        round: Round,
        /// Tensor name.
        tensor: String,
        /// Values the shape needs.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// A value is NaN or infinite.
    #[error("update from `{merchant}` in round {round} is not finite: {source}")]
    NonFinite {
        /// Sender.
        merchant: MerchantId,
        /// Round.
        round: Round,
        /// Which tensor and index.
        source: ParameterError,
    },
    /// The update claims zero training examples, so it has no weight.
    #[error("update from `{merchant}` in round {round} claims 0 training examples")]
    NoExamples {
        /// Sender.
        merchant: MerchantId,
        /// Round.
        round: Round,
    },
}

impl UpdateRejection {
    /// The merchant whose update was refused, for the engine's log line.
    pub fn merchant(&self) -> &str {
        match self {
            UpdateRejection::PastRound { merchant, .. }
            | UpdateRejection::FutureRound { merchant, .. }
            | UpdateRejection::NotInCohort { merchant, .. }
            | UpdateRejection::Duplicate { merchant, .. }
            | UpdateRejection::Layout { merchant, .. }
            | UpdateRejection::Length { merchant, .. }
            | UpdateRejection::NonFinite { merchant, .. }
            | UpdateRejection::NoExamples { merchant, .. } => merchant,
        }
    }
}

/// Checks one update against a round's number, cohort and layout, without any state:
/// everything but the duplicate check. [`RoundIntake::offer`] adds that.
pub fn validate_update(
    config: &RoundConfig,
    cohort: &BTreeSet<MerchantId>,
    layout: &[TensorSpec],
    merchant: &str,
    update: &Update,
) -> Result<(), UpdateRejection> {
    let merchant_id = || merchant.to_string();
    let round = config.round;
    if update.round < round {
        return Err(UpdateRejection::PastRound {
            merchant: merchant_id(),
            expected: round,
            given: update.round,
        });
    }
    if update.round > round {
        return Err(UpdateRejection::FutureRound {
            merchant: merchant_id(),
            expected: round,
            given: update.round,
        });
    }
    if !cohort.contains(merchant) {
        return Err(UpdateRejection::NotInCohort {
            merchant: merchant_id(),
            round,
        });
    }

    // A decoded set bypasses `ParameterSet::push`, so check each tensor fills its shape.
    for tensor in update.delta.tensors() {
        let expected: usize = tensor.shape.iter().product();
        if tensor.values.len() != expected {
            return Err(UpdateRejection::Length {
                merchant: merchant_id(),
                round,
                tensor: tensor.name.clone(),
                expected,
                actual: tensor.values.len(),
            });
        }
    }
    update
        .delta
        .check_layout(layout)
        .map_err(|source| UpdateRejection::Layout {
            merchant: merchant_id(),
            round,
            source,
        })?;
    update
        .delta
        .check_finite()
        .map_err(|source| UpdateRejection::NonFinite {
            merchant: merchant_id(),
            round,
            source,
        })?;
    if update.num_examples == 0 {
        return Err(UpdateRejection::NoExamples {
            merchant: merchant_id(),
            round,
        });
    }
    Ok(())
}

/// The updates accepted so far in one round.
#[derive(Debug, Clone)]
pub struct RoundIntake {
    config: RoundConfig,
    cohort: BTreeSet<MerchantId>,
    layout: Vec<TensorSpec>,
    accepted: BTreeMap<MerchantId, Update>,
}

impl RoundIntake {
    /// An empty intake for the round `config` describes, with its `cohort`; `layout` is
    /// the global model's shared layout (`ParameterSet::spec` of the shared view).
    pub fn new(config: RoundConfig, cohort: BTreeSet<MerchantId>, layout: Vec<TensorSpec>) -> Self {
        Self {
            config,
            cohort,
            layout,
            accepted: BTreeMap::new(),
        }
    }

    /// The round this intake belongs to.
    pub fn round(&self) -> Round {
        self.config.round
    }

    /// Validates and keeps `update` from `merchant`, or says why not.
    pub fn offer(&mut self, merchant: &str, update: Update) -> Result<(), UpdateRejection> {
        validate_update(&self.config, &self.cohort, &self.layout, merchant, &update)?;
        if self.accepted.contains_key(merchant) {
            return Err(UpdateRejection::Duplicate {
                merchant: merchant.to_string(),
                round: self.config.round,
            });
        }
        self.accepted.insert(merchant.to_string(), update);
        Ok(())
    }

    /// Accepted updates by merchant, in merchant order.
    pub fn accepted(&self) -> &BTreeMap<MerchantId, Update> {
        &self.accepted
    }

    /// Cohort members that have not sent an accepted update yet, in cohort order.
    pub fn missing(&self) -> Vec<MerchantId> {
        let have: BTreeSet<&str> = self.accepted.keys().map(String::as_str).collect();
        self.cohort
            .iter()
            .filter(|m| !have.contains(m.as_str()))
            .cloned()
            .collect()
    }

    /// Hands over the accepted updates, in merchant order.
    pub fn into_accepted(self) -> BTreeMap<MerchantId, Update> {
        self.accepted
    }
}
