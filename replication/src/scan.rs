//! Reading a log directory in order: listing segments, verifying every header, checksum,
//! index and term, cutting a torn tail, and handing each entry to a visitor. Recovery
//! (`Wal::open`), the `bourse-log` tool and the tests all go through `scan_log`.
//!
//! Torn-tail policy. The io thread writes one batch, fsyncs it, and only then writes the
//! next, and a batch never spans two segments, so a crash can only leave garbage after the
//! last fsynced byte of the last segment. At the first entry that fails its checks in the
//! last segment, the rest of that file is searched for any valid entry: if there is none,
//! the damage is a torn tail and the file is cut there (and reported); if a valid entry
//! follows, the damage is inside the log and the scan stops with `LogError::Corrupt`. Any
//! failure in an earlier segment is corruption. A bit flip inside the very last entry looks
//! exactly like a torn write and is cut; the README discusses what that means in each
//! durability mode.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Corruption, CorruptionKind, LogError};
use crate::format::{
    decode_entry, decode_segment_header, parse_segment_file_name, EntryFault, EntryRef,
    SegmentHeaderFault, SEGMENT_BYTES_MAX, SEGMENT_HEADER_BYTES,
};

/// Number of entries between two points of a segment's sparse offset index.
pub const SPARSE_INDEX_STRIDE: u64 = 1024;
/// How often `scan_log` reports progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Most segment files a log directory may hold (at the default 64 MiB segment size that
/// is 64 TiB of log; compaction keeps real logs far below it).
pub const SEGMENTS_MAX: usize = 1 << 20;

/// A segment file found in a log directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_index: u64,
    pub path: PathBuf,
    pub file_bytes: u64,
}

/// Lists the segment files of `dir`, ordered by first index. Other files are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(first_index) = name.to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| LogError::io("stat", &path, e))?;
        if !meta.is_file() {
            continue;
        }
        if segments.len() == SEGMENTS_MAX {
            return Err(LogError::Invalid(format!(
                "{} holds more than SEGMENTS_MAX ({SEGMENTS_MAX}) segments",
                dir.display()
            )));
        }
        segments.push(SegmentFile { first_index, path, file_bytes: meta.len() });
    }
    segments.sort_by_key(|s| s.first_index);
    Ok(segments)
}

/// What a scan found about one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub path: PathBuf,
    pub first_index: u64,
    /// One past the last entry (equal to `first_index` when the segment holds none).
    pub next_index: u64,
    /// Valid bytes (the file length, after a torn tail was cut).
    pub bytes: u64,
    /// Whether the entries were read and verified (segments wholly before the replay
    /// start are not, unless `ScanOptions::read_all`).
    pub verified: bool,
    /// `(index, byte offset)` every `SPARSE_INDEX_STRIDE` entries, for random reads.
    pub sparse: Vec<(u64, u64)>,
}

/// A torn tail found (and, when repairing, cut) at the end of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the valid data ends; the file is cut to this length.
    pub offset: u64,
    /// Index of the entry that was being written there.
    pub index: u64,
    pub bytes_cut: u64,
    pub fault: String,
    /// The whole file was removed (it held no complete entry, and it was not the only
    /// segment).
    pub file_removed: bool,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "torn tail in {} at byte offset {} (entry index {}): {}; {} bytes after it {}",
            self.path.display(),
            self.offset,
            self.index,
            self.fault,
            self.bytes_cut,
            if self.file_removed { "(the file was removed)" } else { "cut" }
        )
    }
}

/// Progress of a long scan, reported every `PROGRESS_INTERVAL`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScanProgress {
    pub entries: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub elapsed: Duration,
}

impl ScanProgress {
    pub fn entries_per_s(&self) -> u64 {
        let micros = self.elapsed.as_micros().max(1);
        (u128::from(self.entries) * 1_000_000 / micros) as u64
    }

    /// Remaining time at the byte rate so far.
    pub fn eta(&self) -> Duration {
        if self.bytes_done == 0 {
            return Duration::ZERO;
        }
        let left = self.bytes_total.saturating_sub(self.bytes_done);
        let nanos = u128::from(left) * self.elapsed.as_nanos() / u128::from(self.bytes_done);
        Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }
}

