//! Differential test: the engine against the reference model in `tests/model/`, which was
//! written separately from `engine/README.md`.
//!
//! Random command streams (setup, then resolved `Op`s; see `tests/common/`) are applied to
//! both. After every command the test compares: the events whose content the README pins
//! down (accept/reject with reason, amends, trades in order, done orders, ledger and admin
//! outcomes, mass cancels), every balance of every account, every open order (id, client
//! id, price, total, leaves, filled, reservation), the book depth of every market, and
//! the account list.
//!
//! Seeds: `differential_seeded` runs `BOURSE_DIFF_CASES` seeds (default 500) from
//! `BOURSE_DIFF_SEED` (default a fixed base; `random` for a fresh one). Setting only
//! `BOURSE_DIFF_SEED=<n>` replays that one seed. A failure is shrunk to a short command
//! list, which is printed. `differential_proptest` does the same through proptest (seed
//! printed; replay with `BOURSE_PROPTEST_SEED`).

mod common;
mod model;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bourse_engine::{
    AccountId, Balance, Command, Config, Done, DoneReason, Event, EventKind, Exchange, Limits,
    LogIndex, MarketSpec, MarketStatus, OrderRef, OrderType, OrderView, PlaceOrder, RejectReason,
    Shortfall, Side, StpMode, TimeInForce,
};
use common::{Op, Scenario};
use model::{LevelSnapshot, Model, OrderSnapshot};
use proptest::prelude::*;

/// Time stamped on the command at `index`: arbitrary but distinct from the index.
fn time_of(index: LogIndex) -> u64 {
    1_700_000_000_000_000_000 + index * 7_919
}

fn view(o: &OrderView) -> OrderSnapshot {
    OrderSnapshot {
        order_id: o.order_id,
        client_order_id: o.client_order_id,
        account: o.account,
        market: o.market,
        side: o.side,
        price: o.price,
        qty: o.qty,
        leaves_qty: o.leaves_qty,
        filled_qty: o.filled_qty,
        reserved: o.reserved,
        post_only: o.post_only,
        stp: o.stp,
    }
}

/// The events the model also produces: everything but balance-log and level updates.
fn comparable(events: &[Event]) -> Vec<EventKind> {
    events
        .iter()
        .map(|e| e.kind)
        .filter(|k| !matches!(k, EventKind::Balance(_) | EventKind::Level(_)))
        .collect()
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic".to_string()
    }
}

thread_local! {
    /// Set while shrinking, so the many expected panics do not flood the output.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
}

/// Counts of what a run exercised, to show (and assert) that the generator reaches the
/// interesting cases.
#[derive(Default, Debug)]
struct Coverage {
    commands: u64,
    rejects: BTreeMap<String, u64>,
    /// Per (command kind, reason).
    reject_pairs: BTreeMap<String, u64>,
    /// Amends that traded, and that ended in self-trade prevention.
    amends_traded: u64,
    amends_stp: u64,
    done: BTreeMap<String, u64>,
    trades: u64,
    amends_kept: u64,
    amends_requeued: u64,
    duplicates: u64,
}

impl Coverage {
    fn record(&mut self, events: &[EventKind]) {
        self.commands += 1;
        if matches!(events.first(), Some(EventKind::Amended(_))) {
            self.amends_traded += events.iter().any(|e| matches!(e, EventKind::Trade(_))) as u64;
            let stp = |e: &EventKind| matches!(e, EventKind::Done(d) if d.reason == DoneReason::SelfTradePrevented);
            self.amends_stp += events.iter().any(stp) as u64;
        }
        for event in events {
            match event {
                EventKind::Rejected(r) => {
                    *self.rejects.entry(format!("{:?}", r.reason)).or_default() += 1;
                    *self
                        .reject_pairs
                        .entry(format!("{:?}/{:?}", r.command, r.reason))
                        .or_default() += 1;
                    self.duplicates += r.duplicate as u64;
                }
                EventKind::Done(d) => *self.done.entry(format!("{:?}", d.reason)).or_default() += 1,
                EventKind::Trade(_) => self.trades += 1,
                EventKind::Amended(a) if a.priority_kept => self.amends_kept += 1,
                EventKind::Amended(_) => self.amends_requeued += 1,
                EventKind::Ledger(l) => self.duplicates += l.duplicate as u64,
                _ => {}
            }
        }
    }

    fn merge(&mut self, other: &Coverage) {
        self.commands += other.commands;
        for (k, v) in &other.rejects {
            *self.rejects.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.reject_pairs {
            *self.reject_pairs.entry(k.clone()).or_default() += v;
        }
        self.amends_traded += other.amends_traded;
        self.amends_stp += other.amends_stp;
        for (k, v) in &other.done {
            *self.done.entry(k.clone()).or_default() += v;
        }
        self.trades += other.trades;
        self.amends_kept += other.amends_kept;
        self.amends_requeued += other.amends_requeued;
        self.duplicates += other.duplicates;
    }
}

/// The engine and the model side by side.
struct Pair {
    engine: Exchange,
    model: Model,
    index: LogIndex,
    /// Every command applied so far (the reproduction of a failure).
    trace: Vec<Command>,
    coverage: Coverage,
}

impl Pair {
    fn new(limits: Limits, fee_account: AccountId) -> Pair {
        let engine = Exchange::new(Config { limits, fee_account }).expect("valid test config");
        Pair {
            engine,
            model: Model::new(limits, fee_account),
            index: 0,
            trace: Vec::new(),
            coverage: Coverage::default(),
        }
    }

