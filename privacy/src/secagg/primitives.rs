//! The few primitives secure aggregation is built from, each a call into a kept crate:
//! X25519 agreement, HKDF-SHA256, ChaCha20-Poly1305 sealing, ChaCha12 mask streams and
//! Shamir sharing over GF(256) (blahaj).

use blahaj::{Share, Sharks};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use hansa_protocol::{MerchantId, Round};

use crate::error::{PrivacyError, Result};

/// A 32-byte secret seed (self-mask seed or pairwise mask seed), wiped on drop.
pub type Seed = Zeroizing<[u8; 32]>;

/// Words of one mask stream generated per buffer refill.
const STREAM_CHUNK_WORDS: usize = 1 << 14;

/// Below this many words a mask stream is expanded on the calling thread.
const MIN_PARALLEL_WORDS: usize = 1 << 16;

/// Parses a 32-byte X25519 public key sent by `merchant`.
pub fn public_key(bytes: &[u8], merchant: &str, what: &'static str) -> Result<PublicKey> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| PrivacyError::InvalidPayload {
        what,
        merchant: merchant.to_owned(),
        detail: format!("expected 32 bytes, got {}", bytes.len()),
    })?;
    Ok(PublicKey::from(array))
}

/// HKDF-SHA256 of an X25519 agreement, bound to a purpose, round and ordered pair of
/// merchants. Refuses a non-contributory (low-order) peer key.
pub fn agree(
    secret: &StaticSecret,
    peer: &PublicKey,
    purpose: &str,
    round: Round,
    pair: (&str, &str),
) -> Result<Seed> {
    let shared = secret.diffie_hellman(peer);
    if !shared.was_contributory() {
        return Err(PrivacyError::InvalidPayload {
            what: "public key",
            merchant: pair.1.to_owned(),
            detail: "low-order point: the agreement would be predictable".into(),
        });
    }
    let hkdf = Hkdf::<Sha256>::new(Some(b"hansa secure aggregation v1"), shared.as_bytes());
    let info = format!("{purpose}|round {round}|{}|{}", pair.0, pair.1);
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf.expand(info.as_bytes(), out.as_mut())
        .map_err(|_| PrivacyError::InvalidPayload {
            what: "key derivation",
            merchant: pair.1.to_owned(),
            detail: "HKDF output length refused".into(),
        })?;
    Ok(out)
}

/// The associated data that binds a sealed share to its round, sender and recipient.
fn share_aad(round: Round, from: &str, to: &str) -> Vec<u8> {
    format!("hansa share|round {round}|{from}|{to}").into_bytes()
}

/// Seals `plaintext` from `from` to `to` with a key used for this one message, so the
/// all-zero nonce is never reused under a key.
pub fn seal(key: &Seed, round: Round, from: &str, to: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
    let aad = share_aad(round, from, to);
    cipher
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| PrivacyError::InvalidPayload {
            what: "sealed share",
            merchant: from.to_owned(),
            detail: "encryption failed".into(),
        })
}

/// Opens a share sealed by [`seal`]; any tampering or misrouting fails authentication.
pub fn open(
    key: &Seed,
    round: Round,
    from: &str,
    to: &str,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
    let aad = share_aad(round, from, to);
    cipher
        .decrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| PrivacyError::InvalidPayload {
            what: "sealed share",
            merchant: from.to_owned(),
            detail: format!("authentication failed for the share addressed to {to}"),
        })
}

/// Whether a mask stream is added to or subtracted from the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// target += stream (mod 2^32).
    Add,
    /// target −= stream (mod 2^32).
    Subtract,
}

/// Adds (or subtracts) the ChaCha12 stream expanded from `seed` to `target`, word by
/// word mod 2^32, splitting long vectors across cores (each thread seeks the stream).
pub fn apply_stream(target: &mut [u32], seed: &Seed, sign: Sign) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || target.len() < MIN_PARALLEL_WORDS {
        apply_stream_from(target, seed, sign, 0);
        return;
    }
    let chunk = target.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (i, part) in target.chunks_mut(chunk).enumerate() {
            scope.spawn(move || apply_stream_from(part, seed, sign, i * chunk));
        }
    });
}

