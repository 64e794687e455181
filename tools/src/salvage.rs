//! `bourse-log salvage`: a startable copy of a damaged data directory, made of the newest
//! snapshot that verifies and the intact log entries after it.
//!
//! It never changes the source's log or snapshots: it reads them (holding the directory's
//! `LOCK`, created if absent, so no daemon starts on it meanwhile, and refusing if one
//! holds it), writes a new data directory with the
//! replication crate's own snapshot store and WAL writer, and reads the log with its one
//! walker (`scan_segment_files`). Segments wholly before the chosen snapshot are not read:
//! their entries are in the snapshot, and their damage is what salvage leaves behind.
//! What it kept and what it dropped is printed and written to `SALVAGE-<unix secs>.txt` in
//! the new directory.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bourse_engine::{Command, Exchange};
use bourse_net::durable::{log_dir, snapshot_dir, split_snapshot_payload};
use bourse_replication::scan::{list_segments, scan_segment_files, verify_log, ScanOptions};
use bourse_replication::snapshot::{LoadedSnapshot, SNAPSHOTS_KEPT_DEFAULT};
use bourse_replication::{
    decode_command_payload, AppendError, CommandPayload, Corruption, EntryRef, LogError,
    SnapshotStore, Wal, WalOptions,
};

/// How long salvage waits for its own WAL writer to make entries durable.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The lock file a daemon holds for the life of its process.
pub const LOCK_FILE: &str = "LOCK";

/// The engine state in a snapshot payload: a daemon's node snapshot (`BRSNODE1`: engine
/// and report streams) or a bare engine snapshot (`examples/snapshot_from_log.rs`). The
/// second value is the size of the report streams, if the payload has them.
pub fn decode_snapshot_state(payload: &[u8]) -> Result<(Exchange, Option<usize>), String> {
    let (engine, streams) = match split_snapshot_payload(payload) {
        Ok((engine, streams)) => (engine, Some(streams.len())),
        Err(node_error) => {
            let exchange = Exchange::decode_snapshot(payload).map_err(|e| {
                format!("neither a node snapshot ({node_error}) nor an engine snapshot ({e})")
            })?;
            return Ok((exchange, None));
        }
    };
    let exchange = Exchange::decode_snapshot(engine)
        .map_err(|e| format!("node snapshot with a bad engine section: {e}"))?;
    Ok((exchange, streams))
}

/// Loads the newest snapshot in `dir` at or below `to` that verifies (crc, decode, state
/// hash), printing each one passed over. Returns it with the engine it holds.
pub fn newest_good_snapshot(
    dir: &Path,
    to: u64,
) -> Result<Option<(LoadedSnapshot, Exchange)>, String> {
    let store = SnapshotStore::inspect(dir);
    let listed = match store.list() {
        Ok(listed) => listed,
        Err(e) if !dir.exists() => {
            eprintln!("bourse-log: no snapshot directory ({e})");
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    };
    for candidate in listed.iter().rev().filter(|s| s.index <= to) {
        let checked = bourse_replication::snapshot::read_snapshot_file(&candidate.path)
            .map_err(|e| e.to_string())
            .and_then(|loaded| {
                let (exchange, _) = decode_snapshot_state(&loaded.payload)?;
                if exchange.state_hash() != loaded.info.state_hash {
                    return Err("state hash differs from its header".to_string());
                }
                if exchange.last_index() != loaded.info.index {
                    return Err("engine index differs from its header".to_string());
                }
                Ok((loaded, exchange))
            });
        match checked {
            Ok(found) => return Ok(Some(found)),
            Err(e) => {
                eprintln!("bourse-log: skipping snapshot {}: {e}", candidate.path.display())
            }
        }
    }
    Ok(None)
}

/// Takes `data_dir/LOCK` without blocking, so no daemon starts on the directory while
/// salvage reads it; refuses if a daemon (or another salvage) holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<File, String> {
    let path = data_dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .map_err(|e| format!("cannot create the lock file {}: {e}", path.display()))?,
        Err(e) => return Err(format!("cannot open the lock file {}: {e}", path.display())),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            Err(format!(
                "{} is locked ({}{}): a daemon is running on this data directory. Stop it \
                 first; salvage works on a stopped node only",
                data_dir.display(),
                path.display(),
                if holder.is_empty() { String::new() } else { format!(", held by {holder}") }
            ))
        }
        Err(e) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// What a salvage produced, for the caller's checks and the audit note.
#[derive(Debug)]
pub struct Salvaged {
    pub snapshot_index: u64,
    /// Last index of the new log (the snapshot's index if no entry was kept).
    pub last_index: u64,
    pub state_hash: [u8; 32],
    pub note: PathBuf,
}

/// What salvage says: printed as it goes and kept for the audit note.
struct Note(String);

impl Note {
    fn say(&mut self, line: String) {
        println!("{line}");
        self.0.push_str(&line);
        self.0.push('\n');
    }
}