    /// Applies `command` to both and compares; returns the (agreed) comparable events.
    fn step(&mut self, command: &Command) -> Result<Vec<EventKind>, String> {
        self.index += 1;
        self.trace.push(*command);
        let (index, time_ns) = (self.index, time_of(self.index));
        let mut out = Vec::new();
        let engine = &mut self.engine;
        let applied =
            catch_unwind(AssertUnwindSafe(|| engine.apply(index, time_ns, command, &mut out)));
        match applied {
            Err(payload) => return Err(format!("engine panicked: {}", panic_text(&*payload))),
            Ok(Err(error)) => return Err(format!("engine apply failed: {error:?}")),
            Ok(Ok(())) => {}
        }
        let model = &mut self.model;
        let expected = catch_unwind(AssertUnwindSafe(|| model.apply(command)))
            .map_err(|payload| format!("model panicked: {}", panic_text(&*payload)))?;
        if let Some(bad) = out.iter().find(|e| e.index != index || e.time_ns != time_ns) {
            return Err(format!("event without the command's index/time: {bad:?}"));
        }
        let actual = comparable(&out);
        if actual != expected {
            return Err(format!(
                "events differ\n  engine (all): {}\n  engine:       {actual:?}\n  model:        {expected:?}",
                fmt_events(&out)
            ));
        }
        self.compare_state().map_err(|e| format!("{e}\n  engine events: {}", fmt_events(&out)))?;
        self.coverage.record(&expected);
        Ok(expected)
    }

    /// Accounts, balances, open orders and depth of the engine against the model.
    fn compare_state(&self) -> Result<(), String> {
        let (engine, model) = (&self.engine, &self.model);
        let accounts = model.accounts();
        if engine.accounts() != accounts {
            return Err(format!(
                "accounts differ: engine {:?} model {accounts:?}",
                engine.accounts()
            ));
        }
        let assets = model.asset_ids();
        for &account in &accounts {
            for &asset in &assets {
                let (e, m) = (engine.balance(account, asset), model.balance(account, asset));
                if e != m {
                    return Err(format!(
                        "balance ({account}, asset {asset}): engine {e:?} model {m:?}"
                    ));
                }
            }
            let e: Vec<OrderSnapshot> = engine.open_orders(account).iter().map(view).collect();
            let m = model.open_orders(account);
            if e != m {
                return Err(format!("open orders of {account}:\n  engine {e:?}\n  model  {m:?}"));
            }
        }
        for market in model.market_ids() {
            let depth = engine.depth(market, usize::MAX).ok_or("engine lost a market")?;
            let level = |l: &bourse_engine::DepthLevel| LevelSnapshot {
                price: l.price,
                qty: l.qty,
                orders: l.orders,
            };
            let e =
                (depth.bids.iter().map(level).collect(), depth.asks.iter().map(level).collect());
            let m = model.depth(market);
            if e != m {
                return Err(format!("depth of market {market}:\n  engine {e:?}\n  model  {m:?}"));
            }
        }
        Ok(())
    }

