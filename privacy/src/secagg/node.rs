//! A node's side of secure aggregation: keys, shares, masking and unmask replies.
//!
//! Driven phase by phase with the protocol's messages: [`SecAggNode::new`] gives the
//! `AdvertiseKeys`; a `KeyRoster` yields `EncryptedShares`; a `ShareDelivery` fixes the
//! neighbours to mask with; [`SecAggNode::mask`] yields the `MaskedUpdate`; each
//! `UnmaskRequest` yields an `UnmaskReply`. Across all requests of a round the node never
//! reveals both the self-mask share and the mask-key share of one merchant.

use std::collections::{BTreeMap, BTreeSet};

use hansa_protocol::messages::{
    AdvertiseKeys, EncryptedShares, KeyRoster, MaskedUpdate, RevealedShare, SealedShare,
    SecAggSettings, ShareDelivery, UnmaskReply, UnmaskRequest,
};
use hansa_protocol::{MerchantId, Round};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::primitives::{agree, apply_stream, open, public_key, seal, split, Seed, Sign};
use super::{MASK_SEED_PURPOSE, SHARE_KEY_PURPOSE};
use crate::error::{PrivacyError, Result};
use crate::settings::validate_secagg;

/// Where a node is in the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    KeysAdvertised,
    SharesSent,
    SharesReceived,
    Masked,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::KeysAdvertised => "keys advertised",
            Phase::SharesSent => "shares sent",
            Phase::SharesReceived => "shares received",
            Phase::Masked => "masked update sent",
        }
    }
}

/// A node's two shares of one neighbour's secrets, as sealed for that neighbour.
#[derive(Serialize, Deserialize)]
struct SharePair {
    mask_key: Vec<u8>,
    self_seed: Vec<u8>,
}

/// Shares this node holds of one neighbour's secrets: (mask key share, self seed share).
type HeldShares = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>);

/// A neighbour's advertised public keys.
#[derive(Clone)]
struct PeerKeys {
    cipher: PublicKey,
    mask: PublicKey,
}

/// One node's secure-aggregation state for one round.
#[must_use = "a node must be driven through every phase of the round"]
pub struct SecAggNode {
    me: MerchantId,
    round: Round,
    threshold: usize,
    neighbours: BTreeSet<MerchantId>,
    cipher_secret: StaticSecret,
    mask_secret: StaticSecret,
    self_seed: Seed,
    phase: Phase,
    roster: BTreeMap<MerchantId, PeerKeys>,
    held: BTreeMap<MerchantId, HeldShares>,
    revealed_self_seed: BTreeSet<MerchantId>,
    revealed_mask_key: BTreeSet<MerchantId>,
}

impl SecAggNode {
    /// Starts a round: draws fresh keys and a self-mask seed from the OS and returns the
    /// keys to advertise.
    pub fn new(
        me: MerchantId,
        round: Round,
        settings: &SecAggSettings,
    ) -> Result<(Self, AdvertiseKeys)> {
        validate_secagg(settings)?;
        let cipher_secret = StaticSecret::random_from_rng(OsRng);
        let mask_secret = StaticSecret::random_from_rng(OsRng);
        let mut self_seed = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(self_seed.as_mut());
        let advertise = AdvertiseKeys {
            round,
            cipher_public_key: PublicKey::from(&cipher_secret).as_bytes().to_vec(),
            mask_public_key: PublicKey::from(&mask_secret).as_bytes().to_vec(),
        };
        let neighbours = settings
            .neighbours
            .iter()
            .filter(|n| **n != me)
            .cloned()
            .collect();
        let node = Self {
            me,
            round,
            threshold: settings.threshold as usize,
            neighbours,
            cipher_secret,
            mask_secret,
            self_seed,
            phase: Phase::KeysAdvertised,
            roster: BTreeMap::new(),
            held: BTreeMap::new(),
            revealed_self_seed: BTreeSet::new(),
            revealed_mask_key: BTreeSet::new(),
        };
        Ok((node, advertise))
    }

