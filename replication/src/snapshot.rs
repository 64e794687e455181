//! Snapshot files: the engine state at a log index, written atomically, kept K deep.
//!
//! ```text
//! header (88 bytes, little endian)
//!   0  magic         [u8; 8]  "BRSSNAP\0"
//!   8  version       u32      SNAPSHOT_FORMAT_VERSION
//!  12  header_bytes  u32      88
//!  16  index         u64      last log index the state includes
//!  24  term          u64      term of that entry
//!  32  state_hash    [u8; 32] the engine's state_hash() at that index
//!  64  members_len   u32      bytes of the membership section
//!  68  reserved      u32      0
//!  72  payload_len   u64
//!  80  body_crc      u32      crc32c of membership section + payload
//!  84  header_crc    u32      crc32c of bytes 0..84
//! membership section (raft ConfState at the index; see hard_state.rs)
//! payload (opaque here: the engine's encode_snapshot bytes)
//! ```
//!
//! File name `{index:020}.snap`. Written as `<name>.tmp`, fsynced, renamed, and the
//! directory fsynced, so a crash leaves the old set of snapshots or the new one.
//!
//! Policy when the newest snapshot is damaged: `load_for_recovery` refuses (a damaged
//! newest snapshot means the disk is damaging data, and silently falling back could hide
//! it); the message names the file and says to move it aside, after which the next older
//! snapshot is used together with the log, which is kept back to the oldest snapshot.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::error::LogError;
use crate::format::le;
use crate::fsutil::{ensure_dir, write_atomic, TEMP_SUFFIX};
use crate::hard_state::{Membership, MEMBERSHIP_BYTES_MAX};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"BRSSNAP\0";
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
pub const SNAPSHOT_HEADER_BYTES: usize = 88;
/// Largest snapshot payload accepted (it is held in memory whole).
pub const SNAPSHOT_PAYLOAD_BYTES_MAX: u64 = 16 << 30;
/// How many snapshots a store keeps by default.
pub const SNAPSHOTS_KEPT_DEFAULT: usize = 3;
/// Most snapshots a store may be asked to keep.
pub const SNAPSHOTS_KEPT_MAX: usize = 64;
/// Most snapshot files a directory may hold when listed.
pub const SNAPSHOT_FILES_MAX: usize = 4096;
/// Extension of snapshot files.
pub const SNAPSHOT_EXTENSION: &str = "snap";

const _: () = assert!(SNAPSHOT_HEADER_BYTES == 8 + 4 + 4 + 8 + 8 + 32 + 4 + 4 + 8 + 4 + 4);

/// Errors of the snapshot store.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the newest snapshot {path} is damaged ({reason}); the node refuses to start. Check \
         it with `bourse-log snapshot {path}`, then move it out of the snapshot directory (keep \
         it for analysis) and restart: recovery will use {fallback}, and replay the log from \
         there (the log is kept back to the oldest snapshot)"
    )]
    NewestCorrupt { path: PathBuf, reason: String, fallback: String },
    #[error("no snapshot at index {index} in {dir}")]
    NotFound { dir: PathBuf, index: u64 },
    #[error("invalid snapshot request: {0}")]
    Invalid(String),
}

impl From<LogError> for SnapshotError {
    fn from(e: LogError) -> SnapshotError {
        match e {
            LogError::Io { op, path, source } => SnapshotError::Io { op, path, source },
            other => SnapshotError::Invalid(other.to_string()),
        }
    }
}

/// A snapshot's header (and membership), as read from its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub index: u64,
    pub term: u64,
    pub state_hash: [u8; 32],
    pub membership: Membership,
    pub payload_len: u64,
    pub body_crc: u32,
}

/// A file passed over as damaged: its path and why.
pub type DamagedFile = (PathBuf, String);

/// A snapshot read and verified whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedSnapshot {
    pub info: SnapshotInfo,
    pub payload: Vec<u8>,
}

