//! ledger-bench: `Command::Transfer` throughput when every transfer touches one hot
//! account, against transfers between uniformly random accounts.
//!
//! Two engines are set up identically (one asset, `--accounts` funded accounts). The *hot*
//! workload has account 1 as the sender or the receiver (half each) of every transfer, the
//! other side uniform over the rest; the *uniform* workload picks both sides uniformly.
//! Transfers carry unique tx ids and amounts far below every balance, so none is rejected;
//! the bench proves it after the run by comparing every balance with what the generator
//! expects. The two workloads run in alternating chunks, so background noise on this
//! shared machine falls on both alike. A single-threaded engine has no lock to contend on,
//! so the hot/uniform throughput ratio should be about 1 (the target is >= 0.95).
//!
//! `--json PATH` writes a JSON **array** of two summary records, hot first:
//! `[{"name": "ledger-bench/hot/<mode>", ...}, {"name": "ledger-bench/uniform/<mode>", ...}]`.
//! `--hgrm PATH` (default `perf/results/ledger-bench-<mode>.us.hgrm`) writes two files,
//! `-hot` and `-uniform` inserted before the extension.

use std::process::ExitCode;

use bourse_engine::{AccountId, AssetId, Command, Config, Limits, Symbol, TxId};
use bourse_perf::alloc::{self, CountingAlloc};
use bourse_perf::cli::{with_suffix, Budget, CommonArgs};
use bourse_perf::driver::{clock_overhead_ns, Pacing, Recorder};
use bourse_perf::harness::Harness;
use bourse_perf::report::{format_ns, write_table, wrote};
use bourse_perf::rng::SplitMix64;
use bourse_perf::{hgrm, plot, report};
use clap::Parser;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const ASSET: AssetId = 1;
/// The hot account; the others are `2..=accounts`.
const HOT_ACCOUNT: AccountId = 1;
/// Every account starts with this much (minor units): far more than transfers can move.
const DEPOSIT: u64 = 1_000_000_000_000;
/// Transfer amounts are uniform in `1..=AMOUNT_MAX`.
const AMOUNT_MAX: u64 = 1_000;
/// Bounds of `--accounts` (the engine's default `accounts_max` is 1,000,000, the fee
/// account included).
const ACCOUNTS_MIN: u64 = 2;
const ACCOUNTS_MAX: u64 = 900_000;
/// Transfers generated and replayed per chunk, per workload.
const CHUNK_OPS_MAX: usize = 1 << 18;
/// A `--duration-s` run stops after this many transfers per workload, because every
/// transfer's tx id is remembered by the engine (`Limits::transactions_max`), which costs
/// memory (~70 bytes each, two engines).
const TIME_BUDGET_TRANSFERS_MAX: u64 = 20_000_000;
const TARGET_RATIO: f64 = 0.95;

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "ledger-bench",
    about = "Transfer throughput: one hot account vs uniformly random accounts"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Funded accounts (the hot one included).
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Hot,
    Uniform,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Hot => "hot",
            Workload::Uniform => "uniform",
        }
    }
}

/// One workload's generator, engines and results.
struct Lane {
    workload: Workload,
    accounts: u64,
    rng: SplitMix64,
    next_tx: TxId,
    /// Expected balance of every account (index = account id), to check after the run
    /// that every transfer was applied.
    expected: Vec<u64>,
    engine: Harness,
    commands: Vec<Command>,
    warm: Recorder,
    recorder: Recorder,
}

impl Lane {
    fn new(
        workload: Workload,
        accounts: u64,
        seed: u64,
        transactions_max: u32,
    ) -> Result<Lane, String> {
        let limits = Limits { transactions_max, ..Limits::default() };
        let mut engine = Harness::new(Config { limits, fee_account: 0 })?;
        let symbol = Symbol::new("USDT").ok_or("bad symbol")?;
        engine.apply_ok(&Command::CreateAsset { asset: ASSET, scale: 6, symbol })?;
        for account in 1..=accounts {
            engine.apply_ok(&Command::Deposit {
                tx: account,
                account,
                asset: ASSET,
                amount: DEPOSIT,
            })?;
        }
        let mut expected = vec![0; accounts as usize + 1];
        expected[1..].fill(DEPOSIT);
        // Measure an engine restored from a snapshot, as the engine bench does.
        let engine = engine.restore_copy()?;
        Ok(Lane {
            workload,
            accounts,
            rng: SplitMix64::new(seed),
            next_tx: accounts + 1,
            expected,
            engine,
            commands: Vec::new(),
            warm: Recorder::new(),
            recorder: Recorder::new(),
        })
    }

