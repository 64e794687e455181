//! Byte layout of log segments and entries. Pure functions, no I/O: encoding appends to a
//! `Vec<u8>`, decoding reads a slice and never panics on any input.
//!
//! A segment file is a 32-byte segment header followed by entries packed back to back:
//!
//! ```text
//! segment header (32 bytes, little endian)
//!   0  magic        [u8; 8]  "BRSWAL\0\0"
//!   8  version      u32      SEGMENT_FORMAT_VERSION
//!  12  flags        u32      0 (reserved)
//!  16  first_index  u64      index of the first entry (also the file name)
//!  24  reserved     u32      0
//!  28  crc32c       u32      over bytes 0..28
//!
//! entry header (32 bytes, little endian), then `payload_len` payload bytes
//!   0  crc32c       u32      over header bytes 4..32 and the payload
//!   4  magic        u16      ENTRY_MAGIC
//!   6  kind         u8       EntryKind (raft's EntryType numbers)
//!   7  flags        u8       0 (reserved)
//!   8  payload_len  u32      <= ENTRY_PAYLOAD_BYTES_MAX
//!  12  reserved     u32      0
//!  16  term         u64
//!  24  index        u64
//! ```
//!
//! The crc comes first so that a write torn anywhere inside an entry is caught by one check.

use std::fmt;

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"BRSWAL\0\0";
/// Version of the segment and entry layout described above.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Magic at byte 4 of every entry header ("B5" little endian).
pub const ENTRY_MAGIC: u16 = 0x35B2;
/// Size of an entry header.
pub const ENTRY_HEADER_BYTES: usize = 32;
/// Largest payload one entry may carry: one encoded command or a batch of them.
pub const ENTRY_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// Largest encoded entry (header plus payload).
pub const ENTRY_BYTES_MAX: usize = ENTRY_HEADER_BYTES + ENTRY_PAYLOAD_BYTES_MAX;
/// Upper bound for a segment file; a reader refuses larger files instead of reading them
/// into memory. The writer's own limit (`WalOptions::segment_bytes_max`) must be below it.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;
/// Default size at which the writer starts a new segment.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Width of the zero-padded first index in a segment file name (u64::MAX has 20 digits).
pub const SEGMENT_NAME_DIGITS: usize = 20;
/// Extension of segment files.
pub const SEGMENT_EXTENSION: &str = "log";

const _: () = assert!(SEGMENT_HEADER_BYTES == 8 + 4 + 4 + 8 + 4 + 4);
const _: () = assert!(ENTRY_HEADER_BYTES == 4 + 2 + 1 + 1 + 4 + 4 + 8 + 8);
const _: () = assert!(ENTRY_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!((SEGMENT_HEADER_BYTES + ENTRY_BYTES_MAX) as u64 <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);

/// What an entry carries. The numbers are raft-rs's `EntryType`, so a raft entry maps
/// one to one; the engine's commands are `Normal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    Normal = 0,
    ConfChange = 1,
    ConfChangeV2 = 2,
}

impl EntryKind {
    pub fn from_u8(value: u8) -> Option<EntryKind> {
        match value {
            0 => Some(EntryKind::Normal),
            1 => Some(EntryKind::ConfChange),
            2 => Some(EntryKind::ConfChangeV2),
            _ => None,
        }
    }
}

/// One decoded entry, borrowing its payload from the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub term: u64,
    pub index: u64,
    pub kind: EntryKind,
    pub payload: &'a [u8],
}

impl EntryRef<'_> {
    /// Bytes this entry takes in a segment.
    pub fn encoded_len(&self) -> usize {
        ENTRY_HEADER_BYTES + self.payload.len()
    }
}

/// Appends one encoded entry to `out`. The caller has checked `payload.len()` against
/// `ENTRY_PAYLOAD_BYTES_MAX` (asserted here: a longer payload is a programming error).
pub fn encode_entry(out: &mut Vec<u8>, term: u64, index: u64, kind: EntryKind, payload: &[u8]) {
    assert!(payload.len() <= ENTRY_PAYLOAD_BYTES_MAX, "payload over ENTRY_PAYLOAD_BYTES_MAX");
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&ENTRY_MAGIC.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, ENTRY_HEADER_BYTES + payload.len());
}

