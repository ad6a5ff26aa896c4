//! Length-prefixed frames, one envelope each, with tensor values streamed as raw bytes.
//!
//! A frame on a stream is laid out as:
//!
//! ```text
//! u64 LE   frame length: the bytes that follow, checked against the limit before reading
//! u16 LE   protocol version of the sender, refused by name before anything is decoded
//! u32 LE   head length
//! head     postcard encoding of the message, with tensor values left out
//! bulk     tensor values (and masked words) as raw little-endian 4-byte words, in the
//!          order the head lists them
//! ```
//!
//! Tensor values never pass through per-value serde: they are written straight from the
//! message's own vectors in chunks and read straight into the vectors of the decoded
//! message, so a large model is never buffered twice.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::messages::{GlobalParameters, MaskedUpdate, Message, Round, Update, PROTOCOL_VERSION};
use crate::params::{ParameterSet, TensorSpec};

// Limitation: bulk words are cast to and from little-endian bytes in place, which is only
// correct on little-endian hosts (every platform Hansa targets); a byte-swapping copy per
// chunk would lift it.
#[cfg(target_endian = "big")]
compile_error!("hansa-protocol's frame codec assumes a little-endian host");

/// Default hard limit on one frame, in bytes: 2 GiB, room for a 1 GiB model (and its
/// update) with a wide margin, well past the 512 MiB / 2 GiB walls of gRPC and protobuf.
pub const DEFAULT_MAX_FRAME_BYTES: u64 = 2 << 30;

/// Bytes handed to the stream per write when streaming tensor values. 1 MiB keeps the
/// stream's flow-control window busy without holding a large slice in one call.
const CHUNK_BYTES: usize = 1 << 20;

/// Bytes of a frame after the length prefix and before the head: version and head length.
const PREAMBLE_BYTES: u64 = 2 + 4;

/// What can go wrong reading or writing one frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame announces (or would need) more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Announced frame length, in bytes.
        len: u64,
        /// The limit in force, in bytes.
        limit: u64,
    },
    /// The stream ended in the middle of a frame.
    #[error("frame truncated: the stream ended inside the {part}")]
    Truncated {
        /// Which part of the frame was cut short, e.g. `length prefix` or `tensor `w``.
        part: String,
    },
    /// The frame's bytes do not form a valid message.
    #[error("undecodable frame: {0}")]
    Decode(String),
    /// The sender speaks a protocol version this build does not.
    #[error("protocol version {got} is not supported; this build speaks version {supported}")]
    UnsupportedVersion {
        /// Version in the frame.
        got: u16,
        /// Version this build speaks.
        supported: u16,
    },
    /// A message could not be encoded.
    #[error("cannot encode a {kind} message: {reason}")]
    Encode {
        /// Message kind, as [`Message::kind`] names it.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The stream failed underneath the frame.
    #[error("stream i/o failed: {0}")]
    Io(#[source] std::io::Error),
}

/// The message with its bulk left out, as it is written (borrowing the message).
#[derive(Serialize)]
enum HeadRef<'a> {
    Plain(&'a Message),
    GlobalParameters {
        round: Round,
        layout: Vec<TensorSpec>,
    },
    Update {
        round: Round,
        num_examples: u64,
        train_loss: f64,
        layout: Vec<TensorSpec>,
    },
    MaskedUpdate {
        round: Round,
        words: u64,
    },
}

/// The message with its bulk left out, as it is read. Variant order matches [`HeadRef`].
#[derive(Deserialize)]
enum Head {
    Plain(Message),
    GlobalParameters {
        round: Round,
        layout: Vec<TensorSpec>,
    },
    Update {
        round: Round,
        num_examples: u64,
        train_loss: f64,
        layout: Vec<TensorSpec>,
    },
    MaskedUpdate {
        round: Round,
        words: u64,
    },
}

/// Splits a message into its head and the byte slices of its bulk, in wire order.
fn split(message: &Message) -> (HeadRef<'_>, Vec<&[u8]>) {
    fn tensor_bytes(set: &ParameterSet) -> Vec<&[u8]> {
        set.tensors()
            .iter()
            .map(|t| bytemuck::cast_slice::<f32, u8>(&t.values))
            .collect()
    }
    match message {
        Message::GlobalParameters(g) => (
            HeadRef::GlobalParameters {
                round: g.round,
                layout: g.parameters.spec(),
            },
            tensor_bytes(&g.parameters),
        ),
        Message::Update(u) => (
            HeadRef::Update {
                round: u.round,
                num_examples: u.num_examples,
                train_loss: u.train_loss,
                layout: u.delta.spec(),
            },
            tensor_bytes(&u.delta),
        ),
        Message::MaskedUpdate(m) => (
            HeadRef::MaskedUpdate {
                round: m.round,
                words: m.masked.len() as u64,
            },
            vec![bytemuck::cast_slice::<u32, u8>(&m.masked)],
        ),
        other => (HeadRef::Plain(other), Vec::new()),
    }
}

/// Writes `message` as one frame with protocol `version` (normally [`PROTOCOL_VERSION`]).
///
/// Refuses, before writing anything, a frame longer than `max_frame_bytes`.
/// Not cancel-safe: a write dropped midway leaves the stream inside a frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    version: u16,
    message: &Message,
    max_frame_bytes: u64,
) -> Result<(), FrameError> {
    let (head, bulk) = split(message);
    let head = postcard::to_allocvec(&head).map_err(|e| FrameError::Encode {
        kind: message.kind(),
        reason: e.to_string(),
    })?;
    let head_len = u32::try_from(head.len()).map_err(|_| FrameError::Encode {
        kind: message.kind(),
        reason: format!("head of {} bytes does not fit a u32 length", head.len()),
    })?;
    let bulk_len: u64 = bulk.iter().map(|b| b.len() as u64).sum();
    let len = PREAMBLE_BYTES + u64::from(head_len) + bulk_len;
    if len > max_frame_bytes {
        return Err(FrameError::FrameTooLarge {
            len,
            limit: max_frame_bytes,
        });
    }

    let mut start = Vec::with_capacity(8 + PREAMBLE_BYTES as usize + head.len());
    start.extend_from_slice(&len.to_le_bytes());
    start.extend_from_slice(&version.to_le_bytes());
    start.extend_from_slice(&head_len.to_le_bytes());
    start.extend_from_slice(&head);
    writer.write_all(&start).await.map_err(FrameError::Io)?;

    for bytes in bulk {
        for chunk in bytes.chunks(CHUNK_BYTES) {
            writer.write_all(chunk).await.map_err(FrameError::Io)?;
        }
    }
    writer.flush().await.map_err(FrameError::Io)
}

