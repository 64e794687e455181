//! Every bound in `Limits`, each hit with a small value, and `Config` validation.

use bourse_engine::{Command, Config, Exchange, Limits, MarketSpec, OrderRef, RejectReason};

use crate::support::*;

fn deposit(tx: u64, account: u64, asset: u32, amount: u64) -> Command {
    Command::Deposit { tx, account, asset, amount }
}

fn transfer(tx: u64, from: u64, to: u64, asset: u32, amount: u64) -> Command {
    Command::Transfer { tx, from, to, asset, amount, create_account: true }
}

#[test]
fn config_with_invalid_limits_is_refused() {
    let bad = [
        Limits { assets_max: 0, ..Limits::default() },
        Limits { markets_max: 0, ..Limits::default() },
        Limits { accounts_max: 0, ..Limits::default() },
        Limits { orders_max: 0, ..Limits::default() },
        Limits { price_ticks_max: 1 << 42, ..Limits::default() },
        Limits { supply_max: (1 << 62) + 1, ..Limits::default() },
        Limits { transactions_max: 0, ..Limits::default() },
    ];
    for limits in bad {
        assert!(Exchange::new(Config { limits, fee_account: FEE }).is_err(), "{limits:?}");
    }
    let ex = Exchange::new(Config::default()).expect("default config");
    assert_eq!(*ex.limits(), Limits::default());
    assert_eq!(ex.fee_account(), 0);
    assert_eq!(ex.last_index(), 0);
}

#[test]
fn accounts_max() {
    // The fee account counts: fee + Alice + Bob = 3.
    let mut h = Harness::with_limits(Limits { accounts_max: 3, ..roomy_limits() }, &[ALICE, BOB]);
    h.reject_stored(deposit(100, CAROL, BTC, 1), RejectReason::AccountsLimit);
    h.reject_stored(transfer(101, ALICE, CAROL, BTC, 1), RejectReason::AccountsLimit);
    assert!(!h.ex.account_exists(CAROL));
    // Existing accounts are unaffected.
    h.run_ok(deposit(102, ALICE, BTC, 1));
    h.run_ok(transfer(103, ALICE, BOB, BTC, 1));
    h.run_ok(transfer(104, BOB, FEE, BTC, 1));
    assert_eq!(h.ex.accounts().len(), 3);
}

#[test]
fn orders_max_counts_resting_gtc_orders_only() {
    let mut h = Harness::with_limits(Limits { orders_max: 2, ..roomy_limits() }, &TRADERS);
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
    h.rest(sell(BOB, ETH_USDT, px(2_000), eth(1)));
    h.reject_place(buy(CAROL, BTC_USDT, px(91), btc(1)), RejectReason::OrdersLimit);
    // The check is part of validation, so it applies to a GTC order even if it would
    // fill at once.
    h.reject_place(sell(CAROL, BTC_USDT, px(90), btc(1)), RejectReason::OrdersLimit);
    // IOC, FOK and market orders never rest and are not counted.
    h.place_ok(sell(CAROL, BTC_USDT, px(95), btc(1)).ioc());
    h.place_ok(sell(CAROL, BTC_USDT, px(95), btc(1)).fok());
    h.place_ok(market_sell(CAROL, BTC_USDT, btc(1)));
    // Alice's bid was filled by that market sell; room again.
    assert!(h.ex.order(a).is_none());
    h.rest(buy(CAROL, BTC_USDT, px(91), btc(1)));
    h.reject_place(buy(DAVE, BTC_USDT, px(91), btc(1)), RejectReason::OrdersLimit);
    h.mass_cancel(CAROL, None);
    h.rest(buy(DAVE, BTC_USDT, px(91), btc(1)));
}

#[test]
fn orders_per_account_max() {
    let mut h =
        Harness::with_limits(Limits { orders_per_account_max: 2, ..roomy_limits() }, &TRADERS);
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
    h.rest(sell(ALICE, ETH_USDT, px(2_000), eth(1)));
    h.reject_place(buy(ALICE, BTC_USDT, px(80), btc(1)), RejectReason::OrdersPerAccountLimit);
    h.rest(buy(BOB, BTC_USDT, px(80), btc(1)));
    h.cancel(ALICE, OrderRef::Id(a));
    h.rest(buy(ALICE, BTC_USDT, px(80), btc(1)));
}

