//! Messages of one federated round (DESIGN.md "One round"), node ↔ aggregator.
//!
//! Every message travels inside an [`Envelope`] that carries [`PROTOCOL_VERSION`];
//! a peer refuses any other version by name. A merchant's identity is never a field
//! here: it is read from the node's TLS certificate by the transport.
//!
//! Secure-aggregation payloads are opaque bytes at this layer: their meaning belongs
//! to `hansa-privacy`, which sits above this crate.

use serde::{Deserialize, Serialize};

use crate::params::ParameterSet;

/// The wire protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;

/// A merchant's identity: the common name of its certificate, e.g. `merchant-007`.
pub type MerchantId = String;

/// A round number; round 0 is the initial model, the first trained round is 1.
pub type Round = u64;

/// The versioned wrapper around every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version of the sender; must equal [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The message itself.
    pub message: Message,
}

impl Envelope {
    /// Wraps a message with this build's protocol version.
    pub fn new(message: Message) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            message,
        }
    }
}

/// Everything a node and the aggregator say to each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Node → aggregator, first on every connection.
    Hello(Hello),
    /// Aggregator → node, the answer to [`Message::Hello`].
    Welcome(Welcome),
    /// Aggregator → cohort member: the round's settings.
    RoundConfig(RoundConfig),
    /// Aggregator → cohort member: the global shared parameters to train from.
    GlobalParameters(GlobalParameters),
    /// Node → aggregator: a plain update (secure aggregation off).
    Update(Update),
    /// Node → aggregator: its two public keys for this round (secure aggregation).
    AdvertiseKeys(AdvertiseKeys),
    /// Aggregator → cohort member: the public keys of its neighbours.
    KeyRoster(KeyRoster),
    /// Node → aggregator: encrypted Shamir shares, one per neighbour, for routing.
    EncryptedShares(EncryptedShares),
    /// Aggregator → node: the encrypted shares its neighbours addressed to it.
    ShareDelivery(ShareDelivery),
    /// Node → aggregator: its quantised, noised and masked update.
    MaskedUpdate(MaskedUpdate),
    /// Aggregator → survivor: which neighbours survived and which dropped.
    UnmaskRequest(UnmaskRequest),
    /// Survivor → aggregator: the shares needed to remove the masks.
    UnmaskReply(UnmaskReply),
    /// Aggregator → node: the round is complete; the new global model follows as
    /// [`Message::GlobalParameters`] for evaluation.
    RoundComplete(RoundComplete),
    /// Node → aggregator: metrics of the global model on the node's held-out data.
    EvaluationReport(EvaluationReport),
    /// Node → aggregator: the node will not take part in this round, and why
    /// (for instance its own privacy ledger would exceed its limit).
    Decline(Decline),
    /// Either way: a refusal or failure, said in words.
    Error(ErrorMessage),
}

impl Message {
    /// Short name of the message kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::RoundConfig(_) => "round-config",
            Message::GlobalParameters(_) => "global-parameters",
            Message::Update(_) => "update",
            Message::AdvertiseKeys(_) => "advertise-keys",
            Message::KeyRoster(_) => "key-roster",
            Message::EncryptedShares(_) => "encrypted-shares",
            Message::ShareDelivery(_) => "share-delivery",
            Message::MaskedUpdate(_) => "masked-update",
            Message::UnmaskRequest(_) => "unmask-request",
            Message::UnmaskReply(_) => "unmask-reply",
            Message::RoundComplete(_) => "round-complete",
            Message::EvaluationReport(_) => "evaluation-report",
            Message::Decline(_) => "decline",
            Message::Error(_) => "error",
        }
    }
}

/// A node's greeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The merchant id the node believes it has; checked against its certificate.
    pub merchant: MerchantId,
    /// The node's software version (its crate version), for the operator's logs.
    pub software_version: String,
    /// The last round whose global model the node holds, if any.
    pub last_round_seen: Option<Round>,
}

/// The aggregator's answer to a hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The merchant id as read from the node's certificate.
    pub merchant: MerchantId,
    /// The aggregator's software version.
    pub software_version: String,
    /// The last committed round.
    pub current_round: Round,
    /// True while the federation has no initial model: the node answers with
    /// [`Message::GlobalParameters`] for round 0 holding its seeded initialisation.
    pub wants_initial_model: bool,
}

