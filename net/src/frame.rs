//! Framing: a little-endian u32 length, then that many bytes of one FlatBuffers
//! `Message` (FlatBuffers' "size-prefixed" form, so every official library reads and
//! writes it with `finish_size_prefixed` / `size_prefixed_root`).
//!
//! [`FrameDecoder`] is incremental and sans-IO: the caller pushes whatever bytes the
//! socket gave it and pops complete frames as slices that borrow the decoder's buffer.
//! The buffer is allocated once, at construction, and never grows: it holds at least
//! one frame of the largest allowed size, so the decoder can always make progress.
//!
//! [`verify`] runs the FlatBuffers verifier, with bounded options, over one frame;
//! generated accessors are only ever used on verified buffers.

use flatbuffers::{InvalidFlatbuffer, VerifierOptions};

use crate::wire;

/// Bytes of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Default largest message a client may send, in bytes after the length prefix. Client
/// messages are small (a logon is about 120 bytes, a new order about 100), so 4 KiB
/// leaves room for growth while bounding what one connection can make the server buffer.
pub const FRAME_BYTES_MAX: usize = 4096;

/// Largest message the server sends, in bytes after the length prefix: big enough for the
/// largest bounded reply (a book snapshot of `BOOK_DEPTH_MAX` levels a side, a balance
/// list of `BALANCES_PER_REPLY_MAX` assets or `OPEN_ORDERS_PER_REPLY_MAX` orders; tests
/// check each one fits). Clients decode server frames with this bound.
pub const SERVER_FRAME_BYTES_MAX: usize = 64 * 1024;

/// Upper bound for a configured frame limit; the length prefix is a u32, and a bigger
/// limit would let one connection pin too much memory.
pub const FRAME_BYTES_MAX_CEILING: usize = 16 * 1024 * 1024;

/// Smallest frame that can hold a FlatBuffer with a file identifier: the length prefix,
/// the root table offset and the 4-byte identifier.
pub const FRAME_BYTES_MIN: usize = FRAME_HEADER_BYTES + 4 + 4;

/// Deepest table nesting the verifier accepts. The deepest message is
/// `Message -> OpenOrders -> [OpenOrder]`, three levels; 8 leaves room for additions.
pub const VERIFY_DEPTH_MAX: usize = 8;

/// Why the byte stream cannot be framed. The stream is unusable afterwards: the decoder
/// keeps returning the same error, and the connection must be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length is 0")]
    Empty,
    #[error("frame length {len} is above the limit of {max} bytes")]
    TooLarge { len: u32, max: u32 },
}