#[test]
fn orders_per_market_max() {
    let mut h =
        Harness::with_limits(Limits { orders_per_market_max: 2, ..roomy_limits() }, &TRADERS);
    h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    h.reject_place(buy(CAROL, BTC_USDT, px(80), btc(1)), RejectReason::OrdersPerMarketLimit);
    h.rest(buy(CAROL, ETH_USDT, px(1_000), eth(1)));
    // Filling Bob's ask frees a place.
    h.place_ok(buy(DAVE, BTC_USDT, px(100), btc(1)).ioc());
    assert!(h.ex.order(b).is_none());
    h.rest(buy(CAROL, BTC_USDT, px(80), btc(1)));
}

#[test]
fn order_limits_are_checked_account_then_market_then_engine() {
    let limits = Limits {
        orders_max: 1,
        orders_per_account_max: 1,
        orders_per_market_max: 1,
        ..roomy_limits()
    };
    let mut h = Harness::with_limits(limits, &TRADERS);
    h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
    // All three are hit.
    h.reject_place(buy(ALICE, BTC_USDT, px(80), btc(1)), RejectReason::OrdersPerAccountLimit);
    // Market and engine.
    h.reject_place(buy(BOB, BTC_USDT, px(80), btc(1)), RejectReason::OrdersPerMarketLimit);
    // Engine only.
    h.reject_place(buy(BOB, ETH_USDT, px(1_000), eth(1)), RejectReason::OrdersLimit);
    // Limits come after DuplicateClientOrderId and before InsufficientFunds.
    h.mass_cancel(ALICE, None);
    h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)).cid(3));
    h.reject_place(
        buy(ALICE, BTC_USDT, px(80), btc(1)).cid(3),
        RejectReason::DuplicateClientOrderId,
    );
    h.reject_place(buy(BOB, ETH_USDT, px(1_000), eth(1_000_000)), RejectReason::OrdersLimit);
}

#[test]
fn price_ticks_max() {
    let mut h = Harness::with_limits(Limits { price_ticks_max: 1_000, ..roomy_limits() }, &TRADERS);
    let a = h.rest(buy(ALICE, BTC_USDT, px(1_000), btc(1)));
    h.reject_place(sell(BOB, BTC_USDT, px(1_001), btc(1)), RejectReason::InvalidPrice);
    h.reject(
        Command::Amend { account: ALICE, order: OrderRef::Id(a), price: px(1_001), qty: 0 },
        RejectReason::InvalidPrice,
    );
}

#[test]
fn qty_lots_max() {
    let mut h = Harness::with_limits(Limits { qty_lots_max: 10, ..roomy_limits() }, &TRADERS);
    let a = h.rest(buy(ALICE, BTC_USDT, px(100), btc(10)));
    h.reject_place(sell(BOB, BTC_USDT, px(200), btc(11)), RejectReason::InvalidQty);
    h.reject_place(market_sell(BOB, BTC_USDT, btc(11)), RejectReason::InvalidQty);
    h.reject(
        Command::Amend { account: ALICE, order: OrderRef::Id(a), price: 0, qty: btc(11) },
        RejectReason::InvalidQty,
    );
}

#[test]
fn supply_max() {
    const SUPPLY_MAX: u64 = 1_000_000_000_000;
    let mut h = Harness::with_limits(Limits { supply_max: SUPPLY_MAX, ..roomy_limits() }, &TRADERS);
    // USDT supply is 4 * 10^9; top it up to exactly the maximum.
    let room = SUPPLY_MAX - h.supply(USDT);
    h.reject_stored(deposit(100, ALICE, USDT, room + 1), RejectReason::SupplyLimit);
    h.run_ok(deposit(101, ALICE, USDT, room));
    assert_eq!(h.supply(USDT), SUPPLY_MAX);
    h.reject_stored(deposit(102, ALICE, USDT, 1), RejectReason::SupplyLimit);
    // Any single amount above supply_max is InvalidAmount (before SupplyLimit).
    h.reject_stored(deposit(103, ALICE, BTC, SUPPLY_MAX + 1), RejectReason::InvalidAmount);
    h.reject_stored(transfer(104, ALICE, BOB, USDT, SUPPLY_MAX + 1), RejectReason::InvalidAmount);
    h.reject_stored(
        Command::WithdrawRequest { tx: 105, account: ALICE, asset: USDT, amount: SUPPLY_MAX + 1 },
        RejectReason::InvalidAmount,
    );
    h.reject_place(market_buy(ALICE, BTC_USDT, SUPPLY_MAX + 1), RejectReason::InvalidAmount);
    // A completed withdrawal makes room again.
    h.run_ok(Command::WithdrawRequest { tx: 106, account: ALICE, asset: USDT, amount: 5 });
    h.run_ok(Command::WithdrawComplete { tx: 106 });
    h.run_ok(deposit(107, BOB, USDT, 5));
    assert_eq!(h.supply(USDT), SUPPLY_MAX);
}

