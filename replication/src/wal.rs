//! The write-ahead log: a handle for the shard core and an io thread that writes with
//! io_uring and group commit.
//!
//! The shard core owns the `WalHandle`. `append` checks the entry, encodes it into a
//! bounded in-memory queue under a mutex that the io thread holds only to swap two
//! buffers, and returns; it makes no syscall, except one futex wake when the io thread
//! is idle and the queue was empty (under load the io thread is busy and never parked).
//! When the queue is full, `append` returns `AppendError::Full` at once: back-pressure is
//! the caller's decision (stop taking requests, or poll `durable_index`).
//!
//! The io thread loops: take everything queued (one swap), apply a pending truncation,
//! write the entries with io_uring as one linked chain (write, fdatasync, plus the
//! directory fsync when a segment was created), write the hard-state file if term, vote
//! or membership changed, delete compacted segments, then publish `durable_index`. One
//! fsync therefore covers every entry that arrived while the previous one ran (group
//! commit). A batch never spans two segments: at a roll-over the old segment is synced
//! first, so only the last segment can ever hold unsynced bytes.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::LogError;
use crate::format::{
    encode_entry, encode_segment_header, encoded_len_at, index_at, segment_file_name, EntryKind,
    EntryRef, ENTRY_BYTES_MAX, ENTRY_HEADER_BYTES, ENTRY_PAYLOAD_BYTES_MAX, SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use crate::fsutil::ensure_dir;
use crate::hard_state::{load_hard_state, store_hard_state, HardStateRecord};
use crate::scan::{scan_log, ScanOptions, ScanProgress, ScanReport};
use crate::segments::{extend_sparse, lock, offset_of, LogReader, SegmentMeta, SharedTable};
use crate::uring::{Ring, SyncKind, WriteOp, RING_ENTRIES_DEFAULT};

/// Default bound of the append queue.
pub const QUEUE_BYTES_DEFAULT: usize = 4 << 20;
/// Largest allowed append queue (two buffers of this size are allocated).
pub const QUEUE_BYTES_LIMIT: usize = 256 << 20;
/// Longest `WalOptions::batch_interval` accepted: it bounds how long a `memory`-mode
/// node may hold acknowledged entries before writing them.
pub const BATCH_INTERVAL_MAX: Duration = Duration::from_millis(100);

/// Longest `WalOptions::idle_spin` accepted.
pub const IDLE_SPIN_MAX: Duration = Duration::from_millis(10);
/// Default delay after which a commit-only hard-state change is written.
pub const HARD_STATE_COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);

/// When a command may be acknowledged to its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DurabilityMode {
    /// Once sequenced (appended to the WAL queue; with raft, once a majority holds it in
    /// memory). The WAL reaches the disk asynchronously; see the README for the window.
    Memory,
    /// Once fsynced: `durable_index` has reached its index.
    Disk,
}

impl DurabilityMode {
    /// Highest index that may be acknowledged when `sequenced` is the last appended
    /// index and `durable` the WAL's `durable_index`.
    pub fn ack_index(self, sequenced: u64, durable: u64) -> u64 {
        match self {
            DurabilityMode::Memory => sequenced,
            DurabilityMode::Disk => sequenced.min(durable),
        }
    }

    /// Whether entry `index` may be acknowledged.
    pub fn may_ack(self, index: u64, sequenced: u64, durable: u64) -> bool {
        index <= self.ack_index(sequenced, durable)
    }

    /// Parses the configuration spelling: "memory" or "disk".
    pub fn parse(text: &str) -> Option<DurabilityMode> {
        match text {
            "memory" => Some(DurabilityMode::Memory),
            "disk" => Some(DurabilityMode::Disk),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DurabilityMode::Memory => "memory",
            DurabilityMode::Disk => "disk",
        }
    }
}

/// Called by the io thread with the new `durable_index` after each publish (write to an
/// eventfd, unpark a thread...). Must be quick: it runs on the io thread.
pub type DurableCallback = Arc<dyn Fn(u64) + Send + Sync>;

/// Called by the io thread after each batch of entries is written and synced, with how
/// long the write and its fdatasync took (one linked io_uring chain). Must be cheap and
/// must not block: it runs on the io thread, between two batches.
pub type SyncCallback = Arc<dyn Fn(Duration) + Send + Sync>;

/// Where the log writes its messages (torn tail cut, recovery progress).
pub type LogSink = fn(&str);

/// Default sink: standard error.
pub fn log_stderr(message: &str) {
    eprintln!("bourse-replication: {message}");
}

/// Sink that drops messages (tests).
pub fn log_none(_: &str) {}

