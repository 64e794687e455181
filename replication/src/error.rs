//! Error types. Every error that concerns a file names it; corruption names the byte offset
//! and the entry index too, and says what an operator can do (replication/README.md,
//! "Corruption", has the full procedure).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::{EntryFault, SegmentHeaderFault};

/// What is wrong at a corrupt place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorruptionKind {
    /// An entry that fails its checks and is not a torn tail.
    Entry(EntryFault),
    /// A segment header that fails its checks.
    SegmentHeader(SegmentHeaderFault),
    /// The file name and the header disagree on the segment's first index.
    NameMismatch { name_index: u64, header_index: u64 },
    /// An entry's index is not the one after its predecessor.
    Gap { expected: u64, found: u64 },
    /// An entry's term is below its predecessor's (terms never decrease along a log).
    TermRegressed { previous: u64, found: u64 },
    /// A segment file is larger than `SEGMENT_BYTES_MAX`.
    SegmentTooLarge { bytes: u64 },
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::Entry(fault) => write!(f, "{fault}"),
            CorruptionKind::SegmentHeader(fault) => write!(f, "{fault}"),
            CorruptionKind::NameMismatch { name_index, header_index } => write!(
                f,
                "file name says first index {name_index} but the header says {header_index}"
            ),
            CorruptionKind::Gap { expected, found } => {
                write!(f, "entry index {found} where {expected} was expected (gap or reorder)")
            }
            CorruptionKind::TermRegressed { previous, found } => {
                write!(f, "entry term {found} below the previous entry's term {previous}")
            }
            CorruptionKind::SegmentTooLarge { bytes } => write!(
                f,
                "segment file of {bytes} bytes is above SEGMENT_BYTES_MAX ({})",
                crate::format::SEGMENT_BYTES_MAX
            ),
        }
    }
}

/// A damaged place in the log that is not a torn tail. Recovery stops on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the damaged entry (or header) in that file.
    pub offset: u64,
    /// Index of the entry expected at that offset, when known.
    pub index: Option<u64>,
    pub kind: CorruptionKind,
    /// Why this is not treated as a torn tail: the offset of a valid entry found after
    /// the damage in the same file, if any (otherwise the file is not the last segment).
    pub valid_entry_after: Option<u64>,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.path.parent().map(|p| p.display().to_string()).unwrap_or_default();
        // The log directory is `<data dir>/log` in the daemon's layout.
        let data_dir = self
            .path
            .parent()
            .and_then(Path::parent)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        write!(f, "log corruption in {} at byte offset {}", self.path.display(), self.offset)?;
        if let Some(index) = self.index {
            write!(f, " (entry index {index})")?;
        }
        write!(f, ": {}. ", self.kind)?;
        match self.valid_entry_after {
            Some(at) => write!(
                f,
                "A valid entry follows at byte offset {at}, so this is damage inside the log, \
                 not a torn tail. "
            )?,
            None => write!(f, "This is not the tail of the last segment. ")?,
        }
        write!(
            f,
            "The node refuses to start rather than guess. Locate all damage with \
             `bourse-log verify {dir}`, then restore this log directory from a healthy replica, \
             or restart from what is intact as replication/README.md, \"Corruption\", \
             describes: `bourse-log salvage {data_dir} --out <new data dir>` writes a startable \
             copy from the newest good snapshot and the intact entries after it."
        )
    }
}

/// Errors of the log reader, the writer and recovery.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Corrupt(Box<Corruption>),
    /// Recovery needs entries the log does not have (it was compacted past them, or a
    /// snapshot is newer than a log that was lost).
    #[error(
        "the log in {dir} does not hold entry {needed}: its entries are {available}. Recover \
         from a snapshot at or after index {needed_minus_one} or copy the log from a replica"
    )]
    Missing { dir: PathBuf, needed: u64, needed_minus_one: u64, available: String },
    /// The replay callback refused an entry.
    #[error("replay stopped at entry {index}: {reason}")]
    Replay { index: u64, reason: String },
    /// An option is out of its bounds.
    #[error("invalid option {name}: {reason}")]
    Options { name: &'static str, reason: String },
    /// io_uring could not be set up; the log does not fall back to plain syscalls.
    #[error(
        "io_uring setup failed ({source}); the WAL needs io_uring (kernel >= 5.6, not disabled \
         by sysctl kernel.io_uring_disabled or a seccomp profile, RLIMIT_MEMLOCK large enough \
         for a {ring_entries}-entry ring)"
    )]
    IoUringSetup {
        ring_entries: u32,
        #[source]
        source: io::Error,
    },
    /// The io thread stopped after an I/O error; no further entry becomes durable. After a
    /// failed fsync the page cache state is unknown, so the only safe move is to stop the
    /// node and recover from disk.
    #[error("the WAL io thread failed and stopped: {0}")]
    Failed(String),
    /// A small metadata file (raft hard state) fails its checks.
    #[error(
        "{path} is damaged: {reason}. The node refuses to start; see replication/README.md, \
         \"Corruption\", for how to proceed"
    )]
    BadFile { path: PathBuf, reason: String },
    /// A request that would break the log's rules (e.g. truncating below its first index).
    #[error("invalid log operation: {0}")]
    Invalid(String),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> LogError {
        LogError::Io { op, path: path.into(), source }
    }

    /// The corruption, if this is one.
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            LogError::Corrupt(c) => Some(c),
            _ => None,
        }
    }
}

impl From<Corruption> for LogError {
    fn from(c: Corruption) -> LogError {
        LogError::Corrupt(Box::new(c))
    }
}
