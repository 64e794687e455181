//! bourse-load: market-maker sessions against a bourse server over TCP, open loop at a
//! target order rate (coordinated omission corrected) or pipelined at maximum rate, with a
//! TCP echo baseline measured the same way in the same run.
//!
//! ```sh
//! cargo build --release -p bourse-net -p bourse-perf
//! ./target/release/bourse-load --spawn-server target/release/bourse \
//!     --spawn-echo target/release/tcp-echo --rate 100000 --sessions 4 --duration 10
//! ```
//!
//! One monoio io_uring thread (pinned with `--cpu`) runs every session: demo keys
//! 1001..=1016, each acting for the account of the same number. Results: percentile
//! tables of order-to-ack, order-to-fill (crossing orders' first fill) and echo round trip,
//! the ratios against the echo, throughput achieved vs offered, the mix and rejects by
//! reason; `.hgrm` files and an SVG percentile plot in `perf/results/` (or `--out-dir`);
//! `--json` writes one summary record per histogram. A run in which the server misses
//! answers, or rejects more than `--reject-pct-max` of the requests, fails (exit 1).
//! perf/README.md ("bourse-load / tcp-echo") says what every number means.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bourse_net::config::Config;
use bourse_net::server::BackgroundServer;
use bourse_perf::alloc::{self, CountingAlloc};
use bourse_perf::cli::results_dir;
use bourse_perf::report::{hex, write_json_array, wrote};
use bourse_perf::sched;
use clap::Parser;

use bourse_perf::load;
use bourse_perf::load::echo::{self, EchoOutcome, EchoPlan};
use bourse_perf::load::maker::{demo_market, MakerConfig, Mix};
use bourse_perf::load::orders::{self, OrderOutcome, OrderPlan, Pace};
use bourse_perf::load::report;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Largest `--rate` / `--echo-rate`.
const RATE_MAX: u64 = 10_000_000;
/// Largest `--duration`, and largest `--warmup`, in seconds.
const DURATION_S_MAX: f64 = 3_600.0;
const WARMUP_S_MAX: f64 = 600.0;

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "bourse-load",
    about = "Market-maker load on a bourse server, with a TCP echo baseline"
)]
struct Cli {
    /// A running bourse server.
    #[arg(long, default_value = "127.0.0.1:7400")]
    server: SocketAddr,
    /// Start this `bourse` binary on a free port first, stop it (SIGTERM) at the end.
    #[arg(long, conflicts_with = "in_process")]
    spawn_server: Option<PathBuf>,
    /// `--config` for the spawned server (default: its built-in demo exchange, which pins
    /// the net core to cpu 0 and the shard core to cpu 1).
    #[arg(long, requires = "spawn_server")]
    server_config: Option<PathBuf>,
    /// Run the demo server inside this process (pinned as the demo config says), so the
    /// allocation counts include the server's.
    #[arg(long)]
    in_process: bool,
    /// The sessions speak TLS (the server's `[server.tls]` port); see --ca-file.
    #[arg(long)]
    tls: bool,
    /// With --tls: trust the CA certificates in this PEM file [default: the system's].
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca_file: Option<PathBuf>,
    /// With --tls: the name the server's certificate must carry [default: the server's IP
    /// address].
    #[arg(long, value_name = "NAME", requires = "tls")]
    tls_name: Option<String>,
    /// With --tls and --in-process: the in-process server's certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "in_process", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// With --tls-cert: its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A running TCP echo server (`tcp-echo server`) to measure the bare round trip on.
    #[arg(long, conflicts_with = "spawn_echo")]
    echo: Option<SocketAddr>,
    /// Start this `tcp-echo` binary on a free port first.
    #[arg(long)]
    spawn_echo: Option<PathBuf>,
    /// CPU the spawned echo server is pinned to (the demo net core's); -1: not pinned.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    echo_cpu: i64,
    /// Echo messages per second [default: --rate].
    #[arg(long)]
    echo_rate: Option<u64>,
    /// Echo connections [default: --sessions].
    #[arg(long)]
    echo_connections: Option<usize>,
    /// Bytes per echo message.
    #[arg(long, default_value_t = 64)]
    echo_size: usize,
    /// Measure the echo only (no order phase).
    #[arg(long)]
    echo_only: bool,
    /// Market-maker sessions (demo keys 1001..).
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// Markets to trade (demo ids: 1 BTC-USDT, 2 ETH-USDT).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    markets: Vec<u32>,
    /// Offered requests per second, all sessions together (open loop).
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Maximum throughput instead: each session keeps --window requests in flight.
    #[arg(long)]
    max: bool,
    /// Requests in flight per session in --max mode.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (same rate; not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Quote slots per market and session [default: 8; in --max mode at least --window].
    #[arg(long)]
    quotes: Option<usize>,
    /// Quotes rest 1..=N ticks from the mid; crossing orders go up to N/2 ticks through it.
    #[arg(long, default_value_t = 10)]
    depth_ticks: u64,
    /// Largest quote size, lots.
    #[arg(long, default_value_t = 5)]
    quote_lots_max: u64,
    /// Largest crossing order size, lots.
    #[arg(long, default_value_t = 3)]
    cross_lots_max: u64,
    /// Percent of requests that amend a resting quote.
    #[arg(long, default_value_t = Mix::default().amend_pct)]
    amend_pct: u64,
    /// Percent of requests that cancel a resting quote.
    #[arg(long, default_value_t = Mix::default().cancel_pct)]
    cancel_pct: u64,
    /// Percent of requests that are crossing orders (the rest are new quotes).
    #[arg(long, default_value_t = Mix::default().cross_pct)]
    cross_pct: u64,
    /// Percent of crossing orders that are GTC (the rest are IOC).
    #[arg(long, default_value_t = Mix::default().cross_gtc_pct)]
    cross_gtc_pct: u64,
    /// Workload seed (each session derives its own).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Pin the load generator's thread to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Write the summary records (a JSON array) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Directory of the .hgrm files and the plot [default: perf/results].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// The SVG plot [default: <out-dir>/<name>.svg].
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Fail the run if more than this percent of the measured requests were rejected.
    #[arg(long, default_value_t = 5.0)]
    reject_pct_max: f64,
}