    fn next_transfer(&mut self) -> Command {
        let (from, to) = match self.workload {
            Workload::Hot => {
                let other = 2 + self.rng.below(self.accounts - 1);
                if self.rng.below(2) == 0 {
                    (HOT_ACCOUNT, other)
                } else {
                    (other, HOT_ACCOUNT)
                }
            }
            Workload::Uniform => {
                let from = 1 + self.rng.below(self.accounts);
                // Uniform over the other accounts.
                let mut to = 1 + self.rng.below(self.accounts - 1);
                if to >= from {
                    to += 1;
                }
                (from, to)
            }
        };
        let amount = self.rng.range_inclusive(1, AMOUNT_MAX);
        // Balances start at 10^12 and move by at most 1,000 per transfer, so a shortfall
        // would need 10^9 transfers against one account: more than `cli::OPS_MAX`.
        self.expected[from as usize] -= amount;
        self.expected[to as usize] += amount;
        let tx = self.next_tx;
        self.next_tx += 1;
        Command::Transfer { tx, from, to, asset: ASSET, amount, create_account: true }
    }

    /// Generates and replays `n` transfers; `measured` picks the recorder.
    fn run_chunk(&mut self, pacing: Pacing, n: usize, measured: bool) -> Result<(), String> {
        let mut commands = std::mem::take(&mut self.commands);
        commands.clear();
        commands.extend((0..n).map(|_| self.next_transfer()));
        let first = self.engine.next_index();
        let recorder = if measured { &mut self.recorder } else { &mut self.warm };
        self.engine.run_timed(recorder, pacing, first, &commands)?;
        self.commands = commands;
        Ok(())
    }

    /// Every balance is what the generator expects: no transfer was rejected or lost.
    fn check(&self) -> Result<(), String> {
        for account in 1..=self.accounts {
            let got = self.engine.exchange.balance(account, ASSET);
            let want = self.expected[account as usize];
            if got.available != want || got.held != 0 {
                return Err(format!(
                    "{} workload: account {account} has {got:?}, expected available {want}: some transfer was rejected",
                    self.workload.label()
                ));
            }
        }
        self.engine.exchange.check_invariants().map_err(|e| format!("invariant broken: {e}"))
    }
}

