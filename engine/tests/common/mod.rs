//! Shared generators for the differential and property tests.
//!
//! A test case is a `Scenario` (limits, fee account, setup commands: assets, markets,
//! first deposits), chosen from a seed, plus a list of `Op`s. An `Op` is raw random
//! numbers; `Ctx::resolve` turns it into a concrete `Command` against what the test has
//! seen so far (open orders, client ids, withdrawal tx ids), so that cancels and amends
//! hit real orders and ledger commands repeat real tx ids. Because ops are resolved
//! against the state, any sub-list of ops is still a sensible stream, which is what makes
//! shrinking (by proptest or by `shrink_ops`) work.
//!
//! Ops come either from a `SplitMix64` seeded by the test (printed, and replayable through
//! an environment variable) or from `ops_strategy()` for proptest.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::collections::BTreeMap;

use bourse_engine::{
    AccountId, AdminApplied, AssetId, ClientOrderId, Command, EventKind, Limits, MarketId,
    MarketSpec, MarketStatus, OrderId, OrderRef, OrderType, PlaceOrder, Side, StpMode, Symbol,
    TimeInForce, TxId,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// SplitMix64: a tiny, well-known deterministic generator; enough for test streams, and
/// it keeps every case reproducible from one printed `u64`.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` for test purposes (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Reads a `u64` from the environment, if set; a malformed value is a test failure, not
/// something to ignore silently.
pub fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let value = text.trim().parse::<u64>();
    Some(value.unwrap_or_else(|_| panic!("{name}={text:?} is not a u64")))
}

/// A seed from the clock, for runs that should explore new cases each time; printed by
/// the caller so a failure can be replayed. (The clock is banned from the engine by
/// `clippy.toml`; a test choosing its seed is the one place it belongs.)
#[allow(clippy::disallowed_methods)]
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    SplitMix64::new(nanos).next_u64()
}

/// Proptest case count: `BOURSE_PROPTEST_CASES` if set, else `default`.
pub fn proptest_cases(default: u32) -> u32 {
    env_u64("BOURSE_PROPTEST_CASES").map_or(default, |n| n.clamp(1, u32::MAX as u64) as u32)
}

/// A proptest config: `BOURSE_PROPTEST_CASES` cases (else `default_cases`), and an RNG
/// seed from `BOURSE_PROPTEST_SEED` (else a fresh one), printed so a failing run can be
/// replayed exactly. Shrunk failures are also persisted under `proptest-regressions/`.
///
/// `regressions` is the file, relative to the package root (the working directory of
/// `cargo test`), where proptest keeps the seeds of failures it found; proptest's default
/// (next to `lib.rs`) does not work for integration tests.
pub fn proptest_config(
    test: &str,
    regressions: &'static str,
    default_cases: u32,
) -> ProptestConfig {
    let seed = env_u64("BOURSE_PROPTEST_SEED").unwrap_or_else(fresh_seed);
    eprintln!("{test}: proptest seed {seed} (replay with BOURSE_PROPTEST_SEED={seed})");
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        cases: proptest_cases(default_cases),
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        // Each case is a whole command stream; bound shrinking so a failure reports in
        // minutes, not hours.
        max_shrink_iters: 4_096,
        ..ProptestConfig::default()
    }
}

/// One random step: a category in `0..100` and raw numbers the resolver interprets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    pub kind: u8,
    pub r: [u32; 6],
}

impl Op {
    pub fn random(rng: &mut SplitMix64) -> Op {
        let mut r = [0u32; 6];
        for x in &mut r {
            *x = rng.next_u64() as u32;
        }
        Op { kind: rng.below(100) as u8, r }
    }
}

pub fn random_ops(rng: &mut SplitMix64, len: usize) -> Vec<Op> {
    (0..len).map(|_| Op::random(rng)).collect()
}

pub fn op_strategy() -> impl Strategy<Value = Op> {
    (0u8..100, any::<[u32; 6]>()).prop_map(|(kind, r)| Op { kind, r })
}

pub fn ops_strategy(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(), len)
}

