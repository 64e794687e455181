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
//! (open loop, coordinated omission corrected). See `perf/README.md`.

use std::io::Write as _;
use std::process::ExitCode;

use bourse_engine::{
    AccountId, AssetId, ClientOrderId, Command, Config, DoneReason, Event, EventKind, Exchange,
    LogIndex, MarketId, MarketSpec, OrderId, OrderRef, OrderType, PlaceOrder, Side, StpMode,
    Symbol, TimeInForce,
};
use bourse_perf::alloc::{self, CountingAlloc};
use bourse_perf::cli::{CommonArgs, Plan};
use bourse_perf::driver::{clock_overhead_ns, Pacing, Recorder};
use bourse_perf::harness::{EventStats, Harness, EVENTS_CAPACITY};
use bourse_perf::report::{format_ns, latency_histogram, write_table, Percentiles};
use bourse_perf::rng::SplitMix64;
use bourse_perf::{hgrm, plot, report};
use clap::Parser;
use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Accounts trading, ids `1..=ACCOUNTS` (the fee account is 0).
const ACCOUNTS: u64 = 1_000;
const BASE: AssetId = 1;
const QUOTE: AssetId = 2;
const MARKET: MarketId = 1;
/// BTC/USDT as in the engine README: tick 0.01 USDT, lot 0.0001 BTC, so one tick-lot is
/// one micro-USDT.
const TICK_SIZE: u64 = 10_000;
const LOT_SIZE: u64 = 10_000;
/// Resting orders sit within `BAND_TICKS` of this price (50,000.00 USDT): bids below it,
/// asks above it. The band is chosen so that ~1,000 orders occupy ~750 levels (seed 1:
/// 746 on average; IOCs thin out the levels nearest the centre).
const CENTER_TICKS: u64 = 5_000_000;
const BAND_TICKS: u64 = 1_100;
/// Order sizes are uniform in `1..=ORDER_LOTS_MAX` lots.
const ORDER_LOTS_MAX: u64 = 50;
const ORDER_LOTS_MEAN: f64 = (1 + ORDER_LOTS_MAX) as f64 / 2.0;
/// The generator steers the book toward this many resting orders.
const BOOK_ORDERS_TARGET: usize = 1_000;
/// Deposits large enough that no order is ever short of funds (a reject measures nothing),
/// yet 1,000 of them stay far below `Limits::supply_max` (2^62).
const DEPOSIT_BASE: u64 = 100_000_000_000_000;
const DEPOSIT_QUOTE: u64 = 1_000_000_000_000_000;

/// The command mix, in percent (exchange-core's: GTC 9, IOC 3, cancel 6, move 82).
const GTC_PERCENT: u64 = 9;
const IOC_PERCENT: u64 = 3;
const CANCEL_PERCENT: u64 = 6;
/// Of GTC orders, the share priced through the opposite best (they trade, then rest).
const GTC_AGGRESSIVE_PERCENT: u64 = 10;
/// Of amends, the share that move the price (the rest change the quantity).
const AMEND_PRICE_PERCENT: u64 = 67;
/// Price moves are 1..=this many ticks, either way.
const AMEND_STEP_TICKS_MAX: u64 = 3;
/// Aggressive GTC orders are priced up to this many ticks through the opposite best.
const AGGRESSIVE_TICKS_MAX: u64 = 2;
/// IOC limit prices are this many ticks through the opposite best.
const IOC_SLIPPAGE_TICKS: u64 = 50;
/// IOC size bounds (lots). The top bound keeps one IOC's events (about 9 per fill) well
/// inside the event buffer.
const IOC_LOTS_MAX: u64 = 160;
/// How many average-sized makers an IOC aims to take, at most and at least.
const IOC_MAKERS_MAX: f64 = 4.0;
const IOC_MAKERS_MIN: f64 = 0.1;

/// Commands generated and replayed per chunk: at most 96 MiB of commands in memory.
const CHUNK_OPS_MAX: usize = 1 << 20;
const _: () = assert!(std::mem::size_of::<Command>() <= 96);
/// Sample the depth every this many commands to report the number of levels.
const LEVEL_SAMPLE_EVERY: u64 = 16_384;
/// Levels counted at most per side when sampling depth.
const LEVELS_COUNTED_MAX: usize = 100_000;
/// A bench where more commands than this are rejected measures rejects, not trading.
const REJECT_RATE_MAX: f64 = 0.01;

