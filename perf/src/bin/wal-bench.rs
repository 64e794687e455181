//! wal-bench: the WAL in `disk` durability mode, next to the raw fsync rate of the same
//! disk measured by the same tool.
//!
//! 1. **raw fsync**: write one small record (an entry's size) and `fdatasync`, back to
//!    back, through `bourse_replication::bench::raw_fsync_rate`, which is the WAL's own
//!    io_uring path (one write linked to one fdatasync per submission). Reports fsyncs/s
//!    and the per-fsync latency distribution.
//! 2. **append throughput**: one producer (the shard core's role) appends entries as fast
//!    as the queue takes them; `AppendError::Full` is handled the way a shard core does,
//!    by waiting for `durable_index` to move. Reports entries/s and MB/s to the last entry
//!    being durable, entries per fsync (`WalStats`), and entries/s / raw fsyncs/s: how
//!    many entries one fsync's worth of time carries, i.e. what group commit buys.
//! 3. **disk-mode ack latency**, open loop at `--rate`: entry k is due at `t0 + k / rate`;
//!    its ack time is when the io thread published a `durable_index` covering it (the
//!    `on_durable` callback, which is where a shard core's eventfd would be written), and
//!    its latency is ack time minus *due* time, so a producer held up by a stall is
//!    charged for it (coordinated omission corrected). Compared with one raw fsync: the
//!    target is p99 within 1.5x.
//!
//! Everything is written in a fresh directory inside `--dir` (default: the system temp
//! dir), removed at the end unless `--keep`. See `perf/README.md`, "Durability benchmarks".

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bourse_perf::alloc::{self, CountingAlloc};
use bourse_perf::cli::{results_dir, with_suffix};
use bourse_perf::driver::{intended_offset_ns, Pacing, Recorder};
use bourse_perf::durability::append::append_waiting;
use bourse_perf::durability::{encode_entry_payload, scratch};
use bourse_perf::report::{
    format_ns, latency_histogram, record_ns, write_table, wrote, Percentiles, Summary,
};
use bourse_perf::workload::{Workload, SETUP_COMMANDS};
use bourse_perf::{hgrm, plot, report, sched};
use bourse_replication::bench::raw_fsync_rate;
use bourse_replication::format::{ENTRY_HEADER_BYTES, ENTRY_PAYLOAD_BYTES_MAX};
use bourse_replication::{DurabilityMode, Wal, WalOptions, WalStats};

use clap::Parser;
use hdrhistogram::Histogram;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Entries per throughput run by default, and the most accepted.
const ENTRIES_DEFAULT: u64 = 10_000_000;
const ENTRIES_MAX: u64 = 100_000_000;
/// One throughput run writes at most this many entry bytes by default (its entry count
/// is lowered to fit), and `--run-bytes-max` at most `RUN_BYTES_LIMIT`.
const RUN_BYTES_MAX_DEFAULT: u64 = 1 << 30;
const RUN_BYTES_LIMIT: u64 = 64 << 30;
/// Payload sizes per run and rates per run, at most (the SVG holds 8 series: the raw
/// fsync line plus two per rate).
const ENTRY_SIZES_MAX: usize = 4;
const RATES_MAX: usize = 3;
/// Highest `--rate`, and the most entries one ack run may take (each costs 24 bytes of
/// publish record).
const ACK_RATE_MAX: u64 = 1_000_000;
const ACK_ENTRIES_MAX: u64 = 5_000_000;
/// Longest time a phase may be asked to run.
const SECONDS_MAX: f64 = 600.0;
/// Longest `--spin-margin-us`.
const SPIN_MARGIN_US_MAX: u64 = 10_000;
/// Real command payloads cycled through by the `commands` entry size.
const POOL_ENTRIES: usize = 1 << 16;
/// How long the final drain may take.
const DRAIN_WAIT: Duration = Duration::from_secs(600);
/// Throughput runs time one append call in this many (see `driver`).
const SAMPLE_EVERY: u32 = 16;
/// Publishes beyond one per entry the ack recorder makes room for (the open, a close).
const PUBLISH_SLACK: usize = 1_024;
/// The ack target from the durability issue: disk-mode ack p99 within 1.5x of one fsync.
const TARGET_ACK_OVER_FSYNC: f64 = 1.5;

/// The payload of the entries of one throughput run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntrySize {
    /// Real engine command payloads (time + `Command::encode`) from the seeded mix.
    Commands,
    Fixed(usize),
}

