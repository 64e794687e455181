//! A raft-rs `Storage` over the WAL and the snapshot store: what the replication issue
//! wraps. Lives on the shard core (inside the `RawNode`); reads hit an in-memory cache
//! of the log's tail and fall back to `pread` of synced segments; writes go to the WAL
//! queue (no syscall); the io thread makes them durable.
//!
//! Raft's ordering rules map to the WAL like this: `append` and `set_hard_state` queue
//! their writes; `sync_point()` after them, once `is_persisted`, means the entries and
//! the term/vote are on disk, which is when a raft driver may send the Ready's
//! `persisted_messages` and call `advance` (or `on_persist_ready` in async mode).

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use raft::prelude::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::error::LogError;
use crate::format::{EntryKind, EntryRef, ENTRY_HEADER_BYTES};
use crate::hard_state::{HardStateRecord, Membership};
use crate::segments::LogReader;
use crate::snapshot::{read_snapshot_header, SnapshotError, SnapshotStore, SNAPSHOTS_KEPT_DEFAULT};
use crate::wal::{AppendError, Recovered, SyncPoint, Wal, WalHandle, WalOptions};

/// Default bound of the entry cache.
pub const CACHE_BYTES_DEFAULT: usize = 64 << 20;

/// Options of a `RaftLogStorage`.
#[derive(Clone, Debug)]
pub struct RaftStorageOptions {
    pub wal: WalOptions,
    pub snapshots_kept: usize,
    /// The entry cache holds the log's tail up to this many bytes; older entries are
    /// evicted once synced and read back from disk when asked for.
    pub cache_bytes_max: usize,
}

