//! WAL benchmark: raw fsync rate of the disk vs WAL append throughput with group commit,
//! disk-mode ack latency at a fixed arrival rate, and recovery read speed.
//!
//! ```text
//! cargo run --release -p bourse-replication --example wal_bench -- <scratch dir> \
//!     [--entries N] [--payload BYTES] [--rate PER_S] [--seconds S] [--spin-us US]
//!     [--commands] [--keep]
//! ```
//!
//! `--commands` writes real engine commands (time + `Command::encode`) so the log can be
//! fed to `bourse-log rebuild`; `--keep` leaves the logs in the scratch directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bourse_engine::{Command, OrderRef, OrderType, PlaceOrder, Side, StpMode, Symbol, TimeInForce};
use bourse_replication::bench::raw_fsync_rate;
use bourse_replication::format::ENTRY_HEADER_BYTES;
use bourse_replication::scan::{scan_log, ScanOptions};
use bourse_replication::{encode_command_payload, AppendError, Wal, WalOptions};

struct Args {
    dir: PathBuf,
    entries: u64,
    payload: usize,
    rate: u64,
    seconds: u64,
    commands: bool,
    keep: bool,
    spin_us: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: wal_bench <scratch dir> [options]")?);
    let mut parsed = Args {
        dir,
        entries: 1_000_000,
        payload: 64,
        rate: 20_000,
        seconds: 5,
        commands: false,
        keep: false,
        spin_us: 0,
    };
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next().and_then(|v| v.parse::<u64>().ok()).ok_or(format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--entries" => parsed.entries = value()?,
            "--payload" => parsed.payload = value()? as usize,
            "--rate" => parsed.rate = value()?.max(1),
            "--seconds" => parsed.seconds = value()?,
            "--commands" => parsed.commands = true,
            "--keep" => parsed.keep = true,
            "--spin-us" => parsed.spin_us = value()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(parsed)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Deterministic engine commands: setup, then an order flow.
struct CommandSource {
    state: u64,
    index: u64,
    bytes: Vec<u8>,
}

impl CommandSource {
    fn next(&mut self, out: &mut Vec<u8>) {
        self.index += 1;
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let r = self.state;
        let symbol = |s: &str| Symbol::new(s).expect("symbol");
        let command = match self.index {
            1 => Command::CreateAsset { asset: 1, scale: 8, symbol: symbol("BTC") },
            2 => Command::CreateAsset { asset: 2, scale: 6, symbol: symbol("USDT") },
            3 => Command::CreateMarket(bourse_engine::MarketSpec {
                market: 1,
                symbol: symbol("BTC-USDT"),
                base: 1,
                quote: 2,
                tick_size: 10_000,
                lot_size: 10_000,
                min_notional: 1_000_000,
                maker_fee_bps: 2,
                taker_fee_bps: 5,
            }),
            i @ 4..=35 => {
                let account = (i - 4) / 2 + 1;
                let (asset, amount) =
                    if i % 2 == 0 { (1, 1_000_000 * 100_000_000) } else { (2, 1u64 << 60) };
                Command::Deposit { tx: i, account, asset, amount }
            }
            _ if r % 8 == 0 => Command::MassCancel { account: 1 + r % 16, market: None },
            _ if r % 8 == 1 => Command::Cancel {
                account: 1 + r % 16,
                order: OrderRef::Id(self.index - 1 - r % 64),
            },
            _ => Command::Place(PlaceOrder {
                account: 1 + (r >> 8) % 16,
                market: 1,
                client_order_id: 0,
                side: if (r >> 16) % 2 == 0 { Side::Buy } else { Side::Sell },
                order_type: OrderType::Limit,
                tif: TimeInForce::Gtc,
                post_only: false,
                price: (50_000 - 50 + (r >> 20) % 100) * 1_000_000,
                qty: (1 + (r >> 32) % 20) * 10_000,
                quote_budget: 0,
                stp: StpMode::CancelTaker,
            }),
        };
        self.bytes.clear();
        command.encode(&mut self.bytes);
        out.clear();
        encode_command_payload(out, 1_700_000_000_000_000_000 + self.index * 1_000, &self.bytes);
    }
}

fn options() -> WalOptions {
    WalOptions { log: bourse_replication::wal::log_none, ..WalOptions::default() }
}

/// Appends as fast as the WAL takes them (back-pressure: retry on Full).
fn throughput(dir: &Path, args: &Args) -> Result<(), String> {
    let (mut wal, _) = Wal::open(dir, options()).map_err(|e| e.to_string())?;
    let mut source = CommandSource { state: 0x9e37_79b9_7f4a_7c15, index: 0, bytes: Vec::new() };
    let mut payload = vec![0x42u8; args.payload];
    let mut bytes = 0u64;
    let mut fulls = 0u64;
    let started = Instant::now();
    for index in 1..=args.entries {
        if args.commands {
            source.next(&mut payload);
        }
        loop {
            match wal.append(1, index, &payload) {
                Ok(()) => break,
                Err(AppendError::Full { .. }) => {
                    fulls += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        bytes += (ENTRY_HEADER_BYTES + payload.len()) as u64;
    }
    let appended = started.elapsed();
    wal.wait_durable(args.entries, Duration::from_secs(600)).map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let stats = wal.close().map_err(|e| e.to_string())?;
    let secs = elapsed.as_secs_f64();
    println!(
        "wal append (disk mode, group commit): {} entries, {:.1} MB in {secs:.3} s (appends done at {:.3} s): \
         {:.0} entries/s, {:.1} MB/s; {} fsync batches, {:.0} entries per fsync (max {}), {} queue-full retries",
        args.entries,
        bytes as f64 / 1e6,
        appended.as_secs_f64(),
        args.entries as f64 / secs,
        bytes as f64 / 1e6 / secs,
        stats.batches,
        args.entries as f64 / stats.batches.max(1) as f64,
        stats.batch_entries_max,
        fulls
    );
    Ok(())
}

/// Paced at `rate` entries/s: latency from each append call to the publish of a durable
/// index covering it (what a disk-mode ack waits for).
fn ack_latency(dir: &Path, args: &Args) -> Result<Vec<Duration>, String> {
    let published: Arc<Mutex<Vec<(u64, Instant)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let sink = Arc::clone(&published);
    let wal_options = WalOptions {
        on_durable: Some(Arc::new(move |index| {
            if let Ok(mut v) = sink.lock() {
                v.push((index, Instant::now()));
            }
        })),
        idle_spin: Duration::from_micros(args.spin_us),
        ..options()
    };
    let (mut wal, _) = Wal::open(dir, wal_options).map_err(|e| e.to_string())?;
    let total = args.rate * args.seconds;
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let payload = vec![0x17u8; args.payload];
    let mut scheduled = Vec::with_capacity(total as usize);
    let start = Instant::now() + Duration::from_millis(10);
    for index in 1..=total {
        // Sleep, not spin: on a small shared machine a spinning producer would take the
        // io thread's core and the numbers would measure the scheduler.
        let due = start + interval * (index - 1) as u32;
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        let appended_at = Instant::now();
        wal.append(1, index, &payload).map_err(|e| e.to_string())?;
        scheduled.push(appended_at);
    }
    wal.wait_durable(total, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    wal.close().map_err(|e| e.to_string())?;
    let published = published.lock().map_err(|_| "poisoned")?.clone();
    let mut latencies = Vec::with_capacity(scheduled.len());
    let mut p = 0;
    for (k, due) in scheduled.iter().enumerate() {
        let index = k as u64 + 1;
        while published[p].0 < index {
            p += 1;
        }
        latencies.push(published[p].1.saturating_duration_since(*due));
    }
    latencies.sort_unstable();
    Ok(latencies)
}

fn recovery_read(dir: &Path) -> Result<(), String> {
    let started = Instant::now();
    let mut payload_bytes = 0u64;
    let report = scan_log(
        dir,
        &ScanOptions::default(),
        &mut |e| {
            payload_bytes += e.payload.len() as u64;
            Ok(())
        },
        &mut |p| eprintln!("  {p}"),
    )
    .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "recovery read (verify every crc, visit every entry): {} entries, {:.1} MB in {secs:.3} s: {:.0} entries/s, {:.0} MB/s",
        report.entries_read,
        report.bytes_read as f64 / 1e6,
        report.entries_read as f64 / secs,
        report.bytes_read as f64 / 1e6 / secs
    );
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir).map_err(|e| e.to_string())?;
    let write_bytes = ENTRY_HEADER_BYTES + args.payload;
    let raw = raw_fsync_rate(&args.dir, write_bytes, Duration::from_secs(3), Duration::ZERO)
        .map_err(|e| e.to_string())?;
    println!(
        "raw fsync (io_uring write of {write_bytes} B + fdatasync, appending): {:.0} fsyncs/s, p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        raw.per_second(),
        us(raw.quantile(0.5)),
        us(raw.quantile(0.99)),
        us(raw.quantile(1.0))
    );
    let log_dir = args.dir.join("throughput-log");
    let _ = std::fs::remove_dir_all(&log_dir);
    throughput(&log_dir, args)?;
    recovery_read(&log_dir)?;
    let ack_dir = args.dir.join("ack-log");
    let _ = std::fs::remove_dir_all(&ack_dir);
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let paced = raw_fsync_rate(&args.dir, write_bytes, Duration::from_secs(args.seconds), interval)
        .map_err(|e| e.to_string())?;
    println!(
        "raw fsync paced at {} per second (sleeping between, like the WAL producer): \
         p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        args.rate,
        us(paced.quantile(0.5)),
        us(paced.quantile(0.99)),
        us(paced.quantile(1.0))
    );
    let latencies = ack_latency(&ack_dir, args)?;
    let p99 = quantile(&latencies, 0.99);
    println!(
        "disk-mode ack latency at {} entries/s for {} s: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us; \
         p99 / raw fsync p50 = {:.2}, p99 / paced raw fsync p99 = {:.2} (io thread idle spin {} us)",
        args.rate,
        args.seconds,
        us(quantile(&latencies, 0.5)),
        us(p99),
        us(quantile(&latencies, 0.999)),
        us(quantile(&latencies, 1.0)),
        p99.as_secs_f64() / raw.quantile(0.5).as_secs_f64().max(1e-9),
        p99.as_secs_f64() / paced.quantile(0.99).as_secs_f64().max(1e-9),
        args.spin_us
    );
    if !args.keep {
        let _ = std::fs::remove_dir_all(&log_dir);
        let _ = std::fs::remove_dir_all(&ack_dir);
    }
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("wal_bench: {message}");
            std::process::exit(2);
        }
    };
    if let Err(message) = run(&args) {
        eprintln!("wal_bench: {message}");
        std::process::exit(1);
    }
}
