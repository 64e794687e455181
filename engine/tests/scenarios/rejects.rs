//! Every `RejectReason`, validation order, order shapes, admin commands, and `apply`
//! with a stale index. `Harness::reject` asserts the reject is the only event and that
//! the state is unchanged (its hash equals that of the old state plus a trivial reject at
//! the same log position, since the hash covers the position); `Harness::reject_stored`
//! is for the ledger rejects the README stores as the tx's outcome.

use std::collections::BTreeSet;

use bourse_engine::{
    Command, MarketSpec, MarketStatus, OrderRef, OrderType, PlaceOrder, RejectReason, Rejected,
    StpMode, Symbol, TimeInForce,
};

use crate::support::*;

fn deposit(tx: u64, account: u64, asset: u32, amount: u64) -> Command {
    Command::Deposit { tx, account, asset, amount }
}

/// Runs a scenario that ends in `reason` and returns that reject. The match has no
/// wildcard: a new reason does not compile until it has a scenario here.
fn produce(reason: RejectReason) -> Rejected {
    use RejectReason as R;
    let mut h = Harness::new();
    match reason {
        R::UnknownAccount => h.reject_place(buy(NOBODY, BTC_USDT, px(100), btc(1)), reason),
        R::UnknownAsset => h.reject(
            Command::CreateMarket(MarketSpec { market: 5, base: NO_ASSET, ..btc_usdt_spec() }),
            reason,
        ),
        R::UnknownMarket => h.reject_place(buy(ALICE, NO_MARKET, px(100), btc(1)), reason),
        R::UnknownOrder => {
            h.reject(Command::Cancel { account: ALICE, order: OrderRef::Id(4_242) }, reason)
        }
        R::MarketHalted => {
            h.set_status(BTC_USDT, MarketStatus::Halted);
            h.reject_place(buy(ALICE, BTC_USDT, px(100), btc(1)), reason)
        }
        R::InvalidPrice => h.reject_place(buy(ALICE, BTC_USDT, 0, btc(1)), reason),
        R::PriceNotOnTick => h.reject_place(buy(ALICE, BTC_USDT, 10_001, btc(1)), reason),
        R::InvalidQty => h.reject_place(buy(ALICE, BTC_USDT, px(100), 0), reason),
        R::QtyNotOnLot => h.reject_place(buy(ALICE, BTC_USDT, px(100), 10_001), reason),
        // ETH/USDT: 1 lot at 1 tick is 1 * 1 * 100 = 100 < min notional 10_000.
        R::BelowMinNotional => h.reject_place(buy(ALICE, ETH_USDT, px(1), eth(1)), reason),
        R::InsufficientFunds => {
            h.deposit(5, USDT, 199);
            h.reject_place(buy(5, BTC_USDT, px(100), btc(2)), reason)
        }
        R::PostOnlyWouldTake => {
            h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
            h.reject_place(buy(ALICE, BTC_USDT, px(100), btc(1)).post_only(), reason)
        }
        R::DuplicateClientOrderId => {
            h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)).cid(8));
            h.reject_place(buy(ALICE, BTC_USDT, px(91), btc(1)).cid(8), reason)
        }
        R::InvalidOrder => h.reject_place(
            PlaceOrder { tif: TimeInForce::Gtc, ..market_buy(ALICE, BTC_USDT, 100) },
            reason,
        ),
        R::OrdersPerAccountLimit => {
            let mut h = Harness::with_limits(
                bourse_engine::Limits { orders_per_account_max: 1, ..roomy_limits() },
                &TRADERS,
            );
            h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
            h.reject_place(buy(ALICE, ETH_USDT, px(900), eth(1)), reason)
        }
        R::OrdersPerMarketLimit => {
            let mut h = Harness::with_limits(
                bourse_engine::Limits { orders_per_market_max: 1, ..roomy_limits() },
                &TRADERS,
            );
            h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
            h.reject_place(buy(BOB, BTC_USDT, px(90), btc(1)), reason)
        }
        R::OrdersLimit => {
            let mut h = Harness::with_limits(
                bourse_engine::Limits { orders_max: 1, ..roomy_limits() },
                &TRADERS,
            );
            h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
            h.reject_place(buy(BOB, ETH_USDT, px(900), eth(1)), reason)
        }
        R::AccountsLimit => {
            // Fee account + 4 traders.
            let mut h = Harness::with_limits(
                bourse_engine::Limits { accounts_max: 5, ..roomy_limits() },
                &TRADERS,
            );
            h.reject_stored(deposit(100, NOBODY, BTC, 1), reason)
        }
        R::AssetsLimit => {
            h.reject(Command::CreateAsset { asset: 1_024, scale: 2, symbol: symbol("X") }, reason)
        }
        R::MarketsLimit => {
            h.reject(Command::CreateMarket(MarketSpec { market: 1_024, ..btc_usdt_spec() }), reason)
        }
        R::TransactionsLimit => {
            // The funding used all 12 transactions.
            let mut h = Harness::with_limits(
                bourse_engine::Limits { transactions_max: 12, ..roomy_limits() },
                &TRADERS,
            );
            h.reject(deposit(100, ALICE, BTC, 1), reason)
        }
        R::AssetExists => {
            h.reject(Command::CreateAsset { asset: BTC, scale: 8, symbol: symbol("BTC") }, reason)
        }
        R::MarketExists => h.reject(Command::CreateMarket(btc_usdt_spec()), reason),
        R::InvalidAsset => {
            h.reject(Command::CreateAsset { asset: 7, scale: 19, symbol: symbol("X") }, reason)
        }
        R::InvalidMarket => h.reject(
            Command::CreateMarket(MarketSpec { market: 5, quote: BTC, ..btc_usdt_spec() }),
            reason,
        ),
        // A market buy budget above supply_max (2^62 by default).
        R::InvalidAmount => h.reject_place(market_buy(ALICE, BTC_USDT, u64::MAX), reason),
        R::SupplyLimit => {
            let room = (1u64 << 62) - h.supply(BTC);
            h.reject_stored(deposit(100, ALICE, BTC, room + 1), reason)
        }
        R::InvalidTxId => h.reject(deposit(0, ALICE, BTC, 1), reason),
        R::WithdrawalNotFound => h.reject(Command::WithdrawComplete { tx: 4_242 }, reason),
        R::WithdrawalNotPending => {
            h.run_ok(Command::WithdrawRequest { tx: 100, account: ALICE, asset: BTC, amount: 1 });
            h.run_ok(Command::WithdrawComplete { tx: 100 });
            h.reject(Command::WithdrawCancel { tx: 100 }, reason)
        }
        R::SameAccount => h.reject_stored(
            Command::Transfer {
                tx: 100,
                from: ALICE,
                to: ALICE,
                asset: BTC,
                amount: 1,
                create_account: false,
            },
            reason,
        ),
        R::AmendNoChange => {
            let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
            h.reject(
                Command::Amend { account: ALICE, order: OrderRef::Id(a), price: 0, qty: 0 },
                reason,
            )
        }
        R::TxIdConflict => {
            // Tx 1 is the first funding deposit.
            h.reject(
                Command::Transfer {
                    tx: 1,
                    from: ALICE,
                    to: BOB,
                    asset: BTC,
                    amount: 1,
                    create_account: true,
                },
                reason,
            )
        }
        R::TxIdReusedWithDifferentParams => {
            // Tx 1 is the first funding deposit; the same id with another amount.
            h.reject(deposit(1, ALICE, BTC, 7), reason)
        }
        R::UnknownReceiver => h.reject_stored(
            Command::Transfer {
                tx: 100,
                from: ALICE,
                to: NOBODY,
                asset: BTC,
                amount: 1,
                create_account: false,
            },
            reason,
        ),
        // Default limits: 2^41 ticks * 2^30 lots * qptl 1 = 2^71 > supply_max 2^62, while
        // each is within price_ticks_max (2^42 - 1) and qty_lots_max (2^40).
        R::NotionalTooLarge => {
            h.reject_place(buy(ALICE, BTC_USDT, px(1 << 41), btc(1 << 30)), reason)
        }
    }
}