/// Limits, fee account and setup commands of one test case.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub profile: u8,
    pub limits: Limits,
    pub fee_account: AccountId,
    /// The pool of accounts orders and ledger ops mostly use.
    pub accounts: Vec<AccountId>,
    /// Amounts (deposits, transfers, budgets) are scaled up by `2^amount_shift`.
    pub amount_shift: u32,
    pub setup: Vec<Command>,
}

/// Number of scenario profiles `Scenario::new` knows.
pub const PROFILES: u64 = 5;

/// Asset ids the setup creates, with their scales and typical amounts (a deposit of a
/// few of these funds a handful of orders).
const ASSETS: [(AssetId, u8, &str, u64); 3] =
    [(0, 2, "AAA", 5_000), (1, 2, "QQQ", 2_000_000), (2, 0, "BBB", 3_000)];

/// A market of the setup.
struct SetupMarket {
    market: MarketId,
    base: AssetId,
    quote: AssetId,
    tick_size: u64,
    lot_size: u64,
    min_notional: u64,
    maker_fee_bps: u32,
    taker_fee_bps: u32,
}

/// Markets of the setup. Each satisfies the qptl rule; the fees are high enough that
/// rounding matters.
const MARKETS: [SetupMarket; 3] = [
    // AAA/QQQ: qptl = 100*100/10^2 = 100; taker fee above maker fee.
    SetupMarket {
        market: 0,
        base: 0,
        quote: 1,
        tick_size: 100,
        lot_size: 100,
        min_notional: 20_000,
        maker_fee_bps: 10,
        taker_fee_bps: 30,
    },
    // BBB/QQQ: qptl = 7*3/1 = 21; maker fee above taker fee (reservation uses the max).
    SetupMarket {
        market: 1,
        base: 2,
        quote: 1,
        tick_size: 7,
        lot_size: 3,
        min_notional: 0,
        maker_fee_bps: 50,
        taker_fee_bps: 0,
    },
    // AAA/BBB: qptl = 1*100/10^2 = 1; very high fees.
    SetupMarket {
        market: 2,
        base: 0,
        quote: 2,
        tick_size: 1,
        lot_size: 100,
        min_notional: 200,
        maker_fee_bps: 2_500,
        taker_fee_bps: 1_000,
    },
];

/// Mid price of every market, in ticks: orders cluster around it so they cross often.
pub const MID_TICKS: u64 = 100;

pub fn symbol(text: &str) -> Symbol {
    Symbol::new(text).expect("valid test symbol")
}

pub fn market_spec(index: usize) -> MarketSpec {
    let m = &MARKETS[index];
    MarketSpec {
        market: m.market,
        symbol: symbol(&format!("M{}", m.market)),
        base: m.base,
        quote: m.quote,
        tick_size: m.tick_size,
        lot_size: m.lot_size,
        min_notional: m.min_notional,
        maker_fee_bps: m.maker_fee_bps,
        taker_fee_bps: m.taker_fee_bps,
    }
}