/// Runs `budget` operations (at most `ops_cap`) on both lanes in alternating chunks.
fn run_both(
    lanes: &mut [Lane; 2],
    pacing: Pacing,
    budget: Budget,
    ops_cap: u64,
    measured: bool,
) -> Result<(), String> {
    loop {
        let mut ran = false;
        for lane in lanes.iter_mut() {
            let recorder = if measured { &lane.recorder } else { &lane.warm };
            let left = ops_cap.saturating_sub(recorder.ops()).min(CHUNK_OPS_MAX as u64) as usize;
            let n = budget.next_chunk(recorder.ops(), recorder.elapsed(), left);
            if n > 0 {
                lane.run_chunk(pacing, n, measured)?;
                ran = true;
            }
        }
        if !ran {
            return Ok(());
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let args = &cli.common;
    let plan = args.plan()?;
    if !(ACCOUNTS_MIN..=ACCOUNTS_MAX).contains(&cli.accounts) {
        return Err(format!("--accounts must be in {ACCOUNTS_MIN}..={ACCOUNTS_MAX}"));
    }
    alloc::require_installed()?;
    // Every transfer's tx id is stored; size the engine's bound to the run (with one
    // chunk of slack, since a time budget is checked between chunks).
    let transfers = plan.warmup_ops
        + match plan.budget {
            Budget::Ops(n) => n,
            Budget::Time(_) => TIME_BUDGET_TRANSFERS_MAX,
        };
    let transactions = cli.accounts + transfers + CHUNK_OPS_MAX as u64;
    let transactions_max = u32::try_from(transactions)
        .ok()
        .filter(|&t| t < u32::MAX / 2)
        .ok_or("too many transfers for the engine's transaction bound (2^31)")?;
    let mode = args.mode_label();
    println!(
        "ledger-bench/{mode}: seed {} (rerun with --seed {}), {} accounts, warm-up {} transfers per workload, {:?} per workload; clock read ~{} ns",
        args.seed,
        args.seed,
        cli.accounts,
        plan.warmup_ops,
        plan.budget,
        clock_overhead_ns()
    );
    println!("{}", bourse_perf::sched::machine_line());
    let mut lanes = [
        Lane::new(Workload::Hot, cli.accounts, args.seed, transactions_max)?,
        Lane::new(Workload::Uniform, cli.accounts, args.seed, transactions_max)?,
    ];
    if plan.warmup_ops > 0 {
        run_both(&mut lanes, plan.pacing, Budget::Ops(plan.warmup_ops), plan.warmup_ops, false)?;
    }
    let measured_cap = transfers - plan.warmup_ops;
    run_both(&mut lanes, plan.pacing, plan.budget, measured_cap, true)?;
    for lane in &lanes {
        lane.check()?;
    }

    let mut summaries = Vec::new();
    let mut series = Vec::new();
    for lane in &lanes {
        let name = format!("ledger-bench/{}/{mode}", lane.workload.label());
        let r = &lane.recorder;
        println!(
            "{name}: {} transfers in {:.3} s = {:.3} M transfers/s; allocations {} ({:.6} per transfer, {} bytes)",
            r.ops(),
            r.elapsed().as_secs_f64(),
            r.throughput_per_s() / 1e6,
            r.allocs().allocs,
            r.allocs_per_op(),
            r.allocs().bytes
        );
        if let Pacing::Open { .. } = plan.pacing {
            println!(
                "  schedule: the latest transfer started {} behind its intended time",
                format_ns(r.start_lag_ns_max())
            );
        }
        println!("  {}", bourse_perf::sched::describe(r.sched(), r.elapsed()));
        write_table(&mut std::io::stdout(), "  latency per transfer:", &r.percentiles())
            .map_err(|e| e.to_string())?;
        let path =
            with_suffix(&args.hgrm_path(&format!("ledger-bench-{mode}")), lane.workload.label());
        hgrm::write_file(&path, &name, r.histogram())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("  wrote {}", path.display());
        summaries.push(r.summary(&name));
        series.push(plot::Series::from_histogram(lane.workload.label(), r.histogram()));
    }
    let ratio = lanes[0].recorder.throughput_per_s() / lanes[1].recorder.throughput_per_s();
    println!(
        "hot/uniform throughput ratio: {ratio:.3} (target >= {TARGET_RATIO}: {})",
        if ratio >= TARGET_RATIO { "met" } else { "MISSED" }
    );
    if let Pacing::Open { .. } = plan.pacing {
        println!("  (in open mode both run at the offered rate, so the ratio is ~1 by construction; compare the latency tables, or use --mode max)");
    }
    if let Some(path) = &args.json {
        report::write_json_array(path, &summaries)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {} (a JSON array: hot, then uniform)", path.display());
    }
    if let Some(path) = &args.svg {
        let title = format!("ledger-bench/{mode}: transfer latency");
        wrote(path, plot::write_svg(path, &title, &series))?;
    }
    println!("check: every balance equals the generator's expectation (no transfer rejected); invariants hold");
    Ok(())
}

fn main() -> ExitCode {
    bourse_perf::cli::exit_code("ledger-bench", run(&Cli::parse()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_transfers_always_touch_the_hot_account_and_uniform_ones_never_self_transfer() {
        let seed = 5;
        println!("seed {seed}");
        let mut hot = Lane::new(Workload::Hot, 50, seed, 100_000).unwrap();
        let mut uniform = Lane::new(Workload::Uniform, 50, seed, 100_000).unwrap();
        let mut hot_sends = 0;
        let mut uniform_touch_hot = 0;
        for _ in 0..2_000 {
            let Command::Transfer { from, to, .. } = hot.next_transfer() else { panic!() };
            assert!(from == HOT_ACCOUNT || to == HOT_ACCOUNT);
            assert_ne!(from, to);
            hot_sends += u32::from(from == HOT_ACCOUNT);
            let Command::Transfer { from, to, .. } = uniform.next_transfer() else { panic!() };
            assert_ne!(from, to);
            assert!((1..=50).contains(&from) && (1..=50).contains(&to));
            uniform_touch_hot += u32::from(from == HOT_ACCOUNT || to == HOT_ACCOUNT);
        }
        // Half the hot transfers send; about 4% of uniform ones touch account 1.
        assert!((800..1_200).contains(&hot_sends), "{hot_sends}");
        assert!(uniform_touch_hot < 200, "{uniform_touch_hot}");
    }

    #[test]
    fn replayed_transfers_all_apply() {
        let mut lanes = [
            Lane::new(Workload::Hot, 100, 9, 100_000).unwrap(),
            Lane::new(Workload::Uniform, 100, 9, 100_000).unwrap(),
        ];
        run_both(&mut lanes, Pacing::Max { sample_every: 1 }, Budget::Ops(5_000), 5_000, true)
            .unwrap();
        for lane in &lanes {
            assert_eq!(lane.recorder.ops(), 5_000);
            lane.check().unwrap();
        }
        // The check would notice a lost transfer.
        lanes[0].expected[1] += 1;
        assert!(lanes[0].check().is_err());
    }
}
