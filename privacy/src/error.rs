//! The errors of hansa-privacy, grouped by cause.

use hansa_protocol::MerchantId;

/// Everything that can go wrong in clipping, noise, accounting and secure aggregation.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    // --- settings ---
    /// A numeric setting is NaN, infinite, zero or negative where it must be positive.
    #[error("setting `{name}` must be a finite number greater than 0, got {value}")]
    NotPositive {
        /// The setting's name, as in the configuration.
        name: &'static str,
        /// The refused value.
        value: f64,
    },
    /// A setting is out of its allowed range.
    #[error("setting `{name}` is out of range: {detail}")]
    OutOfRange {
        /// The setting's name.
        name: &'static str,
        /// What the range is and what was given.
        detail: String,
    },
    /// The quantised sum could wrap around 2^32 for these settings.
    #[error("quantised sum could wrap mod 2^32: {detail}")]
    WouldWrap {
        /// The bound that was computed and the limit it exceeds.
        detail: String,
    },

    // --- data ---
    /// An input vector holds NaN or infinity.
    #[error("{what} holds a non-finite value at index {index}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// First offending index.
        index: usize,
    },
    /// Two vectors that must have the same length do not.
    #[error("{what}: expected length {expected}, got {actual}")]
    LengthMismatch {
        /// Which vector.
        what: String,
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },

    // --- noise and accounting ---
    /// opendp refused or failed (sampler out of entropy, bad scale, conversion).
    #[error("opendp failed in {place}: {detail}")]
    OpenDp {
        /// Where we called opendp.
        place: &'static str,
        /// opendp's message.
        detail: String,
    },
    /// The round would exceed the privacy budget.
    #[error("{0}")]
    BudgetExceeded(crate::ledger::BudgetRefusal),
    /// A ledger could not be encoded or decoded.
    #[error("privacy ledger encoding failed: {0}")]
    LedgerEncoding(String),

    // --- secure aggregation ---
    /// A message came in a phase that does not expect it.
    #[error("secure aggregation of round {round}: {message} is not expected in phase {phase}")]
    UnexpectedPhase {
        /// The round.
        round: u64,
        /// What arrived.
        message: &'static str,
        /// The phase the state machine is in.
        phase: &'static str,
    },
    /// A message names another round.
    #[error("secure aggregation: message for round {got} while running round {expected}")]
    WrongRound {
        /// The round being run.
        expected: u64,
        /// The round named by the message.
        got: u64,
    },
    /// A key, share or ciphertext is malformed, or came from an unexpected merchant.
    #[error("secure aggregation: invalid {what} from {merchant}: {detail}")]
    InvalidPayload {
        /// Kind of payload.
        what: &'static str,
        /// Who sent or owns it.
        merchant: MerchantId,
        /// What is wrong.
        detail: String,
    },
    /// Too few merchants are left to recover the sum; the round must abort.
    #[error(
        "secure aggregation aborted in phase {phase}: {survivors} merchants survive, \
         threshold is {threshold}"
    )]
    TooFewSurvivors {
        /// The phase where the count fell below the threshold.
        phase: &'static str,
        /// How many survived.
        survivors: usize,
        /// The Shamir threshold t.
        threshold: usize,
    },
    /// The aggregator asked for both secrets of one merchant; the node refuses.
    #[error(
        "secure aggregation: refusing to reveal both the self-mask share and the mask-key \
         share of {merchant}"
    )]
    DoubleReveal {
        /// Whose secrets would both be revealed.
        merchant: MerchantId,
    },
}

/// Result with [`PrivacyError`].
pub type Result<T, E = PrivacyError> = std::result::Result<T, E>;
