//! The fault plan: which merchant drops at which phase, straggles or attacks, per round.
//!
//! The plan is a pure function of the scenario's `[faults]`, the number of merchants and
//! the seed: asking twice gives the same answer, and the answer for one (round,
//! merchant) does not depend on which other merchants were asked about, so the run can
//! apply it to whatever cohort the aggregator picks.
//!
//! ```
//! use hansa_sim::faults::FaultPlan;
//! use hansa_sim::scenario::{Attack, FaultsSpec, PoisonSpec};
//!
//! let mut spec = FaultsSpec::default();
//! spec.dropout.update = 0.3;
//! spec.poisoned = Some(PoisonSpec {
//!     count: Some(2), merchants: None, from_round: 1, attack: Attack::SignFlip {},
//! });
//! let plan = FaultPlan::new(&spec, 10, false, 42).unwrap();
//! assert_eq!(plan.poisoned().len(), 2);
//! assert_eq!(plan.for_merchant(3, 5), plan.for_merchant(3, 5));
//! ```

use rand::{seq::index, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Uniform};

use crate::scenario::{Attack, DelaySpec, FaultsSpec};

/// Phases of a round at which a cohort member can drop, in order (DESIGN.md "One round").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropPhase {
    /// Before advertising its keys (secure aggregation only).
    AdvertiseKeys,
    /// Before sending its encrypted shares (secure aggregation only).
    ShareKeys,
    /// Before its (masked) update arrives.
    Update,
    /// Before answering the unmask request (secure aggregation only).
    Unmask,
}

impl DropPhase {
    /// The phase's name, as in `[faults.dropout]`.
    pub fn name(self) -> &'static str {
        match self {
            DropPhase::AdvertiseKeys => "advertise_keys",
            DropPhase::ShareKeys => "share_keys",
            DropPhase::Update => "update",
            DropPhase::Unmask => "unmask",
        }
    }
}

/// What happens to one merchant in one round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MerchantFaults {
    /// The phase at which it drops, if it does; it stays out for the rest of the round.
    pub drop: Option<DropPhase>,
    /// Extra delay before each of its messages, in milliseconds (0 when it does not
    /// straggle). The run compares it with the round's update deadline.
    pub delay_ms: f64,
    /// The attack it mounts this round, if it is poisoned and the attack has begun.
    pub attack: Option<Attack>,
}

/// Errors building a fault plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    /// More poisoned merchants asked for than there are merchants.
    #[error("faults.poisoned.count = {count} exceeds the number of merchants ({merchants})")]
    TooManyPoisoned {
        /// Asked for.
        count: u32,
        /// Merchants in the run.
        merchants: u32,
    },
    /// A listed poisoned merchant is not a merchant index.
    #[error("faults.poisoned.merchants lists {index}, but merchants are 0..{merchants}")]
    NoSuchMerchant {
        /// The bad index.
        index: u32,
        /// Merchants in the run.
        merchants: u32,
    },
    /// A delay distribution cannot be built from its parameters.
    #[error("faults.stragglers.delay: {0}")]
    BadDelay(String),
}

/// A delay distribution ready to sample, in ms.
#[derive(Debug, Clone, Copy)]
enum Delay {
    Fixed(f64),
    Uniform(Uniform<f64>),
    Exponential(Exp<f64>),
    LogNormal(LogNormal<f64>),
}

impl Delay {
    fn new(spec: DelaySpec) -> Result<Self, FaultError> {
        let bad = |e: &dyn std::fmt::Display| FaultError::BadDelay(format!("{spec:?}: {e}"));
        Ok(match spec {
            DelaySpec::Fixed { delay_ms } => Delay::Fixed(delay_ms),
            DelaySpec::Uniform { min_ms, max_ms } => {
                Delay::Uniform(Uniform::new_inclusive(min_ms, max_ms))
            }
            DelaySpec::Exponential { mean_ms } => {
                Delay::Exponential(Exp::new(1.0 / mean_ms).map_err(|e| bad(&e))?)
            }
            DelaySpec::LogNormal { median_ms, sigma } => {
                Delay::LogNormal(LogNormal::new(median_ms.ln(), sigma).map_err(|e| bad(&e))?)
            }
        })
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Delay::Fixed(ms) => *ms,
            Delay::Uniform(d) => d.sample(rng),
            Delay::Exponential(d) => d.sample(rng),
            Delay::LogNormal(d) => d.sample(rng),
        }
    }
}