#[test]
fn every_reject_reason_is_produced_by_a_scenario() {
    let mut seen = BTreeSet::new();
    for reason in RejectReason::ALL {
        let rejected = produce(reason);
        assert_eq!(rejected.reason, reason);
        assert!(seen.insert(reason.code()), "{reason:?} twice in ALL");
        assert_eq!(RejectReason::from_code(reason.code()), Some(reason));
        assert!(!reason.describe().is_empty());
    }
    assert_eq!(seen.len(), RejectReason::ALL.len());
}

#[test]
fn reject_names_the_account_order_and_tx() {
    let mut h = Harness::new();
    let r = h.reject_place(buy(ALICE, BTC_USDT, 0, btc(1)).cid(33), RejectReason::InvalidPrice);
    assert_eq!((r.account, r.client_order_id, r.tx), (ALICE, 33, 0));
    let r = h.reject(
        Command::Cancel { account: BOB, order: OrderRef::Id(4_242) },
        RejectReason::UnknownOrder,
    );
    assert_eq!((r.account, r.order_id), (BOB, 4_242));
    let r = h.reject(
        Command::Cancel { account: BOB, order: OrderRef::Client(77) },
        RejectReason::UnknownOrder,
    );
    assert_eq!((r.account, r.client_order_id), (BOB, 77));
    let r = h.reject(Command::WithdrawComplete { tx: 4_243 }, RejectReason::WithdrawalNotFound);
    assert_eq!(r.tx, 4_243);
}