/// Incremental frame decoder over one connection's inbound bytes.
///
/// Lives on the net core that owns the connection. Allocation-free after construction.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Fixed-size storage; bytes `start..end` are buffered input.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Length of the frame handed out by the last `next_frame`; it stays in the buffer
    /// (the caller borrows it) until the next call that mutates the decoder.
    lent: usize,
    frame_bytes_max: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder that accepts messages of 1..=`frame_bytes_max` bytes.
    pub fn new(frame_bytes_max: usize) -> FrameDecoder {
        assert!(frame_bytes_max >= FRAME_BYTES_MIN - FRAME_HEADER_BYTES);
        assert!(frame_bytes_max <= FRAME_BYTES_MAX_CEILING);
        // Two whole frames: one can be lent out to the caller while the next is read in.
        let capacity = 2 * (FRAME_HEADER_BYTES + frame_bytes_max);
        FrameDecoder {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            lent: 0,
            frame_bytes_max,
            failed: None,
        }
    }

    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start - self.lent
    }

    /// The error that stopped this decoder, if any.
    pub fn error(&self) -> Option<FrameError> {
        self.failed
    }

    /// Copies as many of `bytes` as fit into the buffer and returns how many it took. When
    /// it takes fewer than offered, pop frames with `next_frame` and push the rest: there
    /// is always room for at least one byte when no complete frame is buffered.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let room = self.writable();
        let taken = room.len().min(bytes.len());
        room[..taken].copy_from_slice(&bytes[..taken]);
        self.commit(taken);
        taken
    }

    /// Free space to read socket bytes into directly (io_uring can fill it); follow with
    /// `commit(n)`. Never empty while no complete frame is buffered.
    pub fn writable(&mut self) -> &mut [u8] {
        self.reclaim();
        if self.start > 0 {
            // What is left is less than one frame, so this copy is short; it keeps the
            // free space contiguous at the end.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of the last `writable()` slice as filled.
    pub fn commit(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "commit past the writable space");
        self.end += n;
    }

    /// The next complete frame (length prefix included, as `verify` wants it), or `None`
    /// until more bytes arrive. The slice stays valid until the next call on the decoder.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        self.reclaim();
        let available = &self.buf[self.start..self.end];
        let Some(header) = available.first_chunk::<FRAME_HEADER_BYTES>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*header);
        if len == 0 {
            return Err(*self.failed.insert(FrameError::Empty));
        }
        if len as usize > self.frame_bytes_max {
            // The ceiling keeps frame_bytes_max within u32.
            let max = self.frame_bytes_max as u32;
            return Err(*self.failed.insert(FrameError::TooLarge { len, max }));
        }
        let total = FRAME_HEADER_BYTES + len as usize;
        if available.len() < total {
            return Ok(None);
        }
        self.lent = total;
        Ok(Some(&self.buf[self.start..self.start + total]))
    }

    /// Drops the frame lent out by the previous `next_frame`.
    fn reclaim(&mut self) {
        self.start += self.lent;
        self.lent = 0;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

/// Why a frame is not a valid protocol message. The variants mirror the FlatBuffers
/// verifier's, without its heap-allocated traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("frame shorter than a FlatBuffer header")]
    TooShort,
    #[error("frame length prefix does not match the frame")]
    BadLength,
    #[error("file identifier is not \"BRS1\"")]
    BadIdentifier,
    #[error("a required field is missing")]
    MissingRequiredField,
    #[error("union type and value disagree")]
    InconsistentUnion,
    #[error("string is not UTF-8")]
    BadUtf8,
    #[error("string lacks its null terminator")]
    MissingNullTerminator,
    #[error("misaligned scalar")]
    Unaligned,
    #[error("offset points outside the buffer")]
    OutOfBounds,
    #[error("tables nested too deeply")]
    TooDeep,
    #[error("too many tables")]
    TooManyTables,
    #[error("apparent size too large")]
    ApparentSizeTooLarge,
}

impl From<&InvalidFlatbuffer> for VerifyError {
    fn from(error: &InvalidFlatbuffer) -> VerifyError {
        match error {
            InvalidFlatbuffer::MissingRequiredField { .. } => VerifyError::MissingRequiredField,
            InvalidFlatbuffer::InconsistentUnion { .. } => VerifyError::InconsistentUnion,
            InvalidFlatbuffer::Utf8Error { .. } => VerifyError::BadUtf8,
            InvalidFlatbuffer::MissingNullTerminator { .. } => VerifyError::MissingNullTerminator,
            InvalidFlatbuffer::Unaligned { .. } => VerifyError::Unaligned,
            InvalidFlatbuffer::RangeOutOfBounds { .. }
            | InvalidFlatbuffer::SignedOffsetOutOfBounds { .. } => VerifyError::OutOfBounds,
            InvalidFlatbuffer::TooManyTables => VerifyError::TooManyTables,
            InvalidFlatbuffer::ApparentSizeTooLarge => VerifyError::ApparentSizeTooLarge,
            InvalidFlatbuffer::DepthLimitReached => VerifyError::TooDeep,
        }
    }
}

/// Verifier bounds for frames of at most `frame_bytes_max` bytes.
///
/// A table takes at least 4 bytes (its vtable offset), so a frame can hold at most
/// `frame_bytes_max / 4` of them. The apparent size (the DAG unfolded into a tree, vtables
/// counted once per table) of an honest message is a small multiple of its length;
/// 4x stops a shared-offset bomb long before it costs real time.
pub fn verifier_options(frame_bytes_max: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: VERIFY_DEPTH_MAX,
        max_tables: frame_bytes_max / 4 + 1,
        max_apparent_size: 4 * frame_bytes_max,
        ignore_missing_null_terminator: false,
    }
}