/// One file found by `SnapshotStore::list`: its index (from the name) and its header,
/// or why the header is unreadable. The body is not checked here.
#[derive(Debug)]
pub struct ListedSnapshot {
    pub index: u64,
    pub path: PathBuf,
    pub header: Result<SnapshotInfo, SnapshotError>,
}

fn snapshot_file_name(index: u64) -> String {
    format!("{index:020}.{SNAPSHOT_EXTENSION}")
}

fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SNAPSHOT_EXTENSION)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Encodes header and membership section for a snapshot.
fn encode_head(
    index: u64,
    term: u64,
    state_hash: &[u8; 32],
    members: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut crc = crc32c::crc32c(members);
    crc = crc32c::crc32c_append(crc, payload);
    let mut head = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + members.len());
    head.extend_from_slice(&SNAPSHOT_MAGIC);
    head.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    head.extend_from_slice(&(SNAPSHOT_HEADER_BYTES as u32).to_le_bytes());
    head.extend_from_slice(&index.to_le_bytes());
    head.extend_from_slice(&term.to_le_bytes());
    head.extend_from_slice(state_hash);
    head.extend_from_slice(&(members.len() as u32).to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    head.extend_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&head);
    head.extend_from_slice(&header_crc.to_le_bytes());
    debug_assert_eq!(head.len(), SNAPSHOT_HEADER_BYTES);
    head.extend_from_slice(members);
    head
}

/// Parses a header (bytes 0..88). Returns the info (membership still empty) and the
/// membership section length.
fn decode_header(
    path: &Path,
    bytes: &[u8],
    file_bytes: u64,
) -> Result<(SnapshotInfo, usize), String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(format!("file of {} bytes is shorter than a snapshot header", bytes.len()));
    }
    if bytes[..8] != SNAPSHOT_MAGIC {
        return Err("not a bourse snapshot (bad magic)".into());
    }
    let (stored, computed) = (le::u32_at(bytes, 84), crc32c::crc32c(&bytes[..84]));
    if stored != computed {
        return Err(format!(
            "bad header crc32c (stored 0x{stored:08x}, computed 0x{computed:08x})"
        ));
    }
    let version = le::u32_at(bytes, 8);
    if version != SNAPSHOT_FORMAT_VERSION || le::u32_at(bytes, 12) as usize != SNAPSHOT_HEADER_BYTES
    {
        return Err(format!("snapshot format version {version} is not supported"));
    }
    let members_len = le::u32_at(bytes, 64) as usize;
    let payload_len = le::u64_at(bytes, 72);
    if members_len > MEMBERSHIP_BYTES_MAX
        || payload_len > SNAPSHOT_PAYLOAD_BYTES_MAX
        || le::u32_at(bytes, 68) != 0
    {
        return Err(format!(
            "section lengths out of bounds (membership {members_len}, payload {payload_len})"
        ));
    }
    let expected = SNAPSHOT_HEADER_BYTES as u64 + members_len as u64 + payload_len;
    if file_bytes != expected {
        return Err(format!("file is {file_bytes} bytes, the header says {expected}"));
    }
    let mut state_hash = [0u8; 32];
    state_hash.copy_from_slice(&bytes[32..64]);
    let info = SnapshotInfo {
        path: path.to_path_buf(),
        index: le::u64_at(bytes, 16),
        term: le::u64_at(bytes, 24),
        state_hash,
        membership: Membership::default(),
        payload_len,
        body_crc: le::u32_at(bytes, 80),
    };
    Ok((info, members_len))
}

