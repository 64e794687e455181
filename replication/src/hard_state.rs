//! Raft hard state (term, vote, commit) and membership, in one small file written
//! atomically (temp file, fsync, rename, fsync directory) in the log directory.
//!
//! Layout (little endian): magic "BRSHARD\0", version u32, body length u32, body
//! (term u64, vote u64, commit u64, membership), crc32c u32 over everything before it.
//! Membership: four u16-counted lists of u64 node ids (voters, learners,
//! voters_outgoing, learners_next), then auto_leave as one byte.

use std::path::Path;

use crate::error::LogError;
use crate::format::le;
use crate::fsutil::write_atomic;

/// File name of the hard state in the log directory.
pub const HARD_STATE_FILE: &str = "raft-state";
const HARD_STATE_MAGIC: [u8; 8] = *b"BRSHARD\0";
const HARD_STATE_VERSION: u32 = 1;
/// Most node ids in one membership list.
pub const MEMBERS_MAX: usize = 1024;
/// Largest encoded membership.
pub const MEMBERSHIP_BYTES_MAX: usize = 4 * (2 + 8 * MEMBERS_MAX) + 1;
const BODY_FIXED_BYTES: usize = 24;
const HARD_STATE_BYTES_MAX: usize = 16 + BODY_FIXED_BYTES + MEMBERSHIP_BYTES_MAX + 4;

/// Raft's `ConfState`, in a form this crate can encode without protobuf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

impl Membership {
    fn lists(&self) -> [&Vec<u64>; 4] {
        [&self.voters, &self.learners, &self.voters_outgoing, &self.learners_next]
    }

    /// Appends the encoding; fails if a list is longer than `MEMBERS_MAX`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), LogError> {
        for list in self.lists() {
            if list.len() > MEMBERS_MAX {
                return Err(LogError::Invalid(format!(
                    "membership list of {} ids is above MEMBERS_MAX ({MEMBERS_MAX})",
                    list.len()
                )));
            }
            out.extend_from_slice(&(list.len() as u16).to_le_bytes());
            for id in list {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        out.push(u8::from(self.auto_leave));
        Ok(())
    }

    /// Decodes exactly `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Membership, String> {
        let mut at = 0;
        let mut lists: [Vec<u64>; 4] = Default::default();
        for list in &mut lists {
            if bytes.len() < at + 2 {
                return Err("membership truncated".into());
            }
            let count = usize::from(le::u16_at(bytes, at));
            at += 2;
            if count > MEMBERS_MAX || bytes.len() < at + 8 * count {
                return Err(format!("membership list of {count} ids is truncated or too long"));
            }
            list.extend((0..count).map(|k| le::u64_at(bytes, at + 8 * k)));
            at += 8 * count;
        }
        let auto_leave = match bytes.get(at) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err("membership auto_leave byte missing or not 0/1".into()),
        };
        if at + 1 != bytes.len() {
            return Err(format!("{} trailing bytes after membership", bytes.len() - at - 1));
        }
        let [voters, learners, voters_outgoing, learners_next] = lists;
        Ok(Membership { voters, learners, voters_outgoing, learners_next, auto_leave })
    }
}

impl From<&raft::prelude::ConfState> for Membership {
    fn from(cs: &raft::prelude::ConfState) -> Membership {
        Membership {
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners_next: cs.learners_next.clone(),
            auto_leave: cs.auto_leave,
        }
    }
}

impl From<&Membership> for raft::prelude::ConfState {
    fn from(m: &Membership) -> raft::prelude::ConfState {
        raft::prelude::ConfState {
            voters: m.voters.clone(),
            learners: m.learners.clone(),
            voters_outgoing: m.voters_outgoing.clone(),
            learners_next: m.learners_next.clone(),
            auto_leave: m.auto_leave,
            ..Default::default()
        }
    }
}

/// What the hard-state file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HardStateRecord {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub membership: Membership,
}

impl HardStateRecord {
    /// Whether going from `self` to `next` changes something raft must have on disk
    /// before acting (term, vote, membership); a commit-only change may be written lazily.
    pub fn needs_sync_write(&self, next: &HardStateRecord) -> bool {
        self.term != next.term || self.vote != next.vote || self.membership != next.membership
    }

    pub fn encode(&self) -> Result<Vec<u8>, LogError> {
        let mut body = Vec::with_capacity(BODY_FIXED_BYTES + 16);
        body.extend_from_slice(&self.term.to_le_bytes());
        body.extend_from_slice(&self.vote.to_le_bytes());
        body.extend_from_slice(&self.commit.to_le_bytes());
        self.membership.encode(&mut body)?;
        let mut out = Vec::with_capacity(body.len() + 20);
        out.extend_from_slice(&HARD_STATE_MAGIC);
        out.extend_from_slice(&HARD_STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<HardStateRecord, String> {
        if bytes.len() < 16 + BODY_FIXED_BYTES + 4 || bytes.len() > HARD_STATE_BYTES_MAX {
            return Err(format!("size {} is not a hard-state file", bytes.len()));
        }
        if bytes[..8] != HARD_STATE_MAGIC {
            return Err("bad magic".into());
        }
        let crc_at = bytes.len() - 4;
        let (stored, computed) = (le::u32_at(bytes, crc_at), crc32c::crc32c(&bytes[..crc_at]));
        if stored != computed {
            return Err(format!("bad crc32c (stored 0x{stored:08x}, computed 0x{computed:08x})"));
        }
        let version = le::u32_at(bytes, 8);
        if version != HARD_STATE_VERSION {
            return Err(format!("unknown version {version}"));
        }
        let body_len = le::u32_at(bytes, 12) as usize;
        if 16 + body_len != crc_at {
            return Err(format!("body length {body_len} does not match the file size"));
        }
        let body = &bytes[16..crc_at];
        Ok(HardStateRecord {
            term: le::u64_at(body, 0),
            vote: le::u64_at(body, 8),
            commit: le::u64_at(body, 16),
            membership: Membership::decode(&body[BODY_FIXED_BYTES..])?,
        })
    }
}

/// Loads the hard state of the log in `dir`: `None` if the file does not exist yet, an
/// error if it exists but is damaged (the vote it held cannot be guessed).
pub fn load_hard_state(dir: &Path) -> Result<Option<HardStateRecord>, LogError> {
    let path = dir.join(HARD_STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("read", &path, e)),
    };
    HardStateRecord::decode(&bytes).map(Some).map_err(|reason| LogError::BadFile { path, reason })
}

/// Writes the hard state atomically and durably.
pub fn store_hard_state(dir: &Path, record: &HardStateRecord) -> Result<(), LogError> {
    let bytes = record.encode()?;
    write_atomic(dir, HARD_STATE_FILE, &[&bytes]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_hard_state(dir.path()).expect("load"), None);
        let record = HardStateRecord {
            term: 5,
            vote: 2,
            commit: 99,
            membership: Membership {
                voters: vec![1, 2, 3],
                learners: vec![9],
                ..Membership::default()
            },
        };
        store_hard_state(dir.path(), &record).expect("store");
        assert_eq!(load_hard_state(dir.path()).expect("load"), Some(record.clone()));
        let path = dir.path().join(HARD_STATE_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[20] ^= 4;
        std::fs::write(&path, &bytes).expect("write");
        let err = load_hard_state(dir.path()).expect_err("damage detected");
        assert!(
            err.to_string().contains("raft-state") && err.to_string().contains("crc32c"),
            "{err}"
        );
    }
}
