//! Secure aggregation in the style of SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et
//! al. 2020): the aggregator learns only the sum of the masked vectors, mod 2^32.
//!
//! Threat model (v1): an honest-but-curious aggregator and authenticated nodes. Each
//! node's vector is hidden by a self mask (from a fresh seed) and by pairwise masks
//! agreed with each neighbour by X25519; pairwise masks cancel in the sum, self masks
//! are removed with Shamir shares of the seeds held by neighbours. For a node that
//! dropped after the neighbours masked with it, the survivors reveal shares of its mask
//! secret key instead, and the aggregator recomputes and removes its pairwise masks.
//! Nodes never reveal both secrets of one merchant, so no single vector is unmasked.
//!
//! Limitation: a malicious aggregator could lie about who dropped to different nodes
//! (SecAgg's consistency round with signatures is not implemented), could send a node
//! forged roster keys (no public-key infrastructure binds round keys to certificates
//! here; the transport's mTLS authenticates the messages' sender only), and can withhold
//! or corrupt the result. Recovered self-mask seeds are not checked against a
//! commitment, so a node that sends a wrong share corrupts the sum undetected (a
//! commitment to each seed would lift this; mask keys are checked against their
//! advertised public key).

pub mod graph;
pub mod node;
pub mod primitives;
pub mod server;

pub use graph::neighbour_graph;
pub use node::SecAggNode;
pub use server::{SecAggServer, UnmaskedSum};

/// HKDF purpose of the key that seals shares between two nodes.
const SHARE_KEY_PURPOSE: &str = "share key";

/// HKDF purpose of the pairwise mask seed.
const MASK_SEED_PURPOSE: &str = "pairwise mask";