fn parse_entry_size(text: &str) -> Result<EntrySize, String> {
    if text == "commands" {
        return Ok(EntrySize::Commands);
    }
    match text.parse::<usize>() {
        Ok(n) if (1..=ENTRY_PAYLOAD_BYTES_MAX).contains(&n) => Ok(EntrySize::Fixed(n)),
        _ => Err(format!("`commands` or a payload size in 1..={ENTRY_PAYLOAD_BYTES_MAX} bytes")),
    }
}

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "wal-bench",
    about = "WAL disk mode (group commit) against the raw fsync rate"
)]
struct Cli {
    /// Parent of the scratch directory: put it on the disk to measure [default: the
    /// system temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Leave the scratch directory (and its logs) in place.
    #[arg(long)]
    keep: bool,
    /// Entry payload sizes of the throughput runs, comma separated: `commands` (real
    /// engine command payloads of the seeded mix) or a byte count.
    #[arg(long, value_delimiter = ',', default_value = "commands,1024", value_parser = parse_entry_size)]
    entry_bytes: Vec<EntrySize>,
    /// Entries per throughput run (lowered to fit --run-bytes-max).
    #[arg(long, default_value_t = ENTRIES_DEFAULT)]
    entries: u64,
    /// Most entry bytes (header + payload) one throughput run writes.
    #[arg(long, default_value_t = RUN_BYTES_MAX_DEFAULT)]
    run_bytes_max: u64,
    /// How long to measure the raw fsync rate, back to back.
    #[arg(long, default_value_t = 3.0)]
    fsync_seconds: f64,
    /// Offered rates of the ack-latency runs, entries/s, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    rate: Vec<u64>,
    /// Measured seconds of each ack run (and of its paced raw fsync run).
    #[arg(long, default_value_t = 5.0)]
    ack_seconds: f64,
    /// Seconds at the start of each ack run that are not recorded.
    #[arg(long, default_value_t = 0.5)]
    ack_warmup_seconds: f64,
    /// The paced producer sleeps until this long before each entry is due, then spins:
    /// a sleep alone overshoots by the timer slack (~50-100 us), which would be charged to
    /// the WAL. 0 = sleep only.
    #[arg(long, default_value_t = 100)]
    spin_margin_us: u64,
    /// `WalOptions::idle_spin` of the io thread, in us (0: park at once, right for shared
    /// cores).
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// `WalOptions::io_cpu`: pin the io thread to this CPU.
    #[arg(long)]
    io_cpu: Option<usize>,
    /// Pin the producer (this thread, the shard core's role) to this CPU.
    #[arg(long)]
    producer_cpu: Option<usize>,
    /// Seed of the command mix the `commands` payloads come from.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Skip the throughput runs.
    #[arg(long)]
    no_throughput: bool,
    /// Skip the ack-latency runs.
    #[arg(long)]
    no_ack: bool,
    /// Write the summary records (a JSON array) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Base path of the .hgrm files (one per distribution, a suffix each) [default:
    /// perf/results/wal-bench.us.hgrm].
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Also write an SVG percentile plot of raw fsync and ack latencies here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

impl Cli {
    fn check(&self) -> Result<(), String> {
        let seconds_ok = |s: f64| s > 0.0 && s <= SECONDS_MAX;
        if !seconds_ok(self.fsync_seconds) || !seconds_ok(self.ack_seconds) {
            return Err(format!("--fsync-seconds and --ack-seconds must be in (0, {SECONDS_MAX}]"));
        }
        if !(0.0..=SECONDS_MAX).contains(&self.ack_warmup_seconds) {
            return Err(format!("--ack-warmup-seconds must be in [0, {SECONDS_MAX}]"));
        }
        if self.entries == 0 || self.entries > ENTRIES_MAX {
            return Err(format!("--entries must be in 1..={ENTRIES_MAX}"));
        }
        if self.run_bytes_max == 0 || self.run_bytes_max > RUN_BYTES_LIMIT {
            return Err(format!("--run-bytes-max must be in 1..={RUN_BYTES_LIMIT}"));
        }
        if self.entry_bytes.is_empty() || self.entry_bytes.len() > ENTRY_SIZES_MAX {
            return Err(format!("--entry-bytes takes 1 to {ENTRY_SIZES_MAX} sizes"));
        }
        if self.rate.is_empty() || self.rate.len() > RATES_MAX {
            return Err(format!("--rate takes 1 to {RATES_MAX} rates"));
        }
        for &rate in &self.rate {
            if rate == 0 || rate > ACK_RATE_MAX {
                return Err(format!("--rate must be in 1..={ACK_RATE_MAX}"));
            }
            if ack_entries(rate, self.ack_warmup_seconds + self.ack_seconds) > ACK_ENTRIES_MAX {
                return Err(format!(
                    "--rate {rate} for {} s is above {ACK_ENTRIES_MAX} entries",
                    self.ack_warmup_seconds + self.ack_seconds
                ));
            }
        }
        if self.spin_margin_us > SPIN_MARGIN_US_MAX {
            return Err(format!("--spin-margin-us must be at most {SPIN_MARGIN_US_MAX}"));
        }
        if Duration::from_micros(self.spin_us) > bourse_replication::wal::IDLE_SPIN_MAX {
            return Err(format!(
                "--spin-us must be at most {:?}",
                bourse_replication::wal::IDLE_SPIN_MAX
            ));
        }
        Ok(())
    }

