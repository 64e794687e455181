//! A small harness: an exchange with assets, markets and funded accounts, command helpers
//! that return the events of that one command, and extractors for those events.
//!
//! Every command goes through `Harness::run`, which checks after each one what must hold
//! after any command: `apply` accepted the increasing index, every event carries the
//! command's index and time, `check_invariants()` passes, and the balance events explain
//! every balance change exactly (`fuzz_harness::BalanceAudit`).

#![allow(dead_code)] // Each test module uses a different subset of the helpers.

use bourse_engine::{
    Accepted, AccountId, Amended, AssetId, Balance, BalanceChange, Command, Config, Done,
    DoneReason, Event, EventKind, Exchange, LedgerApplied, LevelUpdate, Limits, LogIndex, MarketId,
    MarketSpec, MarketStatus, OrderId, OrderRef, OrderType, OrderView, PlaceOrder, RejectReason,
    Rejected, Side, StpMode, Symbol, TimeInForce, Trade, TxId,
};

use proptest::test_runner::{RngAlgorithm, TestRng};

use crate::fuzz_harness::{assert_same_as_probe, BalanceAudit};

pub const BTC: AssetId = 1;
pub const USDT: AssetId = 2;
pub const ETH: AssetId = 3;
/// An asset id that is never created.
pub const NO_ASSET: AssetId = 3_999;

pub const BTC_USDT: MarketId = 1;
pub const ETH_USDT: MarketId = 2;
/// A market id that is never created.
pub const NO_MARKET: MarketId = 999;

pub const FEE: AccountId = 900;
pub const ALICE: AccountId = 1;
pub const BOB: AccountId = 2;
pub const CAROL: AccountId = 3;
pub const DAVE: AccountId = 4;
/// An account that never receives anything.
pub const NOBODY: AccountId = 77;
pub const TRADERS: [AccountId; 4] = [ALICE, BOB, CAROL, DAVE];

/// Funding of each trader: 1 BTC (10_000 lots), 1_000 USDT, 100 ETH (10_000 lots).
pub const FUND_BTC: u64 = 100_000_000;
pub const FUND_USDT: u64 = 1_000_000_000;
pub const FUND_ETH: u64 = 10_000_000_000;

/// Both markets have tick 10_000: a price of `ticks` is `ticks * 10_000`.
pub fn px(ticks: u64) -> u64 {
    ticks * 10_000
}

/// BTC/USDT quantity of `lots` (0.0001 BTC each).
pub fn btc(lots: u64) -> u64 {
    lots * 10_000
}

/// ETH/USDT quantity of `lots` (0.01 ETH each).
pub fn eth(lots: u64) -> u64 {
    lots * 1_000_000
}

pub fn symbol(text: &str) -> Symbol {
    Symbol::new(text).expect("valid symbol literal")
}

pub fn btc_usdt_spec() -> MarketSpec {
    MarketSpec {
        market: BTC_USDT,
        symbol: symbol("BTC/USDT"),
        base: BTC,
        quote: USDT,
        tick_size: 10_000,
        lot_size: 10_000,
        min_notional: 1,
        maker_fee_bps: 0,
        taker_fee_bps: 0,
    }
}

pub fn eth_usdt_spec() -> MarketSpec {
    MarketSpec {
        market: ETH_USDT,
        symbol: symbol("ETH/USDT"),
        base: ETH,
        quote: USDT,
        tick_size: 10_000,
        lot_size: 1_000_000,
        min_notional: 10_000,
        maker_fee_bps: 10,
        taker_fee_bps: 25,
    }
}

/// Limits that the standard setup fits in but that are small everywhere else, for the
/// limit tests to lower one at a time.
pub fn roomy_limits() -> Limits {
    Limits {
        assets_max: 16,
        markets_max: 16,
        accounts_max: 64,
        orders_max: 1_000,
        orders_per_account_max: 100,
        orders_per_market_max: 500,
        price_ticks_max: 10_000_000,
        qty_lots_max: 1_000_000,
        supply_max: 1 << 50,
        transactions_max: 1_000,
    }
}

