//! A seeded stream of engine commands for the durability benches: `wal-bench` takes its
//! realistic entry payloads from it and `recovery-bench` writes its 10M-command log with it.
//!
//! The stream is a set-up script (two assets, one market, a deposit of each asset for
//! every account, a starting book of `BOOK_ORDERS_TARGET` passive orders), then
//! exchange-core's mix as `engine-bench` generates it: 9% GTC limit orders (10% of them
//! priced through the opposite best, so they trade), 3% IOC through the opposite best,
//! 6% cancels and 82% amends (two thirds move the price 1-3 ticks, one third set a new
//! quantity). engine-bench's generator lives in its binary, with a per-kind breakdown
//! this one does not need; this module follows the same rules and constants.
//!
//! Each command is applied to a *shadow* engine as it is generated, so cancels and amends
//! name orders that are open, IOCs are priced off the real best, and the shadow's state
//! after the last command is exactly what a replay of the log must reach.
//!
//! Included by the durability binaries with `#[path]` (it is not part of the library).

use bourse_engine::{
    AccountId, AssetId, ClientOrderId, Command, Config, Event, EventKind, Exchange, LogIndex,
    MarketId, MarketSpec, OrderId, OrderRef, OrderType, PlaceOrder, Side, StpMode, Symbol,
    TimeInForce,
};
use bourse_perf::harness::{time_ns_for, Harness};
use bourse_perf::rng::SplitMix64;
use rustc_hash::FxHashMap;

/// Accounts trading, ids `1..=ACCOUNTS` (the fee account is 0).
pub const ACCOUNTS: u64 = 1_000;
const BASE: AssetId = 1;
const QUOTE: AssetId = 2;
const MARKET: MarketId = 1;
/// BTC/USDT: tick 0.01 USDT, lot 0.0001 BTC (as engine-bench).
const TICK_SIZE: u64 = 10_000;
const LOT_SIZE: u64 = 10_000;
/// Resting orders sit within `BAND_TICKS` of 50,000.00 USDT.
const CENTER_TICKS: u64 = 5_000_000;
const BAND_TICKS: u64 = 1_100;
const ORDER_LOTS_MAX: u64 = 50;
const ORDER_LOTS_MEAN: f64 = (1 + ORDER_LOTS_MAX) as f64 / 2.0;
/// The generator steers the book toward this many resting orders.
pub const BOOK_ORDERS_TARGET: usize = 1_000;
/// Deposits large enough that no order of a 10M-command run is short of funds, yet far
/// below `Limits::supply_max` summed over every account.
const DEPOSIT_BASE: u64 = 100_000_000_000_000;
const DEPOSIT_QUOTE: u64 = 1_000_000_000_000_000;

/// The mix, in percent (exchange-core's: GTC 9, IOC 3, cancel 6, move 82).
const GTC_PERCENT: u64 = 9;
const IOC_PERCENT: u64 = 3;
const CANCEL_PERCENT: u64 = 6;
const GTC_AGGRESSIVE_PERCENT: u64 = 10;
const AMEND_PRICE_PERCENT: u64 = 67;
const AMEND_STEP_TICKS_MAX: u64 = 3;
const AGGRESSIVE_TICKS_MAX: u64 = 2;
const IOC_SLIPPAGE_TICKS: u64 = 50;
/// Keeps one IOC's events (about 9 per fill) far inside the harness's event buffer.
const IOC_LOTS_MAX: u64 = 160;
const IOC_MAKERS_MAX: f64 = 4.0;
const IOC_MAKERS_MIN: f64 = 0.1;

/// Commands of the set-up script: 3 admin, 2 deposits per account, the starting book.
pub const SETUP_COMMANDS: u64 = 3 + 2 * ACCOUNTS + BOOK_ORDERS_TARGET as u64;

/// What the stream has produced so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MixCounts {
    pub setup: u64,
    pub gtc: u64,
    pub ioc: u64,
    pub cancel: u64,
    pub amend: u64,
    /// Mix commands the engine rejected (a set-up reject is an error instead).
    pub rejected: u64,
    pub trades: u64,
}

impl MixCounts {
    pub fn mix_total(&self) -> u64 {
        self.gtc + self.ioc + self.cancel + self.amend
    }

    /// Rejected mix commands / mix commands.
    pub fn reject_rate(&self) -> f64 {
        self.rejected as f64 / self.mix_total().max(1) as f64
    }