/// How differential privacy is applied to a round (DESIGN.md "Privacy model").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DpMode {
    /// No noise; updates are still clipped when a clip norm is set.
    Off,
    /// The aggregator adds Gaussian noise to the sum; trusts the aggregator.
    Central,
    /// Every node adds the full noise to its own update.
    Local,
    /// Every node adds a discrete Gaussian share; the sum carries the full noise.
    /// Requires secure aggregation.
    Distributed,
}

/// Privacy settings of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacySettings {
    /// Where the noise is added.
    pub mode: DpMode,
    /// L2 bound C on one merchant's update, in parameter units.
    pub clip_norm: f64,
    /// Noise standard deviation as a multiple of the clip norm (σ = z · C).
    pub noise_multiplier: f64,
    /// Grid step s of the quantiser for secure aggregation, in parameter units.
    pub grid_step: f64,
    /// Number of noise shares the round provisions for (≥ the cohort size minus
    /// the expected dropouts); each share has variance σ² / this.
    pub noise_shares: u32,
}

/// Adaptive clipping of one round (Andrew et al., "Differentially Private Learning with
/// Adaptive Clipping"): each node also reports, as one more masked word with its own noise
/// share, whether its update norm was within the round's clip norm; the aggregator moves
/// the clip norm towards the target quantile of update norms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveClipSettings {
    /// Target fraction γ of updates within the clip norm, in (0, 1).
    pub target_quantile: f64,
    /// Geometric learning rate η of the clip norm.
    pub learning_rate: f64,
    /// Standard deviation of the noise on the count of "within" bits, in bits.
    pub bit_noise_std: f64,
}

/// Secure-aggregation settings of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecAggSettings {
    /// The merchants this node exchanges masks with (its neighbours in the round's graph).
    pub neighbours: Vec<MerchantId>,
    /// Shamir threshold t: shares needed to reconstruct a secret.
    pub threshold: u32,
}

/// The round's settings, sent to each member of the cohort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundConfig {
    /// The round being run.
    pub round: Round,
    /// How many merchants were selected for this round. Their names are not sent: a
    /// node needs only the count (for the no-wrap bound of the masked sum), and under
    /// secure aggregation it learns its neighbours from `secure_aggregation`. (Version 1
    /// sent the whole list, which grew as cohort² over a round's configs.)
    pub cohort_size: u32,
    /// Passes over the local training data.
    pub local_epochs: u32,
    /// Local learning rate.
    pub learning_rate: f32,
    /// Local mini-batch size, in examples.
    pub batch_size: u32,
    /// FedProx proximal weight μ; 0 for plain FedAvg.
    pub proximal_mu: f32,
    /// Differential-privacy settings.
    pub privacy: PrivacySettings,
    /// Secure aggregation, when on.
    pub secure_aggregation: Option<SecAggSettings>,
    /// Adaptive clipping, when on (distributed DP under secure aggregation only).
    pub adaptive_clip: Option<AdaptiveClipSettings>,
    /// How long the node has to send its update, from receipt of this config.
    pub update_deadline_ms: u64,
    /// Seed the node mixes into its local training randomness for this round.
    pub seed: u64,
}

/// Global shared parameters for a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalParameters {
    /// The round these parameters start (for evaluation: the round they finished).
    pub round: Round,
    /// Shared tensors only.
    pub parameters: ParameterSet,
}

/// A plain update: Δ = local − global for the shared tensors, already clipped (and
/// noised in `local` mode) by the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// The round this update answers.
    pub round: Round,
    /// Examples the node trained on; FedAvg's weight.
    pub num_examples: u64,
    /// The update, with the global model's layout.
    pub delta: ParameterSet,
    /// Training loss on the node's data at the end of local training.
    pub train_loss: f64,
}

/// A node's public keys for one round of secure aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvertiseKeys {
    /// The round.
    pub round: Round,
    /// X25519 public key used to encrypt shares (32 bytes).
    pub cipher_public_key: Vec<u8>,
    /// X25519 public key used to agree pairwise masks (32 bytes).
    pub mask_public_key: Vec<u8>,
}