/// One line for a damaged place: file, offset, index and fault (the long advice of
/// `Corruption`'s `Display` is for the daemon's log, not for this report).
fn damage_line(c: &Corruption) -> String {
    let index = c.index.map_or(String::new(), |i| format!(" (entry index {i})"));
    format!("{} byte offset {}{index}: {}", c.path.display(), c.offset, c.kind)
}

/// Writes a startable data directory `out` from `data_dir` (see the module doc).
pub fn salvage(data_dir: &Path, out: &Path) -> Result<Salvaged, String> {
    let _lock = lock_data_dir(data_dir)?;
    prepare_out(out)?;
    let mut note = Note(String::new());
    note.say(format!("salvage of {} into {}", data_dir.display(), out.display()));
    let source_log = log_dir(data_dir);
    let verified = verify_log(&source_log, &mut |_| {}).map_err(|e| e.to_string())?;
    for d in &verified.damage {
        note.say(format!("damage       {}", damage_line(d)));
    }
    let (snapshot, mut exchange) = match newest_good_snapshot(&snapshot_dir(data_dir), u64::MAX)? {
        Some((loaded, exchange)) => (Some(loaded), exchange),
        None => {
            (None, Exchange::new(bourse_engine::Config::default()).map_err(|e| format!("{e:?}"))?)
        }
    };
    let (start, start_term) = snapshot.as_ref().map_or((0, 0), |s| (s.info.index, s.info.term));
    match &snapshot {
        Some(s) => {
            note.say(format!("snapshot     {} (index {start}, verified)", s.info.path.display()));
            SnapshotStore::open(&snapshot_dir(out), SNAPSHOTS_KEPT_DEFAULT)
                .and_then(|store| {
                    store.write(
                        start,
                        start_term,
                        &s.info.state_hash,
                        &s.info.membership,
                        &s.payload,
                    )
                })
                .map_err(|e| format!("writing the snapshot into {}: {e}", out.display()))?;
        }
        None => note.say("snapshot     none verifies: keeping the log from index 1".to_string()),
    }
    let kept = copy_intact(&source_log, &log_dir(out), start, start_term, &mut exchange)?;
    report_kept(&mut note, &source_log, start, &kept, verified.last.map(|(i, _)| i))?;
    exchange.check_invariants().map_err(|e| format!("the salvaged state is inconsistent: {e}"))?;
    let last_index = kept.next - 1;
    let state_hash = exchange.state_hash();
    note.say(format!("index        {last_index}"));
    note.say(format!("state_hash   {}", hex::encode(state_hash)));
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let note_path = out.join(format!("SALVAGE-{secs}.txt"));
    let _ = writeln!(note.0, "written at unix time {secs} by bourse-log salvage");
    write_private(&note_path, note.0.as_bytes())?;
    println!("audit note   {}", note_path.display());
    Ok(Salvaged { snapshot_index: start, last_index, state_hash, note: note_path })
}

/// Says which segments were not copied, which entries were kept and which dropped.
fn report_kept(
    note: &mut Note,
    source_log: &Path,
    start: u64,
    kept: &Kept,
    last_readable: Option<u64>,
) -> Result<(), String> {
    let files = list_segments(source_log).map_err(|e| e.to_string())?;
    for f in files.iter().filter(|f| !segment_reaches(&files, f, start + 1)) {
        let line = format!(
            "not copied   {} (entries before {}: in the snapshot)",
            f.path.display(),
            start + 1
        );
        note.say(line);
    }
    let last_index = kept.next - 1;
    note.say(format!(
        "kept         entries {}..={last_index} ({} entries)",
        start + 1,
        last_index - start
    ));
    match &kept.stop {
        Some(why) => {
            let to = last_readable
                .filter(|&l| l >= kept.next)
                .map_or(String::new(), |l| format!("..={l}"));
            note.say(format!(
                "DROPPED      entries {}{to} (every entry from {} on): {why}",
                kept.next, kept.next
            ));
            for f in files.iter().filter(|f| segment_reaches(&files, f, kept.next)) {
                note.say(format!("dropped from {}", f.path.display()));
            }
        }
        None => note.say("dropped      nothing after the snapshot".to_string()),
    }
    if let Some(torn) = &kept.torn {
        note.say(format!("torn tail    {torn} (not copied, as recovery would cut it)"));
    }
    Ok(())
}

/// True if segment `f` holds entries at or after `from` (its successor starts after it).
fn segment_reaches(
    files: &[bourse_replication::scan::SegmentFile],
    f: &bourse_replication::scan::SegmentFile,
    from: u64,
) -> bool {
    let next_first = files.iter().map(|g| g.first_index).find(|&i| i > f.first_index);
    next_first.is_none_or(|n| n > from)
}

