//! Durable storage of a node: the command log on disk, snapshots, and recovery.
//!
//! - [`WalLog`] is the shard's `CommandLog` over the replication crate's WAL: every
//!   sequenced command is encoded (time, origin, command) and queued for the WAL's io
//!   thread, which writes and fsyncs in groups. In `memory` durability a command is
//!   committed (applied, acknowledged) once queued; in `disk` durability once its entry
//!   is fsynced. Either way the shard core never makes a syscall for it.
//! - A snapshot is the engine at an index plus the net core's report streams at the
//!   same index (`snapshot_payload`): the shard hands over a copy of the engine, the net
//!   core adds its streams when that hand-over reaches it in the output ring, and the
//!   [`SnapshotThread`] encodes and writes both, then lets the log drop segments no kept
//!   snapshot needs.
//! - [`recover`] rebuilds both from the newest snapshot and the log after it, so report
//!   streams (execution reports with their sequence numbers) survive a crash exactly.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bourse_engine::{Command, Event, Exchange, LogIndex};
use bourse_replication::{
    decode_command_payload_origin, encode_command_payload_with_origin, AppendError, CommandPayload,
    DurabilityMode, EntryOrigin, Membership, SnapshotStore, WalHandle, WalOptions,
};
use sha2::{Digest, Sha256};

use crate::session::{ConnId, Gateway, Origin};
use crate::shard::{CommandLog, Entry, LogBusy};

/// Raft term of every entry until replication elects leaders.
pub const TERM: u64 = 1;

/// First bytes of a node snapshot payload (engine + report streams).
const NODE_SNAPSHOT_MAGIC: [u8; 8] = *b"BRSNODE1";

/// The shard's command log on disk.
pub struct WalLog {
    wal: WalHandle,
    mode: DurabilityMode,
    appended: LogIndex,
    command: Vec<u8>,
    payload: Vec<u8>,
    /// Keep the log from this index on (set by the snapshot thread).
    keep_from: Arc<AtomicU64>,
    compacted_to: u64,
    failure: Option<String>,
}

impl std::fmt::Debug for WalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalLog").field("appended", &self.appended).finish_non_exhaustive()
    }
}

impl WalLog {
    pub fn new(wal: WalHandle, mode: DurabilityMode, keep_from: Arc<AtomicU64>) -> WalLog {
        let appended = wal.next_index() - 1;
        WalLog {
            wal,
            mode,
            appended,
            command: Vec::with_capacity(bourse_engine::command::COMMAND_BYTES_MAX),
            payload: Vec::with_capacity(bourse_engine::command::COMMAND_BYTES_MAX + 32),
            keep_from,
            compacted_to: 0,
            failure: None,
        }
    }
}

impl CommandLog for WalLog {
    fn append(&mut self, entry: &Entry<'_>) -> Result<(), LogBusy> {
        self.command.clear();
        entry.command.encode(&mut self.command);
        self.payload.clear();
        let origin = entry_origin(entry.origin);
        encode_command_payload_with_origin(&mut self.payload, entry.time_ns, origin, &self.command);
        match self.wal.append(TERM, entry.index, &self.payload) {
            Ok(()) => {
                self.appended = entry.index;
                Ok(())
            }
            Err(AppendError::Full { .. }) => Err(LogBusy),
            Err(other) => {
                // Anything else is a broken log (or a bug): stop rather than guess.
                self.failure.get_or_insert_with(|| other.to_string());
                Err(LogBusy)
            }
        }
    }