/// Options of a WAL.
#[derive(Clone)]
pub struct WalOptions {
    /// A new segment is started when the next entry would take the current one above
    /// this. Between `SEGMENT_HEADER_BYTES + ENTRY_BYTES_MAX` and `SEGMENT_BYTES_MAX`.
    pub segment_bytes_max: u64,
    /// Bound of the append queue, at least `ENTRY_BYTES_MAX`, at most `QUEUE_BYTES_LIMIT`.
    pub queue_bytes_max: usize,
    /// io_uring size (`RING_ENTRIES_MIN..=RING_ENTRIES_MAX`).
    pub ring_entries: u32,
    /// A commit-only hard-state change is written after at most this long.
    pub hard_state_commit_interval: Duration,
    pub on_durable: Option<DurableCallback>,
    /// Latency of every batch's write + fdatasync (metrics); `None` measures nothing.
    pub on_sync: Option<SyncCallback>,
    pub log: LogSink,
    /// Name of the io thread (shows in `top -H`, perf).
    pub thread_name: String,
    /// How long the io thread spins for new work before parking. Zero (the default)
    /// parks at once, which suits a shared core; on a dedicated io core a spin of about
    /// one fsync saves the futex wake-up on the next append (lower disk-mode ack latency).
    pub idle_spin: Duration,
    /// After writing a batch, wait until this long has passed since it was taken before
    /// taking the next, so more entries share one write and one fsync. Zero (the
    /// default) takes the next batch at once, which suits `disk` durability, where an
    /// acknowledgement waits for the fsync. In `memory` durability nothing waits for it:
    /// a short interval trades a slightly longer loss window (by at most the interval)
    /// for far fewer wake-ups and fsyncs competing with the cores that serve clients.
    /// At most `BATCH_INTERVAL_MAX`.
    pub batch_interval: Duration,
    /// Pin the io thread to this CPU (the io helper core of the thread-per-core layout).
    /// `None` leaves it to the scheduler. A CPU that cannot be used fails `Wal::open`.
    pub io_cpu: Option<usize>,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            queue_bytes_max: QUEUE_BYTES_DEFAULT,
            ring_entries: RING_ENTRIES_DEFAULT,
            hard_state_commit_interval: HARD_STATE_COMMIT_INTERVAL_DEFAULT,
            on_durable: None,
            on_sync: None,
            log: log_stderr,
            thread_name: "bourse-wal".to_string(),
            idle_spin: Duration::ZERO,
            batch_interval: Duration::ZERO,
            io_cpu: None,
        }
    }
}

impl std::fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalOptions")
            .field("segment_bytes_max", &self.segment_bytes_max)
            .field("queue_bytes_max", &self.queue_bytes_max)
            .field("ring_entries", &self.ring_entries)
            .field("hard_state_commit_interval", &self.hard_state_commit_interval)
            .field("on_durable", &self.on_durable.is_some())
            .field("on_sync", &self.on_sync.is_some())
            .field("thread_name", &self.thread_name)
            .field("idle_spin", &self.idle_spin)
            .field("batch_interval", &self.batch_interval)
            .field("io_cpu", &self.io_cpu)
            .finish()
    }
}

impl WalOptions {
    fn validate(&self) -> Result<(), LogError> {
        let segment_min = (SEGMENT_HEADER_BYTES + ENTRY_BYTES_MAX) as u64;
        if !(segment_min..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes_max) {
            return Err(LogError::Options {
                name: "segment_bytes_max",
                reason: format!(
                    "{} not in {segment_min}..={SEGMENT_BYTES_MAX}",
                    self.segment_bytes_max
                ),
            });
        }
        if self.batch_interval > BATCH_INTERVAL_MAX {
            return Err(LogError::Options {
                name: "batch_interval",
                reason: format!(
                    "{:?} above BATCH_INTERVAL_MAX ({BATCH_INTERVAL_MAX:?})",
                    self.batch_interval
                ),
            });
        }
        if self.idle_spin > IDLE_SPIN_MAX {
            return Err(LogError::Options {
                name: "idle_spin",
                reason: format!("{:?} above IDLE_SPIN_MAX ({IDLE_SPIN_MAX:?})", self.idle_spin),
            });
        }
        if !(ENTRY_BYTES_MAX..=QUEUE_BYTES_LIMIT).contains(&self.queue_bytes_max) {
            return Err(LogError::Options {
                name: "queue_bytes_max",
                reason: format!(
                    "{} not in {ENTRY_BYTES_MAX}..={QUEUE_BYTES_LIMIT}",
                    self.queue_bytes_max
                ),
            });
        }
        Ok(())
    }
}

/// Why an append was refused. Nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("WAL queue full ({queued_bytes} of {queue_bytes_max} bytes queued); retry after durable_index advances")]
    Full { queued_bytes: usize, queue_bytes_max: usize },
    #[error("entry index {found} appended where {expected} was expected")]
    NotContiguous { expected: u64, found: u64 },
    #[error("entry term {found} is below the log's last term {last_term}")]
    TermRegressed { last_term: u64, found: u64 },
    #[error("payload of {payload_len} bytes is above ENTRY_PAYLOAD_BYTES_MAX ({ENTRY_PAYLOAD_BYTES_MAX})")]
    TooLarge { payload_len: usize },
    #[error("the WAL io thread failed: {0}")]
    Failed(String),
}

/// Counters of a WAL since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Entries appended by the caller.
    pub appends: u64,
    /// io-thread cycles that wrote entries (each ends with one data fsync).
    pub batches: u64,
    /// fsync/fdatasync operations issued (files and directories).
    pub fsyncs: u64,
    /// Entry and header bytes written to segments.
    pub bytes_written: u64,
    pub segments_created: u64,
    pub segments_deleted: u64,
    pub truncations: u64,
    pub hard_state_writes: u64,
    /// io_uring_enter calls.
    pub uring_enters: u64,
    /// Largest number of entries one fsync covered.
    pub batch_entries_max: u64,
}

#[derive(Default)]
struct StatCounters {
    appends: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    bytes_written: AtomicU64,
    segments_created: AtomicU64,
    segments_deleted: AtomicU64,
    truncations: AtomicU64,
    hard_state_writes: AtomicU64,
    uring_enters: AtomicU64,
    batch_entries_max: AtomicU64,
}