fn prepare_out(out: &Path) -> Result<(), String> {
    if let Ok(mut listing) = std::fs::read_dir(out) {
        if listing.next().is_some() {
            return Err(format!(
                "{} is not empty: salvage writes a new data directory and overwrites nothing",
                out.display()
            ));
        }
    }
    // Like the daemon's data directory: no access for others (the log holds every order).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(out)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The outcome of copying the intact entries.
struct Kept {
    /// The index after the last entry copied.
    next: u64,
    /// Why the copy stopped before the end of the log, if it did.
    stop: Option<String>,
    torn: Option<bourse_replication::TornTail>,
}

/// Copies every entry after `start` that reads, decodes and applies, in order, from
/// `source` into a new log in `target`, stopping at the first that does not.
fn copy_intact(
    source: &Path,
    target: &Path,
    start: u64,
    start_term: u64,
    exchange: &mut Exchange,
) -> Result<Kept, String> {
    let options = WalOptions { log: bourse_replication::wal::log_none, ..WalOptions::default() };
    let (mut wal, _) = Wal::open(target, options).map_err(|e| e.to_string())?;
    if start > 0 {
        wal.truncate(start + 1, start_term).map_err(|e| e.to_string())?;
    }
    let files = list_segments(source).map_err(|e| e.to_string())?;
    // The segment holding `start + 1` and every later one; older ones are not read.
    let first = files.iter().rposition(|s| s.first_index <= start + 1).unwrap_or(0);
    let mut next = start + 1;
    let mut events = Vec::new();
    // A failure to write the new log ends the salvage; it is not damage of the source.
    let mut write_failure = None;
    let mut visit = |e: EntryRef<'_>| -> Result<(), String> {
        if e.index != next {
            return Err(format!("entry {} where {next} was expected", e.index));
        }
        if let CommandPayload::Command { time_ns, command_bytes } =
            decode_command_payload(e.payload).map_err(|err| err.to_string())?
        {
            let command = Command::decode(command_bytes)
                .map_err(|err| format!("entry {}: undecodable command: {err}", e.index))?;
            events.clear();
            exchange
                .apply(e.index, time_ns, &command, &mut events)
                .map_err(|err| format!("entry {}: {err}", e.index))?;
        }
        if let Err(why) = append_waiting(&mut wal, e.term, e.index, e.payload) {
            write_failure = Some(why.clone());
            return Err(why);
        }
        next += 1;
        Ok(())
    };
    let options = ScanOptions { from_index: start + 1, read_all: false, repair: false };
    let scanned = scan_segment_files(source, &files[first..], &options, &mut visit, &mut |_| {});
    if let Some(why) = write_failure {
        return Err(why);
    }
    let (stop, torn) = match scanned {
        Ok(report) => (None, report.torn_tail),
        Err(LogError::Replay { reason, .. }) => (Some(reason), None),
        Err(LogError::Corrupt(c)) => (Some(damage_line(&c)), None),
        Err(e) => (Some(e.to_string()), None),
    };
    if next == start + 1 && files.get(first).is_some_and(|f| f.first_index > start + 1) {
        return Err(format!(
            "the log starts at {} but the snapshot ends at {start}: nothing to salvage",
            files[first].first_index
        ));
    }
    let last = next - 1;
    if last > start && !wal.wait_durable(last, DURABLE_TIMEOUT).map_err(|e| e.to_string())? {
        return Err(format!("the new log did not become durable within {DURABLE_TIMEOUT:?}"));
    }
    wal.close().map_err(|e| e.to_string())?;
    assert!(next > start, "the copy never goes back");
    Ok(Kept { next, stop, torn })
}

/// Appends to the new log, waiting for its writer when the queue is full.
fn append_waiting(
    wal: &mut bourse_replication::WalHandle,
    term: u64,
    index: u64,
    payload: &[u8],
) -> Result<(), String> {
    loop {
        match wal.append(term, index, payload) {
            Ok(()) => return Ok(()),
            Err(AppendError::Full { .. }) => {
                if !wal.wait_durable(index - 1, DURABLE_TIMEOUT).map_err(|e| e.to_string())? {
                    return Err(format!("the new log's writer stalled for {DURABLE_TIMEOUT:?}"));
                }
            }
            Err(e) => return Err(format!("writing entry {index} into the new log: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bourse_net::durable::snapshot_payload;

    #[test]
    fn node_and_engine_snapshots_decode_and_garbage_does_not() {
        let exchange = Exchange::new(bourse_engine::Config::default()).expect("engine");
        let mut engine = Vec::new();
        exchange.encode_snapshot(&mut engine);
        let node = snapshot_payload(&engine, &[7; 5]);
        let (decoded, streams) = decode_snapshot_state(&node).expect("a node snapshot");
        assert_eq!((decoded.state_hash(), streams), (exchange.state_hash(), Some(5)));
        let (decoded, streams) = decode_snapshot_state(&engine).expect("an engine snapshot");
        assert_eq!((decoded.state_hash(), streams), (exchange.state_hash(), None));
        let error = decode_snapshot_state(b"BRSNODE1 and then nothing useful").err();
        assert!(error.is_some_and(|e| e.contains("node snapshot")));
        let truncated = &node[..node.len() - 1];
        assert!(decode_snapshot_state(truncated).is_err());
    }
}
