//! bourse-log: inspect, verify and rebuild from a shard's log and snapshots. Every
//! command but `salvage` only reads: no file is changed, a torn tail is reported but not
//! cut, and they work while a daemon runs on the data directory. `salvage` writes a new
//! data directory and changes nothing in the old one (see `bourse_tools::salvage`).
//!
//! ```text
//! bourse-log dump <dir> [--from I] [--to J]       entries, with decoded commands
//! bourse-log verify <dir>                         every check; lists all damage; exit 1 on damage
//! bourse-log snapshot <file>                      header, checksum, state hash (recomputed)
//! bourse-log rebuild <dir> [--snapshot-dir D] [--to I]
//!                                                 newest valid snapshot + log replay: index, state hash
//! bourse-log salvage <data dir> --out <new dir>   newest good snapshot + the intact entries
//!                                                 after it, as a new startable data directory
//! ```
//!
//! Snapshots are the daemon's node snapshots (engine + report streams) or bare engine
//! snapshots; log entries show their origin (API key id and request id) when they have one.
//!
//! Exit codes: 0 fine, 1 damage found or the operation failed, 2 bad usage.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use bourse_engine::{Command, Exchange};
use bourse_replication::scan::{list_segments, scan_log, verify_log, ScanOptions, ScanProgress};
use bourse_replication::snapshot::{read_snapshot_file, read_snapshot_header};
use bourse_replication::{
    decode_command_payload, decode_command_payload_origin, load_hard_state, CommandPayload,
    EntryRef, LogError,
};
use bourse_tools::salvage::{decode_snapshot_state, newest_good_snapshot, salvage};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "bourse-log",
    about = "Inspect, verify and rebuild from a bourse shard log; salvage a damaged data dir"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print entries: index, term, kind, length, checksum status and the decoded command.
    Dump {
        /// Log directory (segment files `<first index>.log`).
        dir: PathBuf,
        /// First index to print.
        #[arg(long)]
        from: Option<u64>,
        /// Last index to print.
        #[arg(long)]
        to: Option<u64>,
    },
    /// Check every segment header, entry checksum, index and term; list all damage.
    Verify {
        /// Log directory.
        dir: PathBuf,
    },
    /// Check a snapshot file and print its header and state hash.
    Snapshot {
        /// Snapshot file (`<index>.snap`).
        file: PathBuf,
    },
    /// Load the newest valid snapshot, replay the log after it, print the state hash.
    Rebuild {
        /// Log directory.
        dir: PathBuf,
        /// Snapshot directory; without it the whole log is replayed from index 1.
        #[arg(long)]
        snapshot_dir: Option<PathBuf>,
        /// Stop at this index (to compare nodes at the same index).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Write a new, startable data directory from the newest snapshot that verifies and
    /// the intact log entries after it; print (and note in the new directory) what was
    /// dropped. The old directory is not changed; a running daemon's (locked) is refused.
    Salvage {
        /// The damaged data directory (with `log/` and `snapshots/`).
        data_dir: PathBuf,
        /// The new data directory (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Any failure the tool reports; the message is printed as is.
struct Failure(String);

impl From<LogError> for Failure {
    fn from(e: LogError) -> Failure {
        Failure(e.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure(format!("writing output: {e}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Dump { dir, from, to } => dump(&dir, from.unwrap_or(1), to.unwrap_or(u64::MAX)),
        Cmd::Verify { dir } => verify(&dir),
        Cmd::Snapshot { file } => snapshot(&file),
        Cmd::Rebuild { dir, snapshot_dir, to } => rebuild(&dir, snapshot_dir.as_deref(), to),
        Cmd::Salvage { data_dir, out } => match salvage(&data_dir, &out) {
            Ok(done) => {
                println!(
                    "salvaged: point the daemon's storage.data_dir at {} (snapshot {}, log to {})",
                    out.display(),
                    done.snapshot_index,
                    done.last_index
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(message) => Err(Failure(format!("salvage: {message}"))),
        },
    };
    match result {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("bourse-log: {message}");
            ExitCode::FAILURE
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_progress(p: &ScanProgress) {
    eprintln!("bourse-log: {p}");
}

/// The visitor's way to end a scan early; not an error.
const STOP: &str = "bourse-log: range done";

fn describe_payload(payload: &[u8]) -> String {
    match decode_command_payload_origin(payload) {
        Ok((CommandPayload::NoOp, _)) => "no-op".to_string(),
        Ok((CommandPayload::Command { time_ns, command_bytes }, origin)) => {
            // Stream 0 is the server's own command (bootstrap, expiry); no origin is an
            // entry written before origins were recorded.
            let origin = match origin {
                Some(o) if o.stream != 0 => format!("key={} request={}", o.stream, o.request_id),
                Some(_) => "key=server".to_string(),
                None => "key=unrecorded".to_string(),
            };
            match Command::decode(command_bytes) {
                Ok(command) => format!("time_ns={time_ns} {origin} {command:?}"),
                Err(e) => {
                    format!("not a command ({e}): {}", hex(&payload[..payload.len().min(32)]))
                }
            }
        }
        Err(e) => format!("not a command entry ({e}): {}", hex(payload)),
    }
}

fn dump(dir: &Path, from: u64, to: u64) -> Result<ExitCode, Failure> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for segment in list_segments(dir)? {
        writeln!(
            out,
            "# segment {} first index {} ({} bytes)",
            segment.path.display(),
            segment.first_index,
            segment.file_bytes
        )?;
    }
    let mut write_error = None;
    let options = ScanOptions { from_index: from, read_all: false, repair: false };
    let mut visit = |e: EntryRef<'_>| {
        if e.index > to {
            return Err(STOP.to_string());
        }
        let line = format!(
            "{:>12} term={} kind={:?} len={} crc=ok {}",
            e.index,
            e.term,
            e.kind,
            e.payload.len(),
            describe_payload(e.payload)
        );
        writeln!(out, "{line}").map_err(|e| {
            write_error = Some(e);
            STOP.to_string()
        })
    };
    let scanned = scan_log(dir, &options, &mut visit, &mut |_| {});
    if let Some(e) = write_error {
        // A closed pipe (`| head`) ends the dump quietly.
        return if e.kind() == io::ErrorKind::BrokenPipe {
            Ok(ExitCode::SUCCESS)
        } else {
            Err(e.into())
        };
    }
    out.flush()?;
    match scanned {
        Ok(report) => {
            if let Some(torn) = report.torn_tail {
                println!("# {torn} (recovery would cut it)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(LogError::Replay { reason, .. }) if reason == STOP => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

fn verify(dir: &Path) -> Result<ExitCode, Failure> {
    let report = verify_log(dir, &mut print_progress)?;
    for s in &report.segments {
        let range = match s.last_index {
            Some(last) => format!("{}..={last}", s.first_index),
            None => format!("{} (empty)", s.first_index),
        };
        let damaged = report.damage.iter().any(|d| d.path == s.path);
        let status = if damaged { "DAMAGED" } else { "ok" };
        println!(
            "{}  entries {range}  {} entries  {} bytes  {status}",
            s.path.display(),
            s.entries,
            s.file_bytes
        );
    }
    match load_hard_state(dir) {
        Ok(Some(hs)) => println!(
            "raft hard state: term {} vote {} commit {} voters {:?}",
            hs.term, hs.vote, hs.commit, hs.membership.voters
        ),
        Ok(None) => println!("raft hard state: none"),
        Err(e) => println!("raft hard state: DAMAGED: {e}"),
    }
    if let Some(torn) = &report.torn_tail {
        println!("torn tail (not damage; recovery cuts it): {torn}");
    }
    match report.last {
        Some((index, term)) => {
            println!("{} valid entries, last index {index} term {term}", report.entries)
        }
        None => println!("no entries"),
    }
    if report.damage.is_empty() {
        println!("no damage found");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} damaged place(s):", report.damage.len());
    for d in &report.damage {
        let index = d.index.map_or(String::new(), |i| format!(" entry index {i}"));
        println!("  {} byte offset {}{index}: {}", d.path.display(), d.offset, d.kind);
    }
    println!("{}", report.damage[0]);
    Ok(ExitCode::FAILURE)
}

fn snapshot(file: &Path) -> Result<ExitCode, Failure> {
    let header = read_snapshot_header(file).map_err(|e| Failure(e.to_string()))?;
    println!("file         {}", file.display());
    println!("index        {}", header.index);
    println!("term         {}", header.term);
    println!("state_hash   {}", hex(&header.state_hash));
    println!("payload      {} bytes", header.payload_len);
    println!(
        "voters       {:?} learners {:?}",
        header.membership.voters, header.membership.learners
    );
    let loaded = match read_snapshot_file(file) {
        Ok(loaded) => loaded,
        Err(e) => {
            println!("crc          BAD");
            return Err(Failure(e.to_string()));
        }
    };
    println!("crc          ok (0x{:08x})", loaded.info.body_crc);
    let (exchange, streams) = decode_snapshot_state(&loaded.payload)
        .map_err(|e| Failure(format!("{}: the payload: {e}", file.display())))?;
    match streams {
        Some(bytes) => {
            println!("kind         node snapshot (engine + {bytes} bytes of report streams)")
        }
        None => println!("kind         engine snapshot"),
    }
    let computed = exchange.state_hash();
    let matches = computed == header.state_hash;
    println!(
        "engine       last index {}, state hash {} ({})",
        exchange.last_index(),
        hex(&computed),
        if matches { "matches" } else { "DIFFERS" }
    );
    if !matches || exchange.last_index() != header.index {
        return Err(Failure(format!("{}: header and engine state disagree", file.display())));
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the newest valid snapshot at or below `to`, reporting damaged ones.
fn load_snapshot(dir: &Path, to: u64) -> Result<Option<(Exchange, u64, PathBuf)>, Failure> {
    let found = newest_good_snapshot(dir, to).map_err(Failure)?;
    Ok(found.map(|(loaded, exchange)| (exchange, loaded.info.index, loaded.info.path)))
}

fn rebuild(dir: &Path, snapshot_dir: Option<&Path>, to: Option<u64>) -> Result<ExitCode, Failure> {
    let to = to.unwrap_or(u64::MAX);
    let loaded = match snapshot_dir {
        Some(d) => load_snapshot(d, to)?,
        None => None,
    };
    let (mut exchange, start) = match loaded {
        Some((exchange, index, path)) => {
            println!("snapshot     {} (index {index}, state hash verified)", path.display());
            (exchange, index)
        }
        None => {
            println!("snapshot     none: replaying the log from index 1");
            (
                Exchange::new(bourse_engine::Config::default())
                    .map_err(|e| Failure(format!("{e:?}")))?,
                0,
            )
        }
    };
    let started = Instant::now();
    let mut expected = start + 1;
    let mut applied = 0u64;
    let mut events = Vec::new();
    let mut visit = |e: EntryRef<'_>| {
        if e.index > to {
            return Err(STOP.to_string());
        }
        if e.index != expected {
            return Err(format!(
                "the log has entry {} where {expected} was expected after the snapshot",
                e.index
            ));
        }
        expected += 1;
        match decode_command_payload(e.payload).map_err(|err| err.to_string())? {
            CommandPayload::NoOp => Ok(()),
            CommandPayload::Command { time_ns, command_bytes } => {
                let command = Command::decode(command_bytes)
                    .map_err(|err| format!("undecodable command: {err}"))?;
                events.clear();
                exchange
                    .apply(e.index, time_ns, &command, &mut events)
                    .map_err(|err| err.to_string())?;
                applied += 1;
                Ok(())
            }
        }
    };
    let options = ScanOptions { from_index: start + 1, read_all: false, repair: false };
    let scanned = scan_log(dir, &options, &mut visit, &mut print_progress);
    let torn = match scanned {
        Ok(report) => report.torn_tail,
        Err(LogError::Replay { reason, .. }) if reason == STOP => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(torn) = torn {
        println!("torn tail    {torn} (not replayed)");
    }
    let reached = expected - 1;
    let elapsed = started.elapsed();
    let rate = (u128::from(expected - 1 - start) * 1_000_000 / elapsed.as_micros().max(1)) as u64;
    println!(
        "replayed     {} entries ({applied} commands) in {:.3} s, {rate} entries/s",
        reached - start,
        elapsed.as_secs_f64()
    );
    match exchange.check_invariants() {
        Ok(()) => println!("invariants   ok"),
        Err(why) => println!("invariants   VIOLATED: {why}"),
    }
    println!("index        {reached}");
    println!("state_hash   {}", hex(&exchange.state_hash()));
    if to != u64::MAX && reached != to {
        eprintln!("bourse-log: the log ends at {reached}, before the requested index {to}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