/// Verifies one frame (length prefix included) and returns its root `Message`.
pub fn verify<'a>(
    frame: &'a [u8],
    options: &VerifierOptions,
) -> Result<wire::Message<'a>, VerifyError> {
    let Some(header) = frame.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(VerifyError::TooShort);
    };
    if u32::from_le_bytes(*header) as usize != frame.len() - FRAME_HEADER_BYTES {
        return Err(VerifyError::BadLength);
    }
    if frame.len() < FRAME_BYTES_MIN {
        return Err(VerifyError::TooShort);
    }
    // Checked by hand rather than with flatbuffers::buffer_has_identifier, which asserts
    // (panics) on short input.
    if frame[FRAME_BYTES_MIN - 4..FRAME_BYTES_MIN] != wire::FILE_IDENTIFIER {
        return Err(VerifyError::BadIdentifier);
    }
    wire::size_prefixed_root_as_message_with_opts(options, frame).map_err(|e| (&e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_frames_split_anywhere() {
        let mut stream = frame(b"hello world!");
        stream.extend(frame(b"x"));
        stream.extend(frame(&[7; 100]));
        for split in 0..stream.len() {
            let mut decoder = FrameDecoder::new(128);
            let mut frames = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                let mut rest = chunk;
                while !rest.is_empty() {
                    let taken = decoder.push(rest);
                    rest = &rest[taken..];
                    while let Some(f) = decoder.next_frame().unwrap() {
                        frames.push(f.to_vec());
                    }
                }
            }
            assert_eq!(frames, vec![frame(b"hello world!"), frame(b"x"), frame(&[7; 100])]);
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn rejects_empty_and_oversized_frames_for_good() {
        let mut decoder = FrameDecoder::new(16);
        decoder.push(&0u32.to_le_bytes());
        assert_eq!(decoder.next_frame(), Err(FrameError::Empty));
        assert_eq!(decoder.next_frame(), Err(FrameError::Empty));

        let mut decoder = FrameDecoder::new(16);
        decoder.push(&17u32.to_le_bytes());
        assert_eq!(decoder.next_frame(), Err(FrameError::TooLarge { len: 17, max: 16 }));
        assert_eq!(decoder.error(), Some(FrameError::TooLarge { len: 17, max: 16 }));

        // Exactly at the limit is fine.
        let mut decoder = FrameDecoder::new(16);
        decoder.push(&frame(&[1; 16]));
        assert_eq!(decoder.next_frame().unwrap().map(<[u8]>::len), Some(20));
    }

    #[test]
    fn truncated_frame_waits_for_more() {
        let mut decoder = FrameDecoder::new(64);
        let whole = frame(&[9; 40]);
        decoder.push(&whole[..30]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.buffered(), 30);
        decoder.push(&whole[30..]);
        assert_eq!(decoder.next_frame().unwrap(), Some(&whole[..]));
    }

    #[test]
    fn buffer_never_grows() {
        let mut decoder = FrameDecoder::new(32);
        let capacity = decoder.buf.capacity();
        let one = frame(&[3; 32]);
        for _ in 0..1000 {
            let mut rest = &one[..];
            while !rest.is_empty() {
                let n = decoder.push(rest);
                rest = &rest[n..];
                while decoder.next_frame().unwrap().is_some() {}
            }
        }
        assert_eq!(decoder.buf.capacity(), capacity);
    }

    #[test]
    fn verify_rejects_short_and_foreign_frames() {
        let options = verifier_options(FRAME_BYTES_MAX);
        assert_eq!(verify(&[], &options).err(), Some(VerifyError::TooShort));
        assert_eq!(verify(&frame(&[0; 4]), &options).err(), Some(VerifyError::TooShort));
        assert_eq!(verify(&frame(&[0; 8])[..10], &options).err(), Some(VerifyError::BadLength));
        let mut foreign = frame(&[0; 16]);
        foreign[8..12].copy_from_slice(b"NOPE");
        assert_eq!(verify(&foreign, &options).err(), Some(VerifyError::BadIdentifier));
        let mut garbage = frame(&[0xff; 16]);
        garbage[8..12].copy_from_slice(b"BRS1");
        assert_eq!(verify(&garbage, &options).err(), Some(VerifyError::Unaligned));
        garbage[4..8].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(verify(&garbage, &options).err(), Some(VerifyError::OutOfBounds));
    }
}
