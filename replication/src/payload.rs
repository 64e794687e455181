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
//! This crate stays independent of the engine: it handles the command bytes as opaque.

use std::fmt;

/// Bytes of the time prefix.
pub const COMMAND_TIME_BYTES: usize = 8;

/// Appends a command entry payload to `out`.
pub fn encode_command_payload(out: &mut Vec<u8>, time_ns: u64, command_bytes: &[u8]) {
    out.extend_from_slice(&time_ns.to_le_bytes());
    out.extend_from_slice(command_bytes);
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
    let (time, command_bytes) = payload.split_at(COMMAND_TIME_BYTES);
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
    }
}
