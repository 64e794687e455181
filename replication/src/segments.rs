//! The table of a log's segments (shared by the io thread, which changes it, and readers)
//! and random-access reads of entries by index.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::{Corruption, CorruptionKind, LogError};
use crate::format::{
    decode_entry, segment_file_name, EntryFault, EntryRef, ENTRY_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use crate::scan::{ScanReport, SegmentSummary, SPARSE_INDEX_STRIDE};

/// Bytes read per `pread` when walking a segment. Large enough that small entries cost
/// one call per few thousand; an entry larger than this is read with one exact call.
pub const READ_WINDOW_BYTES: usize = 256 << 10;

/// One segment as the table knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub first_index: u64,
    /// One past the last entry written and synced.
    pub next_index: u64,
    /// Bytes written and synced.
    pub bytes: u64,
    /// `(index, offset)` every `SPARSE_INDEX_STRIDE` entries (may be empty for segments
    /// recovery did not read; reads then walk from the header).
    pub sparse: Vec<(u64, u64)>,
}

impl From<&SegmentSummary> for SegmentMeta {
    fn from(s: &SegmentSummary) -> SegmentMeta {
        SegmentMeta {
            first_index: s.first_index,
            next_index: s.next_index,
            bytes: s.bytes,
            sparse: s.sparse.clone(),
        }
    }
}

pub(crate) type SharedTable = Arc<Mutex<Vec<SegmentMeta>>>;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of this crate's locks leaves plain data behind (no
    // invariant spans the unlock), so the data is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Random-access reader of a log directory. Cheap to clone; all clones (and the WAL
/// that created it) share one segment table, so reads see what the io thread has synced.
#[derive(Clone, Debug)]
pub struct LogReader {
    dir: PathBuf,
    table: SharedTable,
}

/// Where to start reading for an index.
struct ReadPlan {
    path: PathBuf,
    offset: u64,
    index: u64,
    end: u64,
    next_index: u64,
}

impl LogReader {
    pub(crate) fn new(dir: &Path, table: SharedTable) -> LogReader {
        LogReader { dir: dir.to_path_buf(), table }
    }

