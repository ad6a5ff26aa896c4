//! The aggregator's side of secure aggregation: routing keys and shares, summing masked
//! vectors, and removing the masks with the survivors' shares.
//!
//! Phases: keys → rosters → shares → deliveries → masked updates → unmask requests →
//! replies → [`SecAggServer::finish`]. At each closing step the server checks that every
//! secret it will need still has at least t holders; if not, the round aborts with
//! [`PrivacyError::TooFewSurvivors`] and nothing partial comes out.

use std::collections::{BTreeMap, BTreeSet};

use hansa_protocol::messages::{
    AdvertiseKeys, EncryptedShares, KeyRoster, MaskedUpdate, NeighbourKeys, SealedShare,
    ShareDelivery, UnmaskReply, UnmaskRequest,
};
use hansa_protocol::{MerchantId, Round};
use x25519_dalek::{PublicKey, StaticSecret};

use super::primitives::{agree, apply_stream, public_key, recover, Sign};
use super::MASK_SEED_PURPOSE;
use crate::error::{PrivacyError, Result};

/// Where the server is in the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Keys,
    Shares,
    Masked,
    Replies,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Keys => "collecting keys",
            Phase::Shares => "collecting shares",
            Phase::Masked => "collecting masked updates",
            Phase::Replies => "collecting unmask replies",
        }
    }
}

/// The unmasked sum of a round.
#[derive(Debug, Clone, PartialEq)]
pub struct UnmaskedSum {
    /// Σ of the contributors' vectors, mod 2^32, word for word.
    pub words: Vec<u32>,
    /// Merchants whose vectors are in the sum (their noise shares arrived).
    pub contributors: Vec<MerchantId>,
}

/// The aggregator's secure-aggregation state for one round.
#[must_use = "the server must be driven to finish() to produce the sum"]
pub struct SecAggServer {
    round: Round,
    threshold: usize,
    vector_len: usize,
    graph: BTreeMap<MerchantId, BTreeSet<MerchantId>>,
    phase: Phase,
    keys: BTreeMap<MerchantId, AdvertiseKeys>,
    sealed: BTreeMap<MerchantId, Vec<SealedShare>>,
    mask_sets: BTreeMap<MerchantId, BTreeSet<MerchantId>>,
    sum: Vec<u32>,
    contributors: BTreeSet<MerchantId>,
    requests: BTreeMap<MerchantId, UnmaskRequest>,
    self_seed_shares: BTreeMap<MerchantId, Vec<Vec<u8>>>,
    mask_key_shares: BTreeMap<MerchantId, Vec<Vec<u8>>>,
}

impl SecAggServer {
    /// A round over `graph` (each merchant's neighbours, see
    /// [`super::neighbour_graph`]) with Shamir threshold `threshold` and masked vectors of
    /// `vector_len` words.
    pub fn new(
        round: Round,
        graph: BTreeMap<MerchantId, Vec<MerchantId>>,
        threshold: usize,
        vector_len: usize,
    ) -> Result<Self> {
        let graph: BTreeMap<_, BTreeSet<_>> = graph
            .into_iter()
            .map(|(m, ns)| (m, ns.into_iter().collect()))
            .collect();
        for (u, ns) in &graph {
            crate::settings::validate_secagg(&hansa_protocol::messages::SecAggSettings {
                neighbours: ns.iter().cloned().collect(),
                threshold: threshold as u32,
            })?;
            if let Some(v) = ns
                .iter()
                .find(|v| !graph.get(*v).is_some_and(|back| back.contains(u)))
            {
                return Err(PrivacyError::InvalidPayload {
                    what: "neighbour graph",
                    merchant: u.clone(),
                    detail: format!("neighbour {v} does not list {u} back"),
                });
            }
        }
        Ok(Self {
            round,
            threshold,
            vector_len,
            graph,
            phase: Phase::Keys,
            keys: BTreeMap::new(),
            sealed: BTreeMap::new(),
            mask_sets: BTreeMap::new(),
            sum: vec![0; vector_len],
            contributors: BTreeSet::new(),
            requests: BTreeMap::new(),
            self_seed_shares: BTreeMap::new(),
            mask_key_shares: BTreeMap::new(),
        })
    }