impl StatCounters {
    fn read(&self) -> WalStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WalStats {
            appends: get(&self.appends),
            batches: get(&self.batches),
            fsyncs: get(&self.fsyncs),
            bytes_written: get(&self.bytes_written),
            segments_created: get(&self.segments_created),
            segments_deleted: get(&self.segments_deleted),
            truncations: get(&self.truncations),
            hard_state_writes: get(&self.hard_state_writes),
            uring_enters: get(&self.uring_enters),
            batch_entries_max: get(&self.batch_entries_max),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A pending truncation: drop entries from `from_index` on; `wipe` drops every segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Truncation {
    from_index: u64,
    wipe: bool,
}

/// What the caller queued since the io thread last took the queue. Applied in this
/// order: truncation, entries, hard state, compaction.
struct Pending {
    buf: Vec<u8>,
    entries: u64,
    first_index: u64,
    last_index: u64,
    truncation: Option<Truncation>,
    hard_state: Option<HardStateRecord>,
    compact_keep_from: Option<u64>,
    /// The caller's operation count when it last queued something.
    ops: u64,
}

impl Pending {
    fn new(capacity: usize) -> Pending {
        Pending {
            buf: Vec::with_capacity(capacity),
            entries: 0,
            first_index: 0,
            last_index: 0,
            truncation: None,
            hard_state: None,
            compact_keep_from: None,
            ops: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.entries == 0
            && self.truncation.is_none()
            && self.hard_state.is_none()
            && self.compact_keep_from.is_none()
    }
}

struct Shared {
    queue: Mutex<Pending>,
    /// Set when the queue goes from empty to non-empty, cleared when the io thread takes
    /// it: lets the io thread spin without taking the lock.
    queued: AtomicBool,
    durable_index: AtomicU64,
    durable_ops: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    shutdown: AtomicBool,
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    wait_cv: Condvar,
    stats: StatCounters,
    table: SharedTable,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.failure).clone()
    }

    fn wake_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.wait_lock);
            self.wait_cv.notify_all();
        }
    }
}

/// What `Wal::open` found on disk.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// Segments, last entry, torn tail (already cut), counts and timing of the scan.
    pub report: ScanReport,
    /// The raft hard state, if the file exists.
    pub hard_state: Option<HardStateRecord>,
}

impl Recovered {
    /// Index the next append must have.
    pub fn next_index(&self) -> u64 {
        self.report.next_index().unwrap_or(1)
    }
}

/// Namespace of the constructors.
#[derive(Debug)]
pub struct Wal;

impl Wal {
    /// Opens (or creates) the log in `dir`: verifies every segment, cuts a torn tail,
    /// fsyncs what the previous process may have left unsynced, and starts the io thread.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(WalHandle, Recovered), LogError> {
        Wal::open_inner(dir, options, None, &mut |_| Ok(()))
    }

    /// Like `open`, and hands every entry at or after `from_index` to `replay` during the
    /// verification pass (one read of the log serves both). Segments wholly before
    /// `from_index` are not read. Fails with `LogError::Missing` if the log starts after
    /// `from_index` (entries the caller needs are gone). Progress is written to
    /// `options.log` every second.
    pub fn open_replaying(
        dir: &Path,
        options: WalOptions,
        from_index: u64,
        replay: &mut dyn FnMut(EntryRef<'_>) -> Result<(), String>,
    ) -> Result<(WalHandle, Recovered), LogError> {
        Wal::open_inner(dir, options, Some(from_index), replay)
    }

    fn open_inner(
        dir: &Path,
        options: WalOptions,
        replay_from: Option<u64>,
        replay: &mut dyn FnMut(EntryRef<'_>) -> Result<(), String>,
    ) -> Result<(WalHandle, Recovered), LogError> {
        options.validate()?;
        ensure_dir(dir)?;
        let log = options.log;
        let from_index = replay_from.unwrap_or(u64::MAX);
        let read_all = replay_from.is_none();
        let scan_options = ScanOptions { from_index, read_all, repair: true };
        let mut progress = |p: &ScanProgress| log(&format!("recovering {}: {p}", dir.display()));
        let report = scan_log(dir, &scan_options, replay, &mut progress)?;
        if let Some(torn) = &report.torn_tail {
            log(&format!("recovery cut a {torn}"));
        }
        if let Some(from_index) = replay_from {
            check_covers(&report, from_index)?;
        }
        if report.entries_read > 0 {
            log(&format!(
                "recovered {} in {:.3} s ({} entries read)",
                report.range_text(),
                report.elapsed.as_secs_f64(),
                report.entries_read
            ));
        }
        let hard_state = load_hard_state(dir)?;
        let recovered = Recovered { report, hard_state };
        let handle = WalHandle::start(dir, options, &recovered)?;
        Ok((handle, recovered))
    }
}

fn check_covers(report: &ScanReport, from_index: u64) -> Result<(), LogError> {
    let Some(first) = report.first_index() else {
        return Ok(());
    };
    let holds_entries = report.next_index().is_some_and(|next| next > first);
    if holds_entries && first > from_index.max(1) {
        return Err(LogError::Missing {
            dir: report.dir.clone(),
            needed: from_index,
            needed_minus_one: from_index.saturating_sub(1),
            available: report.range_text(),
        });
    }
    Ok(())
}

/// A point in the caller's stream of WAL operations (see `WalHandle::sync_point`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncPoint(pub u64);

/// Counters and the durable index of a WAL, readable from any thread without a lock.
#[derive(Clone)]
pub struct WalMonitor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WalMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalMonitor").finish_non_exhaustive()
    }
}

impl WalMonitor {
    pub fn stats(&self) -> WalStats {
        self.shared.stats.read()
    }

    /// Highest index written and fsynced by the io thread.
    pub fn durable_index(&self) -> u64 {
        self.shared.durable_index.load(Ordering::Acquire)
    }

    /// True once the io thread has stopped on an error.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }
}

