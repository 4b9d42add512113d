//! Length-prefixed frames and the bincode codec every frame body uses.
//!
//! A frame is a 4-byte big-endian length `n` followed by `n` bytes of body.
//! Bodies are encoded with bincode 1 `DefaultOptions` (varint integers,
//! little-endian) and decoded with trailing bytes rejected. A decode reads no
//! byte past its frame (bincode's size limit), and builds no value holding
//! more memory than the budget it is given (the [`budget`](super::budget)
//! adapter): bincode's limit alone bounds what is read, not what is built.

use super::budget::{Budget, Charged};
use bincode::Options;
use serde::{Serialize, de::DeserializeOwned};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The length prefix: a big-endian `u32`.
const HEADER_BYTES: usize = 4;
/// [`HEADER_BYTES`] as the stats count bytes.
pub(super) const FRAME_HEADER_BYTES: u64 = HEADER_BYTES as u64;
/// The first room a frame buffer is given; it doubles from there as a body
/// arrives, up to the maximum frame.
const FIRST_READ_BYTES: usize = 8 << 10;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer announced a frame above the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: u64, max: usize },
    /// The connection closed in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

/// Why a message could not be put in a frame.
#[derive(Debug, thiserror::Error)]
pub(super) enum EncodeError {
    /// The encoded message would exceed the maximum frame size.
    #[error("message exceeds the maximum frame of {max} bytes")]
    TooLarge { max: usize },
    /// The message cannot be encoded (a `Serialize` impl failed).
    #[error("cannot encode message: {0}")]
    Codec(bincode::Error),
}

fn codec(limit: usize) -> impl Options {
    bincode::DefaultOptions::new().with_limit(limit as u64)
}

/// Reads one frame's body into `buf` (cleared first). Returns `Ok(false)` if
/// the connection closed cleanly before a frame began.
///
/// The body is read as it arrives rather than allocated up front from the
/// announced length, so a peer cannot make us reserve memory it does not send;
/// and `buf` grows by doubling but never past `max` (a buffer left to grow by
/// itself may reach twice the largest frame).
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    let mut header = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        match r.read(&mut header[got..]).await? {
            0 if got == 0 => return Ok(false),
            0 => return Err(FrameError::Truncated),
            n => got += n,
        }
    }
    let len = u64::from(u32::from_be_bytes(header));
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    // `len <= max`, a `usize`.
    let len = len as usize;
    buf.clear();
    while buf.len() < len {
        if buf.len() == buf.capacity() {
            // The doubling stops at `max` rather than at this frame's
            // length, so a later frame a few bytes longer does not copy the
            // whole buffer again.
            let room = buf
                .capacity()
                .saturating_mul(2)
                .max(FIRST_READ_BYTES)
                .min(max);
            buf.reserve_exact(room - buf.len());
        }
        let left = (len - buf.len()) as u64;
        if (&mut *r).take(left).read_buf(buf).await? == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(true)
}

/// Appends `msg` as one frame (length, then body) to `out`. On error `out` is
/// left as it was.
pub(super) fn encode_frame<M: Serialize>(
    msg: &M,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    match codec(max).serialize_into(&mut *out, msg) {
        Ok(()) => {
            let len = out.len() - start - HEADER_BYTES;
            // The codec's limit is `max`, which `NetConfig::validate` keeps
            // within `u32`, so the length fits.
            let len = u32::try_from(len).map_err(|_| EncodeError::TooLarge { max })?;
            out[start..start + HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            match *e {
                bincode::ErrorKind::SizeLimit => Err(EncodeError::TooLarge { max }),
                _ => Err(EncodeError::Codec(e)),
            }
        }
    }
}

/// Why a frame body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(super) enum DecodeError {
    /// Decoding would build a value holding more memory than a frame may: the
    /// peer sent a message past the budget, as an attack or because its own
    /// budget is larger than ours.
    #[error(
        "the message would hold at least {needed} bytes of memory, more than the {budget} a frame may"
    )]
    OverBudget { needed: usize, budget: usize },
    /// The body is not one encoded value of the expected type.
    #[error("{0}")]
    Malformed(bincode::Error),
}

/// A decoded frame body, and the memory it holds by the budget's accounting.
#[derive(Debug)]
pub(super) struct Decoded<M> {
    pub(super) value: M,
    pub(super) charged: usize,
}

/// Decodes a frame body, which must be one `M` building at most `budget`
/// bytes of memory (see [`budget`](super::budget) for what is counted).
pub(super) fn decode<M: DeserializeOwned>(
    body: &[u8],
    budget: usize,
) -> Result<Decoded<M>, DecodeError> {
    let meter = Budget::new(budget);
    match codec(body.len()).deserialize_seed(Charged::<M>::new(&meter), body) {
        Ok(value) => Ok(Decoded {
            value,
            charged: meter.used(),
        }),
        Err(e) => Err(match meter.refused() {
            Some(needed) => DecodeError::OverBudget { needed, budget },
            None => DecodeError::Malformed(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_round_trips() {
        let mut wire = Vec::new();
        encode_frame(&(7u64, "seven".to_string()), 1024, &mut wire).unwrap();
        encode_frame(&1u8, 1024, &mut wire).unwrap();
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, 1024, &mut buf).await.unwrap());
        let d = decode::<(u64, String)>(&buf, 1024).unwrap();
        assert_eq!(d.value, (7, "seven".into()));
        assert_eq!(d.charged, size_of::<(u64, String)>() + "seven".len());
        assert!(read_frame(&mut r, 1024, &mut buf).await.unwrap());
        assert_eq!(decode::<u8>(&buf, 1).unwrap().value, 1);
        assert!(!read_frame(&mut r, 1024, &mut buf).await.unwrap());
    }

    #[tokio::test]
    async fn an_announced_frame_above_the_maximum_is_refused_before_reading_it() {
        let wire = u32::MAX.to_be_bytes();
        let err = read_frame(&mut &wire[..], 1024, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len, max: 1024 } if len == u64::from(u32::MAX))
        );
    }

    #[tokio::test]
    async fn a_connection_closing_mid_frame_is_truncated() {
        let mut wire = 10u32.to_be_bytes().to_vec();
        wire.extend_from_slice(b"abc");
        let err = read_frame(&mut &wire[..], 1024, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Truncated));
        let err = read_frame(&mut &[0u8, 0][..], 1024, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Truncated));
    }

    #[test]
    fn a_message_above_the_maximum_is_not_encoded() {
        let mut out = vec![1, 2, 3];
        let err = encode_frame(&vec![0u8; 100], 50, &mut out).unwrap_err();
        assert!(matches!(err, EncodeError::TooLarge { max: 50 }));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn garbage_and_trailing_bytes_do_not_decode() {
        // A varint length claiming far more elements than the body holds.
        assert!(matches!(
            decode::<Vec<u64>>(&[0xfd, 0xff, 0xff, 0xff, 0xff], 1024),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode::<u8>(&[1, 2], 1024),
            Err(DecodeError::Malformed(_))
        ));
    }
}