/// Reads and verifies a whole snapshot file (header, membership, payload checksum).
pub fn read_snapshot_file(path: &Path) -> Result<LoadedSnapshot, SnapshotError> {
    let corrupt = |reason: String| SnapshotError::Corrupt { path: path.to_path_buf(), reason };
    let mut file = File::open(path).map_err(|source| SnapshotError::Io {
        op: "open",
        path: path.into(),
        source,
    })?;
    let file_bytes = file
        .metadata()
        .map_err(|source| SnapshotError::Io { op: "stat", path: path.into(), source })?
        .len();
    let mut head = vec![0u8; SNAPSHOT_HEADER_BYTES.min(file_bytes as usize)];
    file.read_exact(&mut head).map_err(|source| SnapshotError::Io {
        op: "read",
        path: path.into(),
        source,
    })?;
    let (mut info, members_len) = decode_header(path, &head, file_bytes).map_err(corrupt)?;
    let mut body = Vec::with_capacity(members_len + info.payload_len as usize);
    file.take(members_len as u64 + info.payload_len)
        .read_to_end(&mut body)
        .map_err(|source| SnapshotError::Io { op: "read", path: path.into(), source })?;
    let computed = crc32c::crc32c(&body);
    if computed != info.body_crc || body.len() as u64 != members_len as u64 + info.payload_len {
        return Err(corrupt(format!(
            "bad body crc32c (stored 0x{:08x}, computed 0x{computed:08x}) over {} bytes",
            info.body_crc,
            body.len()
        )));
    }
    info.membership = Membership::decode(&body[..members_len]).map_err(corrupt)?;
    let expected_name = snapshot_file_name(info.index);
    if path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| parse_snapshot_file_name(n).is_some() && n != expected_name)
    {
        return Err(corrupt(format!("file name does not match the header's index {}", info.index)));
    }
    body.drain(..members_len);
    Ok(LoadedSnapshot { info, payload: body })
}

/// Reads only the header and membership of a snapshot file (no payload checksum).
pub fn read_snapshot_header(path: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let corrupt = |reason: String| SnapshotError::Corrupt { path: path.to_path_buf(), reason };
    let mut file = File::open(path).map_err(|source| SnapshotError::Io {
        op: "open",
        path: path.into(),
        source,
    })?;
    let file_bytes = file
        .metadata()
        .map_err(|source| SnapshotError::Io { op: "stat", path: path.into(), source })?
        .len();
    let mut head = vec![0u8; SNAPSHOT_HEADER_BYTES.min(file_bytes as usize)];
    file.read_exact(&mut head).map_err(|source| SnapshotError::Io {
        op: "read",
        path: path.into(),
        source,
    })?;
    let (mut info, members_len) = decode_header(path, &head, file_bytes).map_err(corrupt)?;
    let mut members = vec![0u8; members_len];
    file.read_exact(&mut members).map_err(|source| SnapshotError::Io {
        op: "read",
        path: path.into(),
        source,
    })?;
    info.membership = Membership::decode(&members).map_err(corrupt)?;
    Ok(info)
}

/// A directory of snapshots.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
}