/// Why the bytes at some offset are not a valid entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryFault {
    /// Fewer bytes remain than the header, or than the header's payload length says.
    Incomplete { bytes_available: usize, bytes_needed: usize },
    /// The magic is wrong (zeros from a torn write, garbage, or a misaligned read).
    BadMagic { found: u16 },
    /// The payload length is above `ENTRY_PAYLOAD_BYTES_MAX`.
    BadLength { payload_len: u32 },
    /// The stored checksum does not match the bytes.
    BadChecksum { stored: u32, computed: u32 },
    /// The checksum matches but a field has a value this version does not know (a
    /// reserved field is not zero, or the kind is unknown).
    BadField { what: &'static str, value: u64 },
}

impl fmt::Display for EntryFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryFault::Incomplete { bytes_available, bytes_needed } => {
                write!(f, "incomplete entry ({bytes_available} bytes left, {bytes_needed} needed)")
            }
            EntryFault::BadMagic { found } => {
                write!(f, "bad entry magic 0x{found:04x} (expected 0x{ENTRY_MAGIC:04x})")
            }
            EntryFault::BadLength { payload_len } => {
                write!(f, "payload length {payload_len} above the limit {ENTRY_PAYLOAD_BYTES_MAX}")
            }
            EntryFault::BadChecksum { stored, computed } => {
                write!(f, "bad crc32c (stored 0x{stored:08x}, computed 0x{computed:08x})")
            }
            EntryFault::BadField { what, value } => write!(f, "unknown {what} value {value}"),
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    let mut word = [0u8; 2];
    word.copy_from_slice(&bytes[at..at + 2]);
    u16::from_le_bytes(word)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Decodes the entry at the start of `bytes`. On success returns the entry and the number
/// of bytes it takes. Checks are ordered so the fault names the most specific cause: size,
/// magic, length bound, completeness, checksum, then field values.
pub fn decode_entry(bytes: &[u8]) -> Result<(EntryRef<'_>, usize), EntryFault> {
    if bytes.len() < ENTRY_HEADER_BYTES {
        return Err(EntryFault::Incomplete {
            bytes_available: bytes.len(),
            bytes_needed: ENTRY_HEADER_BYTES,
        });
    }
    let magic = u16_at(bytes, 4);
    if magic != ENTRY_MAGIC {
        return Err(EntryFault::BadMagic { found: magic });
    }
    let payload_len = u32_at(bytes, 8);
    if payload_len as usize > ENTRY_PAYLOAD_BYTES_MAX {
        return Err(EntryFault::BadLength { payload_len });
    }
    let total = ENTRY_HEADER_BYTES + payload_len as usize;
    if bytes.len() < total {
        return Err(EntryFault::Incomplete { bytes_available: bytes.len(), bytes_needed: total });
    }
    let stored = u32_at(bytes, 0);
    let computed = crc32c::crc32c(&bytes[4..total]);
    if stored != computed {
        return Err(EntryFault::BadChecksum { stored, computed });
    }
    let kind = EntryKind::from_u8(bytes[6])
        .ok_or(EntryFault::BadField { what: "entry kind", value: u64::from(bytes[6]) })?;
    if bytes[7] != 0 {
        return Err(EntryFault::BadField { what: "entry flags", value: u64::from(bytes[7]) });
    }
    let reserved = u32_at(bytes, 12);
    if reserved != 0 {
        return Err(EntryFault::BadField { what: "entry reserved field", value: reserved.into() });
    }
    let entry = EntryRef {
        term: u64_at(bytes, 16),
        index: u64_at(bytes, 24),
        kind,
        payload: &bytes[ENTRY_HEADER_BYTES..total],
    };
    Ok((entry, total))
}

/// Reads only the payload length of a header that passed `decode_entry` (used to walk a
/// buffer of entries this process encoded itself).
pub(crate) fn encoded_len_at(bytes: &[u8]) -> usize {
    debug_assert!(bytes.len() >= ENTRY_HEADER_BYTES);
    ENTRY_HEADER_BYTES + u32_at(bytes, 8) as usize
}

/// Reads the index field of an encoded entry header.
pub(crate) fn index_at(bytes: &[u8]) -> u64 {
    debug_assert!(bytes.len() >= ENTRY_HEADER_BYTES);
    u64_at(bytes, 24)
}