impl Scenario {
    /// Profile `seed % PROFILES`:
    /// 0: tight limits (accounts, orders, transactions, price and qty ranges) so every
    ///    limit reject is reached; 1: roomy limits; 2: a small `supply_max` so supply,
    ///    amount and notional limits are reached; 3: roomy, with the fee account inside
    ///    the trading pool (it trades and pays fees to itself); 4: the default (largest)
    ///    limits with balances near `supply_max`, so arithmetic meets its bounds.
    pub fn new(seed: u64) -> Scenario {
        let profile = (seed % PROFILES) as u8;
        let mut rng = SplitMix64::new(seed ^ 0x5EED_5CE7_A410);
        let pool = 10 + rng.below(21) as usize; // 10..=30 accounts
        let fee_account: AccountId = if profile == 3 { 3 } else { 0 };
        let accounts: Vec<AccountId> = (1..=pool as AccountId).collect();
        let mut limits = Limits {
            assets_max: 6,
            markets_max: 6,
            accounts_max: 1_000,
            orders_max: 10_000,
            orders_per_account_max: 1_000,
            orders_per_market_max: 10_000,
            price_ticks_max: 1_000_000,
            qty_lots_max: 1_000_000,
            supply_max: 1 << 50,
            transactions_max: 100_000,
        };
        let setup_txs = (pool * ASSETS.len()) as u32;
        match profile {
            0 => {
                // All but the last two pool accounts fit (the fee account counts).
                limits.accounts_max = pool as u32 - 1;
                limits.orders_per_account_max = 3;
                limits.orders_per_market_max = 6;
                limits.orders_max = 10;
                limits.price_ticks_max = MID_TICKS + 5;
                limits.qty_lots_max = 6;
                limits.transactions_max = setup_txs + 30;
            }
            2 => limits.supply_max = 200_000_000,
            4 => limits = Limits { assets_max: 6, markets_max: 6, ..Limits::default() },
            _ => {}
        }
        let amount_shift = if profile == 4 { 34 } else { 0 };
        assert!(limits.validate().is_ok());
        let mut setup = Vec::new();
        for (asset, scale, name, _) in ASSETS {
            setup.push(Command::CreateAsset { asset, scale, symbol: symbol(name) });
        }
        for index in 0..MARKETS.len() {
            setup.push(Command::CreateMarket(market_spec(index)));
        }
        let mut tx: TxId = 1;
        for &account in &accounts {
            for (asset, _, _, typical) in ASSETS {
                // Between a fifth of and four times the typical amount: some accounts
                // are rich, some run short.
                let amount = (typical / 5 + rng.below(typical * 4)) << amount_shift;
                setup.push(Command::Deposit { tx, account, asset, amount });
                tx += 1;
            }
        }
        Scenario { profile, limits, fee_account, accounts, amount_shift, setup }
    }
}

/// What the generator remembers of an order it saw accepted and not yet done.
#[derive(Clone, Copy, Debug)]
pub struct SeenOrder {
    pub account: AccountId,
    pub cid: ClientOrderId,
    pub market: MarketId,
    pub side: Side,
    pub price: u64,
    pub qty: u64,
    pub filled: u64,
}

/// The generator's memory of the stream so far, learnt only from commands and events.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub limits: Limits,
    pub amount_shift: u32,
    pub accounts: Vec<AccountId>,
    pub fee_account: AccountId,
    pub markets: BTreeMap<MarketId, (MarketSpec, MarketStatus)>,
    /// Scale of every asset created.
    pub scales: BTreeMap<AssetId, u8>,
    /// Orders accepted and not yet done (resting, as far as the events say).
    pub open: BTreeMap<OrderId, SeenOrder>,
    /// Every order id seen accepted (most are no longer open).
    pub seen_ids: Vec<OrderId>,
    /// Every ledger tx id used, and those of withdrawal requests.
    pub txs: Vec<TxId>,
    pub withdraw_txs: Vec<TxId>,
    pub next_tx: TxId,
}

fn pick<T: Copy>(list: &[T], r: u32) -> Option<T> {
    if list.is_empty() {
        None
    } else {
        Some(list[r as usize % list.len()])
    }
}

/// `r` mapped to `0..n`.
fn below(r: u32, n: u64) -> u64 {
    r as u64 % n
}

impl Ctx {
    pub fn new(scenario: &Scenario) -> Ctx {
        Ctx {
            limits: scenario.limits,
            amount_shift: scenario.amount_shift,
            accounts: scenario.accounts.clone(),
            fee_account: scenario.fee_account,
            markets: BTreeMap::new(),
            scales: BTreeMap::new(),
            open: BTreeMap::new(),
            seen_ids: Vec::new(),
            txs: Vec::new(),
            withdraw_txs: Vec::new(),
            // Setup deposits use small ids; the stream continues after them.
            next_tx: 1_000,
        }
    }