pub struct Harness {
    pub ex: Exchange,
    pub index: LogIndex,
    pub time_ns: u64,
    next_tx: TxId,
}

impl Harness {
    /// Default limits, three assets, both markets, the four traders funded.
    pub fn new() -> Harness {
        Harness::with_limits(Limits::default(), &TRADERS)
    }

    /// `limits`, three assets, both markets, and `funded` accounts funded with every
    /// asset (ledger tx ids 1, 2, 3, ... in order).
    pub fn with_limits(limits: Limits, funded: &[AccountId]) -> Harness {
        let mut h = Harness::bare(limits);
        h.run_ok(Command::CreateAsset { asset: BTC, scale: 8, symbol: symbol("BTC") });
        h.run_ok(Command::CreateAsset { asset: USDT, scale: 6, symbol: symbol("USDT") });
        h.run_ok(Command::CreateAsset { asset: ETH, scale: 8, symbol: symbol("ETH") });
        h.run_ok(Command::CreateMarket(btc_usdt_spec()));
        h.run_ok(Command::CreateMarket(eth_usdt_spec()));
        for &account in funded {
            h.deposit(account, BTC, FUND_BTC);
            h.deposit(account, USDT, FUND_USDT);
            h.deposit(account, ETH, FUND_ETH);
        }
        h
    }

    /// An exchange with nothing in it but the fee account.
    pub fn bare(limits: Limits) -> Harness {
        let ex = Exchange::new(Config { limits, fee_account: FEE }).expect("config accepted");
        Harness { ex, index: 0, time_ns: 1_000_000, next_tx: 1 }
    }

    /// A ledger tx id never used before by this harness.
    pub fn tx(&mut self) -> TxId {
        let tx = self.next_tx;
        self.next_tx += 1;
        tx
    }

    /// Applies one command at the next index and returns its events, after the checks
    /// described at the top of this file.
    pub fn run(&mut self, command: Command) -> Vec<Event> {
        self.index += 1;
        self.time_ns += 1_000;
        let audit = BalanceAudit::capture(&self.ex);
        let mut out = Vec::new();
        let applied = self.ex.apply(self.index, self.time_ns, &command, &mut out);
        assert!(applied.is_ok(), "apply({}) refused: {applied:?}", self.index);
        assert_eq!(self.ex.last_index(), self.index);
        assert!(!out.is_empty(), "{command:?} emitted no event");
        for event in &out {
            assert_eq!(event.index, self.index, "{event:?}");
            assert_eq!(event.time_ns, self.time_ns, "{event:?}");
        }
        if let Err(message) = self.ex.check_invariants() {
            panic!("invariants broken after {command:?}: {message}\nevents: {out:#?}");
        }
        if let Err(message) = audit.verify(&self.ex, &out) {
            panic!("balance events wrong after {command:?}: {message}\nevents: {out:#?}");
        }
        out
    }

    /// Runs a command that must not be rejected.
    pub fn run_ok(&mut self, command: Command) -> Vec<Event> {
        let events = self.run(command);
        if let Some(rejected) = rejected(&events) {
            panic!("{command:?} rejected: {rejected:?}");
        }
        events
    }

    /// Runs a command that must change no state: afterwards the state hash must equal
    /// that of the state before plus a trivial reject at the same index and time (the
    /// hash covers the log position, so "unchanged" cannot mean the same hash; see
    /// `fuzz_harness::assert_same_as_probe`).
    pub fn run_unchanged(&mut self, command: Command) -> Vec<Event> {
        let mut before = Vec::new();
        self.ex.encode_snapshot(&mut before);
        let events = self.run(command);
        let what = format!("{command:?} -> {events:?}");
        assert_same_as_probe(&before, &self.ex, self.index, self.time_ns, &what);
        events
    }

    /// Runs a command that must be rejected with `reason`, as its only event, and must
    /// change no state (`run_unchanged`).
    pub fn reject(&mut self, command: Command, reason: RejectReason) -> Rejected {
        let events = self.run_unchanged(command);
        assert_eq!(events.len(), 1, "{command:?} should only be rejected: {events:#?}");
        let rejected = rejected(&events).expect("a reject");
        assert_eq!(rejected.reason, reason, "{command:?}: {rejected:?}");
        assert_eq!(rejected.command, command.kind());
        assert!(!rejected.duplicate, "{rejected:?}");
        rejected
    }

