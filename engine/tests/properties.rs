//! Property tests of the engine over random command streams (generators in
//! `tests/common/`). They use only the engine's public API and the test's own
//! bookkeeping, learnt from the events it saw:
//!
//! - after every command: conservation per asset (balances == deposits - completed
//!   withdrawals, tracked from ledger events); held == open orders' `reserved` + pending
//!   withdrawals (from `open_orders()` and the test's record of withdrawals), and each
//!   open order reserves exactly the README's worst case for its leaves;
//!   `check_invariants()`; the book is never crossed and `depth` is the sum of the open
//!   orders; `Level` events match the book; every event carries the command's index and
//!   time; every `BalanceChange` is the running sum of its deltas and the running sums are
//!   the engine's balances; a stale index is refused without effect;
//! - replay: the same stream on a fresh engine gives the same events and state hash;
//! - snapshot: encode, decode, re-encode gives the same bytes and hash, and the decoded
//!   engine then behaves exactly like the original on a further stream;
//! - balance-log audit through `BalanceLog`.
//!
//! Cases: `BOURSE_PROPTEST_CASES`; seed: printed, replay with `BOURSE_PROPTEST_SEED`.

mod common;

use std::collections::BTreeMap;

use bourse_engine::{
    AccountId, AssetId, BalanceLog, Command, Config, Event, EventKind, Exchange, LedgerKind,
    LogIndex, MarketId, MarketSpec, Side, TxId,
};
use common::{Ctx, Op, Scenario};
use proptest::prelude::*;

/// Time stamped on the command at `index`: arbitrary but distinct from the index.
fn time_of(index: LogIndex) -> u64 {
    1_600_000_000_000_000_000 + index * 104_729
}

/// Sums of `(available, held)` per (account, asset).
type Balances = BTreeMap<(AccountId, AssetId), (u64, u64)>;
/// `(qty, orders)` per (market, side, price).
type Book = BTreeMap<(MarketId, Side, u64), (u64, u32)>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($arg)+)));
        }
    };
}

/// An engine driven by a stream, with the test's own bookkeeping.
struct Checked {
    engine: Exchange,
    index: LogIndex,
    ctx: Ctx,
    /// Run the per-command property checks (off for the cheaper whole-stream tests).
    full: bool,
    deposited: BTreeMap<AssetId, u128>,
    withdrawn: BTreeMap<AssetId, u128>,
    /// Pending withdrawals: tx -> (account, asset, amount).
    pending: BTreeMap<TxId, (AccountId, AssetId, u64)>,
    /// Running balances from `BalanceChange` deltas.
    running: Balances,
    /// The book as of the previous command.
    book: Book,
    events: Vec<Event>,
}

