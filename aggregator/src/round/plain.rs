//! The update phase without secure aggregation: updates arrive in clear.
//!
//! Each update is checked against the round (layout, finiteness) before it may count;
//! in `central` mode the aggregator clips every update itself, so that one node that
//! skipped clipping cannot break the sensitivity bound, and then adds the noise.

use std::collections::{BTreeMap, BTreeSet};

use hansa_privacy::clip::clip_in_place;
use hansa_privacy::protect::add_central_noise;
use hansa_protocol::messages::{DpMode, RoundConfig, Update};
use hansa_protocol::{MerchantId, Message, ParameterSet, TensorSpec};
use tokio::time::{Duration, Instant};
use tracing::warn;

use super::collect::{collect, Verdict};
use super::roster::Roster;
use super::{FederationError, Gathered};
use crate::intake::{validate_update, UpdateRejection};
use crate::strategy::{Strategy, WeightedSum};

/// Sends each cohort member its config and the global model, collects the updates, and
/// aggregates those that pass.
pub(super) async fn run(
    roster: &mut Roster,
    configs: BTreeMap<MerchantId, RoundConfig>,
    global: &ParameterSet,
    strategy: &mut Strategy,
    uniform_weights: bool,
) -> Result<Gathered, FederationError> {
    let config = configs
        .values()
        .next()
        .cloned()
        .ok_or(FederationError::EmptyCohort)?;
    let round = config.round;
    let privacy = Some(config.privacy.clone());
    let cohort: BTreeSet<MerchantId> = configs.keys().cloned().collect();
    let expected = super::send_round_start(roster, configs, global).await;

    let layout = global.spec();
    let deadline = Instant::now() + Duration::from_millis(config.update_deadline_ms);
    let collected = collect(
        roster,
        "update",
        &expected,
        deadline,
        |merchant, message| judge_update(&config, &cohort, &layout, merchant, message),
    )
    .await;

    let contributors: Vec<MerchantId> = collected.answers.keys().cloned().collect();
    if contributors.is_empty() {
        return Err(FederationError::NoContributors {
            round,
            missing: collected.missing,
        });
    }
    let train_loss = mean(collected.answers.values().map(|u| u.train_loss));
    let mut updates: Vec<Update> = collected.answers.into_values().collect();
    let num_examples = updates.iter().map(|u| u.num_examples).sum();

    let next = match privacy {
        Some(p) if p.mode == DpMode::Central => {
            for update in &mut updates {
                let mut flat = update.delta.to_flat();
                clip_in_place(&mut flat, p.clip_norm)?;
                update.delta = ParameterSet::from_flat(&layout, &flat)?;
            }
            let mut sum = WeightedSum::zeros(global.num_values());
            for update in &updates {
                sum.add(&layout, &update.delta, 1.0)?;
            }
            let mut noisy = sum.sum().to_vec();
            add_central_noise(&mut noisy, &p)?;
            let noisy = WeightedSum::new(noisy, sum.total_weight())?;
            strategy.apply_weighted_sum(global, &noisy)?
        }
        _ if uniform_weights => {
            for update in &mut updates {
                update.num_examples = 1;
            }
            strategy.aggregate(global, &updates)?
        }
        _ => strategy.aggregate(global, &updates)?,
    };

    Ok(Gathered {
        next_global: next,
        contributors,
        missing: collected.missing,
        shares_arrived: updates.len(),
        num_examples,
        clip_bit_count: None,
        train_loss,
    })
}

/// Accepts an update that passes [`validate_update`]; a late update for an earlier
/// round is ignored rather than held against the node.
fn judge_update(
    config: &RoundConfig,
    cohort: &BTreeSet<MerchantId>,
    layout: &[TensorSpec],
    merchant: &MerchantId,
    message: Message,
) -> Verdict<Update> {
    match message {
        Message::Update(update) => match validate_update(config, cohort, layout, merchant, &update)
        {
            Ok(()) => Verdict::Accept(update),
            Err(UpdateRejection::PastRound { given, .. }) => {
                warn!(%merchant, round = config.round, update_round = given, "late update for an earlier round; ignored");
                Verdict::Ignore
            }
            Err(rejection) => Verdict::Refuse(rejection.to_string()),
        },
        Message::Decline(decline) if decline.round == config.round => {
            Verdict::Refuse(format!("declined: {}", decline.reason))
        }
        _ => Verdict::Ignore,
    }
}

/// Mean of an iterator of f64, `None` when empty.
pub(super) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / count as f64)
}