    /// A ledger command (Deposit, WithdrawRequest, Transfer) rejected with `reason` at a
    /// step whose outcome is stored: nothing observable changes (the state does, by one
    /// remembered tx), and repeating the command returns the same reject as a duplicate
    /// without changing any state (`run_unchanged`).
    pub fn reject_stored(&mut self, command: Command, reason: RejectReason) -> Rejected {
        let before = self.observable();
        let events = self.run(command);
        let first = only_reject(&events);
        assert_eq!(first.reason, reason, "{command:?}: {first:?}");
        assert!(!first.duplicate);
        assert_eq!(self.observable(), before, "stored reject {reason:?} changed balances");
        let again = only_reject(&self.run_unchanged(command));
        // The duplicate carries no shortfall: the balance at the time is not stored.
        assert_eq!(
            again,
            Rejected { duplicate: true, shortfall: None, ..first },
            "repeat of {command:?}"
        );
        assert_eq!(first.shortfall.is_some(), reason == RejectReason::InsufficientFunds);
        first
    }

    /// A ledger command that must take effect: its single Ledger event.
    pub fn ledger_ok(&mut self, command: Command) -> LedgerApplied {
        let events = self.run_ok(command);
        let applied = ledger_event(&events);
        assert!(!applied.duplicate, "{applied:?}");
        applied
    }

    /// Repeats a ledger command that already took effect: the stored outcome comes back
    /// as a duplicate and nothing changes.
    pub fn ledger_repeat(&mut self, command: Command, original: LedgerApplied) {
        let events = self.run_unchanged(command);
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(ledger_event(&events), LedgerApplied { duplicate: true, ..original });
    }

    pub fn place(&mut self, order: PlaceOrder) -> Vec<Event> {
        self.run(Command::Place(order))
    }

    /// Places an order that must be accepted; returns its id and the events.
    pub fn place_ok(&mut self, order: PlaceOrder) -> (OrderId, Vec<Event>) {
        let events = self.run_ok(Command::Place(order));
        let accepted = accepted(&events).expect("an Accepted event");
        (accepted.order_id, events)
    }

    /// Places an order that must be accepted and end up resting; returns its id.
    pub fn rest(&mut self, order: PlaceOrder) -> OrderId {
        let (id, events) = self.place_ok(order);
        assert!(self.ex.order(id).is_some(), "{order:?} did not rest: {events:#?}");
        id
    }

    pub fn reject_place(&mut self, order: PlaceOrder, reason: RejectReason) -> Rejected {
        self.reject(Command::Place(order), reason)
    }

    pub fn cancel(&mut self, account: AccountId, order: OrderRef) -> Vec<Event> {
        self.run(Command::Cancel { account, order })
    }

    pub fn amend(
        &mut self,
        account: AccountId,
        order: OrderRef,
        price: u64,
        qty: u64,
    ) -> Vec<Event> {
        self.run(Command::Amend { account, order, price, qty })
    }

    pub fn mass_cancel(&mut self, account: AccountId, market: Option<MarketId>) -> Vec<Event> {
        self.run(Command::MassCancel { account, market })
    }

    pub fn set_status(&mut self, market: MarketId, status: MarketStatus) -> Vec<Event> {
        self.run_ok(Command::SetMarketStatus { market, status })
    }

    pub fn deposit(&mut self, account: AccountId, asset: AssetId, amount: u64) -> Vec<Event> {
        let tx = self.tx();
        self.run_ok(Command::Deposit { tx, account, asset, amount })
    }

    pub fn bal(&self, account: AccountId, asset: AssetId) -> Balance {
        self.ex.balance(account, asset)
    }

    /// Asserts `account`'s `asset` balance.
    #[track_caller]
    pub fn assert_bal(&self, account: AccountId, asset: AssetId, available: u64, held: u64) {
        assert_eq!(
            self.bal(account, asset),
            Balance { available, held },
            "balance of account {account} asset {asset}"
        );
    }