/// Targets from the perf issue, printed as met or missed (never enforced by exit code:
/// the machine is shared and noisy).
const TARGET_THROUGHPUT_PER_S: f64 = 5_000_000.0;
const TARGET_P99_NS: u64 = 2_000;
const TARGET_P9999_NS: u64 = 20_000;

#[derive(Parser, Debug)]
#[command(name = "engine-bench", about = "Exchange::apply on exchange-core's order mix")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Max mode only: time every command and also print its service time by command kind
    /// (a diagnostic; throughput drops by two clock reads per command).
    #[arg(long)]
    breakdown: bool,
}

/// Command classes for `--breakdown`, indexed by the generator's class byte.
const CLASS_GTC_PASSIVE: u8 = 0;
const CLASS_GTC_AGGRESSIVE: u8 = 1;
const CLASS_IOC: u8 = 2;
const CLASS_CANCEL: u8 = 3;
const CLASS_AMEND_PRICE: u8 = 4;
const CLASS_AMEND_PRICE_TRADED: u8 = 5;
const CLASS_AMEND_QTY: u8 = 6;
const CLASS_NAMES: [&str; 7] = [
    "GTC passive",
    "GTC aggressive",
    "IOC",
    "cancel",
    "amend price",
    "amend price (traded)",
    "amend qty",
];

/// How many commands of each kind the generator produced.
#[derive(Clone, Debug, Default)]
struct MixCounts {
    gtc_passive: u64,
    gtc_aggressive: u64,
    ioc: u64,
    cancel: u64,
    amend_price: u64,
    amend_qty: u64,
    /// Cancels or amends asked for while the book was empty, issued as GTC instead.
    fallback_gtc: u64,
}

impl MixCounts {
    fn total(&self) -> u64 {
        self.gtc_passive
            + self.gtc_aggressive
            + self.ioc
            + self.cancel
            + self.amend_price
            + self.amend_qty
    }
}

/// Book size seen after each generated command.
#[derive(Clone, Debug)]
struct BookStats {
    orders_min: usize,
    orders_max: usize,
    orders_sum: u64,
    samples: u64,
    levels_sum: u64,
    level_samples: u64,
}

impl Default for BookStats {
    fn default() -> Self {
        BookStats {
            orders_min: usize::MAX,
            orders_max: 0,
            orders_sum: 0,
            samples: 0,
            levels_sum: 0,
            level_samples: 0,
        }
    }
}

/// The workload generator: picks each command from the mix, applies it to the shadow
/// engine, and follows the resulting events to know which orders rest.
struct Generator {
    rng: SplitMix64,
    /// Resting order ids, in no particular order, and each one's position in `open`.
    open: Vec<OrderId>,
    open_slot: FxHashMap<OrderId, usize>,
    next_client_order_id: ClientOrderId,
    mix: MixCounts,
    stats: EventStats,
    book: BookStats,
    /// Class of the command being generated (`CLASS_*`).
    class: u8,
}

fn symbol(text: &str) -> Symbol {
    // Only called with the constant symbols below, which are valid.
    Symbol::new(text).expect("constant symbol is valid")
}

fn random_side(rng: &mut SplitMix64) -> Side {
    if rng.below(2) == 0 {
        Side::Buy
    } else {
        Side::Sell
    }
}

impl Generator {
    fn new(seed: u64) -> Generator {
        Generator {
            rng: SplitMix64::new(seed),
            open: Vec::with_capacity(4 * BOOK_ORDERS_TARGET),
            open_slot: FxHashMap::default(),
            next_client_order_id: 1,
            mix: MixCounts::default(),
            stats: EventStats::default(),
            book: BookStats::default(),
            class: CLASS_GTC_PASSIVE,
        }
    }

    /// Forgets the counters (after setup and warm-up) but keeps the book it follows.
    fn reset_stats(&mut self) {
        self.mix = MixCounts::default();
        self.stats = EventStats::default();
        self.book = BookStats::default();
    }