    fn expect(&self, phase: Phase, message: &'static str, round: Round) -> Result<()> {
        if round != self.round {
            return Err(PrivacyError::WrongRound {
                expected: self.round,
                got: round,
            });
        }
        if self.phase != phase {
            return Err(PrivacyError::UnexpectedPhase {
                round: self.round,
                message,
                phase: self.phase.name(),
            });
        }
        Ok(())
    }

    fn invalid(
        what: &'static str,
        merchant: &MerchantId,
        detail: impl Into<String>,
    ) -> PrivacyError {
        PrivacyError::InvalidPayload {
            what,
            merchant: merchant.clone(),
            detail: detail.into(),
        }
    }

    fn too_few(&self, phase: &'static str, survivors: usize) -> PrivacyError {
        tracing::warn!(
            round = self.round,
            phase,
            survivors,
            threshold = self.threshold,
            "secure aggregation aborts"
        );
        PrivacyError::TooFewSurvivors {
            phase,
            survivors,
            threshold: self.threshold,
        }
    }

    /// Records a node's advertised keys.
    pub fn receive_keys(&mut self, from: &MerchantId, keys: AdvertiseKeys) -> Result<()> {
        self.expect(Phase::Keys, "advertise keys", keys.round)?;
        if !self.graph.contains_key(from) {
            return Err(Self::invalid(
                "advertise keys",
                from,
                "not in the round's cohort",
            ));
        }
        public_key(&keys.cipher_public_key, from, "cipher public key")?;
        public_key(&keys.mask_public_key, from, "mask public key")?;
        if self.keys.insert(from.clone(), keys).is_some() {
            return Err(Self::invalid("advertise keys", from, "sent twice"));
        }
        Ok(())
    }

    /// Closes key collection: one roster per node that advertised, listing its
    /// neighbours that advertised too. Aborts if any has fewer than t such neighbours.
    pub fn key_rosters(&mut self) -> Result<BTreeMap<MerchantId, KeyRoster>> {
        self.expect(Phase::Keys, "key rosters", self.round)?;
        let mut rosters = BTreeMap::new();
        for u in self.keys.keys() {
            let neighbours: Vec<NeighbourKeys> = self.graph[u]
                .iter()
                .filter_map(|v| self.keys.get(v).map(|k| (v, k)))
                .map(|(v, k)| NeighbourKeys {
                    merchant: v.clone(),
                    cipher_public_key: k.cipher_public_key.clone(),
                    mask_public_key: k.mask_public_key.clone(),
                })
                .collect();
            if neighbours.len() < self.threshold {
                return Err(self.too_few("advertise keys", neighbours.len()));
            }
            rosters.insert(
                u.clone(),
                KeyRoster {
                    round: self.round,
                    neighbours,
                },
            );
        }
        if rosters.is_empty() {
            return Err(self.too_few("advertise keys", 0));
        }
        self.phase = Phase::Shares;
        Ok(rosters)
    }

    /// Records a node's sealed shares; each must be from it to one of its roster.
    pub fn receive_shares(&mut self, from: &MerchantId, shares: EncryptedShares) -> Result<()> {
        self.expect(Phase::Shares, "encrypted shares", shares.round)?;
        if !self.keys.contains_key(from) {
            return Err(Self::invalid(
                "encrypted shares",
                from,
                "did not advertise keys",
            ));
        }
        let roster: BTreeSet<&MerchantId> = self.graph[from]
            .iter()
            .filter(|v| self.keys.contains_key(*v))
            .collect();
        let mut seen = BTreeSet::new();
        for s in &shares.shares {
            if s.from != *from || !roster.contains(&s.to) || !seen.insert(&s.to) {
                return Err(Self::invalid(
                    "encrypted shares",
                    from,
                    format!("bad share from {} to {}", s.from, s.to),
                ));
            }
        }
        if seen.len() != roster.len() {
            // Partial sharing would make "u masks with v" differ from "v masks with u".
            return Err(Self::invalid(
                "encrypted shares",
                from,
                format!("{} shares for a roster of {}", seen.len(), roster.len()),
            ));
        }
        if self.sealed.insert(from.clone(), shares.shares).is_some() {
            return Err(Self::invalid("encrypted shares", from, "sent twice"));
        }
        Ok(())
    }