impl Checked {
    fn new(scenario: &Scenario, full: bool) -> Checked {
        let config = Config { limits: scenario.limits, fee_account: scenario.fee_account };
        Checked {
            engine: Exchange::new(config).expect("valid test config"),
            index: 0,
            ctx: Ctx::new(scenario),
            full,
            deposited: BTreeMap::new(),
            withdrawn: BTreeMap::new(),
            pending: BTreeMap::new(),
            running: BTreeMap::new(),
            book: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Applies the setup, then the ops.
    fn run(&mut self, scenario: &Scenario, ops: &[Op]) -> Result<(), TestCaseError> {
        for command in &scenario.setup {
            self.apply(command)?;
        }
        self.run_ops(ops)
    }

    fn run_ops(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for op in ops {
            let command = self.ctx.resolve(op);
            self.apply(&command)?;
        }
        Ok(())
    }

    /// Applies one command, learns from its events and (if `full`) checks every property.
    fn apply(&mut self, command: &Command) -> Result<Vec<Event>, TestCaseError> {
        self.index += 1;
        let (index, time_ns) = (self.index, time_of(self.index));
        let mut out = Vec::new();
        let applied = self.engine.apply(index, time_ns, command, &mut out);
        ensure!(applied.is_ok(), "apply({index}) failed: {applied:?}");
        ensure!(self.engine.last_index() == index, "last_index not advanced");
        let kinds: Vec<EventKind> = out.iter().map(|e| e.kind).collect();
        self.ctx.observe(command, &kinds);
        self.learn(&out).map_err(|e| with_command(e, index, command, &out))?;
        if self.full {
            self.check(&out, command).map_err(|e| with_command(e, index, command, &out))?;
        }
        self.events.extend_from_slice(&out);
        Ok(out)
    }

    /// Tracks ledger totals, pending withdrawals and running balances from the events;
    /// checks each `BalanceChange` against the running sum as it goes.
    fn learn(&mut self, events: &[Event]) -> Result<(), TestCaseError> {
        for event in events {
            ensure!(
                event.index == self.index && event.time_ns == time_of(self.index),
                "event without the command's index/time: {event:?}"
            );
            match event.kind {
                EventKind::Ledger(l) if !l.duplicate => match l.kind {
                    LedgerKind::Deposit => {
                        *self.deposited.entry(l.asset).or_default() += l.amount as u128
                    }
                    LedgerKind::WithdrawRequest => {
                        let fresh =
                            self.pending.insert(l.tx, (l.account, l.asset, l.amount)).is_none();
                        ensure!(fresh, "withdrawal {} requested twice", l.tx);
                    }
                    LedgerKind::WithdrawComplete | LedgerKind::WithdrawCancel => {
                        let known = self.pending.remove(&l.tx);
                        ensure!(
                            known == Some((l.account, l.asset, l.amount)),
                            "withdrawal step {l:?} does not match its request {known:?}"
                        );
                        if l.kind == LedgerKind::WithdrawComplete {
                            *self.withdrawn.entry(l.asset).or_default() += l.amount as u128;
                        }
                    }
                    LedgerKind::Transfer => {}
                },
                EventKind::Balance(change) => {
                    let key = (change.account, change.asset);
                    let (available, held) = self.running.get(&key).copied().unwrap_or((0, 0));
                    let next_available = available as i128 + change.delta_available as i128;
                    let next_held = held as i128 + change.delta_held as i128;
                    ensure!(
                        next_available == change.available as i128 && next_held == change.held as i128,
                        "balance change {change:?} is not the running sum from ({available}, {held})"
                    );
                    self.running.insert(key, (change.available, change.held));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&mut self, events: &[Event], command: &Command) -> Result<(), TestCaseError> {
        let engine = &self.engine;
        if let Err(problem) = engine.check_invariants() {
            return Err(TestCaseError::fail(format!("check_invariants: {problem}")));
        }
        let specs: BTreeMap<MarketId, MarketSpec> =
            engine.markets().into_iter().map(|m| (m.spec.market, m.spec)).collect();
        let scales: BTreeMap<AssetId, u8> =
            engine.assets().into_iter().map(|a| (a.asset, a.scale)).collect();
        let accounts = engine.accounts();
        self.check_conservation(&accounts)?;
        self.check_holds(&accounts, &specs, &scales)?;
        check_event_order(events, command, engine.fee_account())?;
        let book = self.check_book(&accounts, &specs)?;
        check_level_events(events, &self.book, &book)?;
        self.book = book;
        self.check_stale_index(command)?;
        Ok(())
    }

    /// Per asset: sum of (available + held) over all accounts == deposits - completed
    /// withdrawals == the asset's supply; and the running balances are the engine's.
    fn check_conservation(&self, accounts: &[AccountId]) -> Result<(), TestCaseError> {
        let engine = &self.engine;
        for asset in engine.assets() {
            let mut total = 0u128;
            for &account in accounts {
                let balance = engine.balance(account, asset.asset);
                total += balance.total() as u128;
                let running = self.running.get(&(account, asset.asset)).copied().unwrap_or((0, 0));
                ensure!(
                    running == (balance.available, balance.held),
                    "balance ({account}, {}) is {balance:?} but its balance log sums to {running:?}",
                    asset.asset
                );
            }
            let expected = self.deposited.get(&asset.asset).copied().unwrap_or(0)
                - self.withdrawn.get(&asset.asset).copied().unwrap_or(0);
            ensure!(
                total == expected,
                "asset {}: balances sum to {total}, ledger says {expected}",
                asset.asset
            );
            ensure!(
                asset.supply as u128 == expected,
                "asset {}: supply {} != {expected}",
                asset.asset,
                asset.supply
            );
        }
        for &(account, asset) in self.running.keys() {
            ensure!(
                engine.account_exists(account),
                "balance log names unknown account {account} ({asset})"
            );
        }
        Ok(())
    }

    /// held == open orders' `reserved` + pending withdrawals, per (account, asset); and
    /// each open order reserves exactly `reserve_buy(leaves, limit)` (a buy) or its leaves
    /// (a sell).
    fn check_holds(
        &self,
        accounts: &[AccountId],
        specs: &BTreeMap<MarketId, MarketSpec>,
        scales: &BTreeMap<AssetId, u8>,
    ) -> Result<(), TestCaseError> {
        let engine = &self.engine;
        let mut expected: BTreeMap<(AccountId, AssetId), u128> = BTreeMap::new();
        for &(account, asset, amount) in self.pending.values() {
            *expected.entry((account, asset)).or_default() += amount as u128;
        }
        for &account in accounts {
            for order in engine.open_orders(account) {
                let spec = specs
                    .get(&order.market)
                    .ok_or_else(|| TestCaseError::fail("order in unknown market"))?;
                ensure!(order.account == account, "open_orders({account}) lists {order:?}");
                ensure!(
                    order.leaves_qty > 0 && order.leaves_qty <= order.qty,
                    "bad quantities {order:?}"
                );
                let held_asset = if order.side == Side::Buy { spec.quote } else { spec.base };
                *expected.entry((account, held_asset)).or_default() += order.reserved as u128;
                let worst =
                    worst_case(spec, scales[&spec.base], order.side, order.price, order.leaves_qty);
                ensure!(
                    order.reserved as u128 == worst,
                    "order reserves {} not {worst}: {order:?}",
                    order.reserved
                );
            }
            for asset in engine.assets() {
                let held = engine.balance(account, asset.asset).held as u128;
                let want = expected.get(&(account, asset.asset)).copied().unwrap_or(0);
                ensure!(
                    held == want,
                    "({account}, {}): held {held}, orders + withdrawals {want}",
                    asset.asset
                );
            }
        }
        Ok(())
    }

    /// The book is never crossed, levels are sorted and non-empty, and `depth` is the sum
    /// of the open orders. Returns the book.
    fn check_book(
        &self,
        accounts: &[AccountId],
        specs: &BTreeMap<MarketId, MarketSpec>,
    ) -> Result<Book, TestCaseError> {
        let engine = &self.engine;
        let mut from_orders: Book = BTreeMap::new();
        let mut per_market: BTreeMap<MarketId, u32> = BTreeMap::new();
        for &account in accounts {
            for order in engine.open_orders(account) {
                let level = from_orders.entry((order.market, order.side, order.price)).or_default();
                level.0 += order.leaves_qty;
                level.1 += 1;
                *per_market.entry(order.market).or_default() += 1;
            }
        }
        let mut book: Book = BTreeMap::new();
        for &market in specs.keys() {
            let depth =
                engine.depth(market, usize::MAX).ok_or_else(|| TestCaseError::fail("no depth"))?;
            ensure!(depth.market == market, "depth of {market} names {}", depth.market);
            if let (Some(bid), Some(ask)) = (depth.bids.first(), depth.asks.first()) {
                ensure!(
                    bid.price < ask.price,
                    "market {market} crossed: bid {} >= ask {}",
                    bid.price,
                    ask.price
                );
            }
            ensure!(
                depth.bids.windows(2).all(|w| w[0].price > w[1].price),
                "bids not best first: {depth:?}"
            );
            ensure!(
                depth.asks.windows(2).all(|w| w[0].price < w[1].price),
                "asks not best first: {depth:?}"
            );
            for (side, levels) in [(Side::Buy, &depth.bids), (Side::Sell, &depth.asks)] {
                for level in levels {
                    ensure!(level.qty > 0 && level.orders > 0, "empty level {level:?}");
                    book.insert((market, side, level.price), (level.qty, level.orders));
                }
            }
            // A bounded depth is the best `levels_max` levels of the full one.
            let top = engine.depth(market, 2).ok_or_else(|| TestCaseError::fail("no depth"))?;
            ensure!(
                top.bids[..] == depth.bids[..depth.bids.len().min(2)]
                    && top.asks[..] == depth.asks[..depth.asks.len().min(2)],
                "depth({market}, 2) is not the top of the full depth"
            );
            let view =
                engine.market(market).ok_or_else(|| TestCaseError::fail("no market view"))?;
            let count = per_market.get(&market).copied().unwrap_or(0);
            ensure!(
                view.open_orders == count,
                "market {market}: open_orders {} != {count}",
                view.open_orders
            );
        }
        ensure!(book == from_orders, "depth {book:?}\n != open orders {from_orders:?}");
        Ok(book)
    }

    /// A command at an index that is not above the last one is refused and changes nothing.
    fn check_stale_index(&mut self, command: &Command) -> Result<(), TestCaseError> {
        // Hashing the whole state is the expensive part: do it on a sample of commands.
        if self.index % 16 != 0 {
            return Ok(());
        }
        let before = self.engine.state_hash();
        for stale in [self.index, self.index / 2] {
            let mut out = Vec::new();
            let result = self.engine.apply(stale, time_of(stale), command, &mut out);
            ensure!(result.is_err(), "apply at stale index {stale} accepted");
            ensure!(out.is_empty(), "apply at stale index {stale} emitted {out:?}");
        }
        ensure!(self.engine.last_index() == self.index, "stale apply moved last_index");
        ensure!(self.engine.state_hash() == before, "stale apply changed the state");
        Ok(())
    }
}

/// The README's reservation of an open order's leaves: `reserve_buy(leaves, limit)` for a
/// buy, the leaves for a sell.
fn worst_case(spec: &MarketSpec, base_scale: u8, side: Side, price: u64, leaves_qty: u64) -> u128 {
    if side == Side::Sell {
        return leaves_qty as u128;
    }
    let qptl = spec.tick_size as u128 * spec.lot_size as u128 / 10u128.pow(base_scale as u32);
    let notional = (price / spec.tick_size) as u128 * (leaves_qty / spec.lot_size) as u128 * qptl;
    let bps = spec.maker_fee_bps.max(spec.taker_fee_bps) as u128;
    notional + notional * bps / 10_000
}

/// Every level whose (qty, orders) changed has a `Level` event, and the last `Level`
/// event of each level matches the book after the command.
fn check_level_events(events: &[Event], before: &Book, after: &Book) -> Result<(), TestCaseError> {
    let mut last: Book = BTreeMap::new();
    for event in events {
        if let EventKind::Level(l) = event.kind {
            ensure!((l.qty == 0) == (l.orders == 0), "level update {l:?}");
            last.insert((l.market, l.side, l.price), (l.qty, l.orders));
        }
    }
    for (key, value) in &last {
        let now = after.get(key).copied().unwrap_or((0, 0));
        ensure!(*value == now, "last level event for {key:?} says {value:?}, book has {now:?}");
    }
    for key in before.keys().chain(after.keys()) {
        if before.get(key) != after.get(key) {
            ensure!(
                last.contains_key(key),
                "level {key:?} changed {:?} -> {:?} without a Level event",
                before.get(key),
                after.get(key)
            );
        }
    }
    Ok(())
}

/// The README's order of events within a command:
/// - a reject is the command's only event (a reject changes nothing);
/// - a place starts with `Accepted`, then the hold (`OrderHold` of the new order) if any;
///   a FOK that cannot fill is exactly `Accepted`, `Done(Expired)` (no balance change);
/// - each `Trade` is followed by its balance changes, the taker's, then the maker's, then
///   the fee account's;
/// - a place ends with the taker's `Level` (it rests) or `Done`.
fn check_event_order(
    events: &[Event],
    command: &Command,
    fee_account: AccountId,
) -> Result<(), TestCaseError> {
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    if matches!(kinds.first(), Some(EventKind::Rejected(_))) {
        ensure!(kinds.len() == 1, "a reject with other events");
        return Ok(());
    }
    let Command::Place(place) = command else { return Ok(()) };
    let Some(EventKind::Accepted(accepted)) = kinds.first() else {
        return Err(TestCaseError::fail("a place that is neither accepted nor rejected"));
    };
    let id = accepted.order_id;
    let hold_at = kinds.iter().position(|k| {
        matches!(k, EventKind::Balance(b) if b.reason == bourse_engine::BalanceReason::OrderHold(id))
    });
    match hold_at {
        Some(at) => ensure!(at == 1, "the hold is event {at}, not right after Accepted"),
        None => {
            // Only a FOK that cannot fill holds nothing.
            ensure!(
                place.tif == bourse_engine::TimeInForce::Fok,
                "an accepted order without a hold"
            );
            let expired = matches!(kinds.as_slice(), [_, EventKind::Done(d)]
                if d.order_id == id && d.reason == bourse_engine::DoneReason::Expired && d.filled_qty == 0);
            ensure!(expired, "an unfillable FOK must be exactly Accepted, Done(Expired)");
        }
    }
    for (at, kind) in kinds.iter().enumerate() {
        let EventKind::Trade(trade) = kind else { continue };
        let mut rank_last = 0;
        let mut parties = [false; 2];
        for next in &kinds[at + 1..] {
            let EventKind::Balance(b) = next else { break };
            use bourse_engine::BalanceReason as Why;
            let rank = match b.reason {
                Why::Trade(t) if t == trade.trade_id && b.account == trade.taker_account => 0,
                Why::Trade(t) if t == trade.trade_id && b.account == trade.maker_account => 1,
                Why::Fee(t) if t == trade.trade_id && b.account == fee_account => 2,
                _ => break, // a release or a hold: no longer this trade's settlement
            };
            ensure!(
                rank >= rank_last,
                "trade {} settles out of order (taker, maker, fee)",
                trade.trade_id
            );
            if rank < 2 {
                parties[rank] = true;
            }
            rank_last = rank;
        }
        ensure!(
            parties == [true, true],
            "trade {} is not followed by both parties' balance changes",
            trade.trade_id
        );
    }
    let ends_well = match kinds.last() {
        Some(EventKind::Done(d)) => d.order_id == id,
        Some(EventKind::Level(l)) => l.market == place.market && l.side == place.side,
        _ => false,
    };
    ensure!(ends_well, "a place must end with the taker's Level or Done, not {:?}", kinds.last());
    Ok(())
}

fn with_command(
    error: TestCaseError,
    index: LogIndex,
    command: &Command,
    events: &[Event],
) -> TestCaseError {
    let kinds: Vec<String> = events.iter().map(|e| format!("{:?}", e.kind)).collect();
    TestCaseError::fail(format!(
        "{error}\n  at command #{index}: {command:?}\n  events:\n    {}",
        kinds.join("\n    ")
    ))
}

fn stream_len() -> std::ops::Range<usize> {
    1..250
}

proptest! {
    #![proptest_config(common::proptest_config("invariants", "proptest-regressions/properties.txt", 320))]

    /// Every property of the engine's state after every command of a random stream.
    #[test]
    fn invariants_after_every_command(seed in any::<u64>(), ops in common::ops_strategy(stream_len())) {
        let scenario = Scenario::new(seed);
        let mut checked = Checked::new(&scenario, true);
        checked.run(&scenario, &ops)?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config("replay", "proptest-regressions/properties.txt", 160))]

    /// The same stream on a fresh engine gives the same events and the same state hash.
    #[test]
    fn replay_is_identical(seed in any::<u64>(), ops in common::ops_strategy(stream_len())) {
        let scenario = Scenario::new(seed);
        let mut first = Checked::new(&scenario, false);
        first.run(&scenario, &ops)?;
        let mut second = Checked::new(&scenario, false);
        second.run(&scenario, &ops)?;
        prop_assert_eq!(first.events.len(), second.events.len());
        for (a, b) in first.events.iter().zip(&second.events) {
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(first.engine.state_hash(), second.engine.state_hash());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        first.engine.encode_snapshot(&mut a);
        second.engine.encode_snapshot(&mut b);
        prop_assert!(a == b, "snapshots of two replays differ");
    }
}

proptest! {
    #![proptest_config(common::proptest_config("snapshot", "proptest-regressions/properties.txt", 160))]

    /// encode -> decode -> encode gives the same bytes and hash; the decoded engine has
    /// the same observable state and then behaves exactly like the original.
    #[test]
    fn snapshot_round_trip(
        seed in any::<u64>(),
        before in common::ops_strategy(0..200),
        after in common::ops_strategy(1..150),
    ) {
        let scenario = Scenario::new(seed);
        let mut original = Checked::new(&scenario, false);
        original.run(&scenario, &before)?;
        let mut bytes = Vec::new();
        original.engine.encode_snapshot(&mut bytes);
        let decoded = Exchange::decode_snapshot(&bytes);
        prop_assert!(decoded.is_ok(), "decode failed: {:?}", decoded.err());
        let mut restored = decoded.expect("checked");
        let mut again = Vec::new();
        restored.encode_snapshot(&mut again);
        prop_assert!(bytes == again, "re-encoded snapshot differs ({} vs {} bytes)", bytes.len(), again.len());
        prop_assert_eq!(original.engine.state_hash(), restored.state_hash());
        prop_assert_eq!(restored.last_index(), original.engine.last_index());
        prop_assert!(restored.check_invariants().is_ok(), "{:?}", restored.check_invariants());
        same_observable_state(&original.engine, &restored)?;
        // A truncated snapshot is refused, never a panic.
        for cut in [0, 1, bytes.len() / 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                prop_assert!(Exchange::decode_snapshot(&bytes[..cut]).is_err(), "truncated snapshot ({cut} bytes) decoded");
            }
        }
        // A corrupted snapshot (a file) never panics the decoder, nor the invariant check
        // of what it decoded, if it decoded at all.
        let mut rng = common::SplitMix64::new(seed);
        for _ in 0..8 {
            if bytes.is_empty() {
                break;
            }
            let mut corrupt = bytes.clone();
            let at = rng.below(corrupt.len() as u64) as usize;
            corrupt[at] ^= 1 << rng.below(8);
            let outcome = std::panic::catch_unwind(|| {
                Exchange::decode_snapshot(&corrupt).map(|engine| engine.check_invariants())
            });
            prop_assert!(outcome.is_ok(), "decoding a snapshot with byte {at} flipped panicked");
        }
        for op in &after {
            let command = original.ctx.resolve(op);
            let expected = original.apply(&command)?;
            let mut out = Vec::new();
            let result = restored.apply(original.index, time_of(original.index), &command, &mut out);
            prop_assert!(result.is_ok(), "restored engine refused #{}: {:?}", original.index, result);
            prop_assert!(out == expected, "after restore, {command:?}:\n  original {expected:?}\n  restored {out:?}");
        }
        prop_assert_eq!(original.engine.state_hash(), restored.state_hash());
        same_observable_state(&original.engine, &restored)?;
    }
}

/// Accounts, balances, open orders, markets and assets agree.
fn same_observable_state(a: &Exchange, b: &Exchange) -> Result<(), TestCaseError> {
    ensure!(a.accounts() == b.accounts(), "accounts differ");
    ensure!(a.fee_account() == b.fee_account() && a.limits() == b.limits(), "config differs");
    for account in a.accounts() {
        ensure!(a.balances(account) == b.balances(account), "balances of {account} differ");
        let (x, y) = (a.open_orders(account), b.open_orders(account));
        ensure!(
            format!("{x:?}") == format!("{y:?}"),
            "open orders of {account} differ:\n {x:?}\n {y:?}"
        );
    }
    ensure!(format!("{:?}", a.markets()) == format!("{:?}", b.markets()), "markets differ");
    ensure!(format!("{:?}", a.assets()) == format!("{:?}", b.assets()), "assets differ");
    for market in a.markets() {
        let (x, y) =
            (a.depth(market.spec.market, usize::MAX), b.depth(market.spec.market, usize::MAX));
        ensure!(format!("{x:?}") == format!("{y:?}"), "depth of {} differs", market.spec.market);
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config("balance_log", "proptest-regressions/properties.txt", 160))]

    /// For each (account, asset), the `BalanceChange` deltas recorded by `BalanceLog` sum
    /// to the final balance, and each record's balance is the running sum.
    #[test]
    fn balance_log_audit(seed in any::<u64>(), ops in common::ops_strategy(stream_len())) {
        let scenario = Scenario::new(seed);
        let mut checked = Checked::new(&scenario, false);
        checked.run(&scenario, &ops)?;
        let mut log = BalanceLog::new(1 << 20);
        log.record_all(&checked.events);
        let engine = &checked.engine;
        for account in engine.accounts() {
            prop_assert_eq!(log.dropped(account), 0);
            let mut sums: BTreeMap<AssetId, (i128, i128)> = BTreeMap::new();
            let mut last_index = 0;
            for record in log.records(account) {
                let change = record.change;
                prop_assert_eq!(change.account, account);
                prop_assert!(record.index >= last_index, "records out of order");
                prop_assert_eq!(record.time_ns, time_of(record.index));
                last_index = record.index;
                let sum = sums.entry(change.asset).or_default();
                sum.0 += change.delta_available as i128;
                sum.1 += change.delta_held as i128;
                prop_assert!(
                    *sum == (change.available as i128, change.held as i128),
                    "record {record:?} is not the running sum {sum:?}"
                );
            }
            for asset in engine.assets() {
                let balance = engine.balance(account, asset.asset);
                let sum = sums.get(&asset.asset).copied().unwrap_or((0, 0));
                prop_assert!(
                    sum == (balance.available as i128, balance.held as i128),
                    "({account}, {}): deltas sum to {sum:?}, balance {balance:?}", asset.asset
                );
            }
        }
    }
}

/// A fresh engine's snapshot round-trips too (no assets, no accounts but the fee account).
#[test]
fn snapshot_of_empty_engine() {
    let engine = Exchange::new(Config::default()).expect("default config");
    let mut bytes = Vec::new();
    engine.encode_snapshot(&mut bytes);
    let restored = Exchange::decode_snapshot(&bytes).expect("decodes");
    let mut again = Vec::new();
    restored.encode_snapshot(&mut again);
    assert_eq!(bytes, again);
    assert_eq!(engine.state_hash(), restored.state_hash());
    assert_eq!(restored.accounts(), vec![Config::default().fee_account]);
}
