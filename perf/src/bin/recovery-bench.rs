//! recovery-bench: how long a node takes to come back from its log, with and without a
//! recent snapshot.
//!
//! It first writes a realistic log: `--commands` engine commands (set-up, then
//! exchange-core's mix; see `bourse_perf::workload`), each entry's payload the
//! sequencer's (`encode_command_payload(time_ns, Command::encode)`), appended through the
//! WAL without waiting for each fsync (memory durability mode: the fast way to write it),
//! and a snapshot at `--snapshot-at` (default 90% of the log) written with
//! `SnapshotStore` (`Exchange::encode_snapshot`, `state_hash()`). Every handle is then
//! dropped, as a restart would find the files, and (with `--drop-caches`, as root) the
//! page cache is emptied before each measurement.
//!
//! Measured, each with `recover_node` (the node's start-up sequence) and a fresh engine:
//! (a) log only, an empty snapshot directory: every command replayed through
//!     `Exchange::apply`;
//! (b) snapshot + tail: the snapshot restored (`Exchange::decode_snapshot`, its state hash
//!     checked against the header) and the commands after it replayed;
//! (c) for reference, reading and verifying the whole log without applying anything.
//! (a) and (b) must both end with the generating engine's state hash; the run fails
//! otherwise. Target (durability issue): recovery of 10M commands in at most 10 s.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bourse_engine::{Command, Config, Event, Exchange};
use bourse_perf::alloc::{self, CountingAlloc};
use bourse_perf::durability::{append, encode_entry_payload, scratch};
use bourse_perf::harness::EVENTS_CAPACITY;
use bourse_perf::report::{self, hex, wrote, Percentiles, Summary};
use bourse_perf::sched;
use bourse_perf::workload::Workload;
use bourse_replication::scan::{scan_log, ScanOptions};
use bourse_replication::snapshot::LoadedSnapshot;
use bourse_replication::{
    decode_command_payload, recover_node, CommandPayload, DurabilityMode, EntryRef, Membership,
    SnapshotStore, Wal, WalOptions,
};
use clap::Parser;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const COMMANDS_DEFAULT: u64 = 10_000_000;
/// Most commands one run writes (about 70 bytes each on disk).
const COMMANDS_MAX: u64 = 100_000_000;
/// Where the snapshot goes by default, in percent of the log.
const SNAPSHOT_AT_PERCENT_DEFAULT: u64 = 90;
/// Snapshots the store keeps (only one is written).
const SNAPSHOTS_KEPT: usize = 3;
/// A log where more mix commands than this are rejected is mostly rejects, which replay
/// faster than trading: it would flatter recovery.
const REJECT_RATE_MAX: f64 = 0.01;
/// How long the final drain of the written log may take.
const DRAIN_WAIT: Duration = Duration::from_secs(600);
/// Progress is printed every this many commands while the log is written.
const PROGRESS_EVERY: u64 = 1_000_000;
/// The durability issue's target, stated for 10M commands.
const TARGET_RECOVERY: Duration = Duration::from_secs(10);
const TARGET_COMMANDS: u64 = 10_000_000;
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "recovery-bench",
    about = "Recovery time of a command log, with and without a snapshot"
)]
struct Cli {
    /// Commands in the log.
    #[arg(long, default_value_t = COMMANDS_DEFAULT)]
    commands: u64,
    /// Index of the snapshot [default: 90% of --commands].
    #[arg(long)]
    snapshot_at: Option<u64>,
    /// Seed of the command mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Parent of the scratch directory: put it on the disk to measure [default: the
    /// system temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Leave the scratch directory (log and snapshot) in place.
    #[arg(long)]
    keep: bool,
    /// Empty the page cache (`echo 3 > /proc/sys/vm/drop_caches`, needs root) before each
    /// measurement, so the log is read from the disk.
    #[arg(long)]
    drop_caches: bool,
    /// Write the summary records (a JSON array) here.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Cli {
    fn snapshot_index(&self) -> Result<u64, String> {
        if self.commands == 0 || self.commands > COMMANDS_MAX {
            return Err(format!("--commands must be in 1..={COMMANDS_MAX}"));
        }
        let at = self.snapshot_at.unwrap_or(self.commands * SNAPSHOT_AT_PERCENT_DEFAULT / 100);
        if at == 0 || at > self.commands {
            return Err(format!("--snapshot-at must be in 1..={}", self.commands));
        }
        Ok(at)
    }
}