/// The faults of a whole run, answered per (round, merchant).
#[derive(Debug, Clone)]
pub struct FaultPlan {
    seed: u64,
    /// Dropout probability per phase, in phase order; only the phases that exist.
    dropout: Vec<(DropPhase, f64)>,
    straggle_probability: f64,
    delay: Delay,
    /// Poisoned merchant indices, ascending.
    poisoned: Vec<u32>,
    attack: Option<(Attack, u64)>,
}

impl FaultPlan {
    /// Builds the plan for `merchants` merchants. Without secure aggregation a round has
    /// only the update phase, so only `dropout.update` applies (validation refuses the
    /// others without it).
    pub fn new(
        spec: &FaultsSpec,
        merchants: u32,
        secure_aggregation: bool,
        seed: u64,
    ) -> Result<Self, FaultError> {
        let d = spec.dropout;
        let dropout = if secure_aggregation {
            vec![
                (DropPhase::AdvertiseKeys, d.advertise_keys),
                (DropPhase::ShareKeys, d.share_keys),
                (DropPhase::Update, d.update),
                (DropPhase::Unmask, d.unmask),
            ]
        } else {
            vec![(DropPhase::Update, d.update)]
        };

        let (poisoned, attack) = match &spec.poisoned {
            None => (Vec::new(), None),
            Some(p) => {
                let mut chosen = match (&p.merchants, p.count) {
                    (Some(list), _) => {
                        if let Some(&index) = list.iter().find(|&&i| i >= merchants) {
                            return Err(FaultError::NoSuchMerchant { index, merchants });
                        }
                        list.clone()
                    }
                    (None, count) => {
                        let count = count.unwrap_or(0);
                        if count > merchants {
                            return Err(FaultError::TooManyPoisoned { count, merchants });
                        }
                        let mut rng = stream(seed, 0, 0);
                        index::sample(&mut rng, merchants as usize, count as usize)
                            .into_iter()
                            .map(|i| i as u32)
                            .collect()
                    }
                };
                chosen.sort_unstable();
                (chosen, Some((p.attack, p.from_round)))
            }
        };

        Ok(Self {
            seed,
            dropout,
            straggle_probability: spec.stragglers.probability,
            delay: Delay::new(spec.stragglers.delay)?,
            poisoned,
            attack,
        })
    }

    /// The poisoned merchants' indices, ascending.
    pub fn poisoned(&self) -> &[u32] {
        &self.poisoned
    }

    /// What happens to `merchant` (0-based index) in `round` (1-based).
    ///
    /// Drawn from its own ChaCha8 stream per (round, merchant): one uniform per phase,
    /// then one for straggling and, when it straggles, one delay.
    pub fn for_merchant(&self, round: u64, merchant: u32) -> MerchantFaults {
        let mut rng = stream(self.seed, round, merchant);
        let mut drop = None;
        for &(phase, p) in &self.dropout {
            let fires = rng.gen_bool(p);
            if fires && drop.is_none() {
                drop = Some(phase);
            }
        }
        let delay_ms = if rng.gen_bool(self.straggle_probability) {
            self.delay.sample(&mut rng).max(0.0)
        } else {
            0.0
        };
        let attack = self.attack.and_then(|(attack, from_round)| {
            (round >= from_round && self.poisoned.binary_search(&merchant).is_ok())
                .then_some(attack)
        });
        MerchantFaults {
            drop,
            delay_ms,
            attack,
        }
    }
}

