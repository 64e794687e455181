//! bourse-replication: the shard's log, on one node for now. It owns the on-disk format
//! of log segments, snapshots and raft hard state; the WAL writer (an io thread using
//! io_uring with group commit); recovery (verification, torn-tail cut, replay); and a
//! raft-rs `Storage` over all of it, which the replication issue wraps.
//!
//! Which thread runs what: `WalHandle` and `RaftLogStorage` live on the shard core and
//! never block or make a syscall on the append path; the WAL's io thread and the
//! `SnapshotWriter` thread do the I/O. See `README.md` in this crate for the formats,
//! durability modes, recovery policy and the operator's procedure on corruption.

pub mod bench;
pub mod error;
pub mod format;
pub mod fsutil;
pub mod hard_state;
pub mod payload;
pub mod recovery;
pub mod scan;
mod segments;
pub mod snapshot;
pub mod storage;
mod uring;
pub mod wal;

pub use error::{Corruption, CorruptionKind, LogError};
pub use format::{EntryKind, EntryRef};
pub use hard_state::{load_hard_state, store_hard_state, HardStateRecord, Membership};
pub use payload::{
    decode_command_payload, decode_command_payload_origin, encode_command_payload,
    encode_command_payload_with_origin, CommandPayload, EntryOrigin,
};
pub use recovery::{recover_node, NodeRecovery, RecoveryError};
pub use scan::{
    scan_log, scan_segment_files, verify_log, ScanOptions, ScanProgress, ScanReport, TornTail,
    VerifyReport,
};
pub use segments::LogReader;
pub use snapshot::{SnapshotError, SnapshotInfo, SnapshotStore, SnapshotWriter};
pub use storage::RaftLogStorage;
pub use wal::{
    check_io_uring, AppendError, DurabilityMode, Recovered, SyncPoint, Wal, WalHandle, WalMonitor,
    WalOptions, WalStats, BATCH_INTERVAL_MAX,
};