/// What writing the log produced: the state every recovery must reach.
struct Built {
    final_hash: [u8; 32],
    last_index: u64,
    snapshot_index: u64,
    snapshot_bytes: usize,
    log_bytes: u64,
}

/// Total size of the regular files in `dir` (the log's segments).
fn dir_bytes(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let meta =
            entry.and_then(|e| e.metadata()).map_err(|e| format!("{}: {e}", dir.display()))?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Writes the log and the snapshot; returns the generating engine's final state.
fn build(
    cli: &Cli,
    log_dir: &Path,
    snapshot_dir: &Path,
    snapshot_at: u64,
) -> Result<Built, String> {
    let mut mix = Workload::new(cli.seed)?;
    let (mut wal, _) = Wal::open(log_dir, WalOptions::default()).map_err(|e| e.to_string())?;
    let store = SnapshotStore::open(snapshot_dir, SNAPSHOTS_KEPT).map_err(|e| e.to_string())?;
    let (mut scratch, mut payload) = (Vec::new(), Vec::new());
    let (mut fulls, mut snapshot_bytes) = (0u64, 0usize);
    let started = Instant::now();
    for _ in 0..cli.commands {
        let (index, command) = mix.next_command()?;
        encode_entry_payload(index, &command, &mut scratch, &mut payload);
        append::append_waiting(&mut wal, index, &payload, &mut fulls)?;
        // Memory mode: the command is acknowledged once sequenced, without waiting for
        // its fsync, so writing the log never waits for the disk except on a full queue.
        debug_assert!(DurabilityMode::Memory.may_ack(index, index, wal.durable_index()));
        if index == snapshot_at {
            let mut state = Vec::new();
            mix.exchange().encode_snapshot(&mut state);
            let hash = mix.exchange().state_hash();
            store
                .write(index, append::TERM, &hash, &Membership::default(), &state)
                .map_err(|e| e.to_string())?;
            snapshot_bytes = state.len();
        }
        if index % PROGRESS_EVERY == 0 {
            eprintln!(
                "  written {index} of {} commands ({:.1} s)",
                cli.commands,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if !wal.wait_durable(cli.commands, DRAIN_WAIT).map_err(|e| e.to_string())? {
        return Err(format!("the log was not durable after {DRAIN_WAIT:?}"));
    }
    let stats = wal.close().map_err(|e| e.to_string())?;
    mix.exchange().check_invariants().map_err(|e| format!("generating engine: {e}"))?;
    let log_bytes = dir_bytes(log_dir)?;
    println!(
        "wrote the log in {:.1} s ({} segments, {:.1} MB, {:.1} B per entry on disk, {} fsyncs, queue full {fulls} times): {}",
        started.elapsed().as_secs_f64(),
        stats.segments_created,
        log_bytes as f64 / 1e6,
        log_bytes as f64 / cli.commands as f64,
        stats.batches,
        mix.describe()
    );
    if mix.mix_reject_rate() > REJECT_RATE_MAX {
        return Err(format!(
            "{:.2}% of the mix was rejected: not a trading log",
            100.0 * mix.mix_reject_rate()
        ));
    }
    let exchange = mix.exchange();
    let orders: usize = exchange.markets().iter().map(|m| m.open_orders as usize).sum();
    println!(
        "snapshot at index {snapshot_at}: {} bytes; final state: {} accounts, {orders} open orders, state hash {}",
        snapshot_bytes,
        exchange.accounts().len(),
        hex(&exchange.state_hash())
    );
    Ok(Built {
        final_hash: exchange.state_hash(),
        last_index: exchange.last_index(),
        snapshot_index: snapshot_at,
        snapshot_bytes,
        log_bytes,
    })
}

/// `Cached:` of `/proc/meminfo` in bytes (page cache size), if readable.
fn page_cache_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("Cached:"))?;
    let kib: u64 =
        line.trim_start_matches("Cached:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Empties the page cache if asked; says what happened either way.
fn prepare_cache(cli: &Cli) -> String {
    if !cli.drop_caches {
        return "page cache warm (not dropped; the files were just written)".into();
    }
    // Every file was fsynced (WAL batches, snapshot store), so there are no dirty pages of
    // ours for the drop to skip.
    let before = page_cache_bytes();
    match std::fs::write(DROP_CACHES, b"3\n") {
        Ok(()) => {
            let mb =
                |b: Option<u64>| b.map_or("?".to_string(), |b| format!("{:.0}", b as f64 / 1e6));
            format!(
                "page cache dropped: 3 > {DROP_CACHES}, Cached {} -> {} MB",
                mb(before),
                mb(page_cache_bytes())
            )
        }
        Err(e) => format!(
            "could NOT drop the page cache ({DROP_CACHES}: {e}): the log is read from memory"
        ),
    }
}

struct Recovery {
    name: &'static str,
    elapsed: Duration,
    /// Snapshot load, decode and hash check (zero without a snapshot).
    restore: Duration,
    snapshot_index: u64,
    replayed: u64,
    entries_read: u64,
    bytes_read: u64,
    hash: [u8; 32],
    last_index: u64,
    allocs: u64,
    cache: String,
}

/// One node start-up: `recover_node` from `snapshot_dir` (empty: log only) and the log.
fn recover(
    name: &'static str,
    log_dir: &Path,
    snapshot_dir: &Path,
    cache: String,
) -> Result<Recovery, String> {
    let fresh = Exchange::new(Config::default()).map_err(|e| format!("engine config: {e:?}"))?;
    let exchange = RefCell::new(fresh);
    let restored_at: Cell<Option<Instant>> = Cell::new(None);
    let mut events: Vec<Event> = Vec::with_capacity(EVENTS_CAPACITY);
    let mut replayed = 0u64;
    let allocs_before = alloc::counts();
    let started = Instant::now();
    let mut restore = |snapshot: &LoadedSnapshot| -> Result<(), String> {
        let restored =
            Exchange::decode_snapshot(&snapshot.payload).map_err(|e| format!("{e:?}"))?;
        if restored.state_hash() != snapshot.info.state_hash {
            return Err("the restored state's hash differs from the snapshot header's".into());
        }
        *exchange.borrow_mut() = restored;
        restored_at.set(Some(Instant::now()));
        Ok(())
    };
    let mut replay = |entry: EntryRef<'_>| -> Result<(), String> {
        match decode_command_payload(entry.payload).map_err(|e| e.to_string())? {
            CommandPayload::NoOp => Ok(()),
            CommandPayload::Command { time_ns, command_bytes } => {
                let command = Command::decode(command_bytes)
                    .map_err(|e| format!("entry {}: {e:?}", entry.index))?;
                events.clear();
                replayed += 1;
                exchange
                    .borrow_mut()
                    .apply(entry.index, time_ns, &command, &mut events)
                    .map_err(|e| format!("entry {}: {e:?}", entry.index))
            }
        }
    };
    let node = recover_node(
        log_dir,
        snapshot_dir,
        SNAPSHOTS_KEPT,
        WalOptions::default(),
        &mut restore,
        &mut replay,
    )
    .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let allocs = alloc::counts().since(&allocs_before).allocs;
    let restore = restored_at.get().map_or(Duration::ZERO, |at| at - started);
    let report = &node.recovered.report;
    let (entries_read, bytes_read, snapshot_index) =
        (report.entries_read, report.bytes_read, node.snapshot_index);
    node.wal.close().map_err(|e| e.to_string())?;
    let exchange = exchange.into_inner();
    Ok(Recovery {
        name,
        elapsed,
        restore,
        snapshot_index,
        replayed,
        entries_read,
        bytes_read,
        hash: exchange.state_hash(),
        last_index: exchange.last_index(),
        allocs,
        cache,
    })
}

fn print_recovery(r: &Recovery, built: &Built, commands: u64) {
    let secs = r.elapsed.as_secs_f64();
    println!("{} ({}):", r.name, r.cache);
    println!(
        "  {secs:.3} s wall: {} commands replayed ({:.2} M/s), {} entries / {:.1} MB of log read and verified ({:.0} MB/s)",
        r.replayed,
        r.replayed as f64 / secs / 1e6,
        r.entries_read,
        r.bytes_read as f64 / 1e6,
        r.bytes_read as f64 / 1e6 / secs
    );
    if r.snapshot_index > 0 {
        println!(
            "  of which snapshot at {} ({:.1} MB) loaded, decoded and hash-checked in {:.3} s, then the tail of {} commands in {:.3} s",
            r.snapshot_index,
            built.snapshot_bytes as f64 / 1e6,
            r.restore.as_secs_f64(),
            r.replayed,
            (r.elapsed - r.restore).as_secs_f64()
        );
    }
    println!(
        "  {:.3} allocations per command replayed (process-wide)",
        r.allocs as f64 / r.replayed.max(1) as f64
    );
    let scale = if commands == TARGET_COMMANDS {
        String::new()
    } else {
        format!(" (stated for {TARGET_COMMANDS} commands; this log has {commands})")
    };
    println!(
        "  target: recovery of 10M commands <= {} s: {} ({secs:.3} s){scale}",
        TARGET_RECOVERY.as_secs(),
        if r.elapsed <= TARGET_RECOVERY { "met" } else { "MISSED" }
    );
}

/// Fails unless the recovery reached the generating engine's state, from the snapshot it
/// was meant to start from.
fn check(r: &Recovery, built: &Built, snapshot_index: u64) -> Result<(), String> {
    if r.snapshot_index != snapshot_index {
        return Err(format!(
            "{}: started from snapshot {}, expected {snapshot_index}",
            r.name, r.snapshot_index
        ));
    }
    if r.replayed != built.last_index - snapshot_index {
        return Err(format!(
            "{}: replayed {} commands, expected {}",
            r.name,
            r.replayed,
            built.last_index - snapshot_index
        ));
    }
    if r.last_index != built.last_index || r.hash != built.final_hash {
        return Err(format!(
            "{}: STATE DIFFERS: recovered index {} hash {}, generating engine index {} hash {}",
            r.name,
            r.last_index,
            hex(&r.hash),
            built.last_index,
            hex(&built.final_hash)
        ));
    }
    println!("  check: state hash {} equals the generating engine's", hex(&r.hash));
    Ok(())
}

/// (c): read and verify the whole log, applying nothing.
/// Returns (wall time, entries read, allocations).
fn read_only(log_dir: &Path, cache: String) -> Result<(Duration, u64, u64), String> {
    let allocs_before = alloc::counts();
    let started = Instant::now();
    let report = scan_log(log_dir, &ScanOptions::default(), &mut |_| Ok(()), &mut |_| {})
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let allocs = alloc::counts().since(&allocs_before).allocs;
    println!(
        "(c) read + verify only, no apply ({cache}): {:.3} s for {} entries, {:.1} MB ({:.0} MB/s)",
        elapsed.as_secs_f64(),
        report.entries_read,
        report.bytes_read as f64 / 1e6,
        report.bytes_read as f64 / 1e6 / elapsed.as_secs_f64()
    );
    Ok((elapsed, report.entries_read, allocs))
}

/// A recovery as a summary record: ops = commands replayed, throughput = commands/s, and
/// every percentile the wall time of the one recovery (one sample).
fn summary(name: &str, ops: u64, elapsed: Duration, allocs: u64) -> Summary {
    let ns = elapsed.as_nanos() as u64;
    let p = Percentiles {
        count: 1,
        mean_ns: ns as f64,
        p50_ns: ns,
        p90_ns: ns,
        p99_ns: ns,
        p999_ns: ns,
        p9999_ns: ns,
        max_ns: ns,
    };
    Summary::new(
        name,
        ops,
        ops as f64 / elapsed.as_secs_f64(),
        &p,
        allocs as f64 / ops.max(1) as f64,
    )
}

fn run(cli: &Cli) -> Result<(), String> {
    let snapshot_at = cli.snapshot_index()?;
    alloc::require_installed()?;
    bourse_replication::check_io_uring().map_err(|e| e.to_string())?;
    let scratch = scratch::Scratch::create(cli.dir.as_deref(), "bourse-recovery-bench-", cli.keep)?;
    let log_dir = scratch.path().join("log");
    let snapshot_dir = scratch.path().join("snapshots");
    let no_snapshot_dir = scratch.path().join("no-snapshots");
    println!(
        "recovery-bench: {} commands, seed {} (rerun with --seed {}), snapshot at {snapshot_at}",
        cli.commands, cli.seed, cli.seed
    );
    println!("{}", scratch::describe_filesystem(scratch.path()));
    println!("{}", sched::machine_line());
    let built = build(cli, &log_dir, &snapshot_dir, snapshot_at)?;
    // Everything that wrote the files is dropped by now: each recovery starts from files
    // only, in a fresh engine, as a restarted process would.
    let log_only = recover("(a) log only", &log_dir, &no_snapshot_dir, prepare_cache(cli))?;
    print_recovery(&log_only, &built, cli.commands);
    check(&log_only, &built, 0)?;
    let with_snapshot =
        recover("(b) snapshot + tail", &log_dir, &snapshot_dir, prepare_cache(cli))?;
    print_recovery(&with_snapshot, &built, cli.commands);
    check(&with_snapshot, &built, built.snapshot_index)?;
    let (read_elapsed, read_entries, read_allocs) = read_only(&log_dir, prepare_cache(cli))?;
    println!("log on disk: {:.1} MB", built.log_bytes as f64 / 1e6);
    if let Some(path) = &cli.json {
        let records = [
            summary(
                "recovery-bench/log-only",
                log_only.replayed,
                log_only.elapsed,
                log_only.allocs,
            ),
            summary(
                "recovery-bench/snapshot-tail",
                with_snapshot.replayed,
                with_snapshot.elapsed,
                with_snapshot.allocs,
            ),
            summary("recovery-bench/read-verify", read_entries, read_elapsed, read_allocs),
        ];
        wrote(path, report::write_json_array(path, &records))?;
    }
    println!("{}", scratch.end_line());
    Ok(())
}

fn main() -> ExitCode {
    bourse_perf::cli::exit_code("recovery-bench", run(&Cli::parse()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("recovery-bench").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn snapshot_index_defaults_to_90_percent_and_is_bounded() {
        assert_eq!(cli(&[]).snapshot_index(), Ok(9_000_000));
        assert_eq!(cli(&["--commands", "1000"]).snapshot_index(), Ok(900));
        assert_eq!(
            cli(&["--commands", "1000", "--snapshot-at", "1000"]).snapshot_index(),
            Ok(1000)
        );
        assert!(cli(&["--commands", "1000", "--snapshot-at", "1001"]).snapshot_index().is_err());
        assert!(cli(&["--commands", "1000", "--snapshot-at", "0"]).snapshot_index().is_err());
        assert!(cli(&["--commands", "0"]).snapshot_index().is_err());
        assert!(cli(&["--commands", "100000001"]).snapshot_index().is_err());
    }

    #[test]
    fn both_recoveries_reach_the_generating_state() {
        let seed = 5;
        println!("seed {seed}");
        let commands = bourse_perf::workload::SETUP_COMMANDS + 20_000;
        let args = cli(&["--commands", &commands.to_string(), "--seed", &seed.to_string()]);
        let dir = tempfile::tempdir().unwrap();
        let (log_dir, snapshot_dir) = (dir.path().join("log"), dir.path().join("snap"));
        let snapshot_at = args.snapshot_index().unwrap();
        let built = build(&args, &log_dir, &snapshot_dir, snapshot_at).unwrap();
        assert_eq!(built.last_index, commands);
        assert!(built.log_bytes > commands * 40, "{} bytes", built.log_bytes);

        let a = recover("a", &log_dir, &dir.path().join("empty"), String::new()).unwrap();
        check(&a, &built, 0).unwrap();
        assert_eq!(a.replayed, commands);
        let b = recover("b", &log_dir, &snapshot_dir, String::new()).unwrap();
        check(&b, &built, snapshot_at).unwrap();
        assert_eq!(b.replayed, commands - snapshot_at);
        assert!(b.restore > Duration::ZERO);

        // A recovery that does not reach the same state is caught.
        let mut wrong = b;
        wrong.hash[0] ^= 1;
        assert!(check(&wrong, &built, snapshot_at).is_err());
        let record = summary("x", 10, Duration::from_millis(5), 20);
        assert_eq!(
            (record.p50_ns, record.max_ns, record.allocs_per_op),
            (5_000_000, 5_000_000, 2.0)
        );
        assert!((record.throughput_per_s - 2_000.0).abs() < 1e-6);
    }
}