    /// Learns from one command and the events it produced (the engine's or the model's).
    pub fn observe(&mut self, command: &Command, events: &[EventKind]) {
        match *command {
            Command::Deposit { tx, .. } | Command::Transfer { tx, .. } => self.txs.push(tx),
            Command::WithdrawRequest { tx, .. } => {
                self.txs.push(tx);
                self.withdraw_txs.push(tx);
            }
            _ => {}
        }
        for event in events {
            match *event {
                EventKind::Admin(AdminApplied::AssetCreated { asset, scale, .. }) => {
                    self.scales.insert(asset, scale);
                }
                EventKind::Admin(AdminApplied::MarketCreated { market }) => {
                    if let Command::CreateMarket(spec) = *command {
                        self.markets.insert(market, (spec, MarketStatus::Open));
                    }
                }
                EventKind::Admin(AdminApplied::MarketStatus { market, status }) => {
                    if let Some(entry) = self.markets.get_mut(&market) {
                        entry.1 = status;
                    }
                }
                EventKind::Accepted(a) => {
                    self.seen_ids.push(a.order_id);
                    let seen = SeenOrder {
                        account: a.account,
                        cid: a.client_order_id,
                        market: a.market,
                        side: a.side,
                        price: a.price,
                        qty: a.qty,
                        filled: 0,
                    };
                    self.open.insert(a.order_id, seen);
                }
                EventKind::Amended(a) => {
                    if let Some(o) = self.open.get_mut(&a.order_id) {
                        o.price = a.price;
                        o.qty = a.qty;
                    }
                }
                EventKind::Trade(t) => {
                    for id in [t.maker_order_id, t.taker_order_id] {
                        if let Some(o) = self.open.get_mut(&id) {
                            o.filled += t.qty;
                        }
                    }
                }
                EventKind::Done(d) => {
                    self.open.remove(&d.order_id);
                }
                _ => {}
            }
        }
    }

    fn account(&self, r: u32) -> AccountId {
        // Mostly the pool; sometimes the fee account; sometimes an unknown account.
        match below(r, 40) {
            0 => self.fee_account,
            1 => 500 + below(r >> 8, 3),
            _ => pick(&self.accounts, r >> 8).expect("pool is not empty"),
        }
    }

    fn market(&self, r: u32) -> (MarketId, Option<MarketSpec>) {
        let ids: Vec<MarketId> = self.markets.keys().copied().collect();
        if below(r, 25) == 0 || ids.is_empty() {
            return (9, None); // unknown market
        }
        let id = pick(&ids, r >> 8).expect("not empty");
        (id, Some(self.markets[&id].0))
    }

    fn asset(&self, r: u32) -> AssetId {
        // 0..=2 exist from the setup; 3 exists only if an admin op created it; 9 never.
        match below(r, 30) {
            0 => 9,
            1 => 3,
            _ => below(r >> 8, 3) as AssetId,
        }
    }

    fn amount(&self, asset: AssetId, r: u32) -> u64 {
        let typical = ASSETS.iter().find(|a| a.0 == asset).map_or(1_000, |a| a.3);
        match below(r, 40) {
            0 => 0,
            1 => u64::MAX >> 1,
            2 => 1 << 50,
            3 => self.limits.supply_max,
            _ => (1 + below(r >> 8, typical * 2)) << self.amount_shift,
        }
    }

    fn tx(&mut self, r: u32) -> TxId {
        match below(r, 40) {
            0 => 0,
            1..=4 => pick(&self.txs, r >> 8).unwrap_or(1),
            5 => pick(&self.withdraw_txs, r >> 8).unwrap_or(2),
            6 => 1 + below(r >> 8, 60), // a setup deposit's id
            _ => {
                self.next_tx += 1;
                self.next_tx
            }
        }
    }

    /// A price on tick near the mid (mid +- 6 ticks).
    fn near_price(spec: Option<&MarketSpec>, r: u32) -> u64 {
        let tick = spec.map_or(10, |s| s.tick_size);
        (MID_TICKS - 6 + below(r, 13)) * tick
    }