    fn wal_options(&self) -> WalOptions {
        WalOptions {
            idle_spin: Duration::from_micros(self.spin_us),
            io_cpu: self.io_cpu,
            ..WalOptions::default()
        }
    }

    fn hgrm_path(&self, variant: &str) -> PathBuf {
        let base = self.hgrm.clone().unwrap_or_else(|| results_dir().join("wal-bench.us.hgrm"));
        with_suffix(&base, variant)
    }
}

/// Pins the calling thread to `cpu`, checked against this process's CPU set first
/// (`core_affinity` panics on an id beyond the kernel's CPU set size).
fn pin_current_thread(cpu: usize) -> Result<(), String> {
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    let id = core_affinity::CoreId { id: cpu };
    if !allowed.contains(&id) || !core_affinity::set_for_current(id) {
        return Err(format!(
            "cannot pin the producer to CPU {cpu} (not in this process's CPU set?)"
        ));
    }
    Ok(())
}

/// Runs `f` as the producer: on this thread, or with `--producer-cpu` on a thread pinned
/// to that CPU. The pinned thread is spawned after `Wal::open` has started the io thread,
/// which would otherwise inherit the pin (and could then not be moved to `--io-cpu`).
fn on_producer<T: Send>(
    cpu: Option<usize>,
    f: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    let Some(cpu) = cpu else {
        return f();
    };
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            pin_current_thread(cpu)?;
            f()
        });
        producer.join().map_err(|_| "the producer thread panicked".to_string())?
    })
}

fn ack_entries(rate: u64, seconds: f64) -> u64 {
    (rate as f64 * seconds).ceil() as u64
}

/// The payloads one run cycles through.
struct Payloads {
    bytes: Vec<u8>,
    /// End offset of each payload in `bytes`.
    ends: Vec<usize>,
    /// `commands-<mean>B` or `<n>B`: names the run's files and records.
    label: String,
}

impl Payloads {
    /// `POOL_ENTRIES` real payloads from the mix after its set-up, so sizes and bytes are
    /// those of steady-state trading (their log indices do not match the run's; nothing
    /// replays this log).
    fn commands(seed: u64) -> Result<Payloads, String> {
        let mut mix = Workload::new(seed)?;
        let (mut scratch, mut payload) = (Vec::new(), Vec::new());
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(POOL_ENTRIES);
        for _ in 0..SETUP_COMMANDS + POOL_ENTRIES as u64 {
            let (index, command) = mix.next_command()?;
            if index > SETUP_COMMANDS {
                encode_entry_payload(index, &command, &mut scratch, &mut payload);
                bytes.extend_from_slice(&payload);
                ends.push(bytes.len());
            }
        }
        assert_eq!(ends.len(), POOL_ENTRIES);
        mix.exchange().check_invariants().map_err(|e| format!("command mix: {e}"))?;
        let mean = bytes.len() as f64 / POOL_ENTRIES as f64;
        println!(
            "command payloads: {POOL_ENTRIES} from seed {} ({}), {:.1} bytes on average (min {}, max {})",
            seed,
            mix.describe(),
            mean,
            (0..POOL_ENTRIES).map(|i| Self::len_at(&ends, i)).min().unwrap_or(0),
            (0..POOL_ENTRIES).map(|i| Self::len_at(&ends, i)).max().unwrap_or(0),
        );
        Ok(Payloads { bytes, ends, label: format!("commands-{}B", mean.round()) })
    }

    fn fixed(n: usize) -> Payloads {
        let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        Payloads { bytes, ends: vec![n], label: format!("{n}B") }
    }

    fn len_at(ends: &[usize], i: usize) -> usize {
        ends[i] - if i == 0 { 0 } else { ends[i - 1] }
    }

    fn get(&self, i: usize) -> &[u8] {
        let k = i % self.ends.len();
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.bytes[start..self.ends[k]]
    }

    fn mean_bytes(&self) -> f64 {
        self.bytes.len() as f64 / self.ends.len() as f64
    }
}

/// A latency distribution from a raw fsync measurement.
fn histogram_of(latencies: &[Duration]) -> Histogram<u64> {
    let mut hist = latency_histogram();
    for latency in latencies {
        record_ns(&mut hist, latency.as_nanos().min(u128::from(u64::MAX)) as u64);
    }
    hist
}

struct RawFsync {
    per_s: f64,
    hist: Histogram<u64>,
    allocs: u64,
}