#[test]
fn invalid_order_shapes() {
    let mut h = Harness::new();
    let limit = buy(ALICE, BTC_USDT, px(100), btc(1));
    let mbuy = market_buy(ALICE, BTC_USDT, 1_000);
    let msell = market_sell(ALICE, BTC_USDT, btc(1));
    let bad = [
        // Limit: no budget; post-only only with GTC.
        PlaceOrder { quote_budget: 1, ..limit },
        limit.ioc().post_only(),
        limit.fok().post_only(),
        // Market: IOC only, price 0, never post-only.
        PlaceOrder { tif: TimeInForce::Gtc, ..mbuy },
        PlaceOrder { tif: TimeInForce::Fok, ..mbuy },
        PlaceOrder { tif: TimeInForce::Fok, ..msell },
        PlaceOrder { price: px(100), ..mbuy },
        PlaceOrder { price: px(100), ..msell },
        mbuy.post_only(),
        msell.post_only(),
        // Market buy: qty 0, budget > 0, no Decrement.
        PlaceOrder { qty: btc(1), ..mbuy },
        PlaceOrder { quote_budget: 0, ..mbuy },
        mbuy.stp(StpMode::Decrement),
        // Market sell: qty > 0, no budget.
        PlaceOrder { qty: 0, ..msell },
        PlaceOrder { quote_budget: 5, ..msell },
    ];
    for order in bad {
        h.reject_place(order, RejectReason::InvalidOrder);
    }
    // Valid neighbours: a market sell may use Decrement; post-only GTC is fine.
    h.place_ok(msell.stp(StpMode::Decrement));
    h.rest(limit.post_only());
    // A zero price is a price error, not a shape error, even when post-only.
    h.reject_place(PlaceOrder { price: 0, ..limit.post_only() }, RejectReason::InvalidPrice);
    // Shape comes after the account check and before price and qty.
    h.reject_place(
        PlaceOrder { account: NOBODY, ..mbuy.post_only() },
        RejectReason::UnknownAccount,
    );
    h.reject_place(
        PlaceOrder { price: 0, qty: 0, ..limit.ioc().post_only() },
        RejectReason::InvalidOrder,
    );
}

#[test]
fn place_validation_order() {
    let mut h = Harness::new();
    let b = |price, qty| buy(ALICE, BTC_USDT, price, qty);
    // UnknownMarket before UnknownAccount and everything else.
    h.reject_place(buy(NOBODY, NO_MARKET, 0, 0), RejectReason::UnknownMarket);
    h.reject_place(buy(NOBODY, BTC_USDT, 0, 0), RejectReason::UnknownAccount);
    // Price before qty; PriceNotOnTick before InvalidPrice (this one is off tick and
    // above price_ticks_max).
    h.reject_place(b(0, 0), RejectReason::InvalidPrice);
    h.reject_place(b((1 << 42) * 10_000 + 1, 0), RejectReason::PriceNotOnTick);
    h.reject_place(b((1 << 42) * 10_000, btc(1)), RejectReason::InvalidPrice);
    // QtyNotOnLot before InvalidQty (5 sat is off lot and 0 lots).
    h.reject_place(b(px(100), 5), RejectReason::QtyNotOnLot);
    h.reject_place(b(px(100), btc((1 << 40) + 1)), RejectReason::InvalidQty);
    // BelowMinNotional before DuplicateClientOrderId before funds before post-only.
    h.rest(buy(ALICE, ETH_USDT, px(100), eth(1)).cid(1));
    h.reject_place(buy(ALICE, ETH_USDT, px(1), eth(1)).cid(1), RejectReason::BelowMinNotional);
    h.reject_place(
        buy(ALICE, ETH_USDT, px(100), eth(1)).cid(1),
        RejectReason::DuplicateClientOrderId,
    );
    h.deposit(5, USDT, 10_000);
    h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    h.reject_place(
        buy(5, BTC_USDT, px(100), btc(200)).post_only().cid(1),
        RejectReason::InsufficientFunds,
    );
    // Market buys: the budget must meet min notional (ETH/USDT 10_000).
    h.reject_place(market_buy(ALICE, ETH_USDT, 9_999), RejectReason::BelowMinNotional);
    h.place_ok(market_buy(ALICE, ETH_USDT, 10_000));
    // ... and be affordable: account 5 has 10_000 USDT.
    h.reject_place(market_buy(5, BTC_USDT, 10_001), RejectReason::InsufficientFunds);
}