    fn random_account(&mut self) -> AccountId {
        1 + self.rng.below(ACCOUNTS)
    }

    fn limit_order(
        &mut self,
        side: Side,
        tif: TimeInForce,
        price_ticks: u64,
        lots: u64,
    ) -> Command {
        let account = self.random_account();
        let client_order_id = self.next_client_order_id;
        self.next_client_order_id += 1;
        Command::Place(PlaceOrder {
            account,
            market: MARKET,
            client_order_id,
            side,
            order_type: OrderType::Limit,
            tif,
            post_only: false,
            price: price_ticks * TICK_SIZE,
            qty: lots * LOT_SIZE,
            quote_budget: 0,
            stp: StpMode::CancelTaker,
        })
    }

    /// A passive price: bids in `[C - BAND, C - 1]`, asks in `[C + 1, C + BAND]`.
    fn passive_ticks(&mut self, side: Side) -> u64 {
        let offset = 1 + self.rng.below(BAND_TICKS);
        match side {
            Side::Buy => CENTER_TICKS - offset,
            Side::Sell => CENTER_TICKS + offset,
        }
    }

    fn gtc(&mut self, shadow: &Exchange) -> Command {
        let side = random_side(&mut self.rng);
        let lots = self.rng.range_inclusive(1, ORDER_LOTS_MAX);
        let opposite_best = best_ticks(shadow, side.opposite());
        let ticks = match opposite_best {
            Some(best) if self.rng.percent(GTC_AGGRESSIVE_PERCENT) => {
                self.mix.gtc_aggressive += 1;
                self.class = CLASS_GTC_AGGRESSIVE;
                let through = self.rng.below(AGGRESSIVE_TICKS_MAX + 1);
                match side {
                    Side::Buy => best + through,
                    Side::Sell => best.saturating_sub(through).max(1),
                }
            }
            _ => {
                self.mix.gtc_passive += 1;
                self.class = CLASS_GTC_PASSIVE;
                self.passive_ticks(side)
            }
        };
        self.limit_order(side, TimeInForce::Gtc, ticks, lots)
    }

    /// An IOC through the opposite best, sized to take about `m` average makers, where
    /// `m` grows with the book's excess over its target: this is what holds the book near
    /// its target size while the mix stays fixed.
    fn ioc(&mut self, shadow: &Exchange) -> Command {
        self.mix.ioc += 1;
        self.class = CLASS_IOC;
        let side = random_side(&mut self.rng);
        let excess = self.open.len() as f64 - BOOK_ORDERS_TARGET as f64;
        let makers = (1.0 + excess / 50.0).clamp(IOC_MAKERS_MIN, IOC_MAKERS_MAX);
        let jitter = 0.5 + self.rng.below(1_001) as f64 / 1_000.0;
        let lots = ((makers * ORDER_LOTS_MEAN * jitter).round() as u64).clamp(1, IOC_LOTS_MAX);
        let best = best_ticks(shadow, side.opposite()).unwrap_or(CENTER_TICKS);
        let ticks = match side {
            Side::Buy => best + IOC_SLIPPAGE_TICKS,
            Side::Sell => best.saturating_sub(IOC_SLIPPAGE_TICKS).max(1),
        };
        self.limit_order(side, TimeInForce::Ioc, ticks, lots)
    }

    fn random_open_order(&mut self, shadow: &Exchange) -> Result<bourse_engine::OrderView, String> {
        let id = self.open[self.rng.below(self.open.len() as u64) as usize];
        shadow.order(id).ok_or_else(|| format!("generator lost track: order {id} is not open"))
    }

    fn cancel(&mut self, shadow: &Exchange) -> Result<Command, String> {
        self.mix.cancel += 1;
        self.class = CLASS_CANCEL;
        let view = self.random_open_order(shadow)?;
        Ok(Command::Cancel { account: view.account, order: OrderRef::Id(view.order_id) })
    }

