//! engine-bench: `Exchange::apply` on exchange-core's published order mix.
//!
//! One market, 1,000 accounts, about 1,000 resting orders spread over about 750 price
//! levels; commands are 9% GTC limit orders, 3% IOC, 6% cancels and 82% amends (an amend
//! stands in for exchange-core's "move": two thirds move the price by 1-3 ticks, one third
//! change the quantity). The workload is generated from `--seed` against a *shadow* engine
//! (so the generator knows order ids and can keep the book near its target size), recorded
//! in chunks, and replayed under the driver's clock on a *timed* engine restored from the
//! shadow's snapshot, so generation is never measured. Both engines must end with the same
//! state hash.
//!
//! Modes: `--mode max` (throughput, sampled service time) and `--mode open --rate R`
//! (open loop, coordinated omission corrected). See `perf/README.md`; the generator is
//! `bourse_perf::workload`.

use std::io::Write as _;
use std::process::ExitCode;

use bourse_engine::{Command, DoneReason};
use bourse_perf::alloc::{self, CountingAlloc};
use bourse_perf::cli::{Budget, CommonArgs, Plan};
use bourse_perf::driver::{clock_overhead_ns, Pacing, Recorder};
use bourse_perf::harness::Harness;
use bourse_perf::report::{format_ns, latency_histogram, write_table, Percentiles};
use bourse_perf::workload::{level_counts, Class, Workload};
use clap::Parser;
use hdrhistogram::Histogram;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Commands generated and replayed per chunk: at most 96 MiB of commands in memory.
const CHUNK_OPS_MAX: usize = 1 << 20;
const _: () = assert!(std::mem::size_of::<Command>() <= 96);
/// A bench where more commands than this are rejected measures rejects, not trading.
const REJECT_RATE_MAX: f64 = 0.01;

/// Targets from the perf issue, printed as met or missed (never enforced by exit code:
/// the machine is shared and noisy).
const TARGET_THROUGHPUT_PER_S: f64 = 5_000_000.0;
const TARGET_P99_NS: u64 = 2_000;
const TARGET_P9999_NS: u64 = 20_000;

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "engine-bench",
    about = "Exchange::apply on exchange-core's order mix"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Max mode only: time every command and also print its service time by command kind
    /// (a diagnostic; throughput drops by two clock reads per command).
    #[arg(long)]
    breakdown: bool,
}

/// Generates and replays chunks until `budget` is spent; with `by_class`, every command
/// is timed and also recorded by class.
fn run_phase(
    plan: &Plan,
    budget: Budget,
    workload: &mut Workload,
    timed: &mut Harness,
    recorder: &mut Recorder,
    mut by_class: Option<&mut [Histogram<u64>]>,
) -> Result<(), String> {
    let mut commands = Vec::new();
    let mut classes = Vec::new();
    loop {
        let n = budget.next_chunk(recorder.ops(), recorder.elapsed(), CHUNK_OPS_MAX);
        if n == 0 {
            return Ok(());
        }
        let first_index = workload.fill_chunk(n, &mut commands, &mut classes)?;
        match by_class.as_deref_mut() {
            Some(hists) => {
                timed.run_timed_by_class(recorder, first_index, &commands, &classes, hists)?
            }
            None => timed.run_timed(recorder, plan.pacing, first_index, &commands)?,
        }
    }
}