    /// The slower comparisons, made once at the end of a run.
    fn compare_final(&self) -> Result<(), String> {
        let (engine, model) = (&self.engine, &self.model);
        engine.check_invariants().map_err(|e| format!("engine check_invariants: {e}"))?;
        for account in model.accounts() {
            let expected: Vec<_> = model
                .asset_ids()
                .into_iter()
                .map(|asset| (asset, model.balance(account, asset)))
                .filter(|(_, b)| b.total() > 0)
                .collect();
            let actual: Vec<(u32, Balance)> = engine.balances(account);
            if actual != expected {
                return Err(format!("balances({account}): engine {actual:?} model {expected:?}"));
            }
            for order in model.open_orders(account) {
                let by_id = engine.order(order.order_id).map(|o| view(&o));
                if by_id != Some(order) {
                    return Err(format!(
                        "order({}): engine {by_id:?} model {order:?}",
                        order.order_id
                    ));
                }
                if order.client_order_id != 0 {
                    let by_cid = engine.order_by_client_id(account, order.client_order_id);
                    if by_cid.map(|o| o.order_id) != Some(order.order_id) {
                        return Err(format!(
                            "order_by_client_id({account}, {})",
                            order.client_order_id
                        ));
                    }
                }
            }
        }
        let all_open = model.all_open_orders();
        for market in model.market_ids() {
            let view = engine.market(market).ok_or("engine lost a market")?;
            let count = all_open.iter().filter(|o| o.market == market).count() as u32;
            let spec = model.market_spec(market);
            let status = model.market_status(market);
            if Some(view.spec) != spec || Some(view.status) != status || view.open_orders != count {
                return Err(format!(
                    "market({market}): engine {view:?}, model {spec:?} {status:?} {count}"
                ));
            }
        }
        // Unknown ids are absent, not errors or panics.
        let unknown =
            (engine.market(999), engine.depth(999, 5), engine.asset(999), engine.order(u64::MAX));
        if unknown.0.is_some() || unknown.1.is_some() || unknown.2.is_some() || unknown.3.is_some()
        {
            return Err(format!("unknown ids answered: {unknown:?}"));
        }
        for asset in model.asset_ids() {
            let view = engine.asset(asset).ok_or("engine lost an asset")?;
            if Some(view.supply) != model.asset_supply(asset) {
                return Err(format!(
                    "asset({asset}) supply: engine {} model {:?}",
                    view.supply,
                    model.asset_supply(asset)
                ));
            }
        }
        Ok(())
    }
}

fn fmt_events(events: &[Event]) -> String {
    let kinds: Vec<String> = events.iter().map(|e| format!("{:?}", e.kind)).collect();
    format!("[\n    {}\n  ]", kinds.join(",\n    "))
}

/// Runs one scenario and op list through both; `Err` carries the report and the trace.
fn run_ops(scenario: &Scenario, ops: &[Op]) -> Result<Coverage, (String, Vec<Command>)> {
    let mut pair = Pair::new(scenario.limits, scenario.fee_account);
    let result = common::drive(scenario, ops, |command| pair.step(command));
    let result = result.and_then(|()| pair.compare_final());
    match result {
        Ok(()) => Ok(pair.coverage),
        Err(report) => Err((report, pair.trace)),
    }
}

/// Runs an explicit command list through both (regression and directed tests).
fn run_commands(
    limits: Limits,
    fee_account: AccountId,
    commands: &[Command],
) -> Result<Vec<Vec<EventKind>>, String> {
    let mut pair = Pair::new(limits, fee_account);
    let mut all = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let events = pair.step(command).map_err(|e| format!("command #{i} {command:?}: {e}"))?;
        all.push(events);
    }
    pair.compare_final()?;
    Ok(all)
}

fn fmt_trace(trace: &[Command]) -> String {
    let lines: Vec<String> = trace.iter().map(|c| format!("    {c:?},")).collect();
    lines.join("\n")
}

/// Shrinks a failing op list and returns a report with the minimal command trace.
fn shrink_report(scenario: &Scenario, ops: &[Op]) -> String {
    install_quiet_panic_hook();
    QUIET.with(|q| q.set(true));
    let small = common::shrink_ops(ops, 3_000, |candidate| run_ops(scenario, candidate).is_err());
    QUIET.with(|q| q.set(false));
    let (report, trace) = run_ops(scenario, &small).expect_err("shrunk ops still fail");
    let setup_len = scenario.setup.len();
    format!(
        "{report}\nprofile {} limits {:?} fee account {}\nminimal trace ({} ops after {setup_len} setup commands; the last one failed):\n  setup: {}\n  ops:\n{}",
        scenario.profile,
        scenario.limits,
        scenario.fee_account,
        small.len(),
        fmt_trace(&trace[..setup_len.min(trace.len())]).replace('\n', " "),
        fmt_trace(&trace[setup_len.min(trace.len())..]),
    )
}

/// Number of ops of the case with `seed`: between 150 and 450.
fn ops_len(seed: u64) -> usize {
    150 + (common::SplitMix64::new(!seed).next_u64() % 301) as usize
}

fn check_seed(seed: u64) -> Result<Coverage, String> {
    let scenario = Scenario::new(seed);
    let ops = common::random_ops(&mut common::SplitMix64::new(seed), ops_len(seed));
    match run_ops(&scenario, &ops) {
        Ok(coverage) => Ok(coverage),
        Err((report, trace)) => {
            eprintln!("seed {seed} failed at command #{}: {report}", trace.len() - 1);
            Err(format!(
                "seed {seed} (replay: BOURSE_DIFF_SEED={seed} cargo test -p bourse-engine --test differential differential_seeded)\n{}",
                shrink_report(&scenario, &ops)
            ))
        }
    }
}