impl std::fmt::Display for ScanProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let percent = self.bytes_done * 100 / self.bytes_total.max(1);
        write!(
            f,
            "{} entries, {} of {} MiB ({percent}%), {} entries/s, eta {:.1} s",
            self.entries,
            self.bytes_done >> 20,
            self.bytes_total >> 20,
            self.entries_per_s(),
            self.eta().as_secs_f64()
        )
    }
}

/// How to scan (the default: everything, nothing repaired).
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanOptions {
    /// Entries below this index are not handed to the visitor, and segments that hold only
    /// such entries are not read (they back older snapshots only). 0 or 1: all.
    pub from_index: u64,
    /// Read and verify every segment, even those wholly before `from_index`.
    pub read_all: bool,
    /// Cut a torn tail on disk (truncate the file, fsync it). Without it the tail is only
    /// reported.
    pub repair: bool,
}

/// What a scan found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanReport {
    pub dir: PathBuf,
    pub segments: Vec<SegmentSummary>,
    /// Index and term of the last entry, if the log holds any.
    pub last: Option<(u64, u64)>,
    pub entries_read: u64,
    pub bytes_read: u64,
    pub elapsed: Duration,
    pub torn_tail: Option<TornTail>,
}

impl ScanReport {
    /// First index the log holds (the first segment's), or `None` without segments.
    pub fn first_index(&self) -> Option<u64> {
        self.segments.first().map(|s| s.first_index)
    }

    /// Index the next appended entry must have, or `None` without segments.
    pub fn next_index(&self) -> Option<u64> {
        self.segments.last().map(|s| s.next_index)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.last.map(|(index, _)| index)
    }

    pub fn last_term(&self) -> u64 {
        self.last.map_or(0, |(_, term)| term)
    }

    /// Describes the entry range, for messages: "entries 5..=99", "no entries".
    pub fn range_text(&self) -> String {
        match (self.first_index(), self.last_index()) {
            (Some(first), Some(last)) if last >= first => format!("entries {first}..={last}"),
            (Some(first), _) => format!("no entries (next index {first})"),
            _ => "no segments".to_string(),
        }
    }
}