    /// One line for a report.
    pub fn describe(&self) -> String {
        let pct = |n: u64| 100.0 * n as f64 / self.mix_total().max(1) as f64;
        format!(
            "{} set-up commands (assets, market, {} deposits, {} resting orders), then {} of the mix: GTC {:.1}%, IOC {:.1}%, cancel {:.1}%, amend {:.1}%; {} trades, {} rejected ({:.3}%)",
            self.setup,
            2 * ACCOUNTS,
            BOOK_ORDERS_TARGET,
            self.mix_total(),
            pct(self.gtc),
            pct(self.ioc),
            pct(self.cancel),
            pct(self.amend),
            self.trades,
            self.rejected,
            100.0 * self.reject_rate()
        )
    }
}

/// Open order ids in no particular order, with each one's slot, following the events.
#[derive(Default)]
struct OpenOrders {
    ids: Vec<OrderId>,
    slot: FxHashMap<OrderId, usize>,
}

impl OpenOrders {
    /// GTC acceptances join the set, `Done` events leave it (in event order, so an order
    /// accepted and filled by one command never stays). Returns (rejected, trades).
    fn observe(&mut self, events: &[Event]) -> (bool, u64) {
        let mut rejected = false;
        let mut trades = 0;
        for event in events {
            match event.kind {
                EventKind::Accepted(a) if a.tif == TimeInForce::Gtc => {
                    self.slot.insert(a.order_id, self.ids.len());
                    self.ids.push(a.order_id);
                }
                EventKind::Done(d) => {
                    if let Some(slot) = self.slot.remove(&d.order_id) {
                        self.ids.swap_remove(slot);
                        if let Some(&moved) = self.ids.get(slot) {
                            self.slot.insert(moved, slot);
                        }
                    }
                }
                EventKind::Rejected(_) => rejected = true,
                EventKind::Trade(_) => trades += 1,
                _ => {}
            }
        }
        assert_eq!(self.ids.len(), self.slot.len(), "open-order set out of step");
        (rejected, trades)
    }
}

/// The generator and its shadow engine. Lives on the bench thread.
pub struct Workload {
    rng: SplitMix64,
    shadow: Harness,
    open: OpenOrders,
    next_client_order_id: ClientOrderId,
    /// Commands generated so far (the set-up script runs while it is below
    /// `SETUP_COMMANDS`).
    step: u64,
    counts: MixCounts,
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

/// The best price of one side, in ticks.
fn best_ticks(exchange: &Exchange, side: Side) -> Option<u64> {
    let depth = exchange.depth(MARKET, 1)?;
    let level = match side {
        Side::Buy => depth.bids.first(),
        Side::Sell => depth.asks.first(),
    };
    level.map(|l| l.price / TICK_SIZE)
}

/// A passive price: bids in `[C - BAND, C - 1]`, asks in `[C + 1, C + BAND]`.
fn passive_ticks(rng: &mut SplitMix64, side: Side) -> u64 {
    let offset = 1 + rng.below(BAND_TICKS);
    match side {
        Side::Buy => CENTER_TICKS - offset,
        Side::Sell => CENTER_TICKS + offset,
    }
}

/// The command's entry payload as the sequencer writes it: `time_ns` (the harness's
/// synthetic clock for `index`) then `Command::encode`. `scratch` is reused for the
/// command bytes; `out` is cleared first.
pub fn encode_entry_payload(
    index: LogIndex,
    command: &Command,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    command.encode(scratch);
    out.clear();
    bourse_replication::encode_command_payload(out, time_ns_for(index), scratch);
}

impl Workload {
    pub fn new(seed: u64) -> Result<Workload, String> {
        Ok(Workload {
            rng: SplitMix64::new(seed),
            shadow: Harness::new(Config::default())?,
            open: OpenOrders::default(),
            next_client_order_id: 1,
            step: 0,
            counts: MixCounts::default(),
        })
    }

    /// The next command, already applied to the shadow engine, with its log index.
    pub fn next_command(&mut self) -> Result<(LogIndex, Command), String> {
        let setup = self.step < SETUP_COMMANDS;
        let command = if setup { self.setup_command() } else { self.mix_command()? };
        self.step += 1;
        let index = self.shadow.next_index();
        let events =
            self.shadow.apply(&command).map_err(|e| format!("shadow apply {command:?}: {e:?}"))?;
        let (rejected, trades) = self.open.observe(events);
        if setup {
            if rejected {
                return Err(format!("set-up command {command:?} was rejected: {events:?}"));
            }
            self.counts.setup += 1;
        } else if rejected {
            self.counts.rejected += 1;
        }
        self.counts.trades += trades;
        Ok((index, command))
    }

