//! The start-up sequence of one node, as one call: newest snapshot (which must verify),
//! then the log after it, replayed through the caller's state machine. The engine is the
//! caller's: this crate hands it bytes.

use std::path::Path;

use crate::error::LogError;
use crate::format::EntryRef;
use crate::snapshot::{LoadedSnapshot, SnapshotError, SnapshotStore};
use crate::wal::{Recovered, Wal, WalHandle, WalOptions};

/// Why a node could not recover. Each message names the file and the way forward.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    #[error("{0}")]
    Log(#[from] LogError),
    /// The caller's restore step refused the snapshot (e.g. its state hash differs).
    #[error("restoring the snapshot {path} failed: {reason}")]
    Restore { path: String, reason: String },
}

/// What `recover_node` produced.
#[derive(Debug)]
pub struct NodeRecovery {
    pub wal: WalHandle,
    pub recovered: Recovered,
    /// Index and term of the snapshot recovery started from (0, 0 without one).
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    /// The snapshot store, for taking the next snapshots.
    pub snapshots: SnapshotStore,
}

/// Recovers a node: opens the snapshot store (`keep` deep), loads the newest snapshot
/// (refusing a damaged one, see `SnapshotStore::load_for_recovery`) and hands it to
/// `restore`, then opens the WAL replaying every entry after the snapshot into `replay`.
/// If the log ends before the snapshot (memory mode lost an unsynced tail, the snapshot
/// did not), the log is restarted after the snapshot so appends continue from there.
pub fn recover_node(
    log_dir: &Path,
    snapshot_dir: &Path,
    keep: usize,
    options: WalOptions,
    restore: &mut dyn FnMut(&LoadedSnapshot) -> Result<(), String>,
    replay: &mut dyn FnMut(EntryRef<'_>) -> Result<(), String>,
) -> Result<NodeRecovery, RecoveryError> {
    let log = options.log;
    let snapshots = SnapshotStore::open(snapshot_dir, keep)?;
    let (snapshot_index, snapshot_term) = match snapshots.load_for_recovery()? {
        Some(snapshot) => {
            restore(&snapshot).map_err(|reason| RecoveryError::Restore {
                path: snapshot.info.path.display().to_string(),
                reason,
            })?;
            log(&format!(
                "restored snapshot {} at index {}",
                snapshot.info.path.display(),
                snapshot.info.index
            ));
            (snapshot.info.index, snapshot.info.term)
        }
        None => (0, 0),
    };
    let (mut wal, recovered) = Wal::open_replaying(log_dir, options, snapshot_index + 1, replay)?;
    if wal.next_index() <= snapshot_index {
        log(&format!(
            "log in {} ends at {}, before the snapshot at {snapshot_index}: restarting it at {}",
            log_dir.display(),
            wal.next_index() - 1,
            snapshot_index + 1
        ));
        wal.truncate(snapshot_index + 1, snapshot_term)?;
    }
    Ok(NodeRecovery { wal, recovered, snapshot_index, snapshot_term, snapshots })
}