    /// Mostly `near_price`; sometimes zero, off tick, the largest valid price, or above it.
    fn price(&self, spec: Option<&MarketSpec>, r: u32) -> u64 {
        let tick = spec.map_or(10, |s| s.tick_size);
        let near = Self::near_price(spec, r >> 8);
        match below(r, 60) {
            0 => 0,
            1 => near + 1, // off tick (unless tick is 1)
            2 => self.limits.price_ticks_max.saturating_mul(tick),
            3 => (self.limits.price_ticks_max + 1).saturating_mul(tick),
            4 => (1u64 << below(r >> 8, 43)).saturating_mul(tick), // anywhere in range
            _ => near,
        }
    }

    /// Like `price`, but two times in three on the passive side of the mid (a resting
    /// order: buys below, sells above) or the aggressive side (a taker: buys above, sells
    /// below), so the book builds depth and takers sweep several levels.
    fn biased_price(&self, spec: Option<&MarketSpec>, side: Side, aggressive: bool, r: u32) -> u64 {
        if below(r >> 24, 3) == 0 {
            return self.price(spec, r);
        }
        let tick = spec.map_or(10, |s| s.tick_size);
        let offset = 1 + below(r >> 8, 6);
        let above = (side == Side::Buy) == aggressive;
        let ticks = if above { MID_TICKS + offset } else { MID_TICKS - offset };
        ticks * tick
    }

    /// A small quantity on lot, skewed low so levels hold several orders.
    fn small_qty(spec: Option<&MarketSpec>, r: u32) -> u64 {
        let lot = spec.map_or(10, |s| s.lot_size);
        (1 + below(r, 4) + below(r >> 8, 5)) * lot
    }

    /// Mostly `small_qty`; sometimes zero, off lot, the largest valid qty, or above it.
    fn qty(&self, spec: Option<&MarketSpec>, r: u32) -> u64 {
        let lot = spec.map_or(10, |s| s.lot_size);
        let small = Self::small_qty(spec, r >> 8);
        match below(r, 60) {
            0 => 0,
            1 => small + 1, // off lot (unless lot is 1)
            2 => self.limits.qty_lots_max.saturating_mul(lot),
            3 => (self.limits.qty_lots_max + 1).saturating_mul(lot),
            4 => (1u64 << below(r >> 8, 41)).saturating_mul(lot), // anywhere in range
            _ => small,
        }
    }

    /// Quote a market buy needs for about one lot at the mid, fee aside.
    fn lot_value(&self, spec: Option<&MarketSpec>) -> u64 {
        let Some(s) = spec else { return 1_000 };
        let scale = self.scales.get(&s.base).copied().unwrap_or(0) as u32;
        let value = MID_TICKS as u128 * s.tick_size as u128 * s.lot_size as u128
            / 10u128.pow(scale.min(38));
        value.clamp(1, 1 << 40) as u64
    }

    fn cid(&self, r: u32) -> ClientOrderId {
        if below(r, 2) == 0 {
            0
        } else {
            1 + below(r >> 4, 6)
        }
    }

    fn stp(r: u32) -> StpMode {
        [StpMode::CancelTaker, StpMode::CancelMaker, StpMode::CancelBoth, StpMode::Decrement]
            [below(r, 4) as usize]
    }