fn print_breakdown(by_class: &[Histogram<u64>]) {
    println!("service time by command kind (every command timed, clock read included):");
    println!(
        "  {:<22} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11}",
        "kind", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    for (class, hist) in Class::ALL.iter().zip(by_class) {
        let p = Percentiles::of(hist);
        println!(
            "  {:<22} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11}",
            class.name(),
            p.count,
            format_ns(p.p50_ns),
            format_ns(p.p90_ns),
            format_ns(p.p99_ns),
            format_ns(p.p999_ns),
            format_ns(p.p9999_ns),
            format_ns(p.max_ns)
        );
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn print_workload(workload: &Workload) {
    let mix = workload.mix();
    let total = mix.total();
    let gtc = mix.gtc();
    let amend = mix.amend();
    println!(
        "mix produced: GTC {:.2}% (passive {:.2}%, aggressive {:.2}%), IOC {:.2}%, cancel {:.2}%, amend {:.2}% (price {:.2}%, qty {:.2}%); {} GTC stood in for a cancel/amend on an empty book",
        percent(gtc, total),
        percent(mix.gtc_passive, total),
        percent(mix.gtc_aggressive, total),
        percent(mix.ioc, total),
        percent(mix.cancel, total),
        percent(amend, total),
        percent(mix.amend_price, total),
        percent(mix.amend_qty, total),
        mix.fallback_gtc,
    );
    let s = workload.stats();
    println!(
        "outcomes: {} accepted, {} amended, {} trades, {} rejected ({:.4}% of commands); done: {} filled, {} cancelled, {} expired, {} self-trade-prevented",
        s.accepted,
        s.amended,
        s.trades,
        s.rejected,
        100.0 * s.reject_rate(),
        s.done_count(DoneReason::Filled),
        s.done_count(DoneReason::Cancelled),
        s.done_count(DoneReason::Expired),
        s.done_count(DoneReason::SelfTradePrevented),
    );
    if s.rejected > 0 {
        let reasons: Vec<String> =
            s.reject_reasons().iter().map(|(r, n)| format!("{r:?} {n}")).collect();
        println!("  reject reasons: {}", reasons.join(", "));
    }
    println!(
        "events per command: mean {:.2}, max {}",
        s.events as f64 / s.commands.max(1) as f64,
        s.events_per_command_max
    );
    let b = workload.book();
    let (bids, asks) = level_counts(workload.exchange());
    println!(
        "book while measured: {} to {} resting orders (mean {:.0}), mean {:.0} price levels; at the end {} orders on {} levels ({bids} bid, {asks} ask)",
        b.orders_min,
        b.orders_max,
        b.orders_sum as f64 / b.samples.max(1) as f64,
        b.levels_sum as f64 / b.level_samples.max(1) as f64,
        workload.open_orders(),
        bids + asks,
    );
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn print_targets(pacing: Pacing, recorder: &Recorder, p: &Percentiles) {
    let allocs = recorder.allocs();
    match pacing {
        Pacing::Max { .. } => println!(
            "target: max throughput >= {:.0} M commands/s: {} ({:.2} M/s)",
            TARGET_THROUGHPUT_PER_S / 1e6,
            met(recorder.throughput_per_s() >= TARGET_THROUGHPUT_PER_S),
            recorder.throughput_per_s() / 1e6
        ),
        Pacing::Open { rate_per_s } => {
            println!(
                "target at --rate {rate_per_s}: p99 <= {}: {} ({}); p99.99 <= {}: {} ({})",
                format_ns(TARGET_P99_NS),
                met(p.p99_ns <= TARGET_P99_NS),
                format_ns(p.p99_ns),
                format_ns(TARGET_P9999_NS),
                met(p.p9999_ns <= TARGET_P9999_NS),
                format_ns(p.p9999_ns)
            );
            if rate_per_s != 1_000_000 {
                println!("  (the latency targets are stated for --rate 1000000)");
            }
        }
    }
    println!(
        "target: zero allocations per command in steady state: {} ({} allocations)",
        met(allocs.allocs == 0),
        allocs.allocs
    );
}

fn run(cli: &Cli) -> Result<(), String> {
    let args = &cli.common;
    let plan = args.plan()?;
    if cli.breakdown && !matches!(plan.pacing, Pacing::Max { .. }) {
        return Err("--breakdown applies to --mode max".into());
    }
    alloc::require_installed()?;
    let name = format!("engine-bench/{}", args.mode_label());
    println!(
        "{name}: seed {} (rerun with --seed {}), warm-up {} commands, {:?}",
        args.seed, args.seed, plan.warmup_ops, plan.budget
    );
    println!("{}", bourse_perf::sched::machine_line());
    let clock_ns = clock_overhead_ns();
    match plan.pacing {
        Pacing::Max { sample_every } => println!(
            "max mode: throughput over all commands; latency = service time of 1 in {sample_every} commands, each including ~{clock_ns} ns of clock read"
        ),
        Pacing::Open { rate_per_s } => println!(
            "open loop at {rate_per_s}/s: latency = completion - intended start (coordinated omission corrected); clock read ~{clock_ns} ns"
        ),
    }

    let mut workload = Workload::new(args.seed)?;
    workload.set_up()?;
    let mut timed = workload.shadow().restore_copy()?;

    if plan.warmup_ops > 0 {
        let mut warm = Recorder::new();
        let budget = Budget::Ops(plan.warmup_ops);
        run_phase(&plan, budget, &mut workload, &mut timed, &mut warm, None)?;
    }
    workload.reset_stats();
    let (bids, asks) = level_counts(workload.exchange());
    println!(
        "book when measuring starts: {} resting orders on {} levels ({bids} bid, {asks} ask)",
        workload.open_orders(),
        bids + asks
    );
    let _ = std::io::stdout().flush();

    let mut recorder = Recorder::new();
    let mut by_class: Vec<Histogram<u64>> =
        Class::ALL.iter().map(|_| latency_histogram()).collect();
    let breakdown = cli.breakdown.then_some(by_class.as_mut_slice());
    run_phase(&plan, plan.budget, &mut workload, &mut timed, &mut recorder, breakdown)?;

    // The timed engine must have done exactly what the generator saw.
    if timed.exchange.state_hash() != workload.exchange().state_hash() {
        return Err(
            "timed engine's state hash differs from the shadow's: the replay diverged".into()
        );
    }
    timed
        .exchange
        .check_invariants()
        .map_err(|e| format!("engine invariant broken after the run: {e}"))?;

    print_workload(&workload);
    let allocs = recorder.allocs();
    println!(
        "measured: {} commands in {:.3} s = {:.3} M commands/s",
        recorder.ops(),
        recorder.elapsed().as_secs_f64(),
        recorder.throughput_per_s() / 1e6
    );
    if let Pacing::Open { .. } = plan.pacing {
        println!(
            "schedule: the latest command started {} behind its intended time",
            format_ns(recorder.start_lag_ns_max())
        );
    }
    println!("{}", bourse_perf::sched::describe(recorder.sched(), recorder.elapsed()));
    println!(
        "allocations while measured: {} ({:.6} per command, {} bytes, {} frees)",
        allocs.allocs,
        recorder.allocs_per_op(),
        allocs.bytes,
        allocs.deallocs
    );
    let p = recorder.percentiles();
    let mut stdout = std::io::stdout();
    write_table(&mut stdout, "latency per command:", &p).map_err(|e| e.to_string())?;
    if cli.breakdown {
        println!("(--breakdown: every command timed, so throughput includes two clock reads per command)");
        print_breakdown(&by_class);
    }
    print_targets(plan.pacing, &recorder, &p);
    args.write_outputs("engine-bench", &name, &recorder, "Exchange::apply latency")?;

    let reject_rate = workload.stats().reject_rate();
    if reject_rate > REJECT_RATE_MAX {
        return Err(format!(
            "{:.3}% of commands were rejected (more than {:.1}%): this run measured rejects, not trading",
            100.0 * reject_rate,
            100.0 * REJECT_RATE_MAX
        ));
    }
    println!("check: reject rate {:.4}% <= {:.1}%; timed engine's state hash equals the shadow's; invariants hold", 100.0 * reject_rate, 100.0 * REJECT_RATE_MAX);
    Ok(())
}

fn main() -> ExitCode {
    bourse_perf::cli::exit_code("engine-bench", run(&Cli::parse()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_phase_replays_what_the_shadow_saw_and_times_each_class() {
        let seed = 11;
        println!("seed {seed}");
        let cli = Cli::try_parse_from(["engine-bench", "--ops", "3000", "--seed", "11"]).unwrap();
        let plan = cli.common.plan().unwrap();
        let mut workload = Workload::new(seed).unwrap();
        workload.set_up().unwrap();
        let mut timed = workload.shadow().restore_copy().unwrap();
        let mut recorder = Recorder::new();
        run_phase(&plan, plan.budget, &mut workload, &mut timed, &mut recorder, None).unwrap();
        assert_eq!(recorder.ops(), 3_000);
        assert_eq!(timed.exchange.state_hash(), workload.exchange().state_hash());

        // With a breakdown every command is timed, once overall and once in its class.
        let mut by_class: Vec<Histogram<u64>> =
            Class::ALL.iter().map(|_| latency_histogram()).collect();
        let mut all = Recorder::new();
        let budget = Budget::Ops(2_000);
        run_phase(&plan, budget, &mut workload, &mut timed, &mut all, Some(&mut by_class)).unwrap();
        assert_eq!(all.histogram().len(), 2_000);
        assert_eq!(by_class.iter().map(|h| h.len()).sum::<u64>(), 2_000);
        assert_eq!(timed.exchange.state_hash(), workload.exchange().state_hash());
    }
}