/// Encodes a segment header for a segment whose first entry has `first_index`.
pub fn encode_segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Why a segment header is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentHeaderFault {
    Incomplete { bytes_available: usize },
    BadMagic,
    BadChecksum { stored: u32, computed: u32 },
    UnknownVersion { version: u32 },
    BadField { what: &'static str, value: u64 },
}

impl fmt::Display for SegmentHeaderFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentHeaderFault::Incomplete { bytes_available } => write!(
                f,
                "incomplete segment header ({bytes_available} of {SEGMENT_HEADER_BYTES} bytes)"
            ),
            SegmentHeaderFault::BadMagic => write!(f, "not a bourse log segment (bad magic)"),
            SegmentHeaderFault::BadChecksum { stored, computed } => write!(
                f,
                "bad segment header crc32c (stored 0x{stored:08x}, computed 0x{computed:08x})"
            ),
            SegmentHeaderFault::UnknownVersion { version } => write!(
                f,
                "segment format version {version} is not supported (this build reads \
                 {SEGMENT_FORMAT_VERSION})"
            ),
            SegmentHeaderFault::BadField { what, value } => {
                write!(f, "unknown {what} value {value}")
            }
        }
    }
}

/// Decodes a segment header and returns the first index it names.
pub fn decode_segment_header(bytes: &[u8]) -> Result<u64, SegmentHeaderFault> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(SegmentHeaderFault::Incomplete { bytes_available: bytes.len() });
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(SegmentHeaderFault::BadMagic);
    }
    let stored = u32_at(bytes, 28);
    let computed = crc32c::crc32c(&bytes[..28]);
    if stored != computed {
        return Err(SegmentHeaderFault::BadChecksum { stored, computed });
    }
    let version = u32_at(bytes, 8);
    if version != SEGMENT_FORMAT_VERSION {
        return Err(SegmentHeaderFault::UnknownVersion { version });
    }
    let flags = u32_at(bytes, 12);
    if flags != 0 {
        return Err(SegmentHeaderFault::BadField { what: "segment flags", value: flags.into() });
    }
    let reserved = u32_at(bytes, 24);
    if reserved != 0 {
        return Err(SegmentHeaderFault::BadField {
            what: "segment reserved field",
            value: reserved.into(),
        });
    }
    Ok(u64_at(bytes, 16))
}

/// File name of the segment whose first entry is `first_index`.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:0width$}.{SEGMENT_EXTENSION}", width = SEGMENT_NAME_DIGITS)
}

/// Parses a segment file name; `None` for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Little-endian reader helpers shared with the other file formats of this crate.
pub(crate) mod le {
    pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
        super::u32_at(bytes, at)
    }
    pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
        super::u64_at(bytes, at)
    }
    pub fn u16_at(bytes: &[u8], at: usize) -> u16 {
        super::u16_at(bytes, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_every_single_byte_flip_is_caught() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 7, 42, EntryKind::Normal, b"hello world");
        let (entry, used) = decode_entry(&buf).expect("decodes");
        assert_eq!(used, buf.len());
        assert_eq!((entry.term, entry.index, entry.payload), (7, 42, &b"hello world"[..]));
        for at in 0..buf.len() {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            assert!(decode_entry(&bad).is_err(), "flip at byte {at} not detected");
        }
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 1, 1, EntryKind::ConfChange, &[9u8; 40]);
        for len in 0..buf.len() {
            let fault = decode_entry(&buf[..len]).expect_err("truncated entry decoded");
            assert!(matches!(fault, EntryFault::Incomplete { .. }), "len {len}: {fault:?}");
        }
    }

    #[test]
    fn segment_header_and_names() {
        let header = encode_segment_header(1234);
        assert_eq!(decode_segment_header(&header), Ok(1234));
        let mut bad = header;
        bad[20] ^= 1;
        assert!(matches!(decode_segment_header(&bad), Err(SegmentHeaderFault::BadChecksum { .. })));
        let name = segment_file_name(1234);
        assert_eq!(name, "00000000000000001234.log");
        assert_eq!(parse_segment_file_name(&name), Some(1234));
        assert_eq!(parse_segment_file_name("1234.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000001234.log.tmp"), None);
        assert_eq!(parse_segment_file_name(&segment_file_name(u64::MAX)), Some(u64::MAX));
    }
}