    /// Turns one op into a command, given what has been seen so far.
    pub fn resolve(&mut self, op: &Op) -> Command {
        let r = op.r;
        match op.kind {
            0..=4 => {
                let asset = self.asset(r[2]);
                let account = if below(r[4], 12) == 0 {
                    // A brand-new account (reaches AccountsLimit in the tight profile).
                    100 + below(r[4] >> 8, 40)
                } else {
                    self.account(r[1])
                };
                Command::Deposit {
                    tx: self.tx(r[0]),
                    account,
                    asset,
                    amount: self.amount(asset, r[3]),
                }
            }
            5..=7 => {
                let asset = self.asset(r[2]);
                let (tx, account) = (self.tx(r[0]), self.account(r[1]));
                Command::WithdrawRequest {
                    tx,
                    account,
                    asset,
                    amount: self.amount(asset, r[3]) / 2,
                }
            }
            8..=9 => {
                let tx = if below(r[1], 8) == 0 {
                    self.tx(r[0])
                } else {
                    pick(&self.withdraw_txs, r[0]).unwrap_or(7)
                };
                if below(r[2], 2) == 0 {
                    Command::WithdrawComplete { tx }
                } else {
                    Command::WithdrawCancel { tx }
                }
            }
            10..=12 => {
                let asset = self.asset(r[3]);
                let from = self.account(r[1]);
                let to = match below(r[2], 15) {
                    0 => from,
                    1 => 200 + below(r[2] >> 8, 40), // a new receiver
                    _ => self.account(r[2] >> 4),
                };
                let (tx, amount) = (self.tx(r[0]), self.amount(asset, r[4]) / 3);
                let create_account = below(r[3] >> 16, 4) != 0;
                Command::Transfer { tx, from, to, asset, amount, create_account }
            }
            13..=72 => Command::Place(self.resolve_place(op)),
            73..=78 => self.resolve_cancel(op),
            79..=91 => self.resolve_amend(op),
            92..=93 => {
                let account = self.account(r[0]);
                let market = match below(r[1], 10) {
                    0..=4 => None,
                    5 => Some(9),
                    _ => Some(self.market(r[2]).0),
                };
                Command::MassCancel { account, market }
            }
            94..=95 => {
                // Reopen a halted market soon; halt an open one now and then, so halts
                // are exercised without starving the book.
                let halted = self.markets.iter().find(|m| m.1 .1 == MarketStatus::Halted);
                match halted {
                    Some((&market, _)) if below(r[1], 10) != 0 => {
                        Command::SetMarketStatus { market, status: MarketStatus::Open }
                    }
                    _ => {
                        let (market, _) = self.market(r[0]);
                        let status = if below(r[1] >> 8, 4) == 0 {
                            MarketStatus::Halted
                        } else {
                            MarketStatus::Open
                        };
                        Command::SetMarketStatus { market, status }
                    }
                }
            }
            _ => self.resolve_admin(op),
        }
    }

    fn resolve_place(&mut self, op: &Op) -> PlaceOrder {
        let r = op.r;
        let (market, spec) = self.market(r[1]);
        let side = if below(r[2], 2) == 0 { Side::Buy } else { Side::Sell };
        // A third of the orders come from three "hot" accounts, so orders meet their own
        // account's orders often and every STP path (FOK feasibility included) is taken.
        let account = if below(r[0] >> 28, 3) == 0 {
            self.accounts[below(r[0], 3.min(self.accounts.len() as u64)) as usize]
        } else {
            self.account(r[0])
        };
        let mut place = PlaceOrder {
            account,
            market,
            client_order_id: self.cid(r[5]),
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            post_only: false,
            price: self.price(spec.as_ref(), r[3]),
            qty: self.qty(spec.as_ref(), r[4]),
            quote_budget: 0,
            stp: Self::stp(r[2] >> 4),
        };
        match below(r[2] >> 8, 100) {
            0..=39 => place.price = self.biased_price(spec.as_ref(), side, false, r[3]),
            40..=54 => {
                place.tif = TimeInForce::Ioc;
                place.price = self.biased_price(spec.as_ref(), side, true, r[3]);
            }
            55..=64 => {
                place.tif = TimeInForce::Fok;
                place.price = self.biased_price(spec.as_ref(), side, true, r[3]);
            }
            65..=74 => {
                place.post_only = true;
                place.price = self.biased_price(spec.as_ref(), side, false, r[3]);
            }
            75..=84 => {
                // Market buy: the budget buys a few lots, sometimes less than one.
                place.side = Side::Buy;
                place.order_type = OrderType::Market;
                place.tif = TimeInForce::Ioc;
                place.price = 0;
                place.qty = 0;
                let per_lot = self.lot_value(spec.as_ref());
                place.quote_budget = match below(r[3], 30) {
                    0 => 0,
                    1 => u64::MAX >> 1,
                    _ => (1 + below(r[3] >> 8, per_lot * 6)) << self.amount_shift,
                };
                if place.stp == StpMode::Decrement && below(r[5] >> 8, 4) != 0 {
                    place.stp = StpMode::CancelMaker; // Decrement is invalid for market buys
                }
            }
            85..=94 => {
                place.side = Side::Sell;
                place.order_type = OrderType::Market;
                place.tif = TimeInForce::Ioc;
                place.price = 0;
            }
            _ => {
                // Shapes the README calls invalid (or a valid one by chance).
                place.order_type =
                    if below(r[5], 2) == 0 { OrderType::Market } else { OrderType::Limit };
                place.tif = [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok]
                    [below(r[5] >> 2, 3) as usize];
                place.post_only = below(r[5] >> 4, 2) == 0;
                place.quote_budget = below(r[5] >> 6, 3) * 1_000;
            }
        }
        if place.order_type == OrderType::Limit && below(r[5] >> 12, 6) == 0 {
            self.cross_own_order(&mut place, r[4]);
        }
        place
    }