    /// Sum over all accounts of (available + held) of `asset`.
    pub fn asset_total(&self, asset: AssetId) -> u128 {
        self.ex.accounts().iter().map(|&a| self.bal(a, asset).total() as u128).sum()
    }

    pub fn supply(&self, asset: AssetId) -> u64 {
        self.ex.asset(asset).expect("asset exists").supply
    }

    /// Everything a client can observe, as text, to compare before and after a command
    /// that must change nothing visible (the state hash may legitimately move, e.g. the
    /// order id counter after an expired FOK).
    pub fn observable(&self) -> String {
        let mut text = String::new();
        for account in self.ex.accounts() {
            text += &format!("account {account}: {:?}\n", self.ex.balances(account));
            for order in self.ex.open_orders(account) {
                text += &format!("  {:?}\n", order_fields(&order));
            }
        }
        for market in self.ex.markets() {
            text += &format!(
                "market {:?} {:?} open {}\n",
                market.spec, market.status, market.open_orders
            );
            let depth = self.ex.depth(market.spec.market, 100).expect("depth of a listed market");
            for level in depth.bids.iter().chain(&depth.asks) {
                text += &format!("  {} {} {}\n", level.price, level.qty, level.orders);
            }
        }
        for asset in self.ex.assets() {
            text += &format!(
                "asset {} {} {} {}\n",
                asset.asset, asset.scale, asset.symbol, asset.supply
            );
        }
        text
    }

    /// (price, qty, orders) of each level, best first.
    pub fn bids(&self, market: MarketId) -> Vec<(u64, u64, u32)> {
        let depth = self.ex.depth(market, 100).expect("known market");
        depth.bids.iter().map(|l| (l.price, l.qty, l.orders)).collect()
    }

    pub fn asks(&self, market: MarketId) -> Vec<(u64, u64, u32)> {
        let depth = self.ex.depth(market, 100).expect("known market");
        depth.asks.iter().map(|l| (l.price, l.qty, l.orders)).collect()
    }

    /// The open order `id`, which must exist.
    #[track_caller]
    pub fn open(&self, id: OrderId) -> OrderView {
        self.ex.order(id).unwrap_or_else(|| panic!("order {id} should be open"))
    }
}

/// OrderView's fields as a comparable tuple (OrderView itself need not be Debug or Eq).
#[allow(clippy::type_complexity)]
pub fn order_fields(
    o: &OrderView,
) -> (OrderId, u64, AccountId, MarketId, Side, u64, u64, u64, u64, u64, bool, StpMode) {
    (
        o.order_id,
        o.client_order_id,
        o.account,
        o.market,
        o.side,
        o.price,
        o.qty,
        o.leaves_qty,
        o.filled_qty,
        o.reserved,
        o.post_only,
        o.stp,
    )
}

// ----- Order builders -----

pub fn limit(account: AccountId, market: MarketId, side: Side, price: u64, qty: u64) -> PlaceOrder {
    PlaceOrder {
        account,
        market,
        client_order_id: 0,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        post_only: false,
        price,
        qty,
        quote_budget: 0,
        stp: StpMode::CancelTaker,
    }
}

pub fn buy(account: AccountId, market: MarketId, price: u64, qty: u64) -> PlaceOrder {
    limit(account, market, Side::Buy, price, qty)
}

pub fn sell(account: AccountId, market: MarketId, price: u64, qty: u64) -> PlaceOrder {
    limit(account, market, Side::Sell, price, qty)
}

pub fn market_buy(account: AccountId, market: MarketId, quote_budget: u64) -> PlaceOrder {
    PlaceOrder {
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        price: 0,
        qty: 0,
        quote_budget,
        ..buy(account, market, 0, 0)
    }
}

pub fn market_sell(account: AccountId, market: MarketId, qty: u64) -> PlaceOrder {
    PlaceOrder {
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        price: 0,
        ..sell(account, market, 0, qty)
    }
}