    fn committed_index(&self) -> LogIndex {
        match self.mode {
            DurabilityMode::Memory => self.appended,
            DurabilityMode::Disk => self.wal.durable_index().min(self.appended),
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.clone().or_else(|| self.wal.failure())
    }

    fn maintain(&mut self) {
        let keep_from = self.keep_from.load(Ordering::Acquire);
        if keep_from > self.compacted_to {
            self.compacted_to = keep_from;
            self.wal.compact(keep_from);
        }
    }

    fn close(self) -> Result<(), String> {
        let stats = self.wal.close().map_err(|e| e.to_string())?;
        eprintln!(
            "bourse: log closed: {} entries in {} fsyncs this run, {} bytes",
            stats.appends, stats.fsyncs, stats.bytes_written
        );
        Ok(())
    }
}

/// What a log entry records about where its command came from.
fn entry_origin(origin: crate::shard::Origin) -> EntryOrigin {
    match origin {
        Some(o) => EntryOrigin { stream: o.session_id, request_id: o.request_id },
        None => EntryOrigin::default(),
    }
}

/// The gateway origin a replayed entry stands for (no connection: it is gone).
fn replay_origin(origin: Option<EntryOrigin>) -> Option<Origin> {
    origin.filter(|o| o.stream != 0).map(|o| Origin {
        conn: ConnId::NONE,
        session_id: o.stream,
        request_id: o.request_id,
    })
}

/// Engine snapshot bytes and report-stream bytes in one payload.
pub fn snapshot_payload(engine: &[u8], streams: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 16 + engine.len() + streams.len());
    out.extend_from_slice(&NODE_SNAPSHOT_MAGIC);
    out.extend_from_slice(&(engine.len() as u64).to_le_bytes());
    out.extend_from_slice(engine);
    out.extend_from_slice(&(streams.len() as u64).to_le_bytes());
    out.extend_from_slice(streams);
    out
}

/// Splits a node snapshot payload into engine bytes and stream bytes.
pub fn split_snapshot_payload(payload: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let rest =
        payload.strip_prefix(&NODE_SNAPSHOT_MAGIC[..]).ok_or("not a node snapshot (bad magic)")?;
    let take = |bytes: &[u8]| -> Result<(usize, usize), String> {
        let len = bytes.get(..8).ok_or("truncated length")?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| "length too large")?;
        if bytes.len() - 8 < len {
            return Err("truncated section".to_string());
        }
        Ok((8, 8 + len))
    };
    let (start, end) = take(rest)?;
    let engine = &rest[start..end];
    let rest = &rest[end..];
    let (start, end) = take(rest)?;
    if end != rest.len() {
        return Err("trailing bytes after the streams section".into());
    }
    Ok((engine, &rest[start..end]))
}

/// A snapshot to write: the engine copy and the streams at the same index.
pub struct SnapshotJob {
    pub index: LogIndex,
    pub engine: Box<Exchange>,
    pub streams: Vec<u8>,
}

/// Encodes and writes snapshots off the shard and net cores, one at a time.
///
/// A failed write is fatal to the node (the net core polls [`SnapshotThread::failure`]
/// and stops the server): a node that cannot snapshot cannot compact its log and would
/// fill its disk, and a failed write usually means the disk is failing the log too.
pub struct SnapshotThread {
    jobs: mpsc::Sender<SnapshotJob>,
    thread: std::thread::JoinHandle<()>,
    /// The first failed write's message.
    failure: Arc<OnceLock<String>>,
}

impl SnapshotThread {
    /// `in_flight` is cleared after each job (written or failed); `keep_from` is raised
    /// to what the log must keep for the oldest retained snapshot.
    pub fn spawn(
        store: SnapshotStore,
        in_flight: Arc<AtomicBool>,
        keep_from: Arc<AtomicU64>,
    ) -> std::io::Result<SnapshotThread> {
        let (jobs, receiver) = mpsc::channel::<SnapshotJob>();
        let failure = Arc::new(OnceLock::new());
        let failed = failure.clone();
        let thread =
            std::thread::Builder::new().name("bourse-snapshot".into()).spawn(move || {
                for job in receiver {
                    let started = Instant::now();
                    match write_snapshot(&store, &job) {
                        Ok((bytes, keep)) => {
                            if let Some(keep) = keep {
                                keep_from.fetch_max(keep, Ordering::AcqRel);
                            }
                            eprintln!(
                                "bourse: snapshot at index {} written ({bytes} bytes in {} ms)",
                                job.index,
                                started.elapsed().as_millis()
                            );
                        }
                        Err(e) => {
                            eprintln!("bourse: snapshot at index {} FAILED: {e}", job.index);
                            let _ = failed.set(format!("snapshot at index {}: {e}", job.index));
                        }
                    }
                    in_flight.store(false, Ordering::Release);
                }
            })?;
        Ok(SnapshotThread { jobs, thread, failure })
    }