/// Everything the flags ask for, checked.
struct Setup {
    orders: Option<OrderPlanTemplate>,
    echo: Option<EchoPlanTemplate>,
    label: String,
}

/// An order plan waiting for the server's address.
struct OrderPlanTemplate {
    sessions: usize,
    maker: MakerConfig,
    seed: u64,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
}

struct EchoPlanTemplate {
    connections: usize,
    size: usize,
    rate_per_s: u64,
    warmup: Duration,
    duration: Duration,
}

fn seconds(name: &str, value: f64, min_exclusive: bool, max: f64) -> Result<Duration, String> {
    let low_ok = if min_exclusive { value > 0.0 } else { value >= 0.0 };
    if !(low_ok && value <= max) {
        return Err(format!(
            "--{name} must be in {}0, {max}] seconds",
            if min_exclusive { "(" } else { "[" }
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn setup(cli: &Cli) -> Result<Setup, String> {
    let duration = seconds("duration", cli.duration, true, DURATION_S_MAX)?;
    let warmup = seconds("warmup", cli.warmup, false, WARMUP_S_MAX)?;
    if !(1..=orders::SESSIONS_MAX).contains(&cli.sessions) {
        return Err(format!("--sessions must be in 1..={}", orders::SESSIONS_MAX));
    }
    if !(1..=RATE_MAX).contains(&cli.rate) {
        return Err(format!("--rate must be in 1..={RATE_MAX}"));
    }
    if !(1..=orders::WINDOW_MAX).contains(&cli.window) {
        return Err(format!("--window must be in 1..={}", orders::WINDOW_MAX));
    }
    if !(0.0..=100.0).contains(&cli.reject_pct_max) {
        return Err("--reject-pct-max must be in [0, 100]".into());
    }
    let label = if cli.max { "max".to_string() } else { format!("open-{}", cli.rate) };
    let orders = if cli.echo_only {
        None
    } else {
        let mut markets = Vec::new();
        for &id in &cli.markets {
            let market = demo_market(id)
                .ok_or(format!("--markets: {id} is not a demo market (1 BTC-USDT, 2 ETH-USDT)"))?;
            if markets.contains(&market) {
                return Err(format!("--markets: {id} given twice"));
            }
            markets.push(market);
        }
        let pace = if cli.max {
            Pace::Max { window: cli.window }
        } else {
            Pace::Open { rate_per_s: cli.rate }
        };
        let quotes_default = if cli.max { cli.window.max(8) } else { 8 };
        let maker = MakerConfig {
            markets,
            quotes_per_market: cli.quotes.unwrap_or(quotes_default),
            depth_ticks: cli.depth_ticks,
            quote_lots_max: cli.quote_lots_max,
            cross_lots_max: cli.cross_lots_max,
            mix: Mix {
                amend_pct: cli.amend_pct,
                cancel_pct: cli.cancel_pct,
                cross_pct: cli.cross_pct,
                cross_gtc_pct: cli.cross_gtc_pct,
            },
        };
        maker.validate()?;
        Some(OrderPlanTemplate {
            sessions: cli.sessions,
            maker,
            seed: cli.seed,
            pace,
            warmup,
            duration,
        })
    };
    let echo = if cli.echo.is_some() || cli.spawn_echo.is_some() {
        let connections = cli.echo_connections.unwrap_or(cli.sessions);
        if !(1..=echo::CONNECTIONS_MAX).contains(&connections) {
            return Err(format!("--echo-connections must be in 1..={}", echo::CONNECTIONS_MAX));
        }
        if !(echo::SIZE_MIN..=echo::SIZE_MAX).contains(&cli.echo_size) {
            return Err(format!("--echo-size must be in {}..={}", echo::SIZE_MIN, echo::SIZE_MAX));
        }
        let rate_per_s = cli.echo_rate.unwrap_or(cli.rate);
        if !(1..=RATE_MAX).contains(&rate_per_s) {
            return Err(format!("--echo-rate must be in 1..={RATE_MAX}"));
        }
        Some(EchoPlanTemplate { connections, size: cli.echo_size, rate_per_s, warmup, duration })
    } else if cli.echo_only {
        return Err("--echo-only needs --echo or --spawn-echo".into());
    } else {
        None
    };
    Ok(Setup { orders, echo, label })
}

/// The demo server on this process's threads.
/// The demo server in this process (pinned as the demo config says), so the counting
/// allocator sees its allocations.
struct InProcess(BackgroundServer);

fn start_in_process(tls: Option<bourse_net::tls::TlsFiles>) -> Result<InProcess, String> {
    let mut config = Config::demo();
    config.server.listen = "127.0.0.1:0".parse().expect("address");
    config.server.tls = tls;
    BackgroundServer::start(config)
        .map(InProcess)
        .map_err(|e| format!("the in-process server did not start: {e}"))
}

impl InProcess {
    fn stop(self) -> Result<String, String> {
        let report = self.0.stop().map_err(|e| format!("in-process server: {e}"))?;
        report.engine.check_invariants().map_err(|e| format!("engine invariants: {e}"))?;
        let hash = hex(&report.engine.state_hash());
        Ok(format!(
            "in-process server stopped at log index {}, invariants hold, state hash {hash}",
            report.engine.last_index()
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bourse-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; Ok(false) when the run completed but is invalid.
fn run(cli: &Cli) -> Result<bool, String> {
    let setup = setup(cli)?;
    alloc::require_installed()?;
    println!("bourse-load: {}", sched::machine_line());
    let mut in_process = None;
    let mut spawned_server = None;
    let server_addr = if setup.orders.is_none() {
        cli.server
    } else if cli.in_process {
        let tls = cli.tls_cert.clone().zip(cli.tls_key.clone());
        let tls =
            tls.map(|(cert_file, key_file)| bourse_net::tls::TlsFiles { cert_file, key_file });
        let server = start_in_process(tls)?;
        let addr = server.0.addr;
        in_process = Some(server);
        addr
    } else if let Some(path) = &cli.spawn_server {
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        if let Some(config) = &cli.server_config {
            args.push("--config".into());
            args.push(config.display().to_string());
        }
        let child = load::spawn::start("bourse", path, &args)?;
        let addr = child.addr;
        spawned_server = Some(child);
        addr
    } else {
        cli.server
    };
    let mut spawned_echo = None;
    let echo_addr = match (&cli.echo, &cli.spawn_echo) {
        (Some(addr), _) => Some(*addr),
        (None, Some(path)) => {
            let mut args = vec!["server".to_string(), "--listen".into(), "127.0.0.1:0".into()];
            if cli.echo_cpu >= 0 {
                args.push("--cpu".into());
                args.push(cli.echo_cpu.to_string());
            }
            let child = load::spawn::start("tcp-echo", path, &args)?;
            let addr = child.addr;
            spawned_echo = Some(child);
            Some(addr)
        }
        (None, None) => None,
    };

    let echo_plan = setup.echo.as_ref().zip(echo_addr).map(|(t, addr)| EchoPlan {
        addr,
        connections: t.connections,
        size: t.size,
        rate_per_s: t.rate_per_s,
        warmup: t.warmup,
        duration: t.duration,
    });
    let tls = match cli.tls {
        false => None,
        true => {
            let name = cli.tls_name.clone().unwrap_or_else(|| server_addr.ip().to_string());
            Some(bourse_net::tls::ClientTls::new(cli.ca_file.as_deref(), &name)?)
        }
    };
    let order_plan = setup.orders.as_ref().map(|t| OrderPlan {
        tls: tls.clone(),
        addr: server_addr,
        sessions: t.sessions,
        maker: t.maker.clone(),
        seed: t.seed,
        pace: t.pace,
        warmup: t.warmup,
        duration: t.duration,
    });
    describe_plans(cli, order_plan.as_ref(), echo_plan.as_ref());

    // One runtime thread: the echo phase, then the order phase.
    let mut runtime =
        load::clock::runtime(cli.cpu).map_err(|e| format!("io_uring runtime: {e}"))?;
    let outcome = runtime.block_on(async {
        let echo = match &echo_plan {
            Some(plan) => Some(echo::run(plan).await?),
            None => None,
        };
        let orders = match &order_plan {
            Some(plan) => Some(orders::run(plan).await?),
            None => None,
        };
        Ok::<_, String>((echo, orders))
    });
    drop(runtime);

    // Stop the servers whatever happened, then report.
    let mut valid = true;
    if let Some(child) = spawned_echo {
        if let Err(e) = child.stop() {
            eprintln!("bourse-load: {e}");
        }
    }
    if let Some(child) = spawned_server {
        match child.stop() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("bourse-load: the server exited with {status}");
                valid = false;
            }
            Err(e) => {
                eprintln!("bourse-load: {e}");
                valid = false;
            }
        }
    }
    if let Some(server) = in_process {
        match server.stop() {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("bourse-load: {e}");
                valid = false;
            }
        }
    }
    let (echo, orders) = outcome?;
    valid &= print_and_write(cli, &setup, orders.as_ref(), echo.as_ref())?;
    Ok(valid)
}

fn describe_plans(cli: &Cli, orders: Option<&OrderPlan>, echo: Option<&EchoPlan>) {
    let pin = cli.cpu.map_or("not pinned".to_string(), |c| format!("pinned to cpu {c}"));
    println!("bourse-load: one io_uring runtime thread ({pin}), seed {}", cli.seed);
    let transport = if cli.tls { "TLS (rustls, ring)" } else { "plaintext TCP" };
    println!("bourse-load: order sessions over {transport}");
    if let Some(e) = echo {
        println!(
            "tcp echo: {} connection(s) to {}, {} bytes, open loop at {}/s, {:?} warm-up + {:?} measured",
            e.connections, e.addr, e.size, e.rate_per_s, e.warmup, e.duration
        );
    }
    if let Some(o) = orders {
        let pace = match o.pace {
            Pace::Open { rate_per_s } => format!("open loop at {rate_per_s} requests/s"),
            Pace::Max { window } => format!("max throughput, {window} in flight per session"),
        };
        let markets: Vec<&str> = o.maker.markets.iter().map(|m| m.symbol).collect();
        let m = o.maker.mix;
        println!(
            "orders: {} session(s) to {}, {pace}, markets {}, {} quote slots per market and session, \
             depth {} ticks; mix amend {}% cancel {}% cross {}% (GTC {}% of those) quote {}%; {:?} warm-up + {:?} measured",
            o.sessions,
            o.addr,
            markets.join(","),
            o.maker.quotes_per_market,
            o.maker.depth_ticks,
            m.amend_pct,
            m.cancel_pct,
            m.cross_pct,
            m.cross_gtc_pct,
            100 - m.amend_pct - m.cancel_pct - m.cross_pct,
            o.warmup,
            o.duration
        );
    }
}

/// Prints the report and writes the files; false when the run is invalid.
fn print_and_write(
    cli: &Cli,
    setup: &Setup,
    orders: Option<&OrderOutcome>,
    echo: Option<&EchoOutcome>,
) -> Result<bool, String> {
    let mut valid = true;
    let alloc_line = |what: &str, allocs: alloc::AllocCounts, ops: u64| {
        let whose = if cli.in_process {
            "this process, in-process server included"
        } else {
            "this process (the client)"
        };
        println!(
            "allocations ({whose}) during the measured {what}: {} ({} bytes), {:.4} per {what}",
            allocs.allocs,
            allocs.bytes,
            allocs.allocs as f64 / ops.max(1) as f64
        );
    };
    if let Some(e) = echo {
        println!();
        print!("{}", report::table("tcp echo round trip (due time to echo received)", &e.rtt));
        println!(
            "tcp echo: {} measured, {} unanswered; {:.0} round trips/s",
            e.sent,
            e.unanswered,
            e.rtt.len() as f64 / e.span.as_secs_f64().max(1e-9)
        );
        print!("{}", report::pacer_text(Some(&e.pacer), e.sched, e.span));
        alloc_line("echo", e.allocs, e.rtt.len());
        if let Some(why) = &e.failure {
            eprintln!("bourse-load: echo phase failed: {why}");
            valid = false;
        }
        if e.unanswered > 0 || e.rtt.len() != e.sent {
            eprintln!("bourse-load: {} echo messages never came back", e.unanswered);
            valid = false;
        }
    }
    if let Some(o) = orders {
        let s = &o.stats;
        println!();
        print!(
            "{}",
            report::table(
                "order-to-ack (due time to first Accepted/Rejected/Amended/Done(Cancelled))",
                &s.ack
            )
        );
        print!(
            "{}",
            report::table(
                "order-to-fill (crossing order's due time to its first own Trade)",
                &s.fill
            )
        );
        print!("{}", report::split_text(s));
        println!("ack latency by request kind:");
        print!("{}", report::kinds_table(s));
        let offered = match setup.orders.as_ref().map(|t| t.pace) {
            Some(Pace::Open { rate_per_s }) => Some(rate_per_s),
            _ => None,
        };
        print!("{}", report::orders_text(o, offered));
        println!(
            "rate limit announced by the server: {}/s per session, burst {}",
            o.rate_limit.0, o.rate_limit.1
        );
        print!("{}", report::pacer_text(o.pacer.as_ref(), o.sched, o.span));
        alloc_line("request", o.allocs, s.sent_measured());
        if let Some(e) = echo {
            if offered.is_some() {
                let (text, _met) = report::ratios_text(&s.ack, &e.rtt);
                print!("{text}");
            }
        }
        if let Some(why) = &o.failure {
            eprintln!("bourse-load: order phase failed: {why}");
            valid = false;
        }
        if o.unanswered > 0 || s.overwritten > 0 {
            eprintln!(
                "bourse-load: INVALID RUN: {} requests unanswered, {} forgotten",
                o.unanswered, s.overwritten
            );
            valid = false;
        }
        if s.acked == 0 {
            eprintln!("bourse-load: INVALID RUN: no measured request was answered");
            valid = false;
        }
        if report::reject_pct(s) > cli.reject_pct_max {
            eprintln!(
                "bourse-load: INVALID RUN: {:.2}% of the requests were rejected (limit {}%): a run of rejects measures nothing",
                report::reject_pct(s),
                cli.reject_pct_max
            );
            valid = false;
        }
    }
    let dir = cli.out_dir.clone().unwrap_or_else(results_dir);
    let stem = format!("bourse-load-{}", setup.label);
    let title = match (orders, echo) {
        (Some(_), Some(_)) => format!(
            "bourse-load {}: {} session(s); tcp echo {} connection(s), {} B",
            setup.label,
            cli.sessions,
            cli.echo_connections.unwrap_or(cli.sessions),
            cli.echo_size
        ),
        (Some(_), None) => format!("bourse-load {}: {} session(s)", setup.label, cli.sessions),
        _ => format!("bourse-load tcp echo {}", setup.label),
    };
    let written = report::write_files(&dir, &stem, cli.svg.as_deref(), &title, orders, echo)
        .map_err(|e| format!("writing results: {e}"))?;
    if let Some(path) = &cli.json {
        wrote(path, write_json_array(path, &report::summaries(&setup.label, orders, echo)))?;
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    if !valid {
        eprintln!("bourse-load: the run is not valid (see above)");
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("bourse-load").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_are_checked() {
        assert!(setup(&cli(&[])).is_ok());
        assert!(setup(&cli(&["--sessions", "0"])).is_err());
        assert!(setup(&cli(&["--sessions", "17"])).is_err());
        assert!(setup(&cli(&["--rate", "0"])).is_err());
        assert!(setup(&cli(&["--duration", "0"])).is_err());
        assert!(setup(&cli(&["--duration", "NaN"])).is_err());
        assert!(setup(&cli(&["--markets", "1,3"])).is_err());
        assert!(setup(&cli(&["--markets", "1,1"])).is_err());
        assert!(setup(&cli(&["--amend-pct", "90", "--cancel-pct", "20"])).is_err());
        assert!(setup(&cli(&["--echo-only"])).is_err());
        assert!(setup(&cli(&["--echo", "127.0.0.1:9", "--echo-size", "8"])).is_err());
        assert!(
            Cli::try_parse_from(["bourse-load", "--in-process", "--spawn-server", "x"]).is_err()
        );
        let s = setup(&cli(&["--max", "--window", "100"])).unwrap();
        assert_eq!(s.label, "max");
        let orders = s.orders.unwrap();
        assert_eq!(orders.pace, Pace::Max { window: 100 });
        assert_eq!(orders.maker.quotes_per_market, 100);
        let s = setup(&cli(&["--echo", "127.0.0.1:9", "--echo-only", "--sessions", "3"])).unwrap();
        assert!(s.orders.is_none());
        assert_eq!(s.echo.unwrap().connections, 3);
    }

    /// The whole tool against an in-process server and echo server: a short open-loop run
    /// must answer every request, fill some crossing orders and reject almost nothing.
    #[test]
    fn a_short_open_loop_run_against_a_live_server() {
        let mut config = Config::demo();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.pin = false;
        config.server.ring_entries = 4096;
        let server = BackgroundServer::start(config).expect("demo exchange");
        let addr = server.addr;
        let echo_addr = load::echo_server::spawn_thread().unwrap();
        let seed = 7;
        println!("seed {seed}");
        let args = ["--sessions", "2", "--rate", "5000", "--duration", "0.4", "--warmup", "0.1"];
        let setup = setup(&cli(&args)).unwrap();
        let t = setup.orders.unwrap();
        let plan = OrderPlan {
            addr,
            sessions: t.sessions,
            maker: t.maker,
            seed,
            pace: t.pace,
            warmup: t.warmup,
            duration: t.duration,
            tls: None,
        };
        let echo_plan = EchoPlan {
            addr: echo_addr,
            connections: 2,
            size: 64,
            rate_per_s: 5_000,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
        };
        let (e, o) = load::clock::runtime(None).unwrap().block_on(async {
            (echo::run(&echo_plan).await.unwrap(), orders::run(&plan).await.unwrap())
        });
        let server_report = server.stop().unwrap();
        assert_eq!(e.failure, None);
        assert_eq!(e.rtt.len(), 2_000);
        assert_eq!(o.failure, None);
        assert_eq!(o.unanswered, 0);
        let s = &o.stats;
        assert_eq!(s.sent_measured(), 2_000, "0.4 s at 5,000/s");
        assert_eq!(s.acked, 2_000);
        assert_eq!(s.ack.len(), 2_000);
        assert!(report::reject_pct(s) < 5.0, "{:?}", s.rejects_by_reason());
        assert!(s.crosses_filled > 0, "some crossing order traded");
        assert_eq!(s.overwritten, 0);
        assert_eq!(s.unmatched, 0);
        // Every request the sessions sent reached the engine (no session rejects), after
        // the config's bootstrap commands.
        let session_rejects: u64 = s.session_rejects.iter().sum();
        assert_eq!(session_rejects, 0);
        let bootstrap = Config::demo().bootstrap.len() as u64;
        assert_eq!(server_report.engine.last_index(), bootstrap + s.sent_all);
        server_report.engine.check_invariants().unwrap();
        let (text, met) = report::ratios_text(&s.ack, &e.rtt);
        assert!(met.is_some(), "{text}");
    }
}