    /// The merchant this node is.
    pub fn merchant(&self) -> &MerchantId {
        &self.me
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

    /// Takes the neighbours' keys and returns this node's Shamir shares of its mask
    /// secret key and self-mask seed, sealed to each neighbour in the roster.
    pub fn on_key_roster(&mut self, roster: KeyRoster) -> Result<EncryptedShares> {
        self.expect(Phase::KeysAdvertised, "key roster", roster.round)?;
        for entry in roster.neighbours {
            let invalid = |detail: &str| PrivacyError::InvalidPayload {
                what: "key roster entry",
                merchant: entry.merchant.clone(),
                detail: detail.to_owned(),
            };
            if !self.neighbours.contains(&entry.merchant) {
                return Err(invalid("not a neighbour of this node in the round's graph"));
            }
            let keys = PeerKeys {
                cipher: public_key(
                    &entry.cipher_public_key,
                    &entry.merchant,
                    "cipher public key",
                )?,
                mask: public_key(&entry.mask_public_key, &entry.merchant, "mask public key")?,
            };
            if self.roster.insert(entry.merchant.clone(), keys).is_some() {
                return Err(invalid("listed twice"));
            }
        }
        if self.roster.len() < self.threshold {
            return Err(PrivacyError::TooFewSurvivors {
                phase: "key roster",
                survivors: self.roster.len(),
                threshold: self.threshold,
            });
        }

        let mask_key = Zeroizing::new(self.mask_secret.to_bytes());
        let key_shares = split(&mask_key, self.threshold, self.roster.len());
        let seed_shares = split(&self.self_seed, self.threshold, self.roster.len());
        let mut sealed = Vec::with_capacity(self.roster.len());
        for ((to, keys), (key_share, seed_share)) in
            self.roster.iter().zip(key_shares.iter().zip(&seed_shares))
        {
            let pair = SharePair {
                mask_key: key_share.to_vec(),
                self_seed: seed_share.to_vec(),
            };
            let plaintext = Zeroizing::new(postcard::to_allocvec(&pair).map_err(|e| {
                PrivacyError::InvalidPayload {
                    what: "share pair",
                    merchant: to.clone(),
                    detail: e.to_string(),
                }
            })?);
            let key = agree(
                &self.cipher_secret,
                &keys.cipher,
                SHARE_KEY_PURPOSE,
                self.round,
                (&self.me, to),
            )?;
            sealed.push(SealedShare {
                from: self.me.clone(),
                to: to.clone(),
                ciphertext: seal(&key, self.round, &self.me, to, &plaintext)?,
            });
        }
        self.phase = Phase::SharesSent;
        Ok(EncryptedShares {
            round: self.round,
            shares: sealed,
        })
    }

    /// Opens the shares neighbours sealed to this node. The senders become the
    /// neighbours this node masks with.
    pub fn on_share_delivery(&mut self, delivery: ShareDelivery) -> Result<()> {
        self.expect(Phase::SharesSent, "share delivery", delivery.round)?;
        for sealed in delivery.shares {
            let invalid = |detail: String| PrivacyError::InvalidPayload {
                what: "sealed share",
                merchant: sealed.from.clone(),
                detail,
            };
            if sealed.to != self.me {
                return Err(invalid(format!(
                    "addressed to {}, not to {}",
                    sealed.to, self.me
                )));
            }
            let Some(keys) = self.roster.get(&sealed.from) else {
                return Err(invalid("sender is not in this node's key roster".into()));
            };
            let key = agree(
                &self.cipher_secret,
                &keys.cipher,
                SHARE_KEY_PURPOSE,
                self.round,
                (&sealed.from, &self.me),
            )?;
            let plaintext = open(&key, self.round, &sealed.from, &self.me, &sealed.ciphertext)?;
            let pair: SharePair =
                postcard::from_bytes(&plaintext).map_err(|e| invalid(e.to_string()))?;
            let held = (
                Zeroizing::new(pair.mask_key),
                Zeroizing::new(pair.self_seed),
            );
            if self.held.insert(sealed.from.clone(), held).is_some() {
                return Err(invalid("delivered twice".into()));
            }
        }
        if self.held.len() < self.threshold {
            return Err(PrivacyError::TooFewSurvivors {
                phase: "share delivery",
                survivors: self.held.len(),
                threshold: self.threshold,
            });
        }
        self.phase = Phase::SharesReceived;
        Ok(())
    }

    /// Masks `words` (the quantised, noised update followed by the weight words):
    /// adds the self mask, and for each neighbour v whose share arrived adds the
    /// pairwise mask when this merchant's id sorts before v's, subtracts it otherwise.
    pub fn mask(&mut self, mut words: Vec<u32>) -> Result<MaskedUpdate> {
        self.expect(Phase::SharesReceived, "masking", self.round)?;
        apply_stream(&mut words, &self.self_seed, Sign::Add);
        for other in self.held.keys() {
            let keys = &self.roster[other];
            let (low, high) = if self.me < *other {
                (&self.me, other)
            } else {
                (other, &self.me)
            };
            let seed = agree(
                &self.mask_secret,
                &keys.mask,
                MASK_SEED_PURPOSE,
                self.round,
                (low, high),
            )?;
            let sign = if self.me < *other {
                Sign::Add
            } else {
                Sign::Subtract
            };
            apply_stream(&mut words, &seed, sign);
        }
        self.phase = Phase::Masked;
        Ok(MaskedUpdate {
            round: self.round,
            masked: words,
        })
    }

    /// Answers an unmask request: self-seed shares of the survivors, mask-key shares of
    /// the dropped. Refuses to reveal both secrets of any merchant across the round, and
    /// refuses when fewer than t merchants (this one included) are said to survive.
    pub fn on_unmask_request(&mut self, request: &UnmaskRequest) -> Result<UnmaskReply> {
        self.expect(Phase::Masked, "unmask request", request.round)?;
        let survivors: BTreeSet<&MerchantId> = request.survivors.iter().collect();
        let dropped: BTreeSet<&MerchantId> = request.dropped.iter().collect();
        for m in survivors.iter().chain(dropped.iter()) {
            if !self.held.contains_key(*m) {
                return Err(PrivacyError::InvalidPayload {
                    what: "unmask request",
                    merchant: (*m).clone(),
                    detail: "this node holds no share of that merchant".into(),
                });
            }
        }
        for m in &survivors {
            if dropped.contains(m) || self.revealed_mask_key.contains(*m) {
                tracing::warn!(round = self.round, merchant = %self.me, owner = %m, "refusing a double reveal");
                return Err(PrivacyError::DoubleReveal {
                    merchant: (*m).clone(),
                });
            }
        }
        for m in &dropped {
            if self.revealed_self_seed.contains(*m) {
                return Err(PrivacyError::DoubleReveal {
                    merchant: (*m).clone(),
                });
            }
        }
        tracing::debug!(
            round = self.round,
            merchant = %self.me,
            survivors = survivors.len(),
            dropped = dropped.len(),
            "answering unmask request"
        );
        if survivors.len() + 1 < self.threshold {
            return Err(PrivacyError::TooFewSurvivors {
                phase: "unmask request",
                survivors: survivors.len() + 1,
                threshold: self.threshold,
            });
        }

        let reveal = |owner: &MerchantId, share: &[u8]| RevealedShare {
            owner: owner.clone(),
            share: share.to_vec(),
        };
        let self_mask_shares = survivors
            .iter()
            .map(|m| reveal(m, &self.held[*m].1))
            .collect();
        let mask_key_shares = dropped
            .iter()
            .map(|m| reveal(m, &self.held[*m].0))
            .collect();
        self.revealed_self_seed
            .extend(survivors.into_iter().cloned());
        self.revealed_mask_key.extend(dropped.into_iter().cloned());
        Ok(UnmaskReply {
            round: self.round,
            self_mask_shares,
            mask_key_shares,
        })
    }
}