fn raw_fsync(
    dir: &Path,
    write_bytes: usize,
    seconds: f64,
    interval: Duration,
) -> Result<RawFsync, String> {
    let before = alloc::counts();
    let stats = raw_fsync_rate(dir, write_bytes, Duration::from_secs_f64(seconds), interval)
        .map_err(|e| e.to_string())?;
    let allocs = alloc::counts().since(&before).allocs;
    if stats.syncs == 0 {
        return Err("the raw fsync measurement made no fsync".into());
    }
    Ok(RawFsync { per_s: stats.per_second(), hist: histogram_of(&stats.latencies), allocs })
}

struct Throughput {
    label: String,
    entries: u64,
    payload_mean_bytes: f64,
    /// Until the last entry was durable.
    elapsed: Duration,
    /// Until the last append call returned.
    appended: Duration,
    fulls: u64,
    stats: WalStats,
    recorder: Recorder,
}

fn throughput(
    dir: &Path,
    payloads: &Payloads,
    entries: u64,
    options: WalOptions,
    producer_cpu: Option<usize>,
) -> Result<Throughput, String> {
    let n = usize::try_from(entries).map_err(|_| "--entries too large for this platform")?;
    let (mut wal, _) = Wal::open(dir, options).map_err(|e| e.to_string())?;
    let wal_ref = &mut wal;
    let (recorder, fulls, started, appended) = on_producer(producer_cpu, move || {
        let mut recorder = Recorder::new();
        let mut fulls = 0u64;
        let mut failure: Option<String> = None;
        let started = Instant::now();
        recorder.run(Pacing::Max { sample_every: SAMPLE_EVERY }, n, |i| {
            // The driver cannot stop early; after a failure the remaining calls do nothing.
            if failure.is_none() {
                let index = i as u64 + 1;
                if let Err(e) = append_waiting(wal_ref, index, payloads.get(i), &mut fulls) {
                    failure = Some(e);
                }
            }
        });
        let appended = started.elapsed();
        failure.map_or(Ok((recorder, fulls, started, appended)), Err)
    })?;
    if !wal.wait_durable(entries, DRAIN_WAIT).map_err(|e| e.to_string())? {
        return Err(format!("entry {entries} not durable after {DRAIN_WAIT:?}"));
    }
    let elapsed = started.elapsed();
    let stats = wal.close().map_err(|e| e.to_string())?;
    assert_eq!(stats.appends, entries, "the WAL counted a different number of appends");
    Ok(Throughput {
        label: payloads.label.clone(),
        entries,
        payload_mean_bytes: payloads.mean_bytes(),
        elapsed,
        appended,
        fulls,
        stats,
        recorder,
    })
}

/// Latency of entries `first..total` (0-based; entry k has index k + 1), each from its
/// due time `t0 + k / rate` to the first publish whose `durable_index` lets disk mode
/// acknowledge it. `published` is the io thread's (durable_index, time) sequence.
fn ack_latencies(
    published: &[(u64, Instant)],
    t0: Instant,
    rate: u64,
    first: u64,
    total: u64,
    hist: &mut Histogram<u64>,
) -> Result<(), String> {
    if published.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err("durable_index went backwards without a truncation".into());
    }
    let mut p = 0;
    for k in first..total {
        let index = k + 1;
        // `sequenced` is at least `index` by the time anything covering it is published.
        while p < published.len() && !DurabilityMode::Disk.may_ack(index, index, published[p].0) {
            p += 1;
        }
        let Some(&(_, acked_at)) = published.get(p) else {
            return Err(format!("entry {index} was never published durable"));
        };
        let due = t0 + Duration::from_nanos(intended_offset_ns(k, rate));
        record_ns(hist, acked_at.saturating_duration_since(due).as_nanos() as u64);
    }
    Ok(())
}

/// Sleeps until `margin` before `due`, then spins to it.
fn wait_until(due: Instant, margin: Duration) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > margin {
            std::thread::sleep(left - margin);
        } else {
            std::hint::spin_loop();
        }
    }
}

struct Ack {
    rate: u64,
    measured: u64,
    hist: Histogram<u64>,
    /// How late the producer started each measured append (its own scheduling noise).
    lag: Histogram<u64>,
    fulls: u64,
    stats: WalStats,
    allocs: u64,
    sched: Option<sched::SchedCounts>,
    elapsed: Duration,
}

struct AckPlan {
    rate: u64,
    warmup_entries: u64,
    total: u64,
    margin: Duration,
}