impl SnapshotStore {
    /// Opens (creating) `dir`, keeping the newest `keep` snapshots on each write. Removes
    /// temp files left by a write that a crash interrupted.
    pub fn open(dir: &Path, keep: usize) -> Result<SnapshotStore, SnapshotError> {
        if !(1..=SNAPSHOTS_KEPT_MAX).contains(&keep) {
            return Err(SnapshotError::Invalid(format!(
                "keep {keep} not in 1..={SNAPSHOTS_KEPT_MAX}"
            )));
        }
        ensure_dir(dir)?;
        let entries = fs::read_dir(dir).map_err(|source| SnapshotError::Io {
            op: "read directory",
            path: dir.into(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let stale = name.to_str().is_some_and(|n| {
                n.strip_suffix(TEMP_SUFFIX).and_then(parse_snapshot_file_name).is_some()
            });
            if stale {
                let path = entry.path();
                fs::remove_file(&path).map_err(|source| SnapshotError::Io {
                    op: "remove stale temp file",
                    path,
                    source,
                })?;
            }
        }
        Ok(SnapshotStore { dir: dir.to_path_buf(), keep })
    }

    /// A store over `dir` for reading only (tools): opening changes nothing on disk, and
    /// retention keeps everything. Do not write through it.
    pub fn inspect(dir: &Path) -> SnapshotStore {
        SnapshotStore { dir: dir.to_path_buf(), keep: SNAPSHOTS_KEPT_MAX }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a snapshot atomically and durably, then deletes the oldest beyond `keep`.
    pub fn write(
        &self,
        index: u64,
        term: u64,
        state_hash: &[u8; 32],
        membership: &Membership,
        payload: &[u8],
    ) -> Result<SnapshotInfo, SnapshotError> {
        if payload.len() as u64 > SNAPSHOT_PAYLOAD_BYTES_MAX {
            return Err(SnapshotError::Invalid(format!(
                "payload of {} bytes above the limit",
                payload.len()
            )));
        }
        let mut members = Vec::new();
        membership.encode(&mut members)?;
        let head = encode_head(index, term, state_hash, &members, payload);
        let path = write_atomic(&self.dir, &snapshot_file_name(index), &[&head, payload])?;
        self.retain()?;
        Ok(SnapshotInfo {
            path,
            index,
            term,
            state_hash: *state_hash,
            membership: membership.clone(),
            payload_len: payload.len() as u64,
            body_crc: le::u32_at(&head, 80),
        })
    }

    /// Snapshot files, oldest first, each with its header or why it is unreadable.
    pub fn list(&self) -> Result<Vec<ListedSnapshot>, SnapshotError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| SnapshotError::Io {
            op: "read directory",
            path: self.dir.clone(),
            source,
        })?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| SnapshotError::Io {
                op: "read directory",
                path: self.dir.clone(),
                source,
            })?;
            let Some(index) = entry.file_name().to_str().and_then(parse_snapshot_file_name) else {
                continue;
            };
            if found.len() == SNAPSHOT_FILES_MAX {
                return Err(SnapshotError::Invalid(format!(
                    "more than {SNAPSHOT_FILES_MAX} snapshot files"
                )));
            }
            let path = entry.path();
            let header = read_snapshot_header(&path);
            found.push(ListedSnapshot { index, path, header });
        }
        found.sort_by_key(|s| s.index);
        Ok(found)
    }

    /// Loads the snapshot at exactly `index`; a damaged file is an error.
    pub fn load(&self, index: u64) -> Result<LoadedSnapshot, SnapshotError> {
        let path = self.dir.join(snapshot_file_name(index));
        if !path.exists() {
            return Err(SnapshotError::NotFound { dir: self.dir.clone(), index });
        }
        read_snapshot_file(&path)
    }

    /// Loads the newest snapshot that verifies, skipping damaged ones; returns it and the
    /// damaged files passed over (for tools and reports).
    pub fn load_newest_valid(
        &self,
    ) -> Result<(Option<LoadedSnapshot>, Vec<DamagedFile>), SnapshotError> {
        let mut skipped = Vec::new();
        for listed in self.list()?.into_iter().rev() {
            match read_snapshot_file(&listed.path) {
                Ok(snapshot) => return Ok((Some(snapshot), skipped)),
                Err(SnapshotError::Corrupt { path, reason }) => skipped.push((path, reason)),
                Err(other) => return Err(other),
            }
        }
        Ok((None, skipped))
    }

    /// Recovery's choice: the newest snapshot, which must verify (`NewestCorrupt`
    /// otherwise, naming the file and the fallback), or `None` if there is none.
    pub fn load_for_recovery(&self) -> Result<Option<LoadedSnapshot>, SnapshotError> {
        let listed = self.list()?;
        let Some(newest) = listed.last() else {
            return Ok(None);
        };
        match read_snapshot_file(&newest.path) {
            Ok(snapshot) => Ok(Some(snapshot)),
            Err(SnapshotError::Corrupt { path, reason }) => {
                let fallback = match listed.len().checked_sub(2).map(|k| &listed[k]) {
                    Some(older) => {
                        format!("the snapshot at index {} ({})", older.index, older.path.display())
                    }
                    None => {
                        "no snapshot (replay of the whole log, which must then start at index 1)"
                            .into()
                    }
                };
                Err(SnapshotError::NewestCorrupt { path, reason, fallback })
            }
            Err(other) => Err(other),
        }
    }

    /// Deletes the oldest snapshots beyond `keep`; returns what it removed.
    pub fn retain(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let listed = self.list()?;
        let excess = listed.len().saturating_sub(self.keep);
        let mut removed = Vec::new();
        for old in &listed[..excess] {
            fs::remove_file(&old.path).map_err(|source| SnapshotError::Io {
                op: "remove old snapshot",
                path: old.path.clone(),
                source,
            })?;
            removed.push(old.path.clone());
        }
        if !removed.is_empty() {
            crate::fsutil::sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Index of the oldest kept snapshot: log entries up to it may be deleted, so
    /// `wal.compact(oldest + 1)` (see `compact_keep_from`).
    pub fn oldest_index(&self) -> Result<Option<u64>, SnapshotError> {
        Ok(self.list()?.first().map(|s| s.index))
    }

    pub fn newest_index(&self) -> Result<Option<u64>, SnapshotError> {
        Ok(self.list()?.last().map(|s| s.index))
    }

    /// The `keep_from` to pass to `WalHandle::compact`: one past the oldest kept
    /// snapshot, so every kept snapshot can still be recovered with the log.
    pub fn compact_keep_from(&self) -> Result<Option<u64>, SnapshotError> {
        Ok(self.oldest_index()?.map(|i| i + 1))
    }
}

/// A snapshot to write on the helper thread.
#[derive(Clone, Debug)]
pub struct SnapshotJob {
    pub index: u64,
    pub term: u64,
    pub state_hash: [u8; 32],
    pub membership: Membership,
    /// The engine's `encode_snapshot` bytes (the shard core's only cost is producing them).
    pub payload: Vec<u8>,
}

/// Writes snapshots on its own thread, one at a time, so the shard core only pays for
/// encoding the state into bytes.
pub struct SnapshotWriter {
    jobs: Option<SyncSender<SnapshotJob>>,
    results: Receiver<Result<SnapshotInfo, SnapshotError>>,
    thread: Option<JoinHandle<()>>,
    in_flight: bool,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter").field("in_flight", &self.in_flight).finish()
    }
}