#[test]
fn admin_rejects() {
    let mut h = Harness::with_limits(
        bourse_engine::Limits { supply_max: 1_000_000_000_000, ..roomy_limits() },
        &[],
    );
    let asset = |asset, scale, symbol| Command::CreateAsset { asset, scale, symbol };
    // AssetExists before InvalidAsset.
    h.reject(asset(BTC, 19, symbol("BTC")), RejectReason::AssetExists);
    h.reject(asset(7, 19, symbol("X")), RejectReason::InvalidAsset);
    h.reject(asset(7, 2, Symbol([0; 16])), RejectReason::InvalidAsset);
    let mut spaced = [0u8; 16];
    spaced[..3].copy_from_slice(b"A B");
    h.reject(asset(7, 2, Symbol(spaced)), RejectReason::InvalidAsset);
    let mut gap = [0u8; 16];
    gap[0] = b'A';
    gap[2] = b'B';
    h.reject(asset(7, 2, Symbol(gap)), RejectReason::InvalidAsset);
    h.run_ok(asset(7, 18, symbol("SCALE18")));

    let spec = |market| MarketSpec { market, ..btc_usdt_spec() };
    let market = |spec| Command::CreateMarket(spec);
    h.reject(market(MarketSpec { tick_size: 0, ..spec(BTC_USDT) }), RejectReason::MarketExists);
    h.reject(market(MarketSpec { quote: NO_ASSET, ..spec(5) }), RejectReason::UnknownAsset);
    h.reject(
        market(MarketSpec { base: NO_ASSET, quote: NO_ASSET, ..spec(5) }),
        RejectReason::UnknownAsset,
    );
    let invalid = [
        MarketSpec { quote: BTC, ..spec(5) },
        MarketSpec { tick_size: 0, ..spec(5) },
        MarketSpec { lot_size: 0, ..spec(5) },
        MarketSpec { maker_fee_bps: 10_001, ..spec(5) },
        MarketSpec { taker_fee_bps: 10_001, ..spec(5) },
        MarketSpec { symbol: Symbol([0; 16]), ..spec(5) },
        // 10_000 * 1 is not a multiple of 10^8.
        MarketSpec { lot_size: 1, ..spec(5) },
        // qptl = 10^13 * 10^8 / 10^8 = 10^13 > supply_max 10^12.
        MarketSpec { tick_size: 10_000_000_000_000, lot_size: 100_000_000, ..spec(5) },
        // Products that overflow u64 must be refused, not panic.
        MarketSpec { tick_size: u64::MAX, lot_size: u64::MAX, ..spec(5) },
        MarketSpec { tick_size: u64::MAX, lot_size: 100_000_000, ..spec(5) },
    ];
    for spec in invalid {
        h.reject(market(spec), RejectReason::InvalidMarket);
    }
    // Edge values that are valid: 100% fees, qptl exactly supply_max.
    h.run_ok(market(MarketSpec { maker_fee_bps: 10_000, taker_fee_bps: 10_000, ..spec(5) }));
    h.run_ok(market(MarketSpec { tick_size: 1_000_000_000_000, lot_size: 100_000_000, ..spec(6) }));
    assert_eq!(h.ex.market(6).unwrap().spec.tick_size, 1_000_000_000_000);
    assert_eq!(h.ex.market(6).unwrap().status, MarketStatus::Open);
}

#[test]
fn apply_with_a_stale_index_is_refused_and_changes_nothing() {
    let mut h = Harness::new();
    h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    let hash = h.ex.state_hash();
    let last = h.ex.last_index();
    assert_eq!(last, h.index);
    let crossing = Command::Place(buy(ALICE, BTC_USDT, px(100), btc(1)));
    for index in [last, last - 1, 0] {
        let mut out = Vec::new();
        assert!(h.ex.apply(index, h.time_ns + 1, &crossing, &mut out).is_err(), "index {index}");
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(h.ex.state_hash(), hash);
        assert_eq!(h.ex.last_index(), last);
    }
    // Gaps are allowed: only "strictly increasing" is required.
    let mut out = Vec::new();
    assert!(h.ex.apply(last + 10, h.time_ns + 1, &crossing, &mut out).is_ok());
    assert_eq!(trades(&out).len(), 1);
    assert_eq!(h.ex.last_index(), last + 10);
    h.index = last + 10;
    h.run_ok(Command::MassCancel { account: ALICE, market: None });
}

#[test]
fn market_order_type_in_accepted_event() {
    let mut h = Harness::new();
    let (_, events) = h.place_ok(market_buy(ALICE, BTC_USDT, 1_000));
    let a = accepted(&events).unwrap();
    assert_eq!((a.order_type, a.tif, a.price, a.qty), (OrderType::Market, TimeInForce::Ioc, 0, 0));
}