fn apply_stream_from(target: &mut [u32], seed: &Seed, sign: Sign, offset_words: usize) {
    let mut rng = ChaCha12Rng::from_seed(**seed);
    rng.set_word_pos(offset_words as u128);
    let mut buf = vec![0u32; STREAM_CHUNK_WORDS.min(target.len())];
    for part in target.chunks_mut(STREAM_CHUNK_WORDS) {
        let stream = &mut buf[..part.len()];
        rng.fill(stream);
        match sign {
            Sign::Add => part
                .iter_mut()
                .zip(stream.iter())
                .for_each(|(t, s)| *t = t.wrapping_add(*s)),
            Sign::Subtract => part
                .iter_mut()
                .zip(stream.iter())
                .for_each(|(t, s)| *t = t.wrapping_sub(*s)),
        }
    }
}

/// Splits a 32-byte secret into `count` Shamir shares, any `threshold` of which recover
/// it. Share i (0-based) has evaluation point i + 1; encoded as blahaj's bytes (x ‖ y).
pub fn split(secret: &[u8; 32], threshold: usize, count: usize) -> Vec<Zeroizing<Vec<u8>>> {
    debug_assert!(
        (1..=255).contains(&threshold) && threshold <= count && count <= 255,
        "settings validation keeps 1 ≤ t ≤ count ≤ 255"
    );
    Sharks(threshold as u8)
        .dealer(secret)
        .take(count)
        .map(|share| Zeroizing::new(Vec::from(&share)))
        .collect()
}

/// Recovers a 32-byte secret of `owner` from at least `threshold` encoded shares.
pub fn recover(shares: &[&[u8]], threshold: usize, owner: &MerchantId) -> Result<Seed> {
    let invalid = |detail: String| PrivacyError::InvalidPayload {
        what: "revealed share",
        merchant: owner.clone(),
        detail,
    };
    let mut parsed = Vec::with_capacity(threshold);
    for bytes in shares.iter().take(threshold) {
        if bytes.len() != 33 || bytes[0] == 0 {
            return Err(invalid(format!(
                "a share is 33 bytes with x ≠ 0, got {} bytes",
                bytes.len()
            )));
        }
        parsed.push(Share::try_from(*bytes).map_err(|e| invalid(e.to_owned()))?);
    }
    let secret = Sharks(threshold as u8)
        .recover(parsed.iter())
        .map_err(|e| invalid(format!("{e} ({} of {threshold} shares)", parsed.len())))?;
    let array: [u8; 32] = secret
        .as_slice()
        .try_into()
        .map_err(|_| invalid("recovered secret is not 32 bytes".into()))?;
    Ok(Zeroizing::new(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shamir_recovers_from_any_threshold_subset() {
        let secret = [7u8; 32];
        let shares = split(&secret, 3, 5);
        let owner = "m".to_string();
        let pick: Vec<&[u8]> = [&shares[4], &shares[1], &shares[2]]
            .iter()
            .map(|s| s.as_slice())
            .collect();
        assert_eq!(*recover(&pick, 3, &owner).unwrap(), secret);
        let two: Vec<&[u8]> = shares[..2].iter().map(|s| s.as_slice()).collect();
        assert!(recover(&two, 3, &owner).is_err());
    }

    #[test]
    fn stream_add_then_subtract_is_identity_and_parallel_matches_serial() {
        let seed = Zeroizing::new([3u8; 32]);
        let mut a = vec![5u32; 200_000];
        apply_stream(&mut a, &seed, Sign::Add);
        let mut b = vec![5u32; 200_000];
        apply_stream_from(&mut b, &seed, Sign::Add, 0);
        assert_eq!(a, b);
        apply_stream(&mut a, &seed, Sign::Subtract);
        assert!(a.iter().all(|&w| w == 5));
    }

    #[test]
    fn sealed_share_opens_only_for_its_recipient() {
        let key = Zeroizing::new([9u8; 32]);
        let ct = seal(&key, 4, "a", "b", b"share").unwrap();
        assert_eq!(open(&key, 4, "a", "b", &ct).unwrap().as_slice(), b"share");
        assert!(open(&key, 4, "a", "c", &ct).is_err());
        assert!(open(&key, 5, "a", "b", &ct).is_err());
    }
}