/// Modifiers for `PlaceOrder`, so a test reads `buy(..).ioc().cid(7)`.
pub trait OrderExt {
    fn ioc(self) -> Self;
    fn fok(self) -> Self;
    fn post_only(self) -> Self;
    fn stp(self, mode: StpMode) -> Self;
    fn cid(self, client_order_id: u64) -> Self;
}

impl OrderExt for PlaceOrder {
    fn ioc(self) -> Self {
        PlaceOrder { tif: TimeInForce::Ioc, ..self }
    }
    fn fok(self) -> Self {
        PlaceOrder { tif: TimeInForce::Fok, ..self }
    }
    fn post_only(self) -> Self {
        PlaceOrder { post_only: true, ..self }
    }
    fn stp(self, mode: StpMode) -> Self {
        PlaceOrder { stp: mode, ..self }
    }
    fn cid(self, client_order_id: u64) -> Self {
        PlaceOrder { client_order_id, ..self }
    }
}

// ----- Event extractors -----

pub fn accepted(events: &[Event]) -> Option<Accepted> {
    events.iter().find_map(|e| match e.kind {
        EventKind::Accepted(a) => Some(a),
        _ => None,
    })
}

pub fn rejected(events: &[Event]) -> Option<Rejected> {
    events.iter().find_map(|e| match e.kind {
        EventKind::Rejected(r) => Some(r),
        _ => None,
    })
}

pub fn amended(events: &[Event]) -> Option<Amended> {
    events.iter().find_map(|e| match e.kind {
        EventKind::Amended(a) => Some(a),
        _ => None,
    })
}

pub fn trades(events: &[Event]) -> Vec<Trade> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Trade(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// (maker order id, price, qty) of each trade, in order.
pub fn fills(events: &[Event]) -> Vec<(OrderId, u64, u64)> {
    trades(events).iter().map(|t| (t.maker_order_id, t.price, t.qty)).collect()
}

pub fn dones(events: &[Event]) -> Vec<Done> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Done(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// The `Done` of `order`, which must be the only one for it.
#[track_caller]
pub fn done_of(events: &[Event], order: OrderId) -> Done {
    let found: Vec<Done> = dones(events).into_iter().filter(|d| d.order_id == order).collect();
    assert_eq!(found.len(), 1, "expected one Done for order {order}: {events:#?}");
    found[0]
}

/// (reason, filled qty) of `order`'s Done.
#[track_caller]
pub fn done_reason(events: &[Event], order: OrderId) -> (DoneReason, u64) {
    let done = done_of(events, order);
    (done.reason, done.filled_qty)
}

pub fn balance_events(events: &[Event]) -> Vec<BalanceChange> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Balance(b) => Some(b),
            _ => None,
        })
        .collect()
}

pub fn level_events(events: &[Event]) -> Vec<LevelUpdate> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Level(l) => Some(l),
            _ => None,
        })
        .collect()
}

pub fn ledger_events(events: &[Event]) -> Vec<LedgerApplied> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Ledger(l) => Some(l),
            _ => None,
        })
        .collect()
}

/// The single ledger event of a ledger command.
#[track_caller]
pub fn ledger_event(events: &[Event]) -> LedgerApplied {
    let found = ledger_events(events);
    assert_eq!(found.len(), 1, "{events:#?}");
    found[0]
}

/// The single event, which must be a reject.
#[track_caller]
pub fn only_reject(events: &[Event]) -> Rejected {
    assert_eq!(events.len(), 1, "{events:#?}");
    rejected(events).expect("a reject")
}

// ----- Seeded randomness -----

/// The seed of a randomised test: `BOURSE_SEED=<n>` replays a run; otherwise a fresh one
/// from the clock. Printed either way (shown by `cargo test` when the test fails).
// The clock ban in clippy.toml protects the engine's determinism; a test's seed is the
// one place a fresh value each run is wanted, and it is printed so the run replays.
#[allow(clippy::disallowed_methods)]
pub fn seed_from_env() -> u64 {
    let seed =
        std::env::var("BOURSE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("seed {seed} (BOURSE_SEED={seed} replays it)");
    seed
}

/// A deterministic generator for `seed` (proptest's ChaCha).
pub fn seeded_rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}