    /// The shadow engine: the state every command so far leads to.
    pub fn exchange(&self) -> &Exchange {
        &self.shadow.exchange
    }

    pub fn counts(&self) -> MixCounts {
        self.counts
    }

    fn limit_order(
        &mut self,
        side: Side,
        tif: TimeInForce,
        price_ticks: u64,
        lots: u64,
    ) -> Command {
        let account: AccountId = 1 + self.rng.below(ACCOUNTS);
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

    fn setup_command(&mut self) -> Command {
        let step = self.step;
        assert!(step < SETUP_COMMANDS);
        match step {
            0 => Command::CreateAsset { asset: BASE, scale: 8, symbol: symbol("BTC") },
            1 => Command::CreateAsset { asset: QUOTE, scale: 6, symbol: symbol("USDT") },
            2 => Command::CreateMarket(MarketSpec {
                market: MARKET,
                symbol: symbol("BTC-USDT"),
                base: BASE,
                quote: QUOTE,
                tick_size: TICK_SIZE,
                lot_size: LOT_SIZE,
                min_notional: 1,
                maker_fee_bps: 2,
                taker_fee_bps: 5,
            }),
            s if s < 3 + 2 * ACCOUNTS => {
                let n = s - 3;
                let (asset, amount) =
                    if n % 2 == 0 { (BASE, DEPOSIT_BASE) } else { (QUOTE, DEPOSIT_QUOTE) };
                Command::Deposit { tx: n + 1, account: 1 + n / 2, asset, amount }
            }
            _ => {
                let side = random_side(&mut self.rng);
                let ticks = passive_ticks(&mut self.rng, side);
                let lots = self.rng.range_inclusive(1, ORDER_LOTS_MAX);
                self.limit_order(side, TimeInForce::Gtc, ticks, lots)
            }
        }
    }

    fn mix_command(&mut self) -> Result<Command, String> {
        let roll = self.rng.below(100);
        if roll < GTC_PERCENT {
            self.counts.gtc += 1;
            return Ok(self.gtc());
        }
        if roll < GTC_PERCENT + IOC_PERCENT {
            self.counts.ioc += 1;
            return Ok(self.ioc());
        }
        if self.open.ids.is_empty() {
            // A cancel or amend with nothing to name: a GTC stands in (as engine-bench).
            self.counts.gtc += 1;
            return Ok(self.gtc());
        }
        let id = self.open.ids[self.rng.below(self.open.ids.len() as u64) as usize];
        let view = self
            .shadow
            .exchange
            .order(id)
            .ok_or_else(|| format!("generator lost track: order {id} is not open"))?;
        if roll < GTC_PERCENT + IOC_PERCENT + CANCEL_PERCENT {
            self.counts.cancel += 1;
            return Ok(Command::Cancel { account: view.account, order: OrderRef::Id(id) });
        }
        self.counts.amend += 1;
        Ok(self.amend(&view))
    }

    fn gtc(&mut self) -> Command {
        let side = random_side(&mut self.rng);
        let lots = self.rng.range_inclusive(1, ORDER_LOTS_MAX);
        let opposite_best = best_ticks(&self.shadow.exchange, side.opposite());
        let ticks = match opposite_best {
            Some(best) if self.rng.percent(GTC_AGGRESSIVE_PERCENT) => {
                let through = self.rng.below(AGGRESSIVE_TICKS_MAX + 1);
                match side {
                    Side::Buy => best + through,
                    Side::Sell => best.saturating_sub(through).max(1),
                }
            }
            _ => passive_ticks(&mut self.rng, side),
        };
        self.limit_order(side, TimeInForce::Gtc, ticks, lots)
    }

    /// Sized to take about `m` average makers, `m` growing with the book's excess over
    /// its target: this holds the book near its target while the mix stays fixed.
    fn ioc(&mut self) -> Command {
        let side = random_side(&mut self.rng);
        let excess = self.open.ids.len() as f64 - BOOK_ORDERS_TARGET as f64;
        let makers = (1.0 + excess / 50.0).clamp(IOC_MAKERS_MIN, IOC_MAKERS_MAX);
        let jitter = 0.5 + self.rng.below(1_001) as f64 / 1_000.0;
        let lots = ((makers * ORDER_LOTS_MEAN * jitter).round() as u64).clamp(1, IOC_LOTS_MAX);
        let best = best_ticks(&self.shadow.exchange, side.opposite()).unwrap_or(CENTER_TICKS);
        let ticks = match side {
            Side::Buy => best + IOC_SLIPPAGE_TICKS,
            Side::Sell => best.saturating_sub(IOC_SLIPPAGE_TICKS).max(1),
        };
        self.limit_order(side, TimeInForce::Ioc, ticks, lots)
    }

    /// A price move of a few ticks within the order's half of the band (so a move can
    /// cross at the centre and trade), or a new quantity; never a no-op (the engine would
    /// reject it).
    fn amend(&mut self, view: &bourse_engine::OrderView) -> Command {
        let order = OrderRef::Id(view.order_id);
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
                new_ticks = moved(!up).clamp(lo, hi);
            }
            if new_ticks != ticks {
                return Command::Amend {
                    account: view.account,
                    order,
                    price: new_ticks * TICK_SIZE,
                    qty: 0,
                };
            }
        }
        let leaves_lots = view.leaves_qty / LOT_SIZE;
        let mut new_leaves = self.rng.range_inclusive(1, ORDER_LOTS_MAX);
        if new_leaves == leaves_lots {
            new_leaves = if leaves_lots > 1 { leaves_lots - 1 } else { leaves_lots + 1 };
        }
        Command::Amend {
            account: view.account,
            order,
            price: 0,
            qty: view.filled_qty + new_leaves * LOT_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(seed: u64, n: u64) -> (Workload, Vec<(LogIndex, Command)>) {
        let mut workload = Workload::new(seed).unwrap();
        let commands = (0..n).map(|_| workload.next_command().unwrap()).collect();
        (workload, commands)
    }

    #[test]
    fn mix_matches_engine_bench_and_rejects_are_rare() {
        let seed = 42;
        println!("seed {seed}");
        let n = SETUP_COMMANDS + 50_000;
        let (workload, commands) = generate(seed, n);
        let counts = workload.counts();
        assert_eq!(counts.setup, SETUP_COMMANDS);
        assert_eq!(counts.mix_total(), 50_000);
        let share = |k: u64| 100.0 * k as f64 / 50_000.0;
        // 50,000 draws: each share is within 0.5 points of its target (> 4 sigma).
        assert!((share(counts.gtc) - 9.0).abs() < 0.5, "{counts:?}");
        assert!((share(counts.ioc) - 3.0).abs() < 0.5, "{counts:?}");
        assert!((share(counts.cancel) - 6.0).abs() < 0.5, "{counts:?}");
        assert!((share(counts.amend) - 82.0).abs() < 0.5, "{counts:?}");
        assert!(counts.reject_rate() < 0.01, "{counts:?}");
        assert!(counts.trades > 1_000, "{counts:?}");
        // Indices are the log's: contiguous from 1.
        assert!(commands.iter().enumerate().all(|(k, (index, _))| *index == k as u64 + 1));
        assert_eq!(workload.exchange().last_index(), n);
        workload.exchange().check_invariants().unwrap();
    }

    #[test]
    fn same_seed_same_stream_and_replay_reaches_the_shadow_state() {
        let (a, commands_a) = generate(7, SETUP_COMMANDS + 3_000);
        let (_, commands_b) = generate(7, SETUP_COMMANDS + 3_000);
        assert_eq!(commands_a, commands_b);
        let (_, commands_c) = generate(8, SETUP_COMMANDS + 3_000);
        assert_ne!(commands_a, commands_c);

        // Through the entry payload encoding, as recovery replays it.
        let mut replay = Exchange::new(Config::default()).unwrap();
        let (mut scratch, mut payload, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for (index, command) in &commands_a {
            encode_entry_payload(*index, command, &mut scratch, &mut payload);
            let bourse_replication::CommandPayload::Command { time_ns, command_bytes } =
                bourse_replication::decode_command_payload(&payload).unwrap()
            else {
                panic!("a command payload decoded as a no-op");
            };
            assert_eq!(time_ns, time_ns_for(*index));
            let decoded = Command::decode(command_bytes).unwrap();
            assert_eq!(&decoded, command);
            events.clear();
            replay.apply(*index, time_ns, &decoded, &mut events).unwrap();
        }
        assert_eq!(replay.state_hash(), a.exchange().state_hash());
    }
}