#[test]
fn notional_too_large() {
    const SUPPLY_MAX: u64 = 1_000_000_000_000;
    let mut h = Harness::with_limits(Limits { supply_max: SUPPLY_MAX, ..roomy_limits() }, &TRADERS);
    // ETH/USDT: 100_000 lots at 100_000 ticks = 10^5 * 10^5 * 100 = 10^12 = supply_max:
    // the notional fits, but a buy's reservation adds floor(10^12 * 25 / 10^4) = 2.5 * 10^9.
    h.reject_place(buy(ALICE, ETH_USDT, px(100_000), eth(100_000)), RejectReason::NotionalTooLarge);
    // The same sell holds only base (10^11 ETH minor), so it gets as far as the funds.
    h.reject_place(
        sell(ALICE, ETH_USDT, px(100_000), eth(100_000)),
        RejectReason::InsufficientFunds,
    );
    // One more lot and the notional itself is above supply_max, for either side.
    h.reject_place(
        sell(ALICE, ETH_USDT, px(100_000), eth(100_001)),
        RejectReason::NotionalTooLarge,
    );
    // An amend can make an order too large too.
    let a = h.rest(buy(ALICE, ETH_USDT, px(100_000), eth(1)));
    h.reject(
        Command::Amend { account: ALICE, order: OrderRef::Id(a), price: 0, qty: eth(100_000) },
        RejectReason::NotionalTooLarge,
    );
}

#[test]
fn transactions_max() {
    // Alice's funding used 3 transactions.
    let mut h = Harness::with_limits(Limits { transactions_max: 5, ..roomy_limits() }, &[ALICE]);
    let d = h.ledger_ok(deposit(100, ALICE, BTC, 1));
    h.ledger_ok(Command::WithdrawRequest { tx: 101, account: ALICE, asset: BTC, amount: 1 });
    h.reject(deposit(102, ALICE, BTC, 1), RejectReason::TransactionsLimit);
    // A reject that would be stored needs room too.
    h.reject(deposit(103, ALICE, NO_ASSET, 1), RejectReason::TransactionsLimit);
    h.reject(transfer(104, ALICE, BOB, BTC, 1), RejectReason::TransactionsLimit);
    // Known ids still answer, and withdrawal steps are not new transactions.
    h.ledger_repeat(deposit(100, ALICE, BTC, 1), d);
    h.ledger_ok(Command::WithdrawComplete { tx: 101 });
    // The conflict check comes before the limit.
    h.reject(transfer(100, ALICE, BOB, BTC, 1), RejectReason::TxIdConflict);
}

#[test]
fn assets_max() {
    let mut h = Harness::with_limits(Limits { assets_max: 4, ..roomy_limits() }, &[]);
    let create = |asset, scale| Command::CreateAsset { asset, scale, symbol: symbol("NEW") };
    h.reject(create(4, 8), RejectReason::AssetsLimit);
    h.reject(create(u32::MAX, 8), RejectReason::AssetsLimit);
    // The id check comes before the scale check.
    h.reject(create(4, 19), RejectReason::AssetsLimit);
    h.run_ok(create(0, 2));
    assert_eq!(h.ex.assets().len(), 4);
}

#[test]
fn markets_max() {
    let mut h = Harness::with_limits(Limits { markets_max: 3, ..roomy_limits() }, &[]);
    let spec = |market| MarketSpec {
        market,
        symbol: symbol("ETH/BTC"),
        base: ETH,
        quote: BTC,
        ..btc_usdt_spec()
    };
    h.reject(Command::CreateMarket(spec(3)), RejectReason::MarketsLimit);
    h.reject(
        Command::CreateMarket(MarketSpec { base: NO_ASSET, ..spec(3) }),
        RejectReason::MarketsLimit,
    );
    h.run_ok(Command::CreateMarket(spec(0)));
    assert_eq!(h.ex.markets().len(), 3);
}