    /// Moves the price by a few ticks (bids stay in `[C - BAND, C]`, asks in
    /// `[C, C + BAND]`, so a move can cross at the centre and trade), or sets a new
    /// quantity (down at the same price keeps queue priority, up re-queues). Never a
    /// no-op, which the engine would reject.
    fn amend(&mut self, shadow: &Exchange) -> Result<Command, String> {
        let view = self.random_open_order(shadow)?;
        let ticks = view.price / TICK_SIZE;
        if self.rng.percent(AMEND_PRICE_PERCENT) {
            let step = self.rng.range_inclusive(1, AMEND_STEP_TICKS_MAX);
            let (lo, hi) = match view.side {
                Side::Buy => (CENTER_TICKS - BAND_TICKS, CENTER_TICKS),
                Side::Sell => (CENTER_TICKS, CENTER_TICKS + BAND_TICKS),
            };
            let up = self.rng.below(2) == 0;
            let moved = |up: bool| if up { ticks + step } else { ticks.saturating_sub(step) };
            let mut new_ticks = moved(up).clamp(lo, hi);
            if new_ticks == ticks {
                // At the edge of the band: step the other way.
                new_ticks = moved(!up).clamp(lo, hi);
            }
            if new_ticks != ticks {
                self.mix.amend_price += 1;
                self.class = CLASS_AMEND_PRICE;
                return Ok(Command::Amend {
                    account: view.account,
                    order: OrderRef::Id(view.order_id),
                    price: new_ticks * TICK_SIZE,
                    qty: 0,
                });
            }
        }
        self.mix.amend_qty += 1;
        self.class = CLASS_AMEND_QTY;
        let leaves_lots = view.leaves_qty / LOT_SIZE;
        let mut new_leaves = self.rng.range_inclusive(1, ORDER_LOTS_MAX);
        if new_leaves == leaves_lots {
            new_leaves = if leaves_lots > 1 { leaves_lots - 1 } else { leaves_lots + 1 };
        }
        Ok(Command::Amend {
            account: view.account,
            order: OrderRef::Id(view.order_id),
            price: 0,
            qty: view.filled_qty + new_leaves * LOT_SIZE,
        })
    }

    /// The next command of the mix, given the shadow's current state.
    fn next_command(&mut self, shadow: &Exchange) -> Result<Command, String> {
        let roll = self.rng.below(100);
        if roll < GTC_PERCENT {
            return Ok(self.gtc(shadow));
        }
        if roll < GTC_PERCENT + IOC_PERCENT {
            return Ok(self.ioc(shadow));
        }
        if self.open.is_empty() {
            self.mix.fallback_gtc += 1;
            return Ok(self.gtc(shadow));
        }
        if roll < GTC_PERCENT + IOC_PERCENT + CANCEL_PERCENT {
            return self.cancel(shadow);
        }
        self.amend(shadow)
    }

    /// Follows one command's events: GTC acceptances join the open set, `Done` events
    /// leave it (in event order, so an order accepted and filled at once never stays).
    fn observe(&mut self, events: &[Event]) {
        self.stats.add(events);
        for event in events {
            match event.kind {
                EventKind::Accepted(a) if a.tif == TimeInForce::Gtc => {
                    self.open_slot.insert(a.order_id, self.open.len());
                    self.open.push(a.order_id);
                }
                EventKind::Done(d) => {
                    if let Some(slot) = self.open_slot.remove(&d.order_id) {
                        self.open.swap_remove(slot);
                        if let Some(&moved) = self.open.get(slot) {
                            self.open_slot.insert(moved, slot);
                        }
                    }
                }
                _ => {}
            }
        }
        debug_assert_eq!(self.open.len(), self.open_slot.len());
        self.book.orders_min = self.book.orders_min.min(self.open.len());
        self.book.orders_max = self.book.orders_max.max(self.open.len());
        self.book.orders_sum += self.open.len() as u64;
        self.book.samples += 1;
    }