    /// Turns a limit order into one that crosses an open order of its own account (the
    /// STP paths), at that order's price or up to two ticks through it.
    fn cross_own_order(&self, place: &mut PlaceOrder, r: u32) {
        let Some((_, seen)) = self.some_open(r) else { return };
        let Some((spec, _)) = self.markets.get(&seen.market) else { return };
        place.account = seen.account;
        place.market = seen.market;
        place.side = seen.side.opposite();
        let through = below(r >> 16, 3) * spec.tick_size;
        place.price = match place.side {
            Side::Buy => seen.price + through,
            Side::Sell => seen.price.saturating_sub(through).max(spec.tick_size),
        };
    }

    /// An open order the generator knows of, by `r`.
    fn some_open(&self, r: u32) -> Option<(OrderId, SeenOrder)> {
        let ids: Vec<OrderId> = self.open.keys().copied().collect();
        let id = pick(&ids, r)?;
        Some((id, self.open[&id]))
    }

    /// (account, order ref) for a cancel or an amend: mostly a real open order, named by
    /// id or by client id; sometimes a stale id, another account or a random client id.
    fn order_target(&self, r: [u32; 6]) -> (AccountId, OrderRef) {
        let open = self.some_open(r[1]);
        match (below(r[0], 20), open) {
            (0..=15, Some((id, seen))) => {
                let account =
                    if below(r[0] >> 8, 20) == 0 { self.account(r[2]) } else { seen.account };
                let by_client = seen.cid != 0 && below(r[0] >> 12, 3) == 0;
                let order = if by_client { OrderRef::Client(seen.cid) } else { OrderRef::Id(id) };
                (account, order)
            }
            (16..=17, _) => {
                let id = pick(&self.seen_ids, r[1]).unwrap_or(1);
                (self.account(r[2]), OrderRef::Id(id))
            }
            // A random client id, 0 ("none") half the time.
            _ => (self.account(r[2]), OrderRef::Client(self.cid(r[1]))),
        }
    }

    fn resolve_cancel(&mut self, op: &Op) -> Command {
        let (account, order) = self.order_target(op.r);
        Command::Cancel { account, order }
    }

    fn resolve_amend(&mut self, op: &Op) -> Command {
        let r = op.r;
        let (account, order) = self.order_target(r);
        let target = match order {
            OrderRef::Id(id) => self.open.get(&id).copied(),
            OrderRef::Client(cid) => {
                self.open.values().find(|o| o.account == account && o.cid == cid).copied()
            }
        };
        let spec = target.and_then(|o| self.markets.get(&o.market).map(|m| m.0));
        let tick = spec.map_or(10, |s| s.tick_size);
        let lot = spec.map_or(10, |s| s.lot_size);
        let (old_price, old_qty, filled) = target.map_or((0, 0, 0), |o| (o.price, o.qty, o.filled));
        let price = match below(r[3], 20) {
            0..=5 => 0,
            6..=8 => old_price,
            9 => old_price + 1,
            10 => (self.limits.price_ticks_max + 1).saturating_mul(tick),
            _ => Self::near_price(spec.as_ref(), r[3] >> 8),
        };
        let qty = match below(r[4], 24) {
            0..=5 => 0,
            6..=7 => old_qty,
            8..=11 => old_qty.saturating_sub(lot * (1 + below(r[4] >> 8, 3))).max(lot),
            12..=15 => old_qty + lot * (1 + below(r[4] >> 8, 4)),
            16 => filled.max(lot), // at or below what filled: cancels when filled > 0
            17 => old_qty + 1,
            18 => (self.limits.qty_lots_max + 1).saturating_mul(lot),
            19 => Self::small_qty(spec.as_ref(), r[4] >> 8),
            // A large increase: runs short of funds, or of supply_max in profile 2.
            _ => old_qty.saturating_add(lot.saturating_mul(20 + below(r[4] >> 8, 200_000))),
        };
        Command::Amend { account, order, price, qty }
    }