/// Reads one frame. `Ok(None)` means the peer finished the stream cleanly between frames.
///
/// The length is checked against `max_frame_bytes` and the version against
/// [`PROTOCOL_VERSION`] before anything else is read or allocated.
/// Not cancel-safe: run it in one task per stream (as [`crate::link`] does).
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: u64,
) -> Result<Option<Message>, FrameError> {
    let mut prefix = [0u8; 8];
    match read_exact_or_eof(reader, &mut prefix, "length prefix").await? {
        Filled::Eof => return Ok(None),
        Filled::Full => {}
    }
    let len = u64::from_le_bytes(prefix);
    if len > max_frame_bytes {
        return Err(FrameError::FrameTooLarge {
            len,
            limit: max_frame_bytes,
        });
    }
    if len < PREAMBLE_BYTES {
        return Err(FrameError::Decode(format!(
            "frame of {len} bytes is shorter than its {PREAMBLE_BYTES}-byte preamble"
        )));
    }

    let mut preamble = [0u8; PREAMBLE_BYTES as usize];
    read_exact(reader, &mut preamble, "preamble").await?;
    let version = u16::from_le_bytes([preamble[0], preamble[1]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion {
            got: version,
            supported: PROTOCOL_VERSION,
        });
    }
    let head_len = u64::from(u32::from_le_bytes([
        preamble[2],
        preamble[3],
        preamble[4],
        preamble[5],
    ]));
    let Some(bulk_len) = len.checked_sub(PREAMBLE_BYTES + head_len) else {
        return Err(FrameError::Decode(format!(
            "head of {head_len} bytes does not fit a frame of {len} bytes"
        )));
    };

    let mut head = vec![0u8; to_usize(head_len)?];
    read_exact(reader, &mut head, "head").await?;
    let head: Head =
        postcard::from_bytes(&head).map_err(|e| FrameError::Decode(format!("head: {e}")))?;
    read_bulk(reader, head, bulk_len).await.map(Some)
}

/// Reads the bulk that `head` announces and assembles the message.
async fn read_bulk<R: AsyncRead + Unpin>(
    reader: &mut R,
    head: Head,
    bulk_len: u64,
) -> Result<Message, FrameError> {
    match head {
        Head::Plain(message) => {
            expect_bulk(0, bulk_len)?;
            Ok(message)
        }
        Head::GlobalParameters { round, layout } => {
            let parameters = read_tensors(reader, layout, bulk_len).await?;
            Ok(Message::GlobalParameters(GlobalParameters {
                round,
                parameters,
            }))
        }
        Head::Update {
            round,
            num_examples,
            train_loss,
            layout,
        } => {
            let delta = read_tensors(reader, layout, bulk_len).await?;
            Ok(Message::Update(Update {
                round,
                num_examples,
                delta,
                train_loss,
            }))
        }
        Head::MaskedUpdate { round, words } => {
            let bytes = words
                .checked_mul(4)
                .ok_or_else(|| FrameError::Decode(format!("{words} masked words overflow")))?;
            expect_bulk(bytes, bulk_len)?;
            let mut masked = vec![0u32; to_usize(words)?];
            read_exact(
                reader,
                bytemuck::cast_slice_mut(&mut masked),
                "masked words",
            )
            .await?;
            Ok(Message::MaskedUpdate(MaskedUpdate { round, masked }))
        }
    }
}