    /// Generates `n` commands against the shadow into `out` (and each one's class into
    /// `classes`); returns the log index of the first.
    fn fill_chunk(
        &mut self,
        shadow: &mut Harness,
        n: usize,
        out: &mut Vec<Command>,
        classes: &mut Vec<u8>,
    ) -> Result<LogIndex, String> {
        out.clear();
        classes.clear();
        let first_index = shadow.next_index();
        for _ in 0..n {
            let command = self.next_command(&shadow.exchange)?;
            let events = shadow.apply(&command).map_err(|e| format!("shadow apply: {e}"))?;
            if events.len() > EVENTS_CAPACITY / 2 {
                return Err(format!(
                    "one command produced {} events; the buffer holds {EVENTS_CAPACITY}",
                    events.len()
                ));
            }
            if self.class == CLASS_AMEND_PRICE
                && events.iter().any(|e| matches!(e.kind, EventKind::Trade(_)))
            {
                self.class = CLASS_AMEND_PRICE_TRADED;
            }
            self.observe(events);
            out.push(command);
            classes.push(self.class);
            if self.book.samples % LEVEL_SAMPLE_EVERY == 0 {
                let (bids, asks) = level_counts(&shadow.exchange);
                self.book.levels_sum += (bids + asks) as u64;
                self.book.level_samples += 1;
            }
        }
        Ok(first_index)
    }
}

/// The best price of one side, in ticks.
fn best_ticks(exchange: &Exchange, side: Side) -> Option<u64> {
    let depth = exchange.depth(MARKET, 1)?;
    let level = match side {
        Side::Buy => depth.bids.first(),
        Side::Sell => depth.asks.first(),
    };
    level.map(|l| l.price / TICK_SIZE)
}

/// Occupied price levels (bids, asks).
fn level_counts(exchange: &Exchange) -> (usize, usize) {
    exchange.depth(MARKET, LEVELS_COUNTED_MAX).map_or((0, 0), |d| (d.bids.len(), d.asks.len()))
}

/// Assets, the market, deposits for every account, and a starting book of
/// `BOOK_ORDERS_TARGET` passive orders.
fn set_up(shadow: &mut Harness, generator: &mut Generator) -> Result<(), String> {
    shadow.apply_ok(&Command::CreateAsset { asset: BASE, scale: 8, symbol: symbol("BTC") })?;
    shadow.apply_ok(&Command::CreateAsset { asset: QUOTE, scale: 6, symbol: symbol("USDT") })?;
    shadow.apply_ok(&Command::CreateMarket(MarketSpec {
        market: MARKET,
        symbol: symbol("BTC-USDT"),
        base: BASE,
        quote: QUOTE,
        tick_size: TICK_SIZE,
        lot_size: LOT_SIZE,
        min_notional: 1,
        maker_fee_bps: 2,
        taker_fee_bps: 5,
    }))?;
    let mut tx = 0;
    for account in 1..=ACCOUNTS {
        for (asset, amount) in [(BASE, DEPOSIT_BASE), (QUOTE, DEPOSIT_QUOTE)] {
            tx += 1;
            shadow.apply_ok(&Command::Deposit { tx, account, asset, amount })?;
        }
    }
    for _ in 0..BOOK_ORDERS_TARGET {
        let side = random_side(&mut generator.rng);
        let ticks = generator.passive_ticks(side);
        let lots = generator.rng.range_inclusive(1, ORDER_LOTS_MAX);
        let command = generator.limit_order(side, TimeInForce::Gtc, ticks, lots);
        let events = shadow.apply_ok(&command)?;
        generator.observe(events);
    }
    if generator.open.len() != BOOK_ORDERS_TARGET {
        return Err(format!(
            "starting book has {} orders, expected {BOOK_ORDERS_TARGET}",
            generator.open.len()
        ));
    }
    Ok(())
}