    /// Closes share collection: each node that sent shares gets those addressed to it
    /// by other senders; those senders are the neighbours it will mask with.
    pub fn share_deliveries(&mut self) -> Result<BTreeMap<MerchantId, ShareDelivery>> {
        self.expect(Phase::Shares, "share deliveries", self.round)?;
        let mut deliveries: BTreeMap<MerchantId, ShareDelivery> = self
            .sealed
            .keys()
            .map(|u| {
                (
                    u.clone(),
                    ShareDelivery {
                        round: self.round,
                        shares: Vec::new(),
                    },
                )
            })
            .collect();
        for shares in self.sealed.values() {
            for s in shares {
                if let Some(d) = deliveries.get_mut(&s.to) {
                    d.shares.push(s.clone());
                }
            }
        }
        for (u, d) in &deliveries {
            if d.shares.len() < self.threshold {
                return Err(self.too_few("share exchange", d.shares.len()));
            }
            self.mask_sets
                .insert(u.clone(), d.shares.iter().map(|s| s.from.clone()).collect());
        }
        if deliveries.is_empty() {
            return Err(self.too_few("share exchange", 0));
        }
        self.phase = Phase::Masked;
        Ok(deliveries)
    }

    /// Adds a node's masked vector into the running sum, mod 2^32.
    pub fn receive_masked(&mut self, from: &MerchantId, update: &MaskedUpdate) -> Result<()> {
        self.expect(Phase::Masked, "masked update", update.round)?;
        if !self.mask_sets.contains_key(from) {
            return Err(Self::invalid(
                "masked update",
                from,
                "did not take part in the share exchange",
            ));
        }
        if update.masked.len() != self.vector_len {
            return Err(PrivacyError::LengthMismatch {
                what: format!("masked update from {from}"),
                expected: self.vector_len,
                actual: update.masked.len(),
            });
        }
        if !self.contributors.insert(from.clone()) {
            return Err(Self::invalid("masked update", from, "sent twice"));
        }
        for (s, w) in self.sum.iter_mut().zip(&update.masked) {
            *s = s.wrapping_add(*w);
        }
        Ok(())
    }

    /// Merchants whose masked vectors are in the sum so far.
    pub fn contributors(&self) -> impl Iterator<Item = &MerchantId> {
        self.contributors.iter()
    }

    /// Closes masked-update collection: each contributor is asked for the self-seed
    /// shares of its surviving mask neighbours and the mask-key shares of its dropped
    /// ones (never both for one merchant, by construction: the two lists partition its
    /// mask neighbours). Aborts if a needed secret has fewer than t holders left.
    pub fn unmask_requests(&mut self) -> Result<BTreeMap<MerchantId, UnmaskRequest>> {
        self.expect(Phase::Masked, "unmask requests", self.round)?;
        self.check_holders("masked update", |_| true)?;
        for u in &self.contributors {
            let (survivors, dropped) = self.mask_sets[u]
                .iter()
                .cloned()
                .partition(|v| self.contributors.contains(v));
            self.requests.insert(
                u.clone(),
                UnmaskRequest {
                    round: self.round,
                    survivors,
                    dropped,
                },
            );
        }
        self.phase = Phase::Replies;
        Ok(self.requests.clone())
    }

    /// Every secret needed (each contributor's self seed; each dropped node's mask key
    /// when a contributor masked with it) must have ≥ t holders among contributors that
    /// `answers` accepts.
    fn check_holders(
        &self,
        phase: &'static str,
        answers: impl Fn(&MerchantId) -> bool,
    ) -> Result<()> {
        for (owner, holders) in &self.mask_sets {
            let live = holders
                .iter()
                .filter(|h| self.contributors.contains(*h) && answers(h))
                .count();
            let needed = self.contributors.contains(owner) || live > 0;
            if needed && live < self.threshold {
                return Err(self.too_few(phase, live));
            }
        }
        if self.contributors.is_empty() {
            return Err(self.too_few(phase, 0));
        }
        Ok(())
    }