fn ack_latency(
    dir: &Path,
    payloads: &Payloads,
    plan: &AckPlan,
    options: WalOptions,
    producer_cpu: Option<usize>,
) -> Result<Ack, String> {
    let capacity = plan.total as usize + PUBLISH_SLACK;
    let published = Arc::new(Mutex::new(Vec::<(u64, Instant)>::with_capacity(capacity)));
    let dropped = Arc::new(AtomicU64::new(0));
    let (sink, sink_dropped) = (Arc::clone(&published), Arc::clone(&dropped));
    let on_durable = Arc::new(move |index: u64| {
        let at = Instant::now();
        // Never grows the vector (the io thread must not allocate per batch); a full
        // vector is reported as an error after the run.
        match sink.lock() {
            Ok(mut v) if v.len() < v.capacity() => v.push((index, at)),
            _ => {
                sink_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let options = WalOptions { on_durable: Some(on_durable), ..options };
    let (mut wal, _) = Wal::open(dir, options).map_err(|e| e.to_string())?;
    let wal_ref = &mut wal;
    let (t0, lag, fulls, sched, allocs_before) = on_producer(producer_cpu, move || {
        let (mut lag, mut fulls) = (latency_histogram(), 0u64);
        let sched_before = sched::counts();
        let allocs_before = alloc::counts();
        let t0 = Instant::now() + Duration::from_millis(10);
        for k in 0..plan.total {
            let due = t0 + Duration::from_nanos(intended_offset_ns(k, plan.rate));
            wait_until(due, plan.margin);
            if k >= plan.warmup_entries {
                record_ns(&mut lag, due.elapsed().as_nanos() as u64);
            }
            append_waiting(wal_ref, k + 1, payloads.get(k as usize), &mut fulls)?;
        }
        // The scheduler counters are per thread: read the producer's own before leaving it.
        let sched = match (sched_before, sched::counts()) {
            (Some(before), Some(after)) => Some(after.since(&before)),
            _ => None,
        };
        Ok((t0, lag, fulls, sched, allocs_before))
    })?;
    if !wal.wait_durable(plan.total, DRAIN_WAIT).map_err(|e| e.to_string())? {
        return Err(format!("entry {} not durable after {DRAIN_WAIT:?}", plan.total));
    }
    let elapsed = t0.elapsed();
    let allocs = alloc::counts().since(&allocs_before).allocs;
    let stats = wal.close().map_err(|e| e.to_string())?;
    if dropped.load(Ordering::Relaxed) > 0 {
        return Err(format!(
            "{} publishes did not fit the record",
            dropped.load(Ordering::Relaxed)
        ));
    }
    let published = std::mem::take(&mut *published.lock().map_err(|_| "publish record poisoned")?);
    let mut hist = latency_histogram();
    ack_latencies(&published, t0, plan.rate, plan.warmup_entries, plan.total, &mut hist)?;
    Ok(Ack {
        rate: plan.rate,
        measured: plan.total - plan.warmup_entries,
        hist,
        lag,
        fulls,
        stats,
        allocs,
        sched,
        elapsed,
    })
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / (b.max(1)) as f64
}

/// Collects what the run writes: summary records, .hgrm files, SVG series.
struct Outputs {
    summaries: Vec<Summary>,
    series: Vec<plot::Series>,
}

impl Outputs {
    fn add(
        &mut self,
        cli: &Cli,
        variant: &str,
        summary: Summary,
        hist: &Histogram<u64>,
    ) -> Result<(), String> {
        let path = cli.hgrm_path(variant);
        hgrm::write_file(&path, &summary.name, hist)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("  wrote {}", path.display());
        self.summaries.push(summary);
        Ok(())
    }
}

fn print_raw(title: &str, raw: &RawFsync) -> Result<(), String> {
    let p = Percentiles::of(&raw.hist);
    println!("{title}: {:.0} fsyncs/s", raw.per_s);
    write_table(&mut std::io::stdout(), "  latency per write + fdatasync:", &p)
        .map_err(|e| e.to_string())
}

fn run_throughputs(
    cli: &Cli,
    dir: &Path,
    pools: &[Payloads],
    raw: &RawFsync,
    out: &mut Outputs,
) -> Result<(), String> {
    for payloads in pools {
        let entry_bytes = ENTRY_HEADER_BYTES as f64 + payloads.mean_bytes();
        let entries =
            cli.entries.min((cli.run_bytes_max as f64 / entry_bytes).floor() as u64).max(1);
        let log_dir = dir.join(format!("throughput-{}", payloads.label));
        let t = throughput(&log_dir, payloads, entries, cli.wal_options(), cli.producer_cpu)?;
        std::fs::remove_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
        print_throughput(&t, raw);
        let name = format!("wal-bench/append-{}", t.label);
        let per_s = t.entries as f64 / t.elapsed.as_secs_f64();
        let summary = Summary::new(
            &name,
            t.entries,
            per_s,
            &t.recorder.percentiles(),
            t.recorder.allocs_per_op(),
        );
        out.add(cli, &format!("append-{}", t.label), summary, t.recorder.histogram())?;
    }
    Ok(())
}

fn print_throughput(t: &Throughput, raw: &RawFsync) {
    let secs = t.elapsed.as_secs_f64();
    let per_s = t.entries as f64 / secs;
    let bytes = t.entries as f64 * (ENTRY_HEADER_BYTES as f64 + t.payload_mean_bytes);
    println!(
        "append, disk mode with group commit [{}]: {} entries of {:.1} B payload ({:.1} B with header), {:.1} MB in {secs:.3} s (appends returned at {:.3} s)",
        t.label,
        t.entries,
        t.payload_mean_bytes,
        ENTRY_HEADER_BYTES as f64 + t.payload_mean_bytes,
        bytes / 1e6,
        t.appended.as_secs_f64()
    );
    println!(
        "  {:.0} entries/s, {:.1} MB/s of entries ({:.1} MB/s written incl. segment headers); {} data fsyncs (+{} file/dir syncs for {} new segments): {:.0} entries per fsync (largest batch {}); queue full {} times",
        per_s,
        bytes / 1e6 / secs,
        t.stats.bytes_written as f64 / 1e6 / secs,
        t.stats.batches,
        t.stats.fsyncs.saturating_sub(t.stats.batches),
        t.stats.segments_created,
        t.entries as f64 / t.stats.batches.max(1) as f64,
        t.stats.batch_entries_max,
        t.fulls
    );
    println!(
        "  group-commit amortisation: {per_s:.0} entries/s / {:.0} raw fsyncs/s = {:.0}x",
        raw.per_s,
        per_s / raw.per_s
    );
    println!("  {}", sched::describe(t.recorder.sched(), t.recorder.elapsed()));
    let p = t.recorder.percentiles();
    println!(
        "  append call (1 in {SAMPLE_EVERY} timed, queue-full waits included): p50 {}, p99 {}, p99.9 {}, max {}; {:.4} allocations per entry (process-wide)",
        format_ns(p.p50_ns),
        format_ns(p.p99_ns),
        format_ns(p.p999_ns),
        format_ns(p.max_ns),
        t.recorder.allocs_per_op()
    );
}

fn run_acks(
    cli: &Cli,
    dir: &Path,
    payloads: &Payloads,
    raw: &RawFsync,
    out: &mut Outputs,
) -> Result<(), String> {
    let write_bytes = ENTRY_HEADER_BYTES + payloads.mean_bytes().round() as usize;
    for &rate in &cli.rate {
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        let paced = on_producer(cli.producer_cpu, || {
            raw_fsync(dir, write_bytes, cli.ack_seconds, interval)
        })?;
        print_raw(
            &format!("raw fsync paced at {rate}/s (sleeping between, {write_bytes} B)"),
            &paced,
        )?;
        let summary = Summary::new(
            &format!("wal-bench/raw-fsync-paced-{rate}"),
            paced.hist.len(),
            paced.per_s,
            &Percentiles::of(&paced.hist),
            ratio(paced.allocs, paced.hist.len()),
        );
        out.add(cli, &format!("raw-fsync-paced-{rate}"), summary, &paced.hist)?;
        out.series
            .push(plot::Series::from_histogram(&format!("raw fsync paced {rate}/s"), &paced.hist));

        let plan = AckPlan {
            rate,
            warmup_entries: ack_entries(rate, cli.ack_warmup_seconds),
            total: ack_entries(rate, cli.ack_warmup_seconds + cli.ack_seconds),
            margin: Duration::from_micros(cli.spin_margin_us),
        };
        let log_dir = dir.join(format!("ack-{rate}"));
        let ack = ack_latency(&log_dir, payloads, &plan, cli.wal_options(), cli.producer_cpu)?;
        std::fs::remove_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
        print_ack(cli, &ack, raw, &paced)?;
        let name = format!("wal-bench/ack-open-{rate}");
        let p = Percentiles::of(&ack.hist);
        // The achieved rate over the whole run (warm-up included), which is the offered
        // rate unless the producer fell behind.
        let per_s = plan.total as f64 / ack.elapsed.as_secs_f64();
        let summary = Summary::new(&name, ack.measured, per_s, &p, ratio(ack.allocs, plan.total));
        out.add(cli, &format!("ack-open-{rate}"), summary, &ack.hist)?;
        out.series
            .push(plot::Series::from_histogram(&format!("disk-mode ack {rate}/s"), &ack.hist));
    }
    Ok(())
}

fn print_ack(cli: &Cli, ack: &Ack, raw: &RawFsync, paced: &RawFsync) -> Result<(), String> {
    let p = Percentiles::of(&ack.hist);
    let raw_p = Percentiles::of(&raw.hist);
    let paced_p = Percentiles::of(&paced.hist);
    println!(
        "disk-mode ack, open loop at {}/s for {} s after {} s of warm-up ({} entries measured; latency = durable_index publish - due time):",
        ack.rate, cli.ack_seconds, cli.ack_warmup_seconds, ack.measured
    );
    write_table(&mut std::io::stdout(), "  ack latency:", &p).map_err(|e| e.to_string())?;
    let lag = Percentiles::of(&ack.lag);
    println!(
        "  producer start lag behind schedule: p50 {}, p99 {}, max {} (sleep + spin margin {} us; included in the latency above)",
        format_ns(lag.p50_ns),
        format_ns(lag.p99_ns),
        format_ns(lag.max_ns),
        cli.spin_margin_us
    );
    println!(
        "  {} data fsyncs for {} entries ({:.2} entries per fsync); queue full {} times; {} allocations (process-wide)",
        ack.stats.batches,
        ack.stats.appends,
        ack.stats.appends as f64 / ack.stats.batches.max(1) as f64,
        ack.fulls,
        ack.allocs
    );
    println!("  {}", sched::describe(ack.sched, ack.elapsed));
    let over_p50 = ratio(p.p99_ns, raw_p.p50_ns);
    let over_p99 = ratio(p.p99_ns, raw_p.p99_ns);
    let over_paced = ratio(p.p99_ns, paced_p.p99_ns);
    println!(
        "  target: disk-mode ack p99 within {TARGET_ACK_OVER_FSYNC}x of one fsync: p99 {} / raw fsync p50 {} = {over_p50:.2}x ({}); / raw fsync p99 {} = {over_p99:.2}x ({}); / paced raw fsync p99 {} = {over_paced:.2}x ({})",
        format_ns(p.p99_ns),
        format_ns(raw_p.p50_ns),
        met(over_p50 <= TARGET_ACK_OVER_FSYNC),
        format_ns(raw_p.p99_ns),
        met(over_p99 <= TARGET_ACK_OVER_FSYNC),
        format_ns(paced_p.p99_ns),
        met(over_paced <= TARGET_ACK_OVER_FSYNC),
    );
    Ok(())
}

fn run(cli: &Cli) -> Result<(), String> {
    cli.check()?;
    alloc::require_installed()?;
    bourse_replication::check_io_uring().map_err(|e| e.to_string())?;
    let scratch = scratch::Scratch::create(cli.dir.as_deref(), "bourse-wal-bench-", cli.keep)?;
    println!("wal-bench: {}", scratch::describe_filesystem(scratch.path()));
    println!("{}", sched::machine_line());
    let options = cli.wal_options();
    println!(
        "WAL: durability mode {}, queue {} KiB, segments {} MiB, io thread idle spin {} us, io cpu {:?}, producer cpu {:?}",
        DurabilityMode::Disk.as_str(),
        options.queue_bytes_max >> 10,
        options.segment_bytes_max >> 20,
        cli.spin_us,
        cli.io_cpu,
        cli.producer_cpu
    );
    let mut pools = Vec::new();
    for size in &cli.entry_bytes {
        pools.push(match *size {
            EntrySize::Commands => Payloads::commands(cli.seed)?,
            EntrySize::Fixed(n) => Payloads::fixed(n),
        });
    }
    // The raw fsync writes one entry of the first payload size: the record a single
    // command's ack waits for.
    let write_bytes = ENTRY_HEADER_BYTES + pools[0].mean_bytes().round() as usize;
    let raw = on_producer(cli.producer_cpu, || {
        raw_fsync(scratch.path(), write_bytes, cli.fsync_seconds, Duration::ZERO)
    })?;
    print_raw(
        &format!(
            "raw fsync, back to back for {} s (io_uring write of {write_bytes} B appended to a file, linked to fdatasync: the WAL's path)",
            cli.fsync_seconds
        ),
        &raw,
    )?;
    let mut out = Outputs { summaries: Vec::new(), series: Vec::new() };
    let raw_summary = Summary::new(
        "wal-bench/raw-fsync",
        raw.hist.len(),
        raw.per_s,
        &Percentiles::of(&raw.hist),
        ratio(raw.allocs, raw.hist.len()),
    );
    out.add(cli, "raw-fsync", raw_summary, &raw.hist)?;
    out.series.push(plot::Series::from_histogram("raw fsync back to back", &raw.hist));
    if !cli.no_throughput {
        run_throughputs(cli, scratch.path(), &pools, &raw, &mut out)?;
    }
    if !cli.no_ack {
        run_acks(cli, scratch.path(), &pools[0], &raw, &mut out)?;
    }
    write_outputs(cli, &out)?;
    println!("{}", scratch.end_line());
    Ok(())
}

fn write_outputs(cli: &Cli, out: &Outputs) -> Result<(), String> {
    if let Some(path) = &cli.json {
        wrote(path, report::write_json_array(path, &out.summaries))?;
    }
    if let Some(path) = &cli.svg {
        let title = "wal-bench: raw fsync and disk-mode ack latency";
        wrote(path, plot::write_svg(path, title, &out.series))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    bourse_perf::cli::exit_code("wal-bench", run(&Cli::parse()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_sizes_parse_with_bounds() {
        assert_eq!(parse_entry_size("commands"), Ok(EntrySize::Commands));
        assert_eq!(parse_entry_size("1024"), Ok(EntrySize::Fixed(1024)));
        assert!(parse_entry_size("0").is_err());
        assert!(parse_entry_size("1048577").is_err());
        assert!(parse_entry_size("-1").is_err());
        let cli = Cli::try_parse_from(["wal-bench"]).unwrap();
        assert_eq!(cli.entry_bytes, vec![EntrySize::Commands, EntrySize::Fixed(1024)]);
        assert_eq!(cli.rate, vec![2000]);
        assert!(cli.check().is_ok());
        let too_many = Cli::try_parse_from(["wal-bench", "--rate", "1,2,3,4"]).unwrap();
        assert!(too_many.check().is_err());
        let too_long =
            Cli::try_parse_from(["wal-bench", "--rate", "1000000", "--ack-seconds", "60"]).unwrap();
        assert!(too_long.check().is_err());
        assert!(Cli::try_parse_from(["wal-bench", "--fsync-seconds", "0"])
            .unwrap()
            .check()
            .is_err());
    }

    #[test]
    fn pinning_checks_the_cpu_set() {
        // In a thread of its own, so the test harness's threads stay unpinned.
        let first = core_affinity::get_core_ids().unwrap()[0].id;
        std::thread::spawn(move || {
            pin_current_thread(first).unwrap();
            assert!(pin_current_thread(1 << 20).is_err());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn payload_pools_cycle() {
        let fixed = Payloads::fixed(10);
        assert_eq!(fixed.get(0).len(), 10);
        assert_eq!(fixed.get(12345), fixed.get(0));
        assert_eq!(fixed.label, "10B");
        let commands = Payloads::commands(3).unwrap();
        assert_eq!(commands.ends.len(), POOL_ENTRIES);
        let total: usize = (0..POOL_ENTRIES).map(|i| commands.get(i).len()).sum();
        assert_eq!(total, commands.bytes.len());
        assert_eq!(commands.get(POOL_ENTRIES + 5), commands.get(5));
        // Every payload is a real command entry.
        for i in (0..POOL_ENTRIES).step_by(997) {
            match bourse_replication::decode_command_payload(commands.get(i)).unwrap() {
                bourse_replication::CommandPayload::Command { command_bytes, .. } => {
                    bourse_engine::Command::decode(command_bytes).unwrap();
                }
                bourse_replication::CommandPayload::NoOp => panic!("payload {i} is empty"),
            }
        }
    }

    #[test]
    fn ack_latency_is_measured_from_the_due_time_to_the_covering_publish() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Rate 1000/s: entry k is due at k ms. Entries 1-2 published at 3 ms, 3-5 at 9 ms.
        let published = [(2, t0 + ms(3)), (5, t0 + ms(9))];
        let mut hist = latency_histogram();
        ack_latencies(&published, t0, 1_000, 0, 5, &mut hist).unwrap();
        let mut want = [3_000_000u64, 2_000_000, 7_000_000, 6_000_000, 5_000_000];
        want.sort_unstable();
        let got: Vec<u64> = hist
            .iter_recorded()
            .flat_map(|v| std::iter::repeat_n(v.value_iterated_to(), v.count_at_value() as usize))
            .collect();
        assert_eq!(got.len(), 5);
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w as f64).abs() <= w as f64 * 0.001, "{got:?}");
        }
        // Skipping the warm-up entries records only the rest.
        let mut tail = latency_histogram();
        ack_latencies(&published, t0, 1_000, 3, 5, &mut tail).unwrap();
        assert_eq!(tail.len(), 2);
        // An entry never published durable is an error, not a silent gap.
        assert!(ack_latencies(&published, t0, 1_000, 0, 6, &mut latency_histogram()).is_err());
        let backwards = [(5, t0 + ms(3)), (2, t0 + ms(9))];
        assert!(ack_latencies(&backwards, t0, 1_000, 0, 2, &mut latency_histogram()).is_err());
    }

    #[test]
    fn small_runs_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let payloads = Payloads::fixed(64);
        let t = throughput(&dir.path().join("t"), &payloads, 20_000, WalOptions::default(), None)
            .unwrap();
        assert_eq!(t.stats.appends, 20_000);
        assert!(t.stats.batches >= 1 && t.stats.batches <= 20_000);
        assert_eq!(t.stats.bytes_written, 20_000 * (32 + 64) + 32 * t.stats.segments_created);
        let plan = AckPlan {
            rate: 2_000,
            warmup_entries: 100,
            total: 400,
            margin: Duration::from_micros(100),
        };
        let ack =
            ack_latency(&dir.path().join("a"), &payloads, &plan, WalOptions::default(), Some(0))
                .unwrap();
        assert_eq!(ack.hist.len(), 300);
        assert_eq!(ack.stats.appends, 400);
        // An ack waits for at least one write + fdatasync, never less than ~1 us.
        assert!(ack.hist.min() >= 1_000, "min {}", ack.hist.min());
    }
}