/// Generates and replays chunks until `budget` is spent; with `by_class`, every command
/// is timed and also recorded by class.
fn run_phase(
    plan: &Plan,
    budget: bourse_perf::cli::Budget,
    generator: &mut Generator,
    engines: (&mut Harness, &mut Harness),
    recorder: &mut Recorder,
    mut by_class: Option<&mut [Histogram<u64>]>,
) -> Result<(), String> {
    let (shadow, timed) = engines;
    let mut commands = Vec::new();
    let mut classes = Vec::new();
    loop {
        let n = budget.next_chunk(recorder.ops(), recorder.elapsed(), CHUNK_OPS_MAX);
        if n == 0 {
            return Ok(());
        }
        let first_index = generator.fill_chunk(shadow, n, &mut commands, &mut classes)?;
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
    for (name, hist) in CLASS_NAMES.iter().zip(by_class) {
        let p = Percentiles::of(hist);
        println!(
            "  {:<22} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11}",
            name,
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

fn print_workload(generator: &Generator, shadow: &Exchange) {
    let mix = &generator.mix;
    let total = mix.total();
    let gtc = mix.gtc_passive + mix.gtc_aggressive;
    let amend = mix.amend_price + mix.amend_qty;
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
    let s = &generator.stats;
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
    let b = &generator.book;
    let (bids, asks) = level_counts(shadow);
    println!(
        "book while measured: {} to {} resting orders (mean {:.0}), mean {:.0} price levels; at the end {} orders on {} levels ({bids} bid, {asks} ask)",
        b.orders_min,
        b.orders_max,
        b.orders_sum as f64 / b.samples.max(1) as f64,
        b.levels_sum as f64 / b.level_samples.max(1) as f64,
        generator.open.len(),
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

fn write_outputs(args: &CommonArgs, recorder: &Recorder, name: &str) -> Result<(), String> {
    let stem = format!("engine-bench-{}", args.mode_label());
    let hgrm_path = args.hgrm_path(&stem);
    hgrm::write_file(&hgrm_path, name, recorder.histogram())
        .map_err(|e| format!("{}: {e}", hgrm_path.display()))?;
    println!("wrote {}", hgrm_path.display());
    if let Some(path) = &args.json {
        report::write_json(path, &recorder.summary(name))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        let series = [plot::Series::from_histogram(name, recorder.histogram())];
        plot::write_svg(path, &format!("{name}: Exchange::apply latency"), &series)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<(), String> {
    let args = &cli.common;
    let plan = args.plan()?;
    if cli.breakdown && !matches!(plan.pacing, Pacing::Max { .. }) {
        return Err("--breakdown applies to --mode max".into());
    }
    if !alloc::installed() {
        return Err("the counting allocator is not installed".into());
    }
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

    let mut generator = Generator::new(args.seed);
    let mut shadow = Harness::new(Config::default())?;
    set_up(&mut shadow, &mut generator)?;
    let mut timed = shadow.restore_copy()?;

    if plan.warmup_ops > 0 {
        let mut warm = Recorder::new();
        let budget = bourse_perf::cli::Budget::Ops(plan.warmup_ops);
        run_phase(&plan, budget, &mut generator, (&mut shadow, &mut timed), &mut warm, None)?;
    }
    generator.reset_stats();
    let (bids, asks) = level_counts(&shadow.exchange);
    println!(
        "book when measuring starts: {} resting orders on {} levels ({bids} bid, {asks} ask)",
        generator.open.len(),
        bids + asks
    );
    let _ = std::io::stdout().flush();

    let mut recorder = Recorder::new();
    let mut by_class: Vec<Histogram<u64>> =
        CLASS_NAMES.iter().map(|_| latency_histogram()).collect();
    let breakdown = cli.breakdown.then_some(by_class.as_mut_slice());
    let engines = (&mut shadow, &mut timed);
    run_phase(&plan, plan.budget, &mut generator, engines, &mut recorder, breakdown)?;

    // The timed engine must have done exactly what the generator saw.
    if timed.exchange.state_hash() != shadow.exchange.state_hash() {
        return Err(
            "timed engine's state hash differs from the shadow's: the replay diverged".into()
        );
    }
    timed
        .exchange
        .check_invariants()
        .map_err(|e| format!("engine invariant broken after the run: {e}"))?;

    print_workload(&generator, &shadow.exchange);
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
    write_outputs(args, &recorder, &name)?;

    if generator.stats.reject_rate() > REJECT_RATE_MAX {
        return Err(format!(
            "{:.3}% of commands were rejected (more than {:.1}%): this run measured rejects, not trading",
            100.0 * generator.stats.reject_rate(),
            100.0 * REJECT_RATE_MAX
        ));
    }
    println!("check: reject rate {:.4}% <= {:.1}%; timed engine's state hash equals the shadow's; invariants hold", 100.0 * generator.stats.reject_rate(), 100.0 * REJECT_RATE_MAX);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generates `n` commands from `seed` on a fresh shadow; returns the generator and the
    /// shadow.
    fn generate(seed: u64, n: usize) -> (Generator, Harness, Vec<Command>) {
        let mut generator = Generator::new(seed);
        let mut shadow = Harness::new(Config::default()).unwrap();
        set_up(&mut shadow, &mut generator).unwrap();
        generator.reset_stats();
        let mut commands = Vec::new();
        let mut classes = Vec::new();
        generator.fill_chunk(&mut shadow, n, &mut commands, &mut classes).unwrap();
        assert_eq!(classes.len(), n);
        assert!(classes.iter().all(|&c| usize::from(c) < CLASS_NAMES.len()));
        // Each command's class agrees with the mix counters.
        let count = |c: u8| classes.iter().filter(|&&x| x == c).count() as u64;
        let mix = &generator.mix;
        assert_eq!(count(CLASS_GTC_PASSIVE), mix.gtc_passive);
        assert_eq!(count(CLASS_GTC_AGGRESSIVE), mix.gtc_aggressive);
        assert_eq!(count(CLASS_IOC), mix.ioc);
        assert_eq!(count(CLASS_CANCEL), mix.cancel);
        assert_eq!(count(CLASS_AMEND_QTY), mix.amend_qty);
        assert_eq!(count(CLASS_AMEND_PRICE) + count(CLASS_AMEND_PRICE_TRADED), mix.amend_price);
        (generator, shadow, commands)
    }

    #[test]
    fn mix_matches_exchange_core_and_rejects_are_rare() {
        let seed = 42;
        println!("seed {seed}");
        let (generator, shadow, commands) = generate(seed, 50_000);
        assert_eq!(commands.len(), 50_000);
        let mix = &generator.mix;
        let total = mix.total() as f64;
        assert_eq!(mix.total(), 50_000);
        let share = |n: u64| n as f64 / total * 100.0;
        // 50,000 draws: each share is within 0.5 points of its target (> 4 sigma).
        assert!((share(mix.gtc_passive + mix.gtc_aggressive) - 9.0).abs() < 0.5, "{mix:?}");
        assert!((share(mix.ioc) - 3.0).abs() < 0.5, "{mix:?}");
        assert!((share(mix.cancel) - 6.0).abs() < 0.5, "{mix:?}");
        assert!((share(mix.amend_price + mix.amend_qty) - 82.0).abs() < 0.5, "{mix:?}");
        assert!(
            generator.stats.reject_rate() < REJECT_RATE_MAX,
            "{:?}",
            generator.stats.reject_reasons()
        );
        assert!(generator.stats.trades > 1_000, "{} trades", generator.stats.trades);
        // The book stays near its target.
        let mean = generator.book.orders_sum as f64 / generator.book.samples as f64;
        assert!((700.0..1_300.0).contains(&mean), "mean book {mean}");
        assert!(shadow.exchange.check_invariants().is_ok());
    }

    #[test]
    fn same_seed_same_commands_and_replay_matches() {
        let (_, shadow_a, commands_a) = generate(7, 5_000);
        let (_, _, commands_b) = generate(7, 5_000);
        assert_eq!(commands_a, commands_b);
        let (_, _, commands_c) = generate(8, 5_000);
        assert_ne!(commands_a, commands_c);

        // Replaying the recorded commands on a restored copy reaches the same state.
        let mut generator = Generator::new(7);
        let mut start = Harness::new(Config::default()).unwrap();
        set_up(&mut start, &mut generator).unwrap();
        let mut timed = start.restore_copy().unwrap();
        let mut recorder = Recorder::new();
        timed
            .run_timed(
                &mut recorder,
                Pacing::Max { sample_every: 1 },
                start.next_index(),
                &commands_a,
            )
            .unwrap();
        assert_eq!(timed.exchange.state_hash(), shadow_a.exchange.state_hash());
        assert_eq!(recorder.ops(), 5_000);
        assert_eq!(recorder.histogram().len(), 5_000);
    }

    #[test]
    fn run_timed_refuses_a_misaligned_stream() {
        let (_, shadow, commands) = generate(3, 10);
        let mut timed = shadow.restore_copy().unwrap();
        let mut recorder = Recorder::new();
        let result = timed.run_timed(&mut recorder, Pacing::Max { sample_every: 1 }, 1, &commands);
        assert!(result.is_err());
    }
}