impl Default for RaftStorageOptions {
    fn default() -> RaftStorageOptions {
        RaftStorageOptions {
            wal: WalOptions::default(),
            snapshots_kept: SNAPSHOTS_KEPT_DEFAULT,
            cache_bytes_max: CACHE_BYTES_DEFAULT,
        }
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

fn entry_type(kind: EntryKind) -> EntryType {
    match kind {
        EntryKind::Normal => EntryType::EntryNormal,
        EntryKind::ConfChange => EntryType::EntryConfChange,
        EntryKind::ConfChangeV2 => EntryType::EntryConfChangeV2,
    }
}

fn entry_kind(entry_type: EntryType) -> EntryKind {
    match entry_type {
        EntryType::EntryNormal => EntryKind::Normal,
        EntryType::EntryConfChange => EntryKind::ConfChange,
        EntryType::EntryConfChangeV2 => EntryKind::ConfChangeV2,
    }
}

/// Converts a log entry to raft's type.
pub fn to_raft_entry(entry: EntryRef<'_>) -> Entry {
    Entry {
        entry_type: entry_type(entry.kind),
        term: entry.term,
        index: entry.index,
        data: entry.payload.to_vec().into(),
        ..Default::default()
    }
}

fn cached_bytes(entry: &Entry) -> usize {
    ENTRY_HEADER_BYTES + entry.data.len()
}

/// raft-rs `Storage` backed by the WAL (see the module doc).
pub struct RaftLogStorage {
    wal: WalHandle,
    reader: LogReader,
    /// The log's tail: `cache[k].index == cache_first + k`, up to `next_index - 1`.
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    cache_bytes_max: usize,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot_index: u64,
    snapshot_term: u64,
    snapshots: SnapshotStore,
    log: crate::wal::LogSink,
}

impl std::fmt::Debug for RaftLogStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLogStorage")
            .field("snapshot_index", &self.snapshot_index)
            .field("next_index", &self.wal.next_index())
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl RaftLogStorage {
    /// Opens the log in `log_dir` and the snapshots in `snapshot_dir`: the newest
    /// snapshot's header sets the first index, the log after it is verified and its tail
    /// cached, and the hard state is loaded.
    pub fn open(
        log_dir: &Path,
        snapshot_dir: &Path,
        options: RaftStorageOptions,
    ) -> Result<(RaftLogStorage, Recovered), LogError> {
        let snapshots =
            SnapshotStore::open(snapshot_dir, options.snapshots_kept).map_err(snapshot_to_log)?;
        let newest = match snapshots.list().map_err(snapshot_to_log)?.last() {
            Some(listed) => Some(read_snapshot_header(&listed.path).map_err(snapshot_to_log)?),
            None => None,
        };
        let (snapshot_index, snapshot_term) = newest.as_ref().map_or((0, 0), |s| (s.index, s.term));
        let log = options.wal.log;
        let mut cache = VecDeque::new();
        let mut cache_bytes = 0;
        let cache_bytes_max = options.cache_bytes_max;
        let mut fill = |entry: EntryRef<'_>| {
            let entry = to_raft_entry(entry);
            cache_bytes += cached_bytes(&entry);
            cache.push_back(entry);
            // Keep the newest entries: the tail is what raft reads. Everything replayed is
            // on disk, so evicted entries can be read back.
            while cache_bytes > cache_bytes_max && cache.len() > 1 {
                let evicted = cache.pop_front().expect("non-empty");
                cache_bytes -= cached_bytes(&evicted);
            }
            Ok(())
        };
        let (mut wal, recovered) =
            Wal::open_replaying(log_dir, options.wal, snapshot_index + 1, &mut fill)?;
        if wal.next_index() <= snapshot_index {
            // The snapshot is newer than the log (memory mode lost an unsynced tail, or a
            // snapshot was installed from the leader): restart the log after it.
            log(&format!(
                "log in {} ends at {} before the snapshot at {snapshot_index}; restarting the log at {}",
                log_dir.display(),
                wal.next_index() - 1,
                snapshot_index + 1
            ));
            wal.truncate(snapshot_index + 1, snapshot_term)?;
            cache.clear();
            cache_bytes = 0;
        }
        let record = recovered.hard_state.clone().unwrap_or_default();
        let membership = match (&recovered.hard_state, &newest) {
            (Some(hs), _) => hs.membership.clone(),
            (None, Some(snapshot)) => snapshot.membership.clone(),
            (None, None) => Membership::default(),
        };
        let mut hard_state = HardState {
            term: record.term.max(snapshot_term),
            vote: record.vote,
            commit: record.commit.max(snapshot_index),
            ..Default::default()
        };
        let last_index = wal.next_index() - 1;
        if hard_state.commit > last_index {
            log(&format!(
                "hard state commit {} is past the log's last index {last_index} (a cut tail held \
                 committed entries); lowering it, peers must supply them",
                hard_state.commit
            ));
            hard_state.commit = last_index;
        }
        let reader = wal.reader();
        let storage = RaftLogStorage {
            wal,
            reader,
            cache,
            cache_bytes,
            cache_bytes_max,
            hard_state,
            conf_state: ConfState::from(&membership),
            snapshot_index,
            snapshot_term,
            snapshots,
            log,
        };
        Ok((storage, recovered))
    }

    fn cache_first(&self) -> u64 {
        self.cache.front().map_or(self.wal.next_index(), |e| e.index)
    }

    fn last(&self) -> u64 {
        self.wal.next_index() - 1
    }

    fn cached(&self, index: u64) -> Option<&Entry> {
        let first = self.cache_first();
        if index < first {
            return None;
        }
        self.cache.get((index - first) as usize)
    }

    fn record(&self) -> HardStateRecord {
        HardStateRecord {
            term: self.hard_state.term,
            vote: self.hard_state.vote,
            commit: self.hard_state.commit,
            membership: Membership::from(&self.conf_state),
        }
    }

    /// Appends entries from a Ready (or a leader's message), replacing a conflicting
    /// suffix. Idempotent: entries already held with the same term are skipped, so after
    /// `AppendError::Full` the caller retries the same slice once the queue drains.
    pub fn append(&mut self, entries: &[Entry]) -> raft::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        // Refuse before changing anything.
        if entries.iter().any(|e| !e.context.is_empty()) {
            return Err(other(LogError::Invalid(
                "entry context is not stored; propose with an empty context".into(),
            )));
        }
        if first.index <= self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if first.index > self.last() + 1 {
            return Err(other(LogError::Invalid(format!(
                "append at {} leaves a gap after {}",
                first.index,
                self.last()
            ))));
        }
        let mut skip = 0;
        while skip < entries.len()
            && entries[skip].index <= self.last()
            && self.term(entries[skip].index)? == entries[skip].term
        {
            skip += 1;
        }
        let entries = &entries[skip..];
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.last() {
            let prev_term = self.term(first.index - 1)?;
            self.wal.truncate(first.index, prev_term).map_err(other)?;
            while self.cache.back().is_some_and(|e| e.index >= first.index) {
                let dropped = self.cache.pop_back().expect("non-empty");
                self.cache_bytes -= cached_bytes(&dropped);
            }
        }
        for entry in entries {
            self.wal
                .append_entry(entry.term, entry.index, entry_kind(entry.entry_type), &entry.data)
                .map_err(other)?;
            if self.cache.is_empty() || self.cache_first() + self.cache.len() as u64 == entry.index
            {
                self.cache_bytes += cached_bytes(entry);
                self.cache.push_back(entry.clone());
            }
        }
        self.evict();
        Ok(())
    }

