//! The privacy ledger: ρ charged per round, ε composed at δ, and the budget check.
//!
//! A pure, serialisable value. The aggregator and every node keep one each (a node
//! refuses to send an update its own ledger cannot afford, whatever the aggregator
//! asks); both persist it through their own stores with [`Ledger::to_bytes`] and
//! [`Ledger::from_bytes`].

use std::fmt;

use hansa_protocol::Round;
use serde::{Deserialize, Serialize};

use crate::accountant::epsilon;
use crate::error::{PrivacyError, Result};
use crate::settings::{open_unit, positive};

/// One charged round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The round charged.
    pub round: Round,
    /// zCDP ρ of the round (update and, with adaptive clipping, the clip-bit release).
    pub rho: f64,
    /// ε composed over all rounds up to and including this one, at the ledger's δ.
    pub epsilon_after: f64,
}

/// A budget of `max_epsilon` at `delta` and the rounds charged against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    max_epsilon: f64,
    delta: f64,
    entries: Vec<LedgerEntry>,
}

/// Why a round may not run: what was spent, what it would spend, the limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRefusal {
    /// The refused round.
    pub round: Round,
    /// ε spent before the round, at `delta`.
    pub epsilon_spent: f64,
    /// ε after the round, had it run.
    pub epsilon_would_spend: f64,
    /// The budget's maximum ε.
    pub max_epsilon: f64,
    /// The budget's δ.
    pub delta: f64,
}

impl fmt::Display for BudgetRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "round {} refused: the privacy budget is spent. Spent so far ε = {:.4}; this round \
             would bring it to ε = {:.4}; the limit is ε = {:.4} (all at δ = {:e})",
            self.round, self.epsilon_spent, self.epsilon_would_spend, self.max_epsilon, self.delta
        )
    }
}

impl Ledger {
    /// An empty ledger with a budget of `max_epsilon` at `delta`.
    pub fn new(max_epsilon: f64, delta: f64) -> Result<Self> {
        Ok(Self {
            max_epsilon: positive("budget.max_epsilon", max_epsilon)?,
            delta: open_unit("budget.delta", delta)?,
            entries: Vec::new(),
        })
    }

    /// The budget's maximum ε.
    pub fn max_epsilon(&self) -> f64 {
        self.max_epsilon
    }

    /// The budget's δ.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// Charged rounds, oldest first.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// ρ composed over all charged rounds.
    pub fn rho_spent(&self) -> f64 {
        self.entries.iter().map(|e| e.rho).sum()
    }

    /// ε spent so far at the ledger's δ (0 before any round).
    pub fn epsilon_spent(&self) -> Result<f64> {
        epsilon(self.rho_spent(), self.delta)
    }

    /// ε the ledger would show after charging `rho` more, or the refusal in plain words
    /// when that exceeds the limit. Changes nothing.
    pub fn check(&self, round: Round, rho: f64) -> Result<f64> {
        if !(rho >= 0.0 && rho.is_finite()) {
            return Err(PrivacyError::OutOfRange {
                name: "round rho",
                detail: format!("must be finite and at least 0, got {rho}"),
            });
        }
        if let Some(last) = self.entries.last() {
            if round <= last.round {
                return Err(PrivacyError::OutOfRange {
                    name: "round",
                    detail: format!(
                        "round {round} is not after the last charged round {}",
                        last.round
                    ),
                });
            }
        }
        let spent = self.epsilon_spent()?;
        let would = epsilon(self.rho_spent() + rho, self.delta)?;
        if would > self.max_epsilon {
            return Err(PrivacyError::BudgetExceeded(BudgetRefusal {
                round,
                epsilon_spent: spent,
                epsilon_would_spend: would,
                max_epsilon: self.max_epsilon,
                delta: self.delta,
            }));
        }
        Ok(would)
    }

    /// Checks, then records the round's ρ. On refusal the ledger is unchanged.
    pub fn charge(&mut self, round: Round, rho: f64) -> Result<&LedgerEntry> {
        let epsilon_after = self.check(round, rho)?;
        self.entries.push(LedgerEntry {
            round,
            rho,
            epsilon_after,
        });
        Ok(&self.entries[self.entries.len() - 1])
    }

    /// Encodes the ledger for a store (postcard).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| PrivacyError::LedgerEncoding(e.to_string()))
    }

    /// Decodes a stored ledger and re-validates its budget.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let ledger: Self =
            postcard::from_bytes(bytes).map_err(|e| PrivacyError::LedgerEncoding(e.to_string()))?;
        positive("budget.max_epsilon", ledger.max_epsilon)?;
        open_unit("budget.delta", ledger.delta)?;
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_rounds_and_composes_epsilon() {
        let mut ledger = Ledger::new(5.0, 1e-5).unwrap();
        assert_eq!(ledger.epsilon_spent().unwrap(), 0.0);
        ledger.charge(1, 0.05).unwrap();
        let entry = ledger.charge(2, 0.05).unwrap().clone();
        assert_eq!(entry.round, 2);
        // Two rounds of ρ = 0.05 compose to ρ = 0.1: ε ≈ 1.914 at δ = 1e-5.
        assert!(
            (entry.epsilon_after - 1.914).abs() < 5e-4,
            "{}",
            entry.epsilon_after
        );
        assert!((ledger.rho_spent() - 0.1).abs() < 1e-15);
    }

    #[test]
    fn refuses_a_round_past_the_budget_in_plain_words_and_changes_nothing() {
        let mut ledger = Ledger::new(2.0, 1e-5).unwrap();
        ledger.charge(1, 0.1).unwrap();
        let before = ledger.clone();
        let err = ledger.charge(2, 0.1).unwrap_err();
        let PrivacyError::BudgetExceeded(refusal) = &err else {
            panic!("{err}")
        };
        assert!((refusal.epsilon_spent - 1.914).abs() < 5e-4);
        assert!(refusal.epsilon_would_spend > 2.0);
        let text = err.to_string();
        assert!(text.contains("round 2 refused"), "{text}");
        assert!(text.contains("Spent so far ε = 1.91"), "{text}");
        assert!(text.contains("the limit is ε = 2.0000"), "{text}");
        assert_eq!(ledger, before);
    }

    #[test]
    fn refuses_charging_a_round_twice() {
        let mut ledger = Ledger::new(10.0, 1e-5).unwrap();
        ledger.charge(3, 0.01).unwrap();
        assert!(ledger
            .charge(3, 0.01)
            .unwrap_err()
            .to_string()
            .contains("not after"));
    }

    #[test]
    fn survives_a_round_trip_through_bytes() {
        let mut ledger = Ledger::new(8.0, 1e-6).unwrap();
        ledger.charge(1, 0.02).unwrap();
        let back = Ledger::from_bytes(&ledger.to_bytes().unwrap()).unwrap();
        assert_eq!(back, ledger);
        assert!(Ledger::from_bytes(&[1, 2]).is_err());
    }

    #[test]
    fn refuses_bad_budgets_by_name() {
        let err = Ledger::new(f64::NAN, 1e-5).unwrap_err().to_string();
        assert!(err.contains("budget.max_epsilon"), "{err}");
        let err = Ledger::new(1.0, 0.0).unwrap_err().to_string();
        assert!(err.contains("budget.delta"), "{err}");
    }
}