/// The generator for one (round, merchant); (0, 0) chooses the poisoned merchants.
/// Rounds are taken modulo 2³² (a run of more rounds would reuse streams).
fn stream(seed: u64, round: u64, merchant: u32) -> ChaCha8Rng {
    // "faults" in ASCII: keeps these streams apart from the partition's for one seed.
    const FAULTS_DOMAIN: u64 = 0x6661_756c_7473;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ FAULTS_DOMAIN);
    rng.set_stream((round << 32) | u64::from(merchant));
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::PoisonSpec;

    fn spec(update: f64) -> FaultsSpec {
        let mut spec = FaultsSpec::default();
        spec.dropout.update = update;
        spec
    }

    #[test]
    fn dropout_rate_matches_the_probability() {
        let plan = FaultPlan::new(&spec(0.3), 1000, false, 9).unwrap();
        let drops = (1..=20)
            .flat_map(|r| (0..1000).map(move |m| (r, m)))
            .filter(|&(r, m)| plan.for_merchant(r, m).drop == Some(DropPhase::Update))
            .count();
        // 20,000 Bernoulli(0.3): mean 6,000, sd ≈ 65; ±5 sd.
        assert!((5675..=6325).contains(&drops), "{drops}");
    }

    #[test]
    fn only_the_update_phase_exists_without_secure_aggregation() {
        let mut s = spec(0.0);
        s.dropout.advertise_keys = 1.0;
        let plain = FaultPlan::new(&s, 4, false, 1).unwrap();
        assert_eq!(plain.for_merchant(1, 0).drop, None);
        let masked = FaultPlan::new(&s, 4, true, 1).unwrap();
        assert_eq!(
            masked.for_merchant(1, 0).drop,
            Some(DropPhase::AdvertiseKeys)
        );
    }

    #[test]
    fn poisoned_merchants_attack_from_their_round() {
        let mut s = spec(0.0);
        s.poisoned = Some(PoisonSpec {
            count: None,
            merchants: Some(vec![4, 1]),
            from_round: 3,
            attack: Attack::ScaledUpdate { factor: 10.0 },
        });
        let plan = FaultPlan::new(&s, 5, false, 0).unwrap();
        assert_eq!(plan.poisoned(), &[1, 4]);
        assert_eq!(plan.for_merchant(2, 1).attack, None);
        assert_eq!(
            plan.for_merchant(3, 1).attack,
            Some(Attack::ScaledUpdate { factor: 10.0 })
        );
        assert_eq!(plan.for_merchant(3, 2).attack, None);
        s.poisoned.as_mut().unwrap().merchants = Some(vec![5]);
        assert_eq!(
            FaultPlan::new(&s, 5, false, 0).unwrap_err().to_string(),
            "faults.poisoned.merchants lists 5, but merchants are 0..5"
        );
    }

    #[test]
    fn straggler_delays_follow_the_distribution() {
        let mut s = spec(0.0);
        s.stragglers.probability = 1.0;
        s.stragglers.delay = DelaySpec::Exponential { mean_ms: 200.0 };
        let plan = FaultPlan::new(&s, 2000, false, 5).unwrap();
        let delays: Vec<f64> = (0..2000)
            .map(|m| plan.for_merchant(1, m).delay_ms)
            .collect();
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        // Exponential(mean 200): sd of the mean of 2,000 ≈ 4.5 ms.
        assert!((180.0..220.0).contains(&mean), "{mean}");
        s.stragglers.delay = DelaySpec::Uniform {
            min_ms: 10.0,
            max_ms: 20.0,
        };
        let plan = FaultPlan::new(&s, 100, false, 5).unwrap();
        assert!((0..100).all(|m| (10.0..=20.0).contains(&plan.for_merchant(2, m).delay_ms)));
    }

    #[test]
    fn the_plan_is_a_pure_function_of_the_seed() {
        let mut s = spec(0.5);
        s.poisoned = Some(PoisonSpec {
            count: Some(3),
            merchants: None,
            from_round: 1,
            attack: Attack::SignFlip {},
        });
        let a = FaultPlan::new(&s, 50, true, 11).unwrap();
        let b = FaultPlan::new(&s, 50, true, 11).unwrap();
        let c = FaultPlan::new(&s, 50, true, 12).unwrap();
        assert_eq!(a.poisoned(), b.poisoned());
        let drops = |p: &FaultPlan| {
            (0..50)
                .map(|m| p.for_merchant(4, m).drop)
                .collect::<Vec<_>>()
        };
        assert_eq!(drops(&a), drops(&b));
        assert_ne!(drops(&a), drops(&c));
    }
}
