//! noise-floor: the same driver on a fixed ~50 ns computation instead of the engine.
//!
//! Whatever tail this shows (timer interrupts, VM exits, preemption by other processes) is
//! the machine's, not the code's: run it next to a bench, with the same flags, to tell the
//! two apart. An engine percentile equal to the floor's says nothing about the engine.

use std::process::ExitCode;

use bourse_perf::alloc::{self, CountingAlloc};
use bourse_perf::cli::{Budget, CommonArgs};
use bourse_perf::driver::{clock_overhead_ns, Recorder};
use bourse_perf::report::write_table;
use bourse_perf::sched;
use clap::Parser;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Multiply-add steps per operation (a dependent chain: ~50 ns on this machine).
const STEPS_PER_OP: u32 = 64;
/// Operations per driver segment.
const CHUNK_OPS_MAX: usize = 1 << 20;

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "noise-floor",
    about = "The driver on fixed work: the machine's own latency tail"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

/// A dependent chain of multiply-adds the optimiser cannot remove.
fn fixed_work(seed: u64) -> u64 {
    let mut v = seed;
    for _ in 0..STEPS_PER_OP {
        v = std::hint::black_box(
            v.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407),
        );
    }
    v
}

fn run(args: &CommonArgs) -> Result<(), String> {
    let plan = args.plan()?;
    alloc::require_installed()?;
    let name = format!("noise-floor/{}", args.mode_label());
    println!(
        "{name}: {STEPS_PER_OP} dependent multiply-adds per operation; clock read ~{} ns",
        clock_overhead_ns()
    );
    println!("{}", sched::machine_line());
    let mut sink = 0u64;
    let mut warm = Recorder::new();
    let warm_budget = Budget::Ops(plan.warmup_ops);
    loop {
        let n = warm_budget.next_chunk(warm.ops(), warm.elapsed(), CHUNK_OPS_MAX);
        if n == 0 {
            break;
        }
        warm.run(plan.pacing, n, |i| sink ^= fixed_work(i as u64));
    }
    let mut recorder = Recorder::new();
    loop {
        let n = plan.budget.next_chunk(recorder.ops(), recorder.elapsed(), CHUNK_OPS_MAX);
        if n == 0 {
            break;
        }
        recorder.run(plan.pacing, n, |i| sink ^= fixed_work(i as u64));
    }
    println!(
        "measured: {} operations in {:.3} s = {:.3} M/s (checksum {sink:x})",
        recorder.ops(),
        recorder.elapsed().as_secs_f64(),
        recorder.throughput_per_s() / 1e6
    );
    println!("{}", sched::describe(recorder.sched(), recorder.elapsed()));
    write_table(&mut std::io::stdout(), "latency per operation:", &recorder.percentiles())
        .map_err(|e| e.to_string())?;
    args.write_outputs("noise-floor", &name, &recorder, "fixed work")
}

fn main() -> ExitCode {
    bourse_perf::cli::exit_code("noise-floor", run(&Cli::parse().common))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_work_is_deterministic_and_depends_on_its_input() {
        assert_eq!(fixed_work(1), fixed_work(1));
        assert_ne!(fixed_work(1), fixed_work(2));
    }
}