    /// Records a contributor's revealed shares; only those its request asked for.
    pub fn receive_unmask_reply(&mut self, from: &MerchantId, reply: UnmaskReply) -> Result<()> {
        self.expect(Phase::Replies, "unmask reply", reply.round)?;
        let Some(request) = self.requests.get(from) else {
            return Err(Self::invalid(
                "unmask reply",
                from,
                "no unmask request was sent to it",
            ));
        };
        let asked_self: BTreeSet<&MerchantId> = request.survivors.iter().collect();
        let asked_key: BTreeSet<&MerchantId> = request.dropped.iter().collect();
        let self_ok = reply
            .self_mask_shares
            .iter()
            .all(|s| asked_self.contains(&s.owner));
        let key_ok = reply
            .mask_key_shares
            .iter()
            .all(|s| asked_key.contains(&s.owner));
        if !self_ok
            || !key_ok
            || reply.self_mask_shares.len() != asked_self.len()
            || reply.mask_key_shares.len() != asked_key.len()
        {
            return Err(Self::invalid(
                "unmask reply",
                from,
                "shares do not match the request",
            ));
        }
        self.requests.remove(from);
        for s in reply.self_mask_shares {
            self.self_seed_shares
                .entry(s.owner)
                .or_default()
                .push(s.share);
        }
        for s in reply.mask_key_shares {
            self.mask_key_shares
                .entry(s.owner)
                .or_default()
                .push(s.share);
        }
        Ok(())
    }

    /// Removes every mask and returns the sum. Aborts when some needed secret has fewer
    /// than t revealed shares (too many contributors went silent while unmasking).
    pub fn finish(mut self) -> Result<UnmaskedSum> {
        self.expect(Phase::Replies, "finish", self.round)?;
        let mut sum = std::mem::take(&mut self.sum);

        for owner in &self.contributors {
            let shares = self
                .self_seed_shares
                .get(owner)
                .map_or(&[][..], Vec::as_slice);
            if shares.len() < self.threshold {
                return Err(self.too_few("unmask reply", shares.len()));
            }
            let refs: Vec<&[u8]> = shares.iter().map(Vec::as_slice).collect();
            let seed = recover(&refs, self.threshold, owner)?;
            apply_stream(&mut sum, &seed, Sign::Subtract);
        }

        let dropped_with_masks = self.mask_sets.iter().filter(|(owner, holders)| {
            !self.contributors.contains(*owner)
                && holders.iter().any(|h| self.contributors.contains(h))
        });
        for (dropped, _) in dropped_with_masks {
            let shares = self
                .mask_key_shares
                .get(dropped)
                .map_or(&[][..], Vec::as_slice);
            self.cancel_pairwise_masks(&mut sum, dropped, shares)?;
        }
        tracing::info!(
            round = self.round,
            contributors = self.contributors.len(),
            dropped = self.mask_sets.len() - self.contributors.len(),
            "secure aggregation unmasked the sum"
        );
        Ok(UnmaskedSum {
            words: sum,
            contributors: self.contributors.into_iter().collect(),
        })
    }

    /// Recomputes the pairwise masks contributors shared with a dropped node from its
    /// recovered mask key, and removes them from the sum.
    fn cancel_pairwise_masks(
        &self,
        sum: &mut [u32],
        dropped: &MerchantId,
        shares: &[Vec<u8>],
    ) -> Result<()> {
        if shares.len() < self.threshold {
            return Err(self.too_few("unmask reply", shares.len()));
        }
        let refs: Vec<&[u8]> = shares.iter().map(Vec::as_slice).collect();
        let key_bytes = recover(&refs, self.threshold, dropped)?;
        let secret = StaticSecret::from(*key_bytes);
        let advertised = public_key(
            &self.keys[dropped].mask_public_key,
            dropped,
            "mask public key",
        )?;
        if PublicKey::from(&secret) != advertised {
            return Err(Self::invalid(
                "revealed share",
                dropped,
                "recovered mask key does not match its public key",
            ));
        }
        for u in self.mask_sets[dropped]
            .iter()
            .filter(|u| self.contributors.contains(*u))
        {
            let peer = public_key(&self.keys[u].mask_public_key, u, "mask public key")?;
            let (low, high) = if u < dropped {
                (u, dropped)
            } else {
                (dropped, u)
            };
            let seed = agree(&secret, &peer, MASK_SEED_PURPOSE, self.round, (low, high))?;
            // u added the stream when u sorts first, subtracted it otherwise: undo that.
            let sign = if u < dropped {
                Sign::Subtract
            } else {
                Sign::Add
            };
            apply_stream(sum, &seed, sign);
        }
        Ok(())
    }
}
