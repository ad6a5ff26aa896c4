//! The update phase with secure aggregation (SecAgg / SecAgg+): keys, shares, masked
//! updates, unmasking. The aggregator routes and sums; `hansa-privacy`'s
//! [`SecAggServer`] holds the protocol state and refuses anything out of order.
//!
//! A node that drops at any phase is simply absent from the next one; the sum is still
//! recovered while at least the threshold of each neighbourhood survives, and otherwise
//! the round is aborted with nothing applied.

use std::collections::{BTreeMap, BTreeSet};

use hansa_privacy::protect::{decode_sum, extra_words};
use hansa_privacy::secagg::SecAggServer;
use hansa_protocol::messages::RoundConfig;
use hansa_protocol::{MerchantId, Message, ParameterSet};
use tokio::time::{Duration, Instant};
use tracing::{info, warn};

use super::collect::{collect, Collected, Verdict};
use super::roster::Roster;
use super::{send_round_start, FederationError, Gathered};
use crate::strategy::{Strategy, WeightedSum};

/// Deadlines of the secure phases, in milliseconds.
pub(super) struct SecureDeadlines {
    /// Keys, shares and unmasking.
    pub phase_ms: u64,
    /// Local training and the masked update.
    pub update_ms: u64,
}

/// Runs the secure phases of one round and applies the unmasked sum.
pub(super) async fn run(
    roster: &mut Roster,
    configs: BTreeMap<MerchantId, RoundConfig>,
    global: &ParameterSet,
    strategy: &mut Strategy,
    deadlines: SecureDeadlines,
    noise_shares: usize,
    adaptive_clip: bool,
) -> Result<Gathered, FederationError> {
    let first = configs
        .values()
        .next()
        .ok_or(FederationError::EmptyCohort)?;
    let round = first.round;
    let grid_step = first.privacy.grid_step;
    let threshold = first
        .secure_aggregation
        .as_ref()
        .map_or(2, |s| s.threshold as usize);
    let graph: BTreeMap<MerchantId, Vec<MerchantId>> = configs
        .iter()
        .map(|(m, c)| {
            let neighbours = c.secure_aggregation.as_ref().map(|s| s.neighbours.clone());
            (m.clone(), neighbours.unwrap_or_default())
        })
        .collect();
    let dimension = global.num_values();
    let vector_len = dimension + extra_words(adaptive_clip);
    let mut server = SecAggServer::new(round, graph, threshold, vector_len)?;
    let phase = |ms| Instant::now() + Duration::from_millis(ms);
    let mut missing = BTreeMap::new();

    let mut alive = send_round_start(roster, configs, global).await;

    // 1. Keys.
    let keys = collect(
        roster,
        "advertise-keys",
        &alive,
        phase(deadlines.phase_ms),
        |_, m| match m {
            Message::AdvertiseKeys(k) if k.round == round => Verdict::Accept(k),
            Message::Decline(d) if d.round == round => {
                Verdict::Refuse(format!("declined: {}", d.reason))
            }
            _ => Verdict::Ignore,
        },
    )
    .await;
    alive = absorb(keys, &mut missing, |m, k| server.receive_keys(m, k));
    let rosters = server.key_rosters()?;
    alive = deliver(roster, rosters, Message::KeyRoster, &alive, &mut missing).await;

    // 2. Encrypted shares, routed.
    let shares = collect(
        roster,
        "encrypted-shares",
        &alive,
        phase(deadlines.phase_ms),
        |_, m| match m {
            Message::EncryptedShares(s) if s.round == round => Verdict::Accept(s),
            _ => Verdict::Ignore,
        },
    )
    .await;
    alive = absorb(shares, &mut missing, |m, s| server.receive_shares(m, s));
    let deliveries = server.share_deliveries()?;
    alive = deliver(
        roster,
        deliveries,
        Message::ShareDelivery,
        &alive,
        &mut missing,
    )
    .await;

    // 3. Masked updates: the nodes train now, so this phase has the long deadline.
    let masked = collect(
        roster,
        "masked-update",
        &alive,
        phase(deadlines.update_ms),
        |_, m| match m {
            Message::MaskedUpdate(u) if u.round == round => Verdict::Accept(u),
            Message::Decline(d) if d.round == round => {
                Verdict::Refuse(format!("declined: {}", d.reason))
            }
            _ => Verdict::Ignore,
        },
    )
    .await;
    alive = absorb(masked, &mut missing, |m, u| server.receive_masked(m, &u));
    let contributors: Vec<MerchantId> = server.contributors().cloned().collect();
    info!(
        round,
        contributors = contributors.len(),
        "masked updates in"
    );
    if contributors.len() < noise_shares {
        return Err(FederationError::TooFewNoiseShares {
            round,
            arrived: contributors.len(),
            needed: noise_shares,
        });
    }
    let requests = server.unmask_requests()?;
    alive = deliver(
        roster,
        requests,
        Message::UnmaskRequest,
        &alive,
        &mut missing,
    )
    .await;

    // 4. Unmasking.
    let replies = collect(
        roster,
        "unmask-reply",
        &alive,
        phase(deadlines.phase_ms),
        |_, m| match m {
            Message::UnmaskReply(r) if r.round == round => Verdict::Accept(r),
            _ => Verdict::Ignore,
        },
    )
    .await;
    absorb(replies, &mut missing, |m, r| {
        server.receive_unmask_reply(m, r)
    });
    let sum = server.finish()?;
    // A contributor that left after its masked update is in the sum, not missing.
    missing.retain(|merchant, _| !sum.contributors.contains(merchant));

    let decoded = decode_sum(&sum.words, dimension, grid_step, adaptive_clip)?;
    let weighted = WeightedSum::new(decoded.weighted_sum, decoded.total_weight)?;
    let next_global = strategy.apply_weighted_sum(global, &weighted)?;
    Ok(Gathered {
        next_global,
        shares_arrived: sum.contributors.len(),
        contributors: sum.contributors,
        missing,
        num_examples: 0,
        train_loss: None,
        clip_bit_count: decoded.clip_bit_count,
    })
}

/// Feeds a phase's answers to the protocol state; returns who is still in the round.
fn absorb<T>(
    collected: Collected<T>,
    missing: &mut BTreeMap<MerchantId, String>,
    mut receive: impl FnMut(&MerchantId, T) -> Result<(), hansa_privacy::PrivacyError>,
) -> BTreeSet<MerchantId> {
    missing.extend(collected.missing);
    let mut alive = BTreeSet::new();
    for (merchant, answer) in collected.answers {
        match receive(&merchant, answer) {
            Ok(()) => {
                alive.insert(merchant);
            }
            Err(e) => {
                warn!(%merchant, error = %e, "secure-aggregation message refused");
                missing.insert(merchant, e.to_string());
            }
        }
    }
    alive
}

/// Sends each node its own message of a phase; a node whose outbox is gone drops out.
async fn deliver<T>(
    roster: &mut Roster,
    messages: BTreeMap<MerchantId, T>,
    wrap: fn(T) -> Message,
    alive: &BTreeSet<MerchantId>,
    missing: &mut BTreeMap<MerchantId, String>,
) -> BTreeSet<MerchantId> {
    let mut reached = BTreeSet::new();
    for (merchant, message) in messages {
        if !alive.contains(&merchant) {
            continue;
        }
        if roster
            .send(&merchant, std::sync::Arc::new(wrap(message)))
            .await
        {
            reached.insert(merchant);
        } else {
            missing.insert(merchant, "link closed".into());
        }
    }
    reached
}