#[test]
fn differential_seeded() {
    let seed_env = std::env::var("BOURSE_DIFF_SEED").ok();
    let base = match seed_env.as_deref() {
        None => 0xB0_0125E_u64 << 20,
        Some("random") => common::fresh_seed(),
        Some(_) => common::env_u64("BOURSE_DIFF_SEED").expect("set"),
    };
    let default_cases = if seed_env.is_some() { 1 } else { 500 };
    let cases = common::env_u64("BOURSE_DIFF_CASES").unwrap_or(default_cases);
    let end = base.saturating_add(cases);
    eprintln!("differential_seeded: seeds {base}..{end} (BOURSE_DIFF_SEED / BOURSE_DIFF_CASES)");
    let mut total = Coverage::default();
    for seed in base..end {
        match check_seed(seed) {
            Ok(coverage) => total.merge(&coverage),
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!("coverage: {total:#?}");
}

/// The model alone over the seeded streams: its own invariants hold after every command
/// (`Model::apply` checks them), and the generator reaches every case the comparison is
/// about. If a change to the generator or the setup stopped reaching one, the
/// differential test would silently compare less; this test says so.
#[test]
fn generator_reaches_every_case() {
    let mut total = Coverage::default();
    for seed in 0..100u64 {
        let scenario = Scenario::new(seed);
        let ops = common::random_ops(&mut common::SplitMix64::new(seed), ops_len(seed));
        let mut model = Model::new(scenario.limits, scenario.fee_account);
        let mut coverage = Coverage::default();
        let result = common::drive(&scenario, &ops, |command| {
            let events = model.apply(command);
            coverage.record(&events);
            Ok(events)
        });
        result.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total.merge(&coverage);
    }
    eprintln!("coverage: {total:#?}");
    assert!(total.trades > 500, "too few trades: {}", total.trades);
    assert!(total.amends_kept > 20 && total.amends_requeued > 20, "too few amends");
    assert!(total.duplicates > 20, "too few duplicate ledger commands");
    for reason in ["Filled", "Cancelled", "Expired", "SelfTradePrevented"] {
        assert!(total.done.get(reason).copied().unwrap_or(0) > 10, "too few Done({reason})");
    }
    for reason in RejectReason::ALL {
        let seen = total.rejects.get(&format!("{reason:?}")).copied().unwrap_or(0);
        assert!(seen > 0, "the generator never reached {reason:?}");
    }
}

proptest! {
    #![proptest_config(common::proptest_config(
        "differential_proptest",
        "proptest-regressions/differential.txt",
        64,
    ))]

    /// The same comparison with proptest's shrinking (failures are persisted under
    /// `proptest-regressions/`).
    #[test]
    fn differential_proptest(seed in any::<u64>(), ops in common::ops_strategy(1..300)) {
        let scenario = Scenario::new(seed);
        if let Err((report, trace)) = run_ops(&scenario, &ops) {
            let setup_len = scenario.setup.len().min(trace.len());
            prop_assert!(false, "{report}\nops:\n{}", fmt_trace(&trace[setup_len..]));
        }
    }
}

// ----- directed cases: hand-made streams whose outcomes were worked out from the README ---

const FEE: AccountId = 0;
const ALICE: AccountId = 1;
const BOB: AccountId = 2;

/// A BTC/USDT-like setup as in the README's example: BTC scale 8, USDT scale 6, tick
/// 0.01 USDT, lot 0.0001 BTC, so qptl = 1; fees maker 10 bps, taker 20 bps.
fn btc_usdt() -> Vec<Command> {
    vec![
        Command::CreateAsset { asset: 0, scale: 8, symbol: common::symbol("BTC") },
        Command::CreateAsset { asset: 1, scale: 6, symbol: common::symbol("USDT") },
        Command::CreateMarket(MarketSpec {
            market: 0,
            symbol: common::symbol("BTC/USDT"),
            base: 0,
            quote: 1,
            tick_size: 10_000,
            lot_size: 10_000,
            min_notional: 0,
            maker_fee_bps: 10,
            taker_fee_bps: 20,
        }),
        Command::Deposit { tx: 1, account: ALICE, asset: 1, amount: 1_000_000_000 },
        Command::Deposit { tx: 2, account: BOB, asset: 0, amount: 100_000_000 },
    ]
}

fn limit(
    account: AccountId,
    side: Side,
    price: u64,
    qty: u64,
    tif: TimeInForce,
    stp: StpMode,
) -> Command {
    Command::Place(PlaceOrder {
        account,
        market: 0,
        client_order_id: 0,
        side,
        order_type: OrderType::Limit,
        tif,
        post_only: false,
        price,
        qty,
        quote_budget: 0,
        stp,
    })
}

fn gtc(account: AccountId, side: Side, price: u64, qty: u64) -> Command {
    limit(account, side, price, qty, TimeInForce::Gtc, StpMode::CancelTaker)
}

fn trades(events: &[EventKind]) -> Vec<(u64, u64, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Trade(t) => Some((t.price, t.qty, t.maker_fee, t.taker_fee)),
            _ => None,
        })
        .collect()
}

fn done(events: &[EventKind]) -> Vec<(u64, DoneReason, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Done(Done { order_id, reason, filled_qty, .. }) => {
                Some((*order_id, *reason, *filled_qty))
            }
            _ => None,
        })
        .collect()
}

fn reject_reason(events: &[EventKind]) -> Option<RejectReason> {
    events.iter().find_map(|e| match e {
        EventKind::Rejected(r) => Some(r.reason),
        _ => None,
    })
}