impl SnapshotWriter {
    pub fn spawn(store: SnapshotStore) -> Result<SnapshotWriter, SnapshotError> {
        let (jobs, job_rx) = mpsc::sync_channel::<SnapshotJob>(1);
        let (result_tx, results) = mpsc::sync_channel(1);
        let thread = thread::Builder::new()
            .name("bourse-snapshot".into())
            .spawn(move || {
                for job in job_rx {
                    let result = store.write(
                        job.index,
                        job.term,
                        &job.state_hash,
                        &job.membership,
                        &job.payload,
                    );
                    if result_tx.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| SnapshotError::Io {
                op: "spawn snapshot thread",
                path: PathBuf::new(),
                source,
            })?;
        Ok(SnapshotWriter { jobs: Some(jobs), results, thread: Some(thread), in_flight: false })
    }

    /// Hands a job over without blocking; gives it back if one is still being written.
    #[allow(clippy::result_large_err)]
    pub fn submit(&mut self, job: SnapshotJob) -> Result<(), SnapshotJob> {
        if self.in_flight {
            return Err(job);
        }
        let Some(jobs) = &self.jobs else {
            return Err(job);
        };
        jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(job) | mpsc::TrySendError::Disconnected(job) => job,
        })?;
        self.in_flight = true;
        Ok(())
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// The result of the job in flight, if it has finished.
    pub fn try_result(&mut self) -> Option<Result<SnapshotInfo, SnapshotError>> {
        match self.results.try_recv() {
            Ok(result) => {
                self.in_flight = false;
                Some(result)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.in_flight = false;
                Some(Err(SnapshotError::Invalid("snapshot thread is gone".into())))
            }
        }
    }

    /// Waits up to `timeout` for the job in flight.
    pub fn wait_result(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<SnapshotInfo, SnapshotError>> {
        if !self.in_flight {
            return None;
        }
        match self.results.recv_timeout(timeout) {
            Ok(result) => {
                self.in_flight = false;
                Some(result)
            }
            Err(_) => None,
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the job in flight.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