/// Reads the values of every tensor of `layout`, checking first that they fill the bulk.
async fn read_tensors<R: AsyncRead + Unpin>(
    reader: &mut R,
    layout: Vec<TensorSpec>,
    bulk_len: u64,
) -> Result<ParameterSet, FrameError> {
    let mut lens = Vec::with_capacity(layout.len());
    let mut total_bytes = 0u64;
    for spec in &layout {
        let values = spec
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .and_then(|n| n.checked_mul(4).map(|bytes| (n, bytes)));
        let Some((values, bytes)) = values else {
            return Err(FrameError::Decode(format!(
                "tensor `{}` has shape {:?} whose size overflows",
                spec.name, spec.shape
            )));
        };
        total_bytes = total_bytes
            .checked_add(bytes)
            .ok_or_else(|| FrameError::Decode("tensor sizes overflow when summed".to_string()))?;
        lens.push(values);
    }
    expect_bulk(total_bytes, bulk_len)?;

    // Limitation: each tensor's vector is allocated at its full size before its bytes
    // arrive, so an authenticated peer can make this side reserve up to the frame limit
    // with a short frame (growing the vector as bytes arrive, at the cost of copies, or a
    // lower `max_frame_bytes` would lift it).
    let mut set = ParameterSet::new();
    for (spec, len) in layout.into_iter().zip(lens) {
        let mut values = vec![0f32; to_usize(len)?];
        let part = format!("tensor `{}`", spec.name);
        for chunk in bytemuck::cast_slice_mut::<f32, u8>(&mut values).chunks_mut(CHUNK_BYTES) {
            read_exact(reader, chunk, &part).await?;
        }
        set.push(spec.name, spec.shape, values, spec.scope)
            .map_err(|e| FrameError::Decode(e.to_string()))?;
    }
    Ok(set)
}

fn expect_bulk(announced: u64, bulk_len: u64) -> Result<(), FrameError> {
    if announced == bulk_len {
        Ok(())
    } else {
        Err(FrameError::Decode(format!(
            "head announces {announced} bytes of values but the frame holds {bulk_len}"
        )))
    }
}

fn to_usize(n: u64) -> Result<usize, FrameError> {
    usize::try_from(n).map_err(|_| FrameError::Decode(format!("{n} does not fit in memory")))
}

enum Filled {
    Full,
    Eof,
}

/// Fills `buf`, telling a clean end of stream before the first byte apart from a cut.
async fn read_exact_or_eof<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    part: &str,
) -> Result<Filled, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader
            .read(&mut buf[filled..])
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            if filled == 0 {
                return Ok(Filled::Eof);
            }
            return Err(FrameError::Truncated { part: part.into() });
        }
        filled += n;
    }
    Ok(Filled::Full)
}