/// The README's worked example: 0.0001 BTC at 50_000.00 USDT costs 5 USDT; the fees
/// follow the floor rule, and the fee account gets both.
#[test]
fn directed_readme_example_trade() {
    let mut commands = btc_usdt();
    commands.push(gtc(BOB, Side::Sell, 50_000_000_000, 30_000)); // 3 lots, order 1
    commands.push(gtc(ALICE, Side::Buy, 50_000_000_000, 10_000)); // 1 lot, order 2
    let events = run_commands(Limits::default(), FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    let last = events.last().expect("events");
    // Notional 5_000_000 (5 USDT); maker fee 10 bps = 5_000, taker fee 20 bps = 10_000.
    assert_eq!(trades(last), vec![(50_000_000_000, 10_000, 5_000, 10_000)]);
    let mut model = Model::new(Limits::default(), FEE);
    for command in &commands {
        model.apply(command);
    }
    assert_eq!(model.balance(ALICE, 0).available, 10_000);
    assert_eq!(model.balance(ALICE, 1).available, 1_000_000_000 - 5_000_000 - 10_000);
    assert_eq!(model.balance(BOB, 1).available, 5_000_000 - 5_000);
    assert_eq!(model.balance(BOB, 0), Balance { available: 100_000_000 - 30_000, held: 20_000 });
    assert_eq!(model.balance(FEE, 1).available, 15_000);
}

/// A resting buy's reservation is trimmed to `reserve_buy(leaves, limit)` after a fill
/// at a better price, and the difference goes back to available.
#[test]
fn directed_buy_reservation_trim() {
    let mut commands = btc_usdt();
    commands.push(gtc(ALICE, Side::Buy, 50_000_000_000, 30_000)); // order 1, 3 lots
    commands.push(gtc(BOB, Side::Sell, 49_000_000_000, 10_000)); // trades 1 lot at 50_000
    commands.push(gtc(BOB, Side::Sell, 49_000_000_000, 10_000)); // trades 1 lot at 50_000
    let events = run_commands(Limits::default(), FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trades(&events[6]), vec![(50_000_000_000, 10_000, 5_000, 10_000)]);
    let mut model = Model::new(Limits::default(), FEE);
    for command in &commands {
        model.apply(command);
    }
    // One lot left at 5 USDT: reserve 5_000_000 + fee at max(10, 20) bps = 10_000.
    let order = model.order(1).expect("still open");
    assert_eq!((order.leaves_qty, order.filled_qty, order.reserved), (10_000, 20_000, 5_010_000));
    // Alice paid 2 x (5_000_000 + 5_000 maker fee).
    assert_eq!(
        model.balance(ALICE, 1),
        Balance { available: 1_000_000_000 - 10_010_000 - 5_010_000, held: 5_010_000 }
    );
}

/// The four STP modes, each against a two-order book where the own order is first.
#[test]
fn directed_stp_modes() {
    for (stp, expect_trades, taker_reason) in [
        (StpMode::CancelTaker, 0, DoneReason::SelfTradePrevented),
        (StpMode::CancelMaker, 1, DoneReason::Filled),
        (StpMode::CancelBoth, 0, DoneReason::SelfTradePrevented),
        (StpMode::Decrement, 0, DoneReason::SelfTradePrevented),
    ] {
        let mut commands = btc_usdt();
        commands.push(Command::Deposit { tx: 3, account: ALICE, asset: 0, amount: 100_000 });
        commands.push(gtc(ALICE, Side::Sell, 50_000_000_000, 20_000)); // own order 1, first
        commands.push(gtc(BOB, Side::Sell, 50_000_000_000, 20_000)); // order 2
        commands.push(limit(ALICE, Side::Buy, 50_000_000_000, 20_000, TimeInForce::Ioc, stp)); // 3
        let events = run_commands(Limits::default(), FEE, &commands)
            .unwrap_or_else(|e| panic!("{stp:?}: {e}"));
        let last = events.last().expect("events");
        assert_eq!(trades(last).len(), expect_trades, "{stp:?}");
        let dones = done(last);
        assert_eq!(dones.last().map(|d| (d.0, d.1)), Some((3, taker_reason)), "{stp:?}: {dones:?}");
        let maker_cancelled =
            dones.iter().any(|d| d.0 == 1 && d.1 == DoneReason::SelfTradePrevented);
        assert_eq!(maker_cancelled, stp != StpMode::CancelTaker, "{stp:?}: {dones:?}");
    }
}

/// FOK: infeasible because an own order stops the count (CancelTaker), feasible when
/// CancelMaker skips it; an infeasible FOK changes no balance.
#[test]
fn directed_fok() {
    for (stp, filled) in [(StpMode::CancelTaker, false), (StpMode::CancelMaker, true)] {
        let mut commands = btc_usdt();
        commands.push(Command::Deposit { tx: 3, account: ALICE, asset: 0, amount: 100_000 });
        commands.push(gtc(ALICE, Side::Sell, 50_000_000_000, 10_000)); // own, first
        commands.push(gtc(BOB, Side::Sell, 50_000_000_000, 20_000));
        commands.push(limit(ALICE, Side::Buy, 50_000_000_000, 20_000, TimeInForce::Fok, stp));
        let events =
            run_commands(Limits::default(), FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
        let last = events.last().expect("events");
        let reason = done(last).last().map(|d| d.1);
        let expected = if filled { DoneReason::Filled } else { DoneReason::Expired };
        assert_eq!(reason, Some(expected), "{stp:?}");
    }
}

/// Amend: qty down keeps priority; price change and qty up re-queue; a total at or below
/// the filled quantity cancels; no change is rejected.
#[test]
fn directed_amend() {
    let mut commands = btc_usdt();
    commands.push(gtc(ALICE, Side::Buy, 50_000_000_000, 50_000)); // order 1
    commands.push(gtc(BOB, Side::Sell, 50_000_000_000, 20_000)); // fills 2 lots
    commands.push(Command::Amend { account: ALICE, order: OrderRef::Id(1), price: 0, qty: 40_000 });
    commands.push(Command::Amend {
        account: ALICE,
        order: OrderRef::Id(1),
        price: 50_000_000_000,
        qty: 40_000,
    });
    commands.push(Command::Amend { account: ALICE, order: OrderRef::Id(1), price: 0, qty: 60_000 });
    commands.push(Command::Amend { account: ALICE, order: OrderRef::Id(1), price: 0, qty: 20_000 });
    let events = run_commands(Limits::default(), FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    let amended = |events: &[EventKind]| {
        events.iter().find_map(|e| match e {
            EventKind::Amended(a) => Some((a.qty, a.leaves_qty, a.priority_kept)),
            _ => None,
        })
    };
    assert_eq!(amended(&events[7]), Some((40_000, 20_000, true)));
    assert_eq!(reject_reason(&events[8]), Some(RejectReason::AmendNoChange));
    assert_eq!(amended(&events[9]), Some((60_000, 40_000, false)));
    assert_eq!(done(&events[10]), vec![(1, DoneReason::Cancelled, 20_000)]);
}

/// A market buy spends at most its budget, fee included, and is Filled when it stops for
/// lack of budget after filling something.
#[test]
fn directed_market_buy_budget() {
    let mut commands = btc_usdt();
    commands.push(gtc(BOB, Side::Sell, 50_000_000_000, 50_000)); // 5 lots at 5 USDT each
    commands.push(Command::Place(PlaceOrder {
        account: ALICE,
        market: 0,
        client_order_id: 7,
        side: Side::Buy,
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        post_only: false,
        price: 0,
        qty: 0,
        // Two lots cost 2 x 5_000_000 + floor(10_000_000 * 20 / 10_000) = 10_020_000.
        quote_budget: 10_020_000,
        stp: StpMode::CancelTaker,
    }));
    let events = run_commands(Limits::default(), FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    let last = events.last().expect("events");
    assert_eq!(trades(last), vec![(50_000_000_000, 20_000, 10_000, 20_000)]);
    assert_eq!(done(last), vec![(2, DoneReason::Filled, 20_000)]);
}

/// Ledger idempotency: a repeated deposit returns the stored outcome; a stored reject is
/// returned again (without its shortfall); the same id with other parameters is refused
/// and changes nothing; another kind with the same id is a conflict; withdrawal steps.
#[test]
fn directed_ledger() {
    let mut commands = btc_usdt();
    commands.push(Command::Deposit { tx: 1, account: ALICE, asset: 1, amount: 1_000_000_000 }); // dup of tx 1
    commands.push(Command::WithdrawRequest { tx: 10, account: BOB, asset: 1, amount: 5 }); // no USDT
    commands.push(Command::WithdrawRequest { tx: 10, account: BOB, asset: 1, amount: 5 }); // stored reject
    commands.push(Command::Transfer {
        tx: 2,
        from: ALICE,
        to: BOB,
        asset: 1,
        amount: 5,
        create_account: true,
    }); // conflict
    commands.push(Command::WithdrawRequest { tx: 11, account: ALICE, asset: 1, amount: 500 });
    commands.push(Command::WithdrawComplete { tx: 11 });
    commands.push(Command::WithdrawComplete { tx: 11 });
    commands.push(Command::WithdrawCancel { tx: 11 });
    commands.push(Command::WithdrawCancel { tx: 10 });
    commands.push(Command::Deposit { tx: 1, account: ALICE, asset: 1, amount: 5 }); // other amount
    commands.push(Command::WithdrawRequest { tx: 10, account: ALICE, asset: 1, amount: 5 }); // other account
    let events = run_commands(Limits::default(), FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    let ledger = |events: &[EventKind]| match events.first() {
        Some(EventKind::Ledger(l)) => Some((l.account, l.amount, l.duplicate)),
        _ => None,
    };
    assert_eq!(ledger(&events[5]), Some((ALICE, 1_000_000_000, true)));
    assert_eq!(reject_reason(&events[6]), Some(RejectReason::InsufficientFunds));
    let Some(EventKind::Rejected(first)) = events[6].first() else { panic!("{:?}", events[6]) };
    assert_eq!(first.shortfall, Some(Shortfall { asset: 1, needed: 5, available: 0 }));
    assert!(matches!(events[7].first(),
        Some(EventKind::Rejected(r)) if r.duplicate && r.account == BOB && r.shortfall.is_none()));
    assert_eq!(reject_reason(&events[8]), Some(RejectReason::TxIdConflict));
    assert_eq!(ledger(&events[10]), Some((ALICE, 500, false)));
    assert_eq!(ledger(&events[11]), Some((ALICE, 500, true)));
    assert_eq!(reject_reason(&events[12]), Some(RejectReason::WithdrawalNotPending));
    assert_eq!(reject_reason(&events[13]), Some(RejectReason::WithdrawalNotFound));
    assert_eq!(reject_reason(&events[14]), Some(RejectReason::TxIdReusedWithDifferentParams));
    assert_eq!(reject_reason(&events[15]), Some(RejectReason::TxIdReusedWithDifferentParams));
    assert!(events[14..].iter().all(|e| e.len() == 1), "a reused tx id changes nothing");
}

/// Halted markets reject places and amends but accept cancels.
#[test]
fn directed_halt() {
    let mut commands = btc_usdt();
    commands.push(gtc(ALICE, Side::Buy, 50_000_000_000, 10_000));
    commands.push(Command::SetMarketStatus { market: 0, status: MarketStatus::Halted });
    commands.push(gtc(ALICE, Side::Buy, 50_000_000_000, 10_000));
    commands.push(Command::Amend { account: ALICE, order: OrderRef::Id(1), price: 0, qty: 20_000 });
    commands.push(Command::Cancel { account: ALICE, order: OrderRef::Id(1) });
    let events = run_commands(Limits::default(), FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reject_reason(&events[7]), Some(RejectReason::MarketHalted));
    assert_eq!(reject_reason(&events[8]), Some(RejectReason::MarketHalted));
    assert_eq!(done(&events[9]), vec![(1, DoneReason::Cancelled, 0)]);
}

/// The three order limits, in the README's order, for GTC limit orders only (an IOC at the
/// limit is accepted); a cancel frees a slot.
#[test]
fn directed_order_limits() {
    let limits = Limits {
        orders_per_account_max: 2,
        orders_per_market_max: 3,
        orders_max: 4,
        ..Limits::default()
    };
    let mut commands = btc_usdt();
    commands.push(Command::Deposit { tx: 3, account: BOB, asset: 1, amount: 1_000_000_000 });
    commands.push(Command::CreateMarket(MarketSpec {
        market: 1,
        symbol: common::symbol("M1"),
        ..btc_usdt_spec()
    }));
    let bid = |account, price| gtc(account, Side::Buy, price, 10_000);
    commands.push(bid(ALICE, 40_000_000_000)); // #7
    commands.push(bid(ALICE, 40_010_000_000)); // #8
    commands.push(bid(ALICE, 40_020_000_000)); // #9: third of Alice's
    commands.push(bid(BOB, 40_030_000_000)); // #10: third in market 0
    commands.push(bid(BOB, 40_040_000_000)); // #11: fourth in market 0
    commands.push(Command::Place(PlaceOrder { market: 1, ..place_of(bid(BOB, 40_040_000_000)) })); // #12: fourth overall
    commands.push(Command::Place(PlaceOrder { market: 1, ..place_of(bid(ALICE, 40_040_000_000)) })); // #13
    commands.push(limit(
        BOB,
        Side::Buy,
        40_040_000_000,
        10_000,
        TimeInForce::Ioc,
        StpMode::CancelTaker,
    )); // #14
    commands.push(Command::Cancel { account: ALICE, order: OrderRef::Id(1) }); // #15
    commands.push(bid(ALICE, 40_050_000_000)); // #16: the cancel made room in market 0
    commands.push(Command::Place(PlaceOrder { market: 1, ..place_of(bid(ALICE, 40_040_000_000)) })); // #17
    let events = run_commands(limits, FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    let accepted = |events: &[EventKind]| matches!(events.first(), Some(EventKind::Accepted(_)));
    assert!(accepted(&events[7]) && accepted(&events[8]) && accepted(&events[10]));
    assert_eq!(reject_reason(&events[9]), Some(RejectReason::OrdersPerAccountLimit));
    assert_eq!(reject_reason(&events[11]), Some(RejectReason::OrdersPerMarketLimit));
    assert!(accepted(&events[12]));
    assert_eq!(reject_reason(&events[13]), Some(RejectReason::OrdersPerAccountLimit));
    assert!(accepted(&events[14]), "IOC orders are not subject to the order limits");
    assert_eq!(done(&events[15]), vec![(1, DoneReason::Cancelled, 0)]);
    assert!(accepted(&events[16]));
    assert_eq!(reject_reason(&events[17]), Some(RejectReason::OrdersPerAccountLimit));
    // Now 4 open orders in all: the next GTC anywhere is refused for the total.
    let mut more = commands.clone();
    more.push(Command::Deposit { tx: 4, account: 9, asset: 1, amount: 1_000_000_000 });
    more.push(Command::Place(PlaceOrder { market: 1, ..place_of(bid(9, 40_000_000_000)) }));
    let events = run_commands(limits, FEE, &more).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reject_reason(&events[19]), Some(RejectReason::OrdersLimit));
}

fn btc_usdt_spec() -> MarketSpec {
    match btc_usdt()[2] {
        Command::CreateMarket(spec) => spec,
        _ => unreachable!("the third setup command creates the market"),
    }
}

fn place_of(command: Command) -> PlaceOrder {
    match command {
        Command::Place(place) => place,
        _ => unreachable!("a place"),
    }
}

/// A sell whose quantity is above `supply_max` while its notional is not: refused with
/// `NotionalTooLarge` (model interpretation 9), as a place and as an amend.
#[test]
fn directed_sell_quantity_above_supply_max() {
    let limits = Limits { supply_max: 1_000_000_000_000, ..Limits::default() };
    // Base scale 8, tick 1, lot 10^8 (one whole unit): qptl = 1, so 10^5 lots at 1 tick
    // are a notional of 10^5 but a quantity of 10^13.
    let spec = MarketSpec { tick_size: 1, lot_size: 100_000_000, ..btc_usdt_spec() };
    let mut commands = btc_usdt();
    commands[2] = Command::CreateMarket(spec);
    let sell = |qty, order_type, price| {
        let tif = if order_type == OrderType::Market { TimeInForce::Ioc } else { TimeInForce::Gtc };
        Command::Place(PlaceOrder {
            order_type,
            tif,
            price,
            ..place_of(gtc(BOB, Side::Sell, 1, qty))
        })
    };
    commands.push(sell(100_000 * 100_000_000, OrderType::Limit, 1)); // #5
    commands.push(sell(100_000 * 100_000_000, OrderType::Market, 0)); // #6
    commands.push(sell(100_000_000, OrderType::Limit, 1)); // #7: order 1, one lot
    commands.push(Command::Amend {
        account: BOB,
        order: OrderRef::Id(1),
        price: 0,
        qty: 100_000 * 100_000_000,
    });
    let events = run_commands(limits, FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reject_reason(&events[5]), Some(RejectReason::NotionalTooLarge));
    assert_eq!(reject_reason(&events[6]), Some(RejectReason::NotionalTooLarge));
    assert!(matches!(events[7].first(), Some(EventKind::Accepted(_))));
    assert_eq!(reject_reason(&events[8]), Some(RejectReason::NotionalTooLarge));
}

/// Interpretation 4: an amend's size check is on the notional of the new total and the
/// reservation of the new leaves. With `supply_max` = 1e9, 5e6 per lot and a 1% max fee:
/// - order 1 (100 lots, 10 filled) amended to 199 lots: notional(199) = 995e6 fits,
///   reserve_buy(189 leaves) = 954.45e6 fits, but Alice (495.5e6 available) is 499.95e6
///   short: `InsufficientFunds` (a check of reserve_buy(199 total) = 1_004.95e6 would
///   have said `NotionalTooLarge`);
/// - order 3 (50 lots, none filled) amended to 199 lots: reserve_buy(199 leaves) =
///   1_004.95e6 does not fit: `NotionalTooLarge`.
#[test]
fn directed_amend_size_checks() {
    let limits = Limits { supply_max: 1_000_000_000, ..Limits::default() };
    let spec = MarketSpec { maker_fee_bps: 0, taker_fee_bps: 100, ..btc_usdt_spec() };
    let mut commands = btc_usdt();
    commands[2] = Command::CreateMarket(spec);
    let price = 50_000_000_000;
    commands.push(gtc(ALICE, Side::Buy, price, 1_000_000)); // #5, order 1: 100 lots
    commands.push(gtc(BOB, Side::Sell, price, 100_000)); // #6: fills 10 lots
    commands.push(Command::Amend {
        account: ALICE,
        order: OrderRef::Id(1),
        price: 0,
        qty: 1_990_000,
    });
    commands.push(gtc(ALICE, Side::Buy, price - 10_000, 500_000)); // #8, order 3: 50 lots
    commands.push(Command::Amend {
        account: ALICE,
        order: OrderRef::Id(3),
        price: 0,
        qty: 1_990_000,
    });
    let events = run_commands(limits, FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trades(&events[6]).len(), 1);
    assert_eq!(reject_reason(&events[7]), Some(RejectReason::InsufficientFunds));
    assert!(matches!(events[8].first(), Some(EventKind::Accepted(_))));
    assert_eq!(reject_reason(&events[9]), Some(RejectReason::NotionalTooLarge));
}

/// Interpretation 2: a decrement takes lots off the maker's total as well as its leaves,
/// so a later FIX-style amend counts from the reduced total. Alice's resting sell of 5
/// lots meets her own IOC buy of 2 lots (Decrement): the sell is left with 3 lots, total
/// 3. Amending it to a total of 4 is then a quantity *increase* (re-queued, 4 open);
/// with the total left at 5 it would have been a decrease keeping priority.
#[test]
fn directed_decrement_then_amend() {
    let mut commands = btc_usdt();
    commands.push(Command::Deposit { tx: 3, account: ALICE, asset: 0, amount: 100_000 });
    commands.push(gtc(ALICE, Side::Sell, 50_000_000_000, 50_000)); // #6, order 1
    commands.push(limit(
        ALICE,
        Side::Buy,
        50_000_000_000,
        20_000,
        TimeInForce::Ioc,
        StpMode::Decrement,
    ));
    commands.push(Command::Amend { account: ALICE, order: OrderRef::Id(1), price: 0, qty: 40_000 });
    let events = run_commands(Limits::default(), FEE, &commands).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done(&events[7]), vec![(2, DoneReason::SelfTradePrevented, 0)]);
    let amended = events[8].iter().find_map(|e| match e {
        EventKind::Amended(a) => Some((a.qty, a.leaves_qty, a.priority_kept)),
        _ => None,
    });
    assert_eq!(amended, Some((40_000, 40_000, false)));
    // The decremented lots went back to Alice: 1 lot of 0.0001 BTC was never sold.
    let mut model = Model::new(Limits::default(), FEE);
    for command in &commands {
        model.apply(command);
    }
    assert_eq!(model.balance(ALICE, 0), Balance { available: 60_000, held: 40_000 });
}