/// One neighbour's advertised keys, as relayed by the aggregator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighbourKeys {
    /// The neighbour.
    pub merchant: MerchantId,
    /// Its share-encryption public key.
    pub cipher_public_key: Vec<u8>,
    /// Its mask-agreement public key.
    pub mask_public_key: Vec<u8>,
}

/// The keys of a node's neighbours that advertised in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRoster {
    /// The round.
    pub round: Round,
    /// Neighbours with keys, in a canonical order.
    pub neighbours: Vec<NeighbourKeys>,
}

/// An encrypted share addressed to one neighbour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedShare {
    /// Sender.
    pub from: MerchantId,
    /// Recipient.
    pub to: MerchantId,
    /// AEAD ciphertext of the sender's shares for the recipient.
    pub ciphertext: Vec<u8>,
}

/// A node's encrypted shares for all its neighbours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncryptedShares {
    /// The round.
    pub round: Round,
    /// One sealed share per neighbour.
    pub shares: Vec<SealedShare>,
}

/// The sealed shares addressed to one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareDelivery {
    /// The round.
    pub round: Round,
    /// Shares from neighbours that sent them in time.
    pub shares: Vec<SealedShare>,
}

/// A masked, quantised update: integers mod 2^32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskedUpdate {
    /// The round.
    pub round: Round,
    /// Masked quantised update, one word per shared parameter, followed by the masked
    /// aggregation weight.
    pub masked: Vec<u32>,
}

/// The aggregator's request to a survivor for the shares that unmask the sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmaskRequest {
    /// The round.
    pub round: Round,
    /// Neighbours whose masked update arrived: reveal their self-mask seed shares.
    pub survivors: Vec<MerchantId>,
    /// Neighbours whose masked update did not arrive: reveal their mask-key shares.
    pub dropped: Vec<MerchantId>,
}

/// One revealed Shamir share of a neighbour's secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevealedShare {
    /// Whose secret this is a share of.
    pub owner: MerchantId,
    /// The share, as encoded by `hansa-privacy`.
    pub share: Vec<u8>,
}

/// A survivor's answer to an unmask request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmaskReply {
    /// The round.
    pub round: Round,
    /// Shares of survivors' self-mask seeds.
    pub self_mask_shares: Vec<RevealedShare>,
    /// Shares of dropped nodes' mask secret keys.
    pub mask_key_shares: Vec<RevealedShare>,
}

/// The round committed; what the privacy ledger now says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundComplete {
    /// The round.
    pub round: Round,
    /// Merchants whose updates are in the sum.
    pub contributors: Vec<MerchantId>,
    /// Zero-concentrated DP ρ charged for this round (0 when DP is off).
    pub rho_charged: f64,
    /// ε spent so far at the federation's δ.
    pub epsilon_spent: f64,
    /// The federation's δ.
    pub delta: f64,
}

/// One named metric value, e.g. `rmse` or `hr@10`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Metric name.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// A node's evaluation of a global model on its held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// The round whose global model was evaluated.
    pub round: Round,
    /// Held-out examples evaluated; the weight of this report in the mean.
    pub num_examples: u64,
    /// Metric values.
    pub metrics: Vec<Metric>,
}

/// A node declining a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    /// The round.
    pub round: Round,
    /// Why, in plain words.
    pub reason: String,
}

/// Machine-readable cause of an [`ErrorMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The peer speaks another protocol version.
    UnsupportedVersion,
    /// The hello's merchant id differs from the certificate's.
    IdentityMismatch,
    /// A message arrived that the current phase does not expect.
    UnexpectedMessage,
    /// A message failed validation (layout, finiteness, round number, ...).
    InvalidMessage,
    /// The privacy budget does not allow the round.
    BudgetExhausted,
    /// The round was aborted (for instance too few survivors).
    RoundAborted,
    /// Anything else.
    Internal,
}

/// An error said to the peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// The cause.
    pub code: ErrorCode,
    /// What happened, in words.
    pub detail: String,
}