    /// A reader over a scanned log (tools and tests; the WAL makes its own).
    pub fn from_report(report: &ScanReport) -> LogReader {
        let table = report.segments.iter().map(SegmentMeta::from).collect();
        LogReader::new(&report.dir, Arc::new(Mutex::new(table)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// First index held, or `None` when there are no segments.
    pub fn first_index(&self) -> Option<u64> {
        lock(&self.table).first().map(|s| s.first_index)
    }

    /// One past the last synced entry, or `None` when there are no segments.
    pub fn next_index(&self) -> Option<u64> {
        lock(&self.table).last().map(|s| s.next_index)
    }

    fn plan(&self, index: u64) -> Option<ReadPlan> {
        let table = lock(&self.table);
        let k = table.partition_point(|s| s.first_index <= index).checked_sub(1)?;
        let seg = &table[k];
        if index >= seg.next_index {
            return None;
        }
        let at = seg.sparse.partition_point(|&(i, _)| i <= index);
        let (start_index, offset) = match at.checked_sub(1) {
            Some(p) => seg.sparse[p],
            None => (seg.first_index, SEGMENT_HEADER_BYTES as u64),
        };
        Some(ReadPlan {
            path: self.dir.join(segment_file_name(seg.first_index)),
            offset,
            index: start_index,
            end: seg.bytes,
            next_index: seg.next_index,
        })
    }

    /// Calls `visit` for each entry with index in `low..high`, in order, until `visit`
    /// returns false. Returns how many entries were visited. Errors: an index outside
    /// the table (`LogError::Invalid`), a file that is gone (compacted meanwhile) or a
    /// checksum failure (corruption after recovery checked the file).
    pub fn read(
        &self,
        low: u64,
        high: u64,
        visit: &mut dyn FnMut(EntryRef<'_>) -> bool,
    ) -> Result<u64, LogError> {
        let mut index = low;
        let mut visited = 0;
        let mut buf = Vec::new();
        while index < high {
            let Some(plan) = self.plan(index) else {
                return Err(LogError::Invalid(format!(
                    "entry {index} is not in the log at {} (first {:?}, next {:?})",
                    self.dir.display(),
                    self.first_index(),
                    self.next_index()
                )));
            };
            let stop = high.min(plan.next_index);
            let (count, keep_going) = read_segment_range(&plan, index, stop, &mut buf, visit)?;
            visited += count;
            index = stop;
            if !keep_going {
                break;
            }
        }
        Ok(visited)
    }

    /// Term of entry `index`, read from disk.
    pub fn term(&self, index: u64) -> Result<u64, LogError> {
        let mut term = None;
        self.read(index, index + 1, &mut |e| {
            term = Some(e.term);
            false
        })?;
        term.ok_or_else(|| LogError::Invalid(format!("entry {index} not found")))
    }
}

/// Reads entries `from..stop` of one segment, starting at the plan's sparse point.
fn read_segment_range(
    plan: &ReadPlan,
    from: u64,
    stop: u64,
    buf: &mut Vec<u8>,
    visit: &mut dyn FnMut(EntryRef<'_>) -> bool,
) -> Result<(u64, bool), LogError> {
    let file = File::open(&plan.path).map_err(|e| LogError::io("open", &plan.path, e))?;
    let mut offset = plan.offset;
    let mut index = plan.index;
    let mut visited = 0;
    while index < stop && offset < plan.end {
        let want = READ_WINDOW_BYTES.min((plan.end - offset) as usize);
        fill(&file, &plan.path, offset, want, buf)?;
        let mut at = 0;
        loop {
            match decode_entry(&buf[at..]) {
                Ok((entry, used)) => {
                    if entry.index != index {
                        let kind = CorruptionKind::Gap { expected: index, found: entry.index };
                        return Err(corrupt(plan, offset + at as u64, index, kind));
                    }
                    if index >= from {
                        visited += 1;
                        if !visit(entry) {
                            return Ok((visited, false));
                        }
                    }
                    index += 1;
                    at += used;
                    if index >= stop {
                        return Ok((visited, true));
                    }
                }
                Err(EntryFault::Incomplete { bytes_needed, .. }) => {
                    if at > 0 {
                        // The window ends inside this entry: refill from its start.
                        break;
                    }
                    // One entry larger than the window: read exactly it, unless the
                    // segment ends first (a cut file).
                    let exact = bytes_needed.min(ENTRY_BYTES_MAX).min((plan.end - offset) as usize);
                    if exact <= buf.len() {
                        let fault =
                            EntryFault::Incomplete { bytes_available: buf.len(), bytes_needed };
                        return Err(corrupt(plan, offset, index, CorruptionKind::Entry(fault)));
                    }
                    fill(&file, &plan.path, offset, exact, buf)?;
                }
                Err(fault) => {
                    return Err(corrupt(
                        plan,
                        offset + at as u64,
                        index,
                        CorruptionKind::Entry(fault),
                    ))
                }
            }
        }
        offset += at as u64;
    }
    Ok((visited, true))
}

fn fill(
    file: &File,
    path: &Path,
    offset: u64,
    want: usize,
    buf: &mut Vec<u8>,
) -> Result<(), LogError> {
    buf.resize(want, 0);
    file.read_exact_at(buf, offset).map_err(|e| LogError::io("read", path, e))
}

fn corrupt(plan: &ReadPlan, offset: u64, index: u64, kind: CorruptionKind) -> LogError {
    Corruption {
        path: plan.path.clone(),
        offset,
        index: Some(index),
        kind,
        valid_entry_after: None,
    }
    .into()
}

/// Byte offset of entry `index` in a segment (walks from the nearest sparse point).
pub(crate) fn offset_of(dir: &Path, seg: &SegmentMeta, index: u64) -> Result<u64, LogError> {
    assert!(seg.first_index <= index && index < seg.next_index);
    let reader = LogReader::new(dir, Arc::new(Mutex::new(vec![seg.clone()])));
    let plan = reader
        .plan(index)
        .ok_or_else(|| LogError::Invalid(format!("entry {index} not in segment")))?;
    let file = File::open(&plan.path).map_err(|e| LogError::io("open", &plan.path, e))?;
    let mut header = [0u8; crate::format::ENTRY_HEADER_BYTES];
    let (mut at, mut i) = (plan.offset, plan.index);
    while i < index {
        file.read_exact_at(&mut header, at).map_err(|e| LogError::io("read", &plan.path, e))?;
        if crate::format::index_at(&header) != i {
            let kind = CorruptionKind::Gap { expected: i, found: crate::format::index_at(&header) };
            return Err(corrupt(&plan, at, i, kind));
        }
        at += crate::format::encoded_len_at(&header) as u64;
        i += 1;
    }
    debug_assert!(at <= seg.bytes);
    Ok(at)
}

/// Adds the sparse points of entries `first..` found in `chunk`, which starts at byte
/// `offset` of segment `seg`.
pub(crate) fn extend_sparse(seg: &mut SegmentMeta, chunk: &[u8], offset: u64) {
    let mut at = 0;
    while at < chunk.len() {
        let index = crate::format::index_at(&chunk[at..]);
        if (index - seg.first_index) % SPARSE_INDEX_STRIDE == 0 {
            seg.sparse.push((index, offset + at as u64));
        }
        at += crate::format::encoded_len_at(&chunk[at..]);
    }
}