    /// Why a snapshot write failed, once one has.
    pub fn failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    pub fn submit(&self, job: SnapshotJob) {
        // The thread only stops when this sender is dropped.
        let _ = self.jobs.send(job);
    }

    /// Finishes the jobs submitted and stops the thread; says why if any write failed.
    pub fn finish(self) -> Result<(), String> {
        drop(self.jobs);
        if self.thread.join().is_err() {
            return Err("the snapshot thread panicked".into());
        }
        match self.failure.get() {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}

fn write_snapshot(
    store: &SnapshotStore,
    job: &SnapshotJob,
) -> Result<(usize, Option<u64>), String> {
    let mut engine = Vec::new();
    job.engine.encode_snapshot(&mut engine);
    // The state hash is SHA-256 of the canonical encoding: no second encode needed.
    let hash: [u8; 32] = Sha256::digest(&engine).into();
    let payload = snapshot_payload(&engine, &job.streams);
    store
        .write(job.index, TERM, &hash, &Membership::default(), &payload)
        .map_err(|e| e.to_string())?;
    let keep = store.compact_keep_from().map_err(|e| e.to_string())?;
    Ok((payload.len(), keep))
}

/// A node rebuilt from disk.
pub struct Recovered {
    pub engine: Exchange,
    pub gateway: Gateway,
    pub wal: WalHandle,
    /// The log's last index (the sequencer continues after it).
    pub last_index: LogIndex,
    /// True if there was nothing on disk: the config's bootstrap should run.
    pub fresh: bool,
    pub store: SnapshotStore,
}

/// Where a data directory keeps its log and snapshots.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// Rebuilds the engine and the report streams from the newest snapshot and the log
/// after it, and opens the WAL for appending. Prints progress on a large log.
pub fn recover(
    data_dir: &Path,
    keep: usize,
    wal_options: WalOptions,
    engine: Exchange,
    gateway: Gateway,
) -> Result<Recovered, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(crate::datalock::DIR_MODE)
        .create(data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let mut events: Vec<Event> = Vec::with_capacity(1024);
    let mut actions = Vec::new();
    let mut restored = false;
    let mut replayed = 0u64;
    let mut progress = crate::notify::RecoveryProgress::new();
    // Both callbacks rebuild the same pair, one after the other.
    let state = std::cell::RefCell::new((engine, gateway));
    let node = bourse_replication::recover_node(
        &log_dir(data_dir),
        &snapshot_dir(data_dir),
        keep,
        wal_options,
        &mut |snapshot| {
            let (engine_bytes, streams) = split_snapshot_payload(&snapshot.payload)?;
            let decoded = Exchange::decode_snapshot(engine_bytes).map_err(|e| e.to_string())?;
            if decoded.state_hash() != snapshot.info.state_hash {
                return Err("the engine state does not match the snapshot's state hash".into());
            }
            let mut state = state.borrow_mut();
            state.0 = decoded;
            state.1.import_streams(streams)?;
            restored = true;
            Ok(())
        },
        &mut |entry| {
            let (payload, origin) =
                decode_command_payload_origin(entry.payload).map_err(|e| e.to_string())?;
            let CommandPayload::Command { time_ns, command_bytes } = payload else {
                return Ok(());
            };
            let command = Command::decode(command_bytes).map_err(|e| e.to_string())?;
            let mut state = state.borrow_mut();
            let (engine, gateway) = &mut *state;
            events.clear();
            engine.apply(entry.index, time_ns, &command, &mut events).map_err(|e| e.to_string())?;
            actions.clear();
            gateway.on_events(replay_origin(origin), &events, time_ns, &mut actions);
            replayed += 1;
            let _extended = progress.on_entry();
            Ok(())
        },
    )
    .map_err(|e| e.to_string())?;
    let (engine, gateway) = state.into_inner();
    let last_index = node.wal.next_index() - 1;
    let fresh = !restored && last_index == 0;
    if !fresh {
        eprintln!(
            "bourse: recovered to index {last_index} (snapshot at {}, {replayed} commands replayed)",
            node.snapshot_index
        );
    }
    Ok(Recovered { engine, gateway, wal: node.wal, last_index, fresh, store: node.snapshots })
}