    /// `append`, waiting up to `timeout` whenever the WAL queue is full. For drivers
    /// that may block (tests, tools); the shard core uses `append` and back-pressure.
    pub fn append_blocking(&mut self, entries: &[Entry], timeout: Duration) -> raft::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.append(entries) {
                Err(raft::Error::Store(StorageError::Other(e)))
                    if is_full(&*e) && Instant::now() < deadline =>
                {
                    let point = self.wal.sync_point();
                    self.wal.wait_synced(point, deadline - Instant::now()).map_err(other)?;
                }
                result => return result,
            }
        }
    }

    /// Evicts synced entries from the front while the cache is over its bound.
    fn evict(&mut self) {
        let durable = self.wal.durable_index();
        while self.cache_bytes > self.cache_bytes_max
            && self.cache.front().is_some_and(|e| e.index <= durable)
        {
            let evicted = self.cache.pop_front().expect("non-empty");
            self.cache_bytes -= cached_bytes(&evicted);
        }
    }

    /// Records the hard state; term and vote changes are durable at the next sync point.
    pub fn set_hard_state(&mut self, hard_state: &HardState) {
        self.hard_state = hard_state.clone();
        self.wal.save_hard_state(self.record());
    }

    /// Records a new commit index (from a LightReady); written lazily.
    pub fn set_commit(&mut self, commit: u64) {
        if commit > self.hard_state.commit {
            self.hard_state.commit = commit;
            self.wal.save_hard_state(self.record());
        }
    }

    /// Records the membership after a conf change was applied.
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
        self.wal.save_hard_state(self.record());
    }

    /// After the application wrote a snapshot at `index` (its own, or one installed from
    /// the leader, written with `SnapshotStore::write`): entries up to `index` are no
    /// longer served, the cache drops them, and segments below the oldest kept snapshot
    /// are deleted. If the log does not reach `index` (an installed snapshot) or
    /// disagrees with it, the log restarts after it.
    pub fn snapshot_written(
        &mut self,
        index: u64,
        term: u64,
        conf_state: ConfState,
    ) -> Result<(), LogError> {
        if index <= self.snapshot_index {
            return Ok(());
        }
        let matches = index <= self.last() && self.term(index).ok() == Some(term);
        if !matches {
            self.wal.truncate(index + 1, term)?;
            self.cache.clear();
            self.cache_bytes = 0;
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        while self.cache.front().is_some_and(|e| e.index <= index) {
            let dropped = self.cache.pop_front().expect("non-empty");
            self.cache_bytes -= cached_bytes(&dropped);
        }
        self.conf_state = conf_state;
        self.hard_state.term = self.hard_state.term.max(term);
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.wal.save_hard_state(self.record());
        if let Some(keep_from) = self.snapshots.compact_keep_from().map_err(snapshot_to_log)? {
            self.wal.compact(keep_from);
        }
        Ok(())
    }

    /// Everything queued so far (entries, hard state, truncations).
    pub fn sync_point(&self) -> SyncPoint {
        self.wal.sync_point()
    }

    pub fn is_persisted(&self, point: SyncPoint) -> bool {
        self.wal.is_synced(point)
    }

    /// Blocks until everything queued so far is durable (for sync-mode drivers off the
    /// shard core, and tests).
    pub fn wait_persisted(&self, timeout: Duration) -> Result<bool, LogError> {
        self.wal.wait_synced(self.wal.sync_point(), timeout)
    }

    pub fn wal(&self) -> &WalHandle {
        &self.wal
    }

    pub fn wal_mut(&mut self) -> &mut WalHandle {
        &mut self.wal
    }

    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Entries held in the in-memory cache (the rest are read from disk).
    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    /// Index and term of the newest snapshot (0, 0 without one).
    pub fn snapshot_position(&self) -> (u64, u64) {
        (self.snapshot_index, self.snapshot_term)
    }

    /// Writes everything queued and stops the io thread.
    pub fn close(self) -> Result<crate::wal::WalStats, LogError> {
        (self.log)("closing raft log storage");
        self.wal.close()
    }
}

fn is_full(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(e.downcast_ref::<AppendError>(), Some(AppendError::Full { .. }))
}

fn snapshot_to_log(e: SnapshotError) -> LogError {
    match e {
        SnapshotError::Io { op, path, source } => LogError::Io { op, path, source },
        other => LogError::Invalid(other.to_string()),
    }
}

impl Storage for RaftLogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low <= self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            // raft-rs's contract says panic; this storage reports it instead.
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        let limit = max_size.unwrap_or(u64::MAX);
        let disk_high = high.min(self.cache_first());
        if low < disk_high {
            self.reader
                .read(low, disk_high, &mut |entry| {
                    size += (ENTRY_HEADER_BYTES + entry.payload.len()) as u64;
                    out.push(to_raft_entry(entry));
                    size <= limit
                })
                .map_err(other)?;
        }
        let mut index = low.max(disk_high);
        while index < high && (out.is_empty() || size <= limit) {
            let entry = self.cached(index).ok_or(raft::Error::Store(StorageError::Unavailable))?;
            size += cached_bytes(entry) as u64;
            out.push(entry.clone());
            index += 1;
        }
        raft::util::limit_size(&mut out, max_size);
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_index {
            return Ok(self.snapshot_term);
        }
        if idx < self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if let Some(entry) = self.cached(idx) {
            return Ok(entry.term);
        }
        self.reader.term(idx).map_err(other)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let loaded = match self.snapshots.load_for_recovery() {
            Ok(Some(loaded)) if loaded.info.index >= request_index => loaded,
            Ok(_) => return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)),
            Err(e) => return Err(other(e)),
        };
        let mut snapshot = Snapshot { data: loaded.payload.into(), ..Default::default() };
        let meta = snapshot.mut_metadata();
        meta.index = loaded.info.index;
        meta.term = loaded.info.term;
        meta.set_conf_state(ConfState::from(&loaded.info.membership));
        Ok(snapshot)
    }
}