/// The shard core's side of the WAL. `Send`, not shared: one thread appends.
pub struct WalHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
    queue_bytes_max: usize,
    next_index: u64,
    last_term: u64,
    ops: u64,
    /// Set by a truncation until the io thread has done it: `durable_index` must not
    /// report entries at or above `floor + 1` that were written before it.
    truncation_guard: Option<(u64, u64)>,
}

impl std::fmt::Debug for WalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalHandle")
            .field("dir", &self.dir)
            .field("next_index", &self.next_index)
            .field("durable_index", &self.durable_index())
            .finish()
    }
}

impl WalHandle {
    fn start(
        dir: &Path,
        options: WalOptions,
        recovered: &Recovered,
    ) -> Result<WalHandle, LogError> {
        let report = &recovered.report;
        let table: Vec<SegmentMeta> = report.segments.iter().map(SegmentMeta::from).collect();
        let next_index = recovered.next_index();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Pending::new(options.queue_bytes_max)),
            queued: AtomicBool::new(false),
            durable_index: AtomicU64::new(0),
            durable_ops: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            wait_cv: Condvar::new(),
            stats: StatCounters::default(),
            table: Arc::new(Mutex::new(table)),
        });
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let io_shared = Arc::clone(&shared);
        let io_dir = dir.to_path_buf();
        let io_options = options.clone();
        let hard_state = recovered.hard_state.clone();
        let thread = thread::Builder::new()
            .name(options.thread_name.clone())
            .spawn(move || {
                match IoThread::new(io_dir, io_options, io_shared, hard_state, next_index) {
                    Ok(io) => {
                        let _ = ready_tx.send(Ok(()));
                        io.run();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| LogError::io("spawn io thread for", dir, e))?;
        let started = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(LogError::Failed("io thread died at start".into())));
        if let Err(e) = started {
            let _ = thread.join();
            return Err(e);
        }
        Ok(WalHandle {
            shared,
            thread: Some(thread),
            dir: dir.to_path_buf(),
            queue_bytes_max: options.queue_bytes_max,
            next_index,
            last_term: report.last_term(),
            ops: 0,
            truncation_guard: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a `Normal` entry. See `append_entry`.
    pub fn append(&mut self, term: u64, index: u64, payload: &[u8]) -> Result<(), AppendError> {
        self.append_entry(term, index, EntryKind::Normal, payload)
    }

    /// Queues one entry. `index` must be `next_index()`, `term` at least the last term.
    /// Copies the payload; no syscall (see the module doc). On error nothing is queued.
    pub fn append_entry(
        &mut self,
        term: u64,
        index: u64,
        kind: EntryKind,
        payload: &[u8],
    ) -> Result<(), AppendError> {
        if index != self.next_index {
            return Err(AppendError::NotContiguous { expected: self.next_index, found: index });
        }
        if term < self.last_term {
            return Err(AppendError::TermRegressed { last_term: self.last_term, found: term });
        }
        if payload.len() > ENTRY_PAYLOAD_BYTES_MAX {
            return Err(AppendError::TooLarge { payload_len: payload.len() });
        }
        if let Some(reason) = self.shared.failure() {
            return Err(AppendError::Failed(reason));
        }
        let mut queue = lock(&self.shared.queue);
        let needed = ENTRY_HEADER_BYTES + payload.len();
        if queue.buf.len() + needed > self.queue_bytes_max {
            return Err(AppendError::Full {
                queued_bytes: queue.buf.len(),
                queue_bytes_max: self.queue_bytes_max,
            });
        }
        let was_empty = queue.is_empty();
        if queue.entries == 0 {
            queue.first_index = index;
        }
        encode_entry(&mut queue.buf, term, index, kind, payload);
        queue.entries += 1;
        queue.last_index = index;
        self.ops += 1;
        queue.ops = self.ops;
        drop(queue);
        bump(&self.shared.stats.appends, 1);
        self.next_index = index + 1;
        self.last_term = term;
        if was_empty {
            self.wake_io();
        }
        Ok(())
    }

    fn wake_io(&self) {
        self.shared.queued.store(true, Ordering::Release);
        if let Some(thread) = &self.thread {
            // A no-op atomic unless the io thread is parked.
            thread.thread().unpark();
        }
    }

    /// Drops every entry at or after `from_index`; the next append must be `from_index`
    /// with a term of at least `prev_term` (the term of entry `from_index - 1`, or the
    /// snapshot's). If `from_index` is above `next_index()` (a snapshot beyond the log)
    /// or at or below the log's first index, every segment is dropped and the log
    /// restarts at `from_index`. `durable_index` drops to `from_index - 1` at once.
    pub fn truncate(&mut self, from_index: u64, prev_term: u64) -> Result<(), LogError> {
        if from_index == 0 {
            return Err(LogError::Invalid("truncate from index 0".into()));
        }
        if from_index == self.next_index {
            self.last_term = prev_term;
            return Ok(());
        }
        let mut queue = lock(&self.shared.queue);
        let was_empty = queue.is_empty();
        if from_index > self.next_index {
            clear_entries(&mut queue);
            queue.truncation = Some(Truncation { from_index, wipe: true });
        } else if queue.entries > 0 && from_index > queue.first_index {
            cut_entries(&mut queue, from_index);
        } else {
            clear_entries(&mut queue);
            queue.truncation = Some(match queue.truncation {
                Some(t) if t.wipe && from_index < t.from_index => {
                    Truncation { from_index, wipe: true }
                }
                Some(t) => Truncation { from_index: from_index.min(t.from_index), wipe: t.wipe },
                None => Truncation { from_index, wipe: false },
            });
        }
        self.ops += 1;
        queue.ops = self.ops;
        drop(queue);
        let floor = from_index - 1;
        let floor = self.truncation_guard.map_or(floor, |(_, f)| f.min(floor));
        self.truncation_guard = Some((self.ops, floor));
        self.next_index = from_index;
        self.last_term = prev_term;
        if was_empty {
            self.wake_io();
        }
        Ok(())
    }

    /// Deletes, on the io thread, every segment whose entries are all below
    /// `keep_from` (never the last segment). Call it with the oldest kept snapshot's
    /// index + 1.
    pub fn compact(&mut self, keep_from: u64) {
        let mut queue = lock(&self.shared.queue);
        let was_empty = queue.is_empty();
        queue.compact_keep_from =
            Some(queue.compact_keep_from.map_or(keep_from, |k| k.max(keep_from)));
        self.ops += 1;
        queue.ops = self.ops;
        drop(queue);
        if was_empty {
            self.wake_io();
        }
    }

    /// Queues the raft hard state. Term, vote and membership changes are written (atomic
    /// file) before the sync point of this call is reached; a commit-only change is
    /// written within `hard_state_commit_interval` or at close.
    pub fn save_hard_state(&mut self, record: HardStateRecord) {
        let mut queue = lock(&self.shared.queue);
        let was_empty = queue.is_empty();
        queue.hard_state = Some(record);
        self.ops += 1;
        queue.ops = self.ops;
        drop(queue);
        if was_empty {
            self.wake_io();
        }
    }

    /// Index the next append must have.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Term of the last appended entry (or the `prev_term` of the last truncation).
    pub fn last_term(&self) -> u64 {
        self.last_term
    }

    /// First index the log holds on disk, or `None` before the first segment exists.
    pub fn first_index(&self) -> Option<u64> {
        lock(&self.shared.table).first().map(|s| s.first_index)
    }

    /// Highest index such that it and every entry before it are on disk (fsynced).
    /// Monotonic except across `truncate`, which lowers it to the truncation point.
    pub fn durable_index(&self) -> u64 {
        let done_ops = self.shared.durable_ops.load(Ordering::Acquire);
        let durable = self.shared.durable_index.load(Ordering::Acquire);
        match self.truncation_guard {
            Some((ops, floor)) if done_ops < ops => durable.min(floor),
            _ => durable,
        }
    }

    /// Everything queued so far; `is_synced` tells when the io thread has made all of
    /// it durable (entries, truncations, term/vote, compaction).
    pub fn sync_point(&self) -> SyncPoint {
        SyncPoint(self.ops)
    }

    pub fn is_synced(&self, point: SyncPoint) -> bool {
        self.shared.durable_ops.load(Ordering::Acquire) >= point.0
    }

    /// Blocks (off the shard core: tests, tools, a raft driver in sync mode) until
    /// `point` is durable. `Ok(false)` on timeout; `Err` if the io thread failed.
    pub fn wait_synced(&self, point: SyncPoint, timeout: Duration) -> Result<bool, LogError> {
        self.wait_until(timeout, || self.is_synced(point))
    }

    /// Blocks until `durable_index() >= index` (see `wait_synced`).
    pub fn wait_durable(&self, index: u64, timeout: Duration) -> Result<bool, LogError> {
        self.wait_until(timeout, || self.durable_index() >= index)
    }

    fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> Result<bool, LogError> {
        let deadline = Instant::now() + timeout;
        self.shared.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = lock(&self.shared.wait_lock);
        let result = loop {
            if done() {
                break Ok(true);
            }
            if let Some(reason) = self.shared.failure() {
                break Err(LogError::Failed(reason));
            }
            let now = Instant::now();
            if now >= deadline {
                break Ok(false);
            }
            guard = match self.shared.wait_cv.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        };
        drop(guard);
        self.shared.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    pub fn stats(&self) -> WalStats {
        self.shared.stats.read()
    }

    /// A read-only view of this WAL's counters and durable index for another thread
    /// (metrics): it reads the same atomics, takes no lock and outlives the handle.
    pub fn monitor(&self) -> WalMonitor {
        WalMonitor { shared: Arc::clone(&self.shared) }
    }

    /// Why the io thread stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// A reader sharing this WAL's segment table (reads see synced entries).
    pub fn reader(&self) -> LogReader {
        LogReader::new(&self.dir, Arc::clone(&self.shared.table))
    }

    /// Writes everything queued, stops the io thread and returns the final counters.
    pub fn close(mut self) -> Result<WalStats, LogError> {
        self.stop();
        match self.shared.failure() {
            Some(reason) => Err(LogError::Failed(reason)),
            None => Ok(self.shared.stats.read()),
        }
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for WalHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn clear_entries(queue: &mut Pending) {
    queue.buf.clear();
    queue.entries = 0;
}

/// Cuts the queued entries before `from_index` (which is above the first queued one).
fn cut_entries(queue: &mut Pending, from_index: u64) {
    assert!(from_index > queue.first_index);
    if from_index > queue.last_index {
        return;
    }
    let mut at = 0;
    while index_at(&queue.buf[at..]) < from_index {
        at += encoded_len_at(&queue.buf[at..]);
    }
    queue.buf.truncate(at);
    queue.entries = from_index - queue.first_index;
    queue.last_index = from_index - 1;
}

/// The segment being appended to.
struct OpenSegment {
    file: File,
    first_index: u64,
    bytes: u64,
    next_index: u64,
}

/// A batch taken from the queue.
struct Batch {
    buf: Vec<u8>,
    entries: u64,
    last_index: u64,
    truncation: Option<Truncation>,
    hard_state: Option<HardStateRecord>,
    compact_keep_from: Option<u64>,
    ops: u64,
}

struct IoThread {
    dir: PathBuf,
    dir_file: File,
    options: WalOptions,
    shared: Arc<Shared>,
    ring: Ring,
    current: Option<OpenSegment>,
    spare: Vec<u8>,
    durable_index: u64,
    hard_state_on_disk: Option<HardStateRecord>,
    hard_state_lazy: Option<HardStateRecord>,
    hard_state_written_at: Instant,
}

/// CPUs a `cpu_set_t` can name (glibc's CPU_SETSIZE).
const CPU_SET_CAPACITY: usize = 1024;

impl IoThread {
    fn new(
        dir: PathBuf,
        options: WalOptions,
        shared: Arc<Shared>,
        hard_state: Option<HardStateRecord>,
        next_index: u64,
    ) -> Result<IoThread, LogError> {
        if let Some(cpu) = options.io_cpu {
            // Bounded first, since core_affinity panics on an id beyond the kernel's CPU
            // set size. Not checked against this thread's current mask: it inherits the
            // opener's, and a caller that pinned itself to another CPU before opening the
            // WAL must still be able to pin the io thread; the kernel refuses CPUs the
            // process may not use.
            let id = core_affinity::CoreId { id: cpu };
            if cpu >= CPU_SET_CAPACITY || !core_affinity::set_for_current(id) {
                return Err(LogError::Options {
                    name: "io_cpu",
                    reason: format!(
                        "cannot pin the io thread to CPU {cpu} (not in this process's CPU set?)"
                    ),
                });
            }
        }
        let ring = Ring::new(options.ring_entries)?;
        let dir_file = File::open(&dir).map_err(|e| LogError::io("open directory", &dir, e))?;
        let spare = Vec::with_capacity(options.queue_bytes_max);
        let mut io = IoThread {
            dir,
            dir_file,
            options,
            shared,
            ring,
            current: None,
            spare,
            durable_index: 0,
            hard_state_on_disk: hard_state,
            hard_state_lazy: None,
            hard_state_written_at: Instant::now(),
        };
        io.open_last_segment()?;
        // The previous process may have written bytes it never fsynced; they are only
        // durable once synced here, so sync before publishing them.
        if let Some(current) = &io.current {
            let syncs = [
                (current.file.as_raw_fd(), SyncKind::Data),
                (io.dir_file.as_raw_fd(), SyncKind::Full),
            ];
            io.ring.write_and_sync(&[], &syncs).map_err(|e| LogError::io("fsync", &io.dir, e))?;
            bump(&io.shared.stats.fsyncs, 2);
        }
        io.durable_index = next_index - 1;
        io.shared.durable_index.store(io.durable_index, Ordering::Release);
        Ok(io)
    }

    fn open_last_segment(&mut self) -> Result<(), LogError> {
        let last = lock(&self.shared.table).last().cloned();
        self.current = match last {
            Some(seg) => {
                let path = self.dir.join(segment_file_name(seg.first_index));
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| LogError::io("open", &path, e))?;
                Some(OpenSegment {
                    file,
                    first_index: seg.first_index,
                    bytes: seg.bytes,
                    next_index: seg.next_index,
                })
            }
            None => None,
        };
        Ok(())
    }

    fn run(mut self) {
        loop {
            let Some(batch) = self.take() else {
                if self.shared.shutdown.load(Ordering::SeqCst) {
                    if let Err(e) = self.flush_lazy_hard_state(true) {
                        self.fail(e);
                    }
                    break;
                }
                if let Err(e) = self.idle() {
                    self.fail(e);
                    break;
                }
                continue;
            };
            let taken_at = Instant::now();
            if let Err(e) = self.process(batch) {
                self.fail(e);
                break;
            }
            self.pace(taken_at);
        }
        self.shared.stats.uring_enters.store(self.ring.enters, Ordering::Relaxed);
    }

    /// Waits out `batch_interval` from when the last batch was taken, so more entries
    /// share the next write and fsync. Shutdown does not wait.
    fn pace(&self, taken_at: Instant) {
        let interval = self.options.batch_interval;
        if interval.is_zero() || self.shared.shutdown.load(Ordering::Relaxed) {
            return;
        }
        // A sleep, not a park: an append would unpark the thread at once, which is the
        // wake-up this interval is there to avoid.
        if let Some(left) = interval.checked_sub(taken_at.elapsed()) {
            thread::sleep(left);
        }
    }

    /// Waits for work. A lazily deferred hard state bounds the wait.
    fn idle(&mut self) -> Result<(), LogError> {
        self.flush_lazy_hard_state(false)?;
        if !self.options.idle_spin.is_zero() {
            let spin_from = Instant::now();
            while spin_from.elapsed() < self.options.idle_spin {
                if self.shared.queued.load(Ordering::Acquire)
                    || self.shared.shutdown.load(Ordering::Relaxed)
                {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
        }
        match &self.hard_state_lazy {
            Some(_) => thread::park_timeout(self.options.hard_state_commit_interval),
            None => thread::park(),
        }
        Ok(())
    }

    fn fail(&mut self, error: LogError) {
        let message = error.to_string();
        (self.options.log)(&format!("WAL io thread stopping: {message}"));
        *lock(&self.shared.failure) = Some(message);
        self.shared.failed.store(true, Ordering::Release);
        self.shared.wake_waiters();
    }

    fn take(&mut self) -> Option<Batch> {
        let mut queue = lock(&self.shared.queue);
        self.shared.queued.store(false, Ordering::Release);
        if queue.is_empty() {
            return None;
        }
        debug_assert!(self.spare.is_empty());
        std::mem::swap(&mut queue.buf, &mut self.spare);
        let batch = Batch {
            buf: std::mem::take(&mut self.spare),
            entries: std::mem::take(&mut queue.entries),
            last_index: queue.last_index,
            truncation: queue.truncation.take(),
            hard_state: queue.hard_state.take(),
            compact_keep_from: queue.compact_keep_from.take(),
            ops: queue.ops,
        };
        Some(batch)
    }

    fn process(&mut self, mut batch: Batch) -> Result<(), LogError> {
        if let Some(truncation) = batch.truncation {
            self.truncate(truncation)?;
            self.durable_index = truncation.from_index - 1;
        }
        if batch.entries > 0 {
            let write_started = self.options.on_sync.as_ref().map(|_| Instant::now());
            self.write_entries(&batch.buf)?;
            if let (Some(callback), Some(started)) = (&self.options.on_sync, write_started) {
                callback(started.elapsed());
            }
            self.durable_index = batch.last_index;
            bump(&self.shared.stats.batches, 1);
            self.shared.stats.batch_entries_max.fetch_max(batch.entries, Ordering::Relaxed);
        }
        let urgent = batch.hard_state.take().is_some_and(|record| self.queue_hard_state(record));
        self.flush_lazy_hard_state(urgent)?;
        if let Some(keep_from) = batch.compact_keep_from {
            self.compact(keep_from)?;
        }
        self.shared.stats.uring_enters.store(self.ring.enters, Ordering::Relaxed);
        self.shared.durable_index.store(self.durable_index, Ordering::Release);
        self.shared.durable_ops.store(batch.ops, Ordering::Release);
        self.shared.wake_waiters();
        if let Some(callback) = &self.options.on_durable {
            callback(self.durable_index);
        }
        // Give the allocation back for the next swap.
        batch.buf.clear();
        self.spare = batch.buf;
        Ok(())
    }

    /// Writes a batch of encoded entries, starting new segments as they fill up.
    fn write_entries(&mut self, buf: &[u8]) -> Result<(), LogError> {
        let mut start = 0;
        while start < buf.len() {
            if self.current.is_none() {
                self.create_segment(index_at(&buf[start..]))?;
            }
            let end = self.chunk_end(buf, start);
            if end == start {
                // The current segment is full: it was synced with its last chunk.
                self.current = None;
                continue;
            }
            self.write_chunk(&buf[start..end])?;
            start = end;
        }
        Ok(())
    }

    /// End of the longest run of whole entries from `start` that fits in the current
    /// segment (at least one entry if the segment holds none).
    fn chunk_end(&self, buf: &[u8], start: usize) -> usize {
        let current = self.current.as_ref().expect("a segment is open");
        let empty = current.next_index == current.first_index;
        let room = self.options.segment_bytes_max.saturating_sub(current.bytes) as usize;
        let mut end = start;
        while end < buf.len() {
            let len = encoded_len_at(&buf[end..]);
            if end - start + len > room && !(empty && end == start) {
                break;
            }
            end += len;
        }
        debug_assert!(end > start || !empty);
        end
    }

    /// Creates segment `first_index` durably: header written, file fdatasynced and the
    /// directory fsynced, as one linked io_uring chain. A log restarted by a truncation
    /// gets its (empty) segment at once, so a restart knows where the log resumes.
    fn create_segment(&mut self, first_index: u64) -> Result<(), LogError> {
        let path = self.dir.join(segment_file_name(first_index));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::fsutil::FILE_MODE)
            .open(&path)
            .map_err(|e| LogError::io("create segment", &path, e))?;
        let header = encode_segment_header(first_index);
        let fd = file.as_raw_fd();
        let head = WriteOp { fd, offset: 0, bytes: &header };
        let syncs = [(fd, SyncKind::Data), (self.dir_file.as_raw_fd(), SyncKind::Full)];
        self.ring
            .write_and_sync(&[head], &syncs)
            .map_err(|e| LogError::io("write segment header", &path, e))?;
        let bytes = SEGMENT_HEADER_BYTES as u64;
        self.current = Some(OpenSegment { file, first_index, bytes, next_index: first_index });
        let meta = SegmentMeta { first_index, next_index: first_index, bytes, sparse: Vec::new() };
        lock(&self.shared.table).push(meta);
        let stats = &self.shared.stats;
        bump(&stats.segments_created, 1);
        bump(&stats.fsyncs, 2);
        bump(&stats.bytes_written, bytes);
        Ok(())
    }

    /// Appends one chunk of whole entries to the current segment and fdatasyncs it: one
    /// linked io_uring chain, one `io_uring_enter`.
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), LogError> {
        let current = self.current.as_mut().expect("a segment is open");
        let fd = current.file.as_raw_fd();
        let data_offset = current.bytes;
        let data = WriteOp { fd, offset: data_offset, bytes: chunk };
        let result = self.ring.write_and_sync(&[data], &[(fd, SyncKind::Data)]);
        let path = self.dir.join(segment_file_name(current.first_index));
        result.map_err(|e| LogError::io("write and fsync", &path, e))?;
        let stats = &self.shared.stats;
        bump(&stats.fsyncs, 1);
        bump(&stats.bytes_written, chunk.len() as u64);
        current.bytes = data_offset + chunk.len() as u64;
        let last = index_at(&chunk[chunk.len() - last_entry_len(chunk)..]);
        current.next_index = last + 1;
        let mut table = lock(&self.shared.table);
        let meta = table.last_mut().expect("current segment is in the table");
        debug_assert_eq!(meta.first_index, current.first_index);
        extend_sparse(meta, chunk, data_offset);
        meta.bytes = current.bytes;
        meta.next_index = current.next_index;
        Ok(())
    }

    fn truncate(&mut self, truncation: Truncation) -> Result<(), LogError> {
        bump(&self.shared.stats.truncations, 1);
        let table = lock(&self.shared.table).clone();
        let x = truncation.from_index;
        let (Some(first), Some(last)) = (table.first(), table.last()) else {
            return self.create_segment(x);
        };
        if truncation.wipe || x <= first.first_index || x > last.next_index {
            self.delete_segments_from(0, &table)?;
            return self.create_segment(x);
        }
        if x == last.next_index {
            return Ok(());
        }
        let k = table.partition_point(|s| s.first_index <= x) - 1;
        if x == table[k].first_index {
            // k > 0 here (x > the first segment's first index): segment k - 1 ends at x.
            return self.delete_segments_from(k, &table);
        }
        let offset = offset_of(&self.dir, &table[k], x)?;
        self.delete_segments_from(k + 1, &table)?;
        let path = self.dir.join(segment_file_name(table[k].first_index));
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io("open", &path, e))?;
        file.set_len(offset).map_err(|e| LogError::io("truncate", &path, e))?;
        let syncs = [(file.as_raw_fd(), SyncKind::Data)];
        self.ring.write_and_sync(&[], &syncs).map_err(|e| LogError::io("fsync", &path, e))?;
        bump(&self.shared.stats.fsyncs, 1);
        let mut shared_table = lock(&self.shared.table);
        let meta = &mut shared_table[k];
        meta.bytes = offset;
        meta.next_index = x;
        meta.sparse.retain(|&(i, _)| i < x);
        self.current =
            Some(OpenSegment { file, first_index: meta.first_index, bytes: offset, next_index: x });
        Ok(())
    }

    /// Removes segments `k..` (newest first, so a crash leaves a contiguous prefix).
    fn delete_segments_from(&mut self, k: usize, table: &[SegmentMeta]) -> Result<(), LogError> {
        if k >= table.len() {
            return Ok(());
        }
        self.current = None;
        for seg in table[k..].iter().rev() {
            let path = self.dir.join(segment_file_name(seg.first_index));
            fs::remove_file(&path).map_err(|e| LogError::io("remove segment", &path, e))?;
            bump(&self.shared.stats.segments_deleted, 1);
        }
        lock(&self.shared.table).truncate(k);
        self.sync_dir()?;
        if k > 0 {
            self.open_last_segment()?;
        }
        Ok(())
    }

    /// Removes leading segments whose entries are all below `keep_from`, oldest first
    /// (a crash leaves a contiguous suffix). Never the last segment.
    fn compact(&mut self, keep_from: u64) -> Result<(), LogError> {
        let table = lock(&self.shared.table).clone();
        let removable = table
            .iter()
            .take(table.len().saturating_sub(1))
            .take_while(|s| s.next_index <= keep_from)
            .count();
        if removable == 0 {
            return Ok(());
        }
        for seg in &table[..removable] {
            let path = self.dir.join(segment_file_name(seg.first_index));
            fs::remove_file(&path)
                .map_err(|e| LogError::io("remove compacted segment", &path, e))?;
            lock(&self.shared.table).remove(0);
            bump(&self.shared.stats.segments_deleted, 1);
        }
        self.sync_dir()
    }

    fn sync_dir(&mut self) -> Result<(), LogError> {
        let syncs = [(self.dir_file.as_raw_fd(), SyncKind::Full)];
        self.ring
            .write_and_sync(&[], &syncs)
            .map_err(|e| LogError::io("fsync directory", &self.dir, e))?;
        bump(&self.shared.stats.fsyncs, 1);
        Ok(())
    }

    /// Keeps `record` as the hard state to write; returns whether it must be written
    /// now (term, vote or membership changed) rather than lazily.
    fn queue_hard_state(&mut self, record: HardStateRecord) -> bool {
        if self.hard_state_on_disk.as_ref() == Some(&record) {
            self.hard_state_lazy = None;
            return false;
        }
        let urgent = match &self.hard_state_on_disk {
            Some(on_disk) => on_disk.needs_sync_write(&record),
            None => true,
        };
        self.hard_state_lazy = Some(record);
        urgent
    }

    /// Writes the newest hard state if it is due (or `force`).
    fn flush_lazy_hard_state(&mut self, force: bool) -> Result<(), LogError> {
        if self.hard_state_lazy.is_none() {
            return Ok(());
        }
        let due = self.hard_state_written_at.elapsed() >= self.options.hard_state_commit_interval;
        if !force && !due {
            return Ok(());
        }
        let record = self.hard_state_lazy.take().expect("checked above");
        store_hard_state(&self.dir, &record)?;
        bump(&self.shared.stats.hard_state_writes, 1);
        bump(&self.shared.stats.fsyncs, 2);
        self.hard_state_on_disk = Some(record);
        self.hard_state_written_at = Instant::now();
        Ok(())
    }
}

/// Length of the last entry of a chunk of whole entries.
fn last_entry_len(chunk: &[u8]) -> usize {
    let mut at = 0;
    let mut len = 0;
    while at < chunk.len() {
        len = encoded_len_at(&chunk[at..]);
        at += len;
    }
    debug_assert_eq!(at, chunk.len());
    len
}

/// Checks that io_uring can be set up here (a daemon can call it first thing, to fail
/// with a clear message before any recovery work).
pub fn check_io_uring() -> Result<(), LogError> {
    Ring::new(RING_ENTRIES_DEFAULT).map(|_| ())
}

// The handle moves to the shard core's thread after recovery; the storage with it.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<WalHandle>();
    assert_send::<crate::storage::RaftLogStorage>();
};