/// Scans `dir` in index order. Each entry at or after `options.from_index` goes to
/// `visit`; a visitor error stops the scan with `LogError::Replay`. `progress` is called
/// every `PROGRESS_INTERVAL` while the scan runs.
pub fn scan_log(
    dir: &Path,
    options: &ScanOptions,
    visit: &mut dyn FnMut(EntryRef<'_>) -> Result<(), String>,
    progress: &mut dyn FnMut(&ScanProgress),
) -> Result<ScanReport, LogError> {
    let files = list_segments(dir)?;
    scan_segment_files(dir, &files, options, visit, progress)
}

/// Like `scan_log`, over `files` only (a suffix of `list_segments(dir)`, in its order).
/// `bourse-log salvage` uses it to read the segments after a snapshot without checking
/// the older ones, whose damage it is there to leave behind.
pub fn scan_segment_files(
    dir: &Path,
    files: &[SegmentFile],
    options: &ScanOptions,
    visit: &mut dyn FnMut(EntryRef<'_>) -> Result<(), String>,
    progress: &mut dyn FnMut(&ScanProgress),
) -> Result<ScanReport, LogError> {
    assert!(files.windows(2).all(|w| w[0].first_index < w[1].first_index));
    let started = Instant::now();
    let mut report = ScanReport { dir: dir.to_path_buf(), ..ScanReport::default() };
    if files.is_empty() {
        return Ok(report);
    }
    let from_index = options.from_index.max(1);
    let last = files.len() - 1;
    let read_from = if options.read_all {
        0
    } else {
        // The last segment whose first entry is at or before the replay start: every
        // segment before it holds only entries below `from_index`.
        files.iter().rposition(|s| s.first_index <= from_index).unwrap_or(0)
    };
    let bytes_total: u64 = files[read_from..].iter().map(|s| s.file_bytes).sum();
    let mut state = ScanState {
        buf: Vec::new(),
        expected: None,
        last_term: 0,
        progress_at: started + PROGRESS_INTERVAL,
        progress: ScanProgress { entries: 0, bytes_done: 0, bytes_total, elapsed: Duration::ZERO },
        started,
    };
    for (k, file) in files.iter().enumerate() {
        if k < read_from {
            let summary = header_only_summary(file, files[k + 1].first_index)?;
            report.segments.push(summary);
            continue;
        }
        let summary = scan_segment(
            file,
            k == last,
            from_index,
            options,
            &mut state,
            &mut report,
            visit,
            progress,
        )?;
        report.segments.push(summary);
    }
    if report.torn_tail.as_ref().is_some_and(|t| t.file_removed) {
        // The torn last segment held no complete entry and was removed; its predecessor
        // (if any) is now the last segment.
        report.segments.pop();
    }
    if report.last.is_none() {
        rescan_last_unverified(&mut report, files, &mut state, progress)?;
    }
    report.entries_read = state.progress.entries;
    report.bytes_read = state.progress.bytes_done;
    report.elapsed = started.elapsed();
    check_segment_chain(&report)?;
    Ok(report)
}

struct ScanState {
    buf: Vec<u8>,
    /// Index the next entry must have (`None` before the first verified segment).
    expected: Option<u64>,
    last_term: u64,
    progress_at: Instant,
    progress: ScanProgress,
    started: Instant,
}

/// Checks the header of a segment that is not read and derives its extent from the next
/// segment's first index.
fn header_only_summary(file: &SegmentFile, next_first: u64) -> Result<SegmentSummary, LogError> {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    let mut handle = File::open(&file.path).map_err(|e| LogError::io("open", &file.path, e))?;
    let got =
        read_up_to(&mut handle, &mut header).map_err(|e| LogError::io("read", &file.path, e))?;
    check_header(file, &header[..got])?;
    if next_first < file.first_index {
        return Err(LogError::Invalid(format!("segment order broken at {}", file.path.display())));
    }
    Ok(SegmentSummary {
        path: file.path.clone(),
        first_index: file.first_index,
        next_index: next_first,
        bytes: file.file_bytes,
        verified: false,
        sparse: Vec::new(),
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = file.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

fn check_header(file: &SegmentFile, bytes: &[u8]) -> Result<(), LogError> {
    let corrupt = |kind| Corruption {
        path: file.path.clone(),
        offset: 0,
        index: Some(file.first_index),
        kind,
        valid_entry_after: None,
    };
    let header_index =
        decode_segment_header(bytes).map_err(|f| corrupt(CorruptionKind::SegmentHeader(f)))?;
    if header_index != file.first_index {
        return Err(corrupt(CorruptionKind::NameMismatch {
            name_index: file.first_index,
            header_index,
        })
        .into());
    }
    Ok(())
}

/// Reads a whole segment file into `buf` (bounded by `SEGMENT_BYTES_MAX`).
pub(crate) fn read_segment(path: &Path, buf: &mut Vec<u8>) -> Result<(), LogError> {
    let mut file = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let bytes = file.metadata().map_err(|e| LogError::io("stat", path, e))?.len();
    if bytes > SEGMENT_BYTES_MAX {
        return Err(Corruption {
            path: path.to_path_buf(),
            offset: 0,
            index: None,
            kind: CorruptionKind::SegmentTooLarge { bytes },
            valid_entry_after: None,
        }
        .into());
    }
    buf.clear();
    buf.reserve(bytes as usize);
    // `take` bounds the read even if the file grows underneath us.
    (&mut file)
        .take(SEGMENT_BYTES_MAX)
        .read_to_end(buf)
        .map_err(|e| LogError::io("read", path, e))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn scan_segment(
    file: &SegmentFile,
    is_last: bool,
    from_index: u64,
    options: &ScanOptions,
    state: &mut ScanState,
    report: &mut ScanReport,
    visit: &mut dyn FnMut(EntryRef<'_>) -> Result<(), String>,
    progress: &mut dyn FnMut(&ScanProgress),
) -> Result<SegmentSummary, LogError> {
    let mut buf = std::mem::take(&mut state.buf);
    read_segment(&file.path, &mut buf)?;
    let result = scan_segment_bytes(
        file, &buf, is_last, from_index, options, state, report, visit, progress,
    );
    state.progress.bytes_done += file.file_bytes;
    state.buf = buf;
    result
}

#[allow(clippy::too_many_arguments)]
fn scan_segment_bytes(
    file: &SegmentFile,
    buf: &[u8],
    is_last: bool,
    from_index: u64,
    options: &ScanOptions,
    state: &mut ScanState,
    report: &mut ScanReport,
    visit: &mut dyn FnMut(EntryRef<'_>) -> Result<(), String>,
    progress: &mut dyn FnMut(&ScanProgress),
) -> Result<SegmentSummary, LogError> {
    if is_last && buf.len() < SEGMENT_HEADER_BYTES {
        // The file was created but its header never reached the disk whole.
        let fault = SegmentHeaderFault::Incomplete { bytes_available: buf.len() };
        return cut_headerless_tail(file, fault, options, state, report);
    }
    check_header(file, buf)?;
    if let Some(expected) = state.expected {
        if file.first_index != expected {
            return Err(corruption(
                file,
                0,
                Some(expected),
                CorruptionKind::Gap { expected, found: file.first_index },
                None,
            ));
        }
    }
    let mut summary = SegmentSummary {
        path: file.path.clone(),
        first_index: file.first_index,
        next_index: file.first_index,
        bytes: buf.len() as u64,
        verified: true,
        sparse: Vec::new(),
    };
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected = file.first_index;
    while offset < buf.len() {
        let (entry, used) = match decode_entry(&buf[offset..]) {
            Ok(decoded) => decoded,
            Err(fault) => {
                return handle_fault(
                    file, buf, offset, expected, fault, is_last, options, summary, report,
                );
            }
        };
        if entry.index != expected {
            let kind = CorruptionKind::Gap { expected, found: entry.index };
            return Err(corruption(file, offset as u64, Some(expected), kind, None));
        }
        if entry.term < state.last_term {
            let kind =
                CorruptionKind::TermRegressed { previous: state.last_term, found: entry.term };
            return Err(corruption(file, offset as u64, Some(expected), kind, None));
        }
        if (entry.index - file.first_index) % SPARSE_INDEX_STRIDE == 0 {
            summary.sparse.push((entry.index, offset as u64));
        }
        if entry.index >= from_index {
            visit(entry).map_err(|reason| LogError::Replay { index: entry.index, reason })?;
        }
        state.last_term = entry.term;
        report.last = Some((entry.index, entry.term));
        state.progress.entries += 1;
        if state.progress.entries % 4096 == 0 {
            report_progress(state, offset as u64, progress);
        }
        expected += 1;
        offset += used;
        summary.next_index = expected;
    }
    state.expected = Some(expected);
    Ok(summary)
}

fn report_progress(
    state: &mut ScanState,
    offset_in_segment: u64,
    progress: &mut dyn FnMut(&ScanProgress),
) {
    let now = Instant::now();
    if now < state.progress_at {
        return;
    }
    state.progress_at = now + PROGRESS_INTERVAL;
    let mut snapshot = state.progress;
    snapshot.bytes_done += offset_in_segment;
    snapshot.elapsed = now - state.started;
    progress(&snapshot);
}

fn corruption(
    file: &SegmentFile,
    offset: u64,
    index: Option<u64>,
    kind: CorruptionKind,
    valid_entry_after: Option<u64>,
) -> LogError {
    Corruption { path: file.path.clone(), offset, index, kind, valid_entry_after }.into()
}

/// Offset of the first valid entry at or after `from` in `buf`, if any.
pub(crate) fn find_valid_entry(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&at| decode_entry(&buf[at..]).is_ok())
}

#[allow(clippy::too_many_arguments)]
fn handle_fault(
    file: &SegmentFile,
    buf: &[u8],
    offset: usize,
    expected: u64,
    fault: EntryFault,
    is_last: bool,
    options: &ScanOptions,
    mut summary: SegmentSummary,
    report: &mut ScanReport,
) -> Result<SegmentSummary, LogError> {
    let valid_after = find_valid_entry(buf, offset + 1);
    let known_field = matches!(fault, EntryFault::BadField { .. });
    if !is_last || valid_after.is_some() || known_field {
        // A checksummed entry with an unknown field was written by a newer version; it is
        // never a torn write.
        let kind = CorruptionKind::Entry(fault);
        return Err(corruption(
            file,
            offset as u64,
            Some(expected),
            kind,
            valid_after.map(|v| v as u64),
        ));
    }
    // A last segment that holds no complete entry is removed rather than left empty,
    // unless it is the only segment (then it keeps recording where the log starts).
    let remove_file = expected == file.first_index && !report.segments.is_empty();
    let torn = TornTail {
        path: file.path.clone(),
        offset: if remove_file { 0 } else { offset as u64 },
        index: expected,
        bytes_cut: if remove_file { buf.len() as u64 } else { (buf.len() - offset) as u64 },
        fault: fault.to_string(),
        file_removed: remove_file,
    };
    if options.repair {
        cut_file(&file.path, torn.offset, remove_file)?;
    }
    summary.bytes = torn.offset;
    report.torn_tail = Some(torn);
    Ok(summary)
}

fn cut_headerless_tail(
    file: &SegmentFile,
    fault: SegmentHeaderFault,
    options: &ScanOptions,
    state: &mut ScanState,
    report: &mut ScanReport,
) -> Result<SegmentSummary, LogError> {
    let index = state.expected.unwrap_or(file.first_index);
    let torn = TornTail {
        path: file.path.clone(),
        offset: 0,
        index,
        bytes_cut: file.file_bytes,
        fault: fault.to_string(),
        file_removed: true,
    };
    if options.repair {
        cut_file(&file.path, 0, true)?;
    }
    report.torn_tail = Some(torn);
    Ok(SegmentSummary {
        path: file.path.clone(),
        first_index: file.first_index,
        next_index: file.first_index,
        bytes: 0,
        verified: true,
        sparse: Vec::new(),
    })
}

/// Cuts a segment file at `offset` (or removes it) durably.
fn cut_file(path: &Path, offset: u64, remove: bool) -> Result<(), LogError> {
    if remove {
        fs::remove_file(path).map_err(|e| LogError::io("remove torn segment", path, e))?;
    } else {
        let file =
            OpenOptions::new().write(true).open(path).map_err(|e| LogError::io("open", path, e))?;
        file.set_len(offset).map_err(|e| LogError::io("truncate torn tail", path, e))?;
        file.sync_all().map_err(|e| LogError::io("fsync", path, e))?;
    }
    if let Some(dir) = path.parent() {
        crate::fsutil::sync_dir(dir)?;
    }
    Ok(())
}

/// After the torn last segment was removed, the segment before it may not have been read
/// (it was wholly before the replay start). Reads it to learn the last index and term; none
/// of its entries is visited because all are below `from_index`.
fn rescan_last_unverified(
    report: &mut ScanReport,
    files: &[SegmentFile],
    state: &mut ScanState,
    progress: &mut dyn FnMut(&ScanProgress),
) -> Result<(), LogError> {
    // Verified segments are a suffix of the list and all of them are empty here, so the
    // last entry, if any, is in the last unverified segment.
    let Some(k) = report.segments.iter().rposition(|s| !s.verified) else {
        return Ok(());
    };
    state.expected = None;
    state.last_term = 0;
    let options = ScanOptions { from_index: u64::MAX, read_all: true, repair: false };
    let mut none = |_: EntryRef<'_>| Ok(());
    let summary =
        scan_segment(&files[k], false, u64::MAX, &options, state, report, &mut none, progress)?;
    report.segments[k] = summary;
    Ok(())
}

/// Every segment must start where its predecessor ends.
fn check_segment_chain(report: &ScanReport) -> Result<(), LogError> {
    for pair in report.segments.windows(2) {
        if pair[0].next_index != pair[1].first_index {
            let expected = pair[0].next_index;
            return Err(Corruption {
                path: pair[1].path.clone(),
                offset: 0,
                index: Some(expected),
                kind: CorruptionKind::Gap { expected, found: pair[1].first_index },
                valid_entry_after: None,
            }
            .into());
        }
    }
    Ok(())
}

/// One segment as `verify_log` saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentCheck {
    pub path: PathBuf,
    pub first_index: u64,
    /// Valid entries found (damaged ones excluded).
    pub entries: u64,
    /// Index of the last valid entry, if any.
    pub last_index: Option<u64>,
    pub file_bytes: u64,
}

/// Everything `verify_log` found. `damage` is empty on a healthy log; a torn tail alone
/// is not damage (recovery cuts it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: Vec<SegmentCheck>,
    pub damage: Vec<Corruption>,
    pub torn_tail: Option<TornTail>,
    pub entries: u64,
    pub last: Option<(u64, u64)>,
}

/// Checks every segment of `dir` without changing anything, and unlike recovery goes on
/// after damage (it resynchronises at the next valid entry), so one run lists every
/// damaged place. Errors only when a file cannot be read.
pub fn verify_log(
    dir: &Path,
    progress: &mut dyn FnMut(&ScanProgress),
) -> Result<VerifyReport, LogError> {
    let started = Instant::now();
    let files = list_segments(dir)?;
    let bytes_total = files.iter().map(|f| f.file_bytes).sum();
    let mut state = ScanState {
        buf: Vec::new(),
        expected: None,
        last_term: 0,
        progress_at: started + PROGRESS_INTERVAL,
        progress: ScanProgress { entries: 0, bytes_done: 0, bytes_total, elapsed: Duration::ZERO },
        started,
    };
    let mut report = VerifyReport::default();
    for (k, file) in files.iter().enumerate() {
        let mut buf = std::mem::take(&mut state.buf);
        match read_segment(&file.path, &mut buf) {
            Ok(()) => {
                verify_segment(file, &buf, k + 1 == files.len(), &mut state, &mut report, progress)
            }
            Err(LogError::Corrupt(c)) => report.damage.push(*c),
            Err(other) => return Err(other),
        }
        state.progress.bytes_done += file.file_bytes;
        state.buf = buf;
    }
    report.entries = state.progress.entries;
    Ok(report)
}

fn verify_segment(
    file: &SegmentFile,
    buf: &[u8],
    is_last: bool,
    state: &mut ScanState,
    report: &mut VerifyReport,
    progress: &mut dyn FnMut(&ScanProgress),
) {
    let mut check = SegmentCheck {
        path: file.path.clone(),
        first_index: file.first_index,
        entries: 0,
        last_index: None,
        file_bytes: buf.len() as u64,
    };
    if let Err(e) = check_header(file, buf) {
        if is_last && buf.len() < SEGMENT_HEADER_BYTES {
            let fault = SegmentHeaderFault::Incomplete { bytes_available: buf.len() };
            report.torn_tail = Some(TornTail {
                path: file.path.clone(),
                offset: 0,
                index: state.expected.unwrap_or(file.first_index),
                bytes_cut: buf.len() as u64,
                fault: fault.to_string(),
                file_removed: true,
            });
        } else if let LogError::Corrupt(c) = e {
            report.damage.push(*c);
        }
        report.segments.push(check);
        state.expected = None;
        return;
    }
    if let Some(expected) = state.expected.filter(|&e| e != file.first_index) {
        let kind = CorruptionKind::Gap { expected, found: file.first_index };
        report.damage.push(Corruption {
            path: file.path.clone(),
            offset: 0,
            index: Some(expected),
            kind,
            valid_entry_after: None,
        });
    }
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected = file.first_index;
    let mut resynced = false;
    while offset < buf.len() {
        let entry = match decode_entry(&buf[offset..]) {
            Ok((entry, used)) => {
                offset += used;
                entry
            }
            Err(fault) => {
                let valid_after = find_valid_entry(buf, offset + 1);
                if is_last && valid_after.is_none() && !matches!(fault, EntryFault::BadField { .. })
                {
                    report.torn_tail = Some(TornTail {
                        path: file.path.clone(),
                        offset: offset as u64,
                        index: expected,
                        bytes_cut: (buf.len() - offset) as u64,
                        fault: fault.to_string(),
                        file_removed: false,
                    });
                    break;
                }
                report.damage.push(Corruption {
                    path: file.path.clone(),
                    offset: offset as u64,
                    index: Some(expected),
                    kind: CorruptionKind::Entry(fault),
                    valid_entry_after: valid_after.map(|v| v as u64),
                });
                let Some(next) = valid_after else { break };
                offset = next;
                resynced = true;
                continue;
            }
        };
        if entry.index != expected && !resynced {
            let kind = CorruptionKind::Gap { expected, found: entry.index };
            let at = (offset - entry.encoded_len()) as u64;
            report.damage.push(Corruption {
                path: file.path.clone(),
                offset: at,
                index: Some(expected),
                kind,
                valid_entry_after: None,
            });
        }
        if entry.term < state.last_term {
            let kind =
                CorruptionKind::TermRegressed { previous: state.last_term, found: entry.term };
            let at = (offset - entry.encoded_len()) as u64;
            report.damage.push(Corruption {
                path: file.path.clone(),
                offset: at,
                index: Some(entry.index),
                kind,
                valid_entry_after: None,
            });
        }
        resynced = false;
        state.last_term = entry.term;
        expected = entry.index + 1;
        check.entries += 1;
        check.last_index = Some(entry.index);
        report.last = Some((entry.index, entry.term));
        state.progress.entries += 1;
        if state.progress.entries % 4096 == 0 {
            report_progress(state, offset as u64, progress);
        }
    }
    state.expected = Some(expected);
    report.segments.push(check);
}