async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    part: &str,
) -> Result<(), FrameError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(FrameError::Truncated { part: part.into() })
        }
        Err(e) => Err(FrameError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Hello, Welcome};
    use crate::params::Scope;

    fn global() -> Message {
        let mut parameters = ParameterSet::new();
        parameters
            .push(
                "w",
                vec![2, 3],
                vec![1.0, -2.0, 3.5, 0.0, 1e-7, 9.0],
                Scope::Shared,
            )
            .unwrap();
        parameters
            .push("b", vec![], vec![0.25], Scope::Shared)
            .unwrap();
        Message::GlobalParameters(GlobalParameters {
            round: 7,
            parameters,
        })
    }

    async fn encode(message: &Message, version: u16) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, version, message, DEFAULT_MAX_FRAME_BYTES)
            .await
            .unwrap();
        out
    }

    async fn decode(bytes: &[u8], limit: u64) -> Result<Option<Message>, FrameError> {
        let mut reader = bytes;
        read_frame(&mut reader, limit).await
    }

    #[tokio::test]
    async fn tensor_values_travel_as_raw_little_endian_bytes() {
        let bytes = encode(&global(), PROTOCOL_VERSION).await;
        // 7 values of 4 bytes end the frame, in tensor order.
        let tail = &bytes[bytes.len() - 28..];
        assert_eq!(&tail[..4], &1.0f32.to_le_bytes());
        assert_eq!(&tail[4..8], &(-2.0f32).to_le_bytes());
        assert_eq!(&tail[24..], &0.25f32.to_le_bytes());
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(len as usize, bytes.len() - 8);
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), PROTOCOL_VERSION);
    }

    #[tokio::test]
    async fn every_bulk_kind_round_trips() {
        let mut delta = ParameterSet::new();
        delta
            .push("w", vec![2], vec![0.5, -0.5], Scope::Shared)
            .unwrap();
        let messages = [
            global(),
            Message::Update(Update {
                round: 3,
                num_examples: 120,
                delta,
                train_loss: 0.75,
            }),
            Message::MaskedUpdate(MaskedUpdate {
                round: 4,
                masked: vec![0, 1, u32::MAX, 77],
            }),
            Message::Hello(Hello {
                merchant: "merchant-001".into(),
                software_version: "0.1.0".into(),
                last_round_seen: Some(2),
            }),
        ];
        for message in messages {
            let bytes = encode(&message, PROTOCOL_VERSION).await;
            let back = decode(&bytes, DEFAULT_MAX_FRAME_BYTES).await.unwrap();
            assert_eq!(back, Some(message));
        }
    }

    #[tokio::test]
    async fn two_frames_in_a_row_then_a_clean_end() {
        let mut bytes = encode(&global(), PROTOCOL_VERSION).await;
        let welcome = Message::Welcome(Welcome {
            merchant: "m".into(),
            software_version: "v".into(),
            current_round: 0,
            wants_initial_model: false,
        });
        bytes.extend(encode(&welcome, PROTOCOL_VERSION).await);
        let mut reader = &bytes[..];
        assert_eq!(
            read_frame(&mut reader, 1 << 20).await.unwrap(),
            Some(global())
        );
        assert_eq!(
            read_frame(&mut reader, 1 << 20).await.unwrap(),
            Some(welcome)
        );
        assert_eq!(read_frame(&mut reader, 1 << 20).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_before_reading_it() {
        let bytes = encode(&global(), PROTOCOL_VERSION).await;
        let len = bytes.len() as u64 - 8;
        let err = decode(&bytes[..8], len - 1).await.unwrap_err();
        assert!(
            matches!(err, FrameError::FrameTooLarge { len: l, limit } if l == len && limit == len - 1),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_writer_refuses_a_frame_over_its_limit() {
        let mut out = Vec::new();
        let err = write_frame(&mut out, PROTOCOL_VERSION, &global(), 20)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::FrameTooLarge { limit: 20, .. }),
            "{err}"
        );
        assert!(out.is_empty(), "nothing may be written");
    }

    #[tokio::test]
    async fn a_cut_frame_names_the_part_that_was_cut() {
        let bytes = encode(&global(), PROTOCOL_VERSION).await;
        for (cut, part) in [
            (5, "length prefix"),
            (12, "preamble"),
            (bytes.len() - 3, "tensor `b`"),
        ] {
            let err = decode(&bytes[..cut], DEFAULT_MAX_FRAME_BYTES)
                .await
                .unwrap_err();
            match err {
                FrameError::Truncated { part: p } => assert_eq!(p, part),
                other => panic!("cut at {cut}: expected Truncated, got {other}"),
            }
        }
    }

    #[tokio::test]
    async fn an_unknown_version_is_refused_by_name() {
        let bytes = encode(&global(), 99).await;
        let err = decode(&bytes, DEFAULT_MAX_FRAME_BYTES).await.unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::UnsupportedVersion {
                    got: 99,
                    supported: PROTOCOL_VERSION
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn random_bytes_are_a_decode_error() {
        // Length 40, right version, then a head that is not a message.
        let mut bytes = 40u64.to_le_bytes().to_vec();
        bytes.extend(PROTOCOL_VERSION.to_le_bytes());
        bytes.extend(34u32.to_le_bytes());
        bytes.extend([0xA7u8; 34]);
        let err = decode(&bytes, DEFAULT_MAX_FRAME_BYTES).await.unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err}");
    }

    #[tokio::test]
    async fn a_layout_that_does_not_match_the_bulk_is_refused() {
        let mut bytes = encode(&global(), PROTOCOL_VERSION).await;
        // Drop the last value and shorten the announced length to match.
        bytes.truncate(bytes.len() - 4);
        let len = bytes.len() as u64 - 8;
        bytes[..8].copy_from_slice(&len.to_le_bytes());
        let err = decode(&bytes, DEFAULT_MAX_FRAME_BYTES).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "undecodable frame: head announces 28 bytes of values but the frame holds 24"
        );
    }
}