    fn resolve_admin(&mut self, op: &Op) -> Command {
        let r = op.r;
        match below(r[0], 3) {
            0 => {
                let asset = below(r[1], 7) as AssetId; // 0..=2 exist, 6 is above assets_max
                let scale = [0u8, 2, 8, 18, 19][below(r[2], 5) as usize];
                let symbol = if below(r[3], 5) == 0 { Symbol([b' '; 16]) } else { symbol("NEW") };
                Command::CreateAsset { asset, scale, symbol }
            }
            1 => {
                // A new market over existing (or not) assets; many shapes are invalid.
                let base = below(r[1], 4) as AssetId;
                let quote = below(r[1] >> 4, 4) as AssetId;
                let spec = MarketSpec {
                    market: 3 + below(r[2], 4) as MarketId,
                    symbol: if below(r[2] >> 8, 8) == 0 { Symbol::default() } else { symbol("MX") },
                    base,
                    quote,
                    tick_size: [0u64, 1, 5, 10, 100][below(r[3], 5) as usize],
                    lot_size: [0u64, 1, 20, 100, 1_000][below(r[3] >> 4, 5) as usize],
                    min_notional: below(r[3] >> 8, 3) * 50,
                    maker_fee_bps: [0u32, 5, 20, 10_001][below(r[4], 4) as usize],
                    taker_fee_bps: [0u32, 25, 10_000][below(r[4] >> 4, 3) as usize],
                };
                Command::CreateMarket(spec)
            }
            _ => {
                // Re-creating what exists.
                if below(r[1], 2) == 0 {
                    Command::CreateAsset { asset: 1, scale: 2, symbol: symbol("QQQ") }
                } else {
                    Command::CreateMarket(market_spec(below(r[2], 3) as usize))
                }
            }
        }
    }
}

/// Finds a short sub-list of `ops` that still fails `fails` (delta debugging: drop
/// chunks, halving their size down to single ops), within `runs_max` runs.
pub fn shrink_ops(ops: &[Op], runs_max: usize, mut fails: impl FnMut(&[Op]) -> bool) -> Vec<Op> {
    let mut best = ops.to_vec();
    let mut runs = 0usize;
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut start = 0usize;
        while start < best.len() && runs < runs_max {
            let end = (start + chunk).min(best.len());
            let mut candidate = best[..start].to_vec();
            candidate.extend_from_slice(&best[end..]);
            runs += 1;
            if fails(&candidate) {
                best = candidate;
            } else {
                start = end;
            }
        }
        if chunk == 1 || runs >= runs_max {
            return best;
        }
        chunk = chunk.div_ceil(2);
    }
}

/// The engine's command stream for a scenario and ops: the setup, then the resolved ops.
/// Resolution needs the events of each earlier command, so the caller drives it:
/// `step(command) -> events`.
pub fn drive(
    scenario: &Scenario,
    ops: &[Op],
    mut step: impl FnMut(&Command) -> Result<Vec<EventKind>, String>,
) -> Result<(), String> {
    let mut ctx = Ctx::new(scenario);
    for command in &scenario.setup {
        let events = step(command)?;
        ctx.observe(command, &events);
    }
    for op in ops {
        let command = ctx.resolve(op);
        let events = step(&command)?;
        ctx.observe(&command, &events);
    }
    Ok(())
}
