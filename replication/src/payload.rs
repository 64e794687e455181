//! The payload of a command entry: what the sequencer writes and recovery replays.
//!
//! Layout: `time_ns` as u64 little endian (the sequencer's stamp, which
//! `Exchange::apply` takes), then the command's own encoding (`Command::encode`: a
//! version byte and postcard). An empty payload is a no-op entry (raft's leader writes
//! one at the start of each term); replay skips it. A batch format (several commands in
//! one entry) can come later: it will be told apart by the byte after the time, which
//! for a single command is the command codec's version byte, by giving batches a tag no
//! command codec version uses.
//!
//! An entry may also say where its command came from, so that what the server derives
//! from the command log besides the engine state (each API key's stream of execution
//! reports, with the client's request id echoed) is rebuilt exactly on replay: after
//! the time comes the tag `ORIGIN_TAG` (a value no command codec version uses), the
//! origin's stream id and request id (u64 LE each), then the command's encoding.
//! `decode_command_payload` skips the origin, so readers that only need the command are
//! unaffected; `decode_command_payload_origin` returns it.
//!
//! This crate stays independent of the engine: it handles the command bytes as opaque.

use std::fmt;

/// Bytes of the time prefix.
pub const COMMAND_TIME_BYTES: usize = 8;

/// Marks an origin between the time and the command bytes. Command codec versions are
/// small integers; this is not one.
pub const ORIGIN_TAG: u8 = 0xF0;

/// Bytes of an origin section: tag, stream id, request id.
pub const ORIGIN_BYTES: usize = 1 + 8 + 8;

/// Where a command came from: the stream (API key) and the client's request id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryOrigin {
    pub stream: u64,
    pub request_id: u64,
}

/// Appends a command entry payload to `out`.
pub fn encode_command_payload(out: &mut Vec<u8>, time_ns: u64, command_bytes: &[u8]) {
    out.extend_from_slice(&time_ns.to_le_bytes());
    out.extend_from_slice(command_bytes);
}

/// Appends a command entry payload that records the command's origin.
pub fn encode_command_payload_with_origin(
    out: &mut Vec<u8>,
    time_ns: u64,
    origin: EntryOrigin,
    command_bytes: &[u8],
) {
    out.extend_from_slice(&time_ns.to_le_bytes());
    out.push(ORIGIN_TAG);
    out.extend_from_slice(&origin.stream.to_le_bytes());
    out.extend_from_slice(&origin.request_id.to_le_bytes());
    out.extend_from_slice(command_bytes);
}

/// Like `decode_command_payload`, and the origin if the entry records one.
pub fn decode_command_payload_origin(
    payload: &[u8],
) -> Result<(CommandPayload<'_>, Option<EntryOrigin>), PayloadError> {
    let decoded = decode_command_payload(payload)?;
    if payload.len() > COMMAND_TIME_BYTES && payload[COMMAND_TIME_BYTES] == ORIGIN_TAG {
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let stream = word(COMMAND_TIME_BYTES + 1);
        let request_id = word(COMMAND_TIME_BYTES + 9);
        return Ok((decoded, Some(EntryOrigin { stream, request_id })));
    }
    Ok((decoded, None))
}

/// A decoded command entry payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandPayload<'a> {
    /// An empty payload: nothing to apply.
    NoOp,
    Command {
        time_ns: u64,
        command_bytes: &'a [u8],
    },
}

/// Why a payload is not a command entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadError {
    pub len: usize,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payload of {} bytes is too short for a command entry (time + command)", self.len)
    }
}

impl std::error::Error for PayloadError {}

/// Splits a payload into time and command bytes. Never panics.
pub fn decode_command_payload(payload: &[u8]) -> Result<CommandPayload<'_>, PayloadError> {
    if payload.is_empty() {
        return Ok(CommandPayload::NoOp);
    }
    if payload.len() <= COMMAND_TIME_BYTES {
        return Err(PayloadError { len: payload.len() });
    }
    let (time, mut command_bytes) = payload.split_at(COMMAND_TIME_BYTES);
    if command_bytes[0] == ORIGIN_TAG {
        if command_bytes.len() <= ORIGIN_BYTES {
            return Err(PayloadError { len: payload.len() });
        }
        command_bytes = &command_bytes[ORIGIN_BYTES..];
    }
    let mut word = [0u8; COMMAND_TIME_BYTES];
    word.copy_from_slice(time);
    Ok(CommandPayload::Command { time_ns: u64::from_le_bytes(word), command_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        encode_command_payload(&mut out, 1_700_000_000_123, &[1, 2, 3]);
        assert_eq!(
            decode_command_payload(&out),
            Ok(CommandPayload::Command { time_ns: 1_700_000_000_123, command_bytes: &[1, 2, 3] })
        );
        assert_eq!(decode_command_payload(&[]), Ok(CommandPayload::NoOp));
        assert_eq!(decode_command_payload(&out[..8]), Err(PayloadError { len: 8 }));
        assert_eq!(decode_command_payload_origin(&out).unwrap().1, None);
    }

    #[test]
    fn origin_round_trip_and_bounds() {
        let mut out = Vec::new();
        let origin = EntryOrigin { stream: 1001, request_id: 77 };
        encode_command_payload_with_origin(&mut out, 5, origin, &[1, 9]);
        let command = CommandPayload::Command { time_ns: 5, command_bytes: &[1, 9] };
        assert_eq!(decode_command_payload(&out), Ok(command));
        assert_eq!(decode_command_payload_origin(&out), Ok((command, Some(origin))));
        // An origin with no command after it, and every truncation, is an error, not a
        // panic.
        for len in 9..=(COMMAND_TIME_BYTES + ORIGIN_BYTES) {
            assert_eq!(decode_command_payload(&out[..len]), Err(PayloadError { len }));
            assert!(decode_command_payload_origin(&out[..len]).is_err());
        }
    }
}
