//! Cancel, mass cancel, client order id uniqueness and halted markets.

use bourse_engine::{
    AdminApplied, Command, DoneReason, EventKind, MarketStatus, OrderRef, RejectReason,
};

use crate::support::*;

#[test]
fn cancel_by_id_releases_the_hold() {
    let mut h = Harness::new();
    let a = h.rest(buy(ALICE, BTC_USDT, px(100), btc(3)));
    let events = h.cancel(ALICE, OrderRef::Id(a));
    assert_eq!(done_reason(&events, a), (DoneReason::Cancelled, 0));
    let d = done_of(&events, a);
    assert_eq!((d.account, d.market), (ALICE, BTC_USDT));
    h.assert_bal(ALICE, USDT, FUND_USDT, 0);
    assert!(h.ex.order(a).is_none());
    assert_eq!(h.bids(BTC_USDT), vec![]);
    // The level is reported gone.
    let levels = level_events(&events);
    assert_eq!(levels.len(), 1);
    assert_eq!((levels[0].price, levels[0].qty, levels[0].orders), (px(100), 0, 0));
    assert_eq!(h.ex.market(BTC_USDT).unwrap().open_orders, 0);
}

#[test]
fn cancel_by_client_id() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)).cid(9));
    let events = h.cancel(BOB, OrderRef::Client(9));
    let d = done_of(&events, b);
    assert_eq!((d.reason, d.client_order_id), (DoneReason::Cancelled, 9));
    h.assert_bal(BOB, BTC, FUND_BTC, 0);
    assert!(h.ex.order_by_client_id(BOB, 9).is_none());
}

#[test]
fn cancel_of_a_partly_filled_order_releases_only_its_leaves() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(2)));
    let events = h.cancel(BOB, OrderRef::Id(b));
    assert_eq!(done_reason(&events, b), (DoneReason::Cancelled, btc(2)));
    h.assert_bal(BOB, BTC, FUND_BTC - 20_000, 0);
    h.assert_bal(BOB, USDT, FUND_USDT + 200, 0);
}

#[test]
fn cancel_of_someone_elses_or_a_finished_order_is_unknown() {
    let mut h = Harness::new();
    let a = h.rest(buy(ALICE, BTC_USDT, px(100), btc(3)).cid(9));
    let cancel = |account, order| Command::Cancel { account, order };
    h.reject(cancel(CAROL, OrderRef::Id(a)), RejectReason::UnknownOrder);
    h.reject(cancel(CAROL, OrderRef::Client(9)), RejectReason::UnknownOrder);
    h.reject(cancel(ALICE, OrderRef::Id(12_345)), RejectReason::UnknownOrder);
    h.reject(cancel(ALICE, OrderRef::Client(10)), RejectReason::UnknownOrder);
    h.reject(cancel(NOBODY, OrderRef::Id(a)), RejectReason::UnknownAccount);
    h.cancel(ALICE, OrderRef::Id(a));
    h.reject(cancel(ALICE, OrderRef::Id(a)), RejectReason::UnknownOrder);
    h.reject(cancel(ALICE, OrderRef::Client(9)), RejectReason::UnknownOrder);
    // A filled order is no longer open either.
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(1)));
    h.reject(cancel(BOB, OrderRef::Id(b)), RejectReason::UnknownOrder);
}

/// Alice: a1 BTC/USDT buy, a2 ETH/USDT sell, a3 BTC/USDT sell; Bob: one order.
fn spread_orders(h: &mut Harness) -> [u64; 4] {
    let a1 = h.rest(buy(ALICE, BTC_USDT, px(90), btc(2)));
    let a2 = h.rest(sell(ALICE, ETH_USDT, px(2_000), eth(4)));
    let b1 = h.rest(buy(BOB, BTC_USDT, px(91), btc(1)));
    let a3 = h.rest(sell(ALICE, BTC_USDT, px(120), btc(3)));
    [a1, a2, a3, b1]
}

fn mass_cancelled(events: &[bourse_engine::Event]) -> (u64, Option<u32>, u32) {
    match events.last().expect("events").kind {
        EventKind::MassCancelled { account, market, count } => (account, market, count),
        other => panic!("MassCancelled must be last, got {other:?}"),
    }
}

#[test]
fn mass_cancel_by_account_cancels_in_ascending_order_id() {
    let mut h = Harness::new();
    let [a1, a2, a3, b1] = spread_orders(&mut h);
    let events = h.mass_cancel(ALICE, None);
    let done: Vec<(u64, DoneReason)> =
        dones(&events).iter().map(|d| (d.order_id, d.reason)).collect();
    assert_eq!(
        done,
        vec![(a1, DoneReason::Cancelled), (a2, DoneReason::Cancelled), (a3, DoneReason::Cancelled)]
    );
    assert_eq!(mass_cancelled(&events), (ALICE, None, 3));
    h.assert_bal(ALICE, BTC, FUND_BTC, 0);
    h.assert_bal(ALICE, USDT, FUND_USDT, 0);
    h.assert_bal(ALICE, ETH, FUND_ETH, 0);
    assert!(h.ex.open_orders(ALICE).is_empty());
    assert!(h.ex.order(b1).is_some());
}

#[test]
fn mass_cancel_by_account_and_market() {
    let mut h = Harness::new();
    let [a1, a2, a3, b1] = spread_orders(&mut h);
    let events = h.mass_cancel(ALICE, Some(BTC_USDT));
    let done: Vec<u64> = dones(&events).iter().map(|d| d.order_id).collect();
    assert_eq!(done, vec![a1, a3]);
    assert_eq!(mass_cancelled(&events), (ALICE, Some(BTC_USDT), 2));
    assert!(h.ex.order(a2).is_some() && h.ex.order(b1).is_some());
    h.assert_bal(ALICE, ETH, FUND_ETH - 4_000_000, 4_000_000);
    // Nothing left to cancel: count 0 and no Done.
    let events = h.mass_cancel(ALICE, Some(BTC_USDT));
    assert_eq!(events.len(), 1);
    assert_eq!(mass_cancelled(&events), (ALICE, Some(BTC_USDT), 0));
    let events = h.mass_cancel(CAROL, None);
    assert_eq!(mass_cancelled(&events), (CAROL, None, 0));
}

#[test]
fn mass_cancel_rejects() {
    let mut h = Harness::new();
    spread_orders(&mut h);
    h.reject(Command::MassCancel { account: NOBODY, market: None }, RejectReason::UnknownAccount);
    h.reject(
        Command::MassCancel { account: ALICE, market: Some(NO_MARKET) },
        RejectReason::UnknownMarket,
    );
    // UnknownAccount is checked first.
    h.reject(
        Command::MassCancel { account: NOBODY, market: Some(NO_MARKET) },
        RejectReason::UnknownAccount,
    );
}

#[test]
fn client_order_id_is_unique_among_open_orders() {
    let mut h = Harness::new();
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)).cid(5));
    assert_eq!(h.ex.order_by_client_id(ALICE, 5).unwrap().order_id, a);
    // In use by an open order: refused, whatever the order (other market, IOC too).
    h.reject_place(
        buy(ALICE, BTC_USDT, px(80), btc(1)).cid(5),
        RejectReason::DuplicateClientOrderId,
    );
    h.reject_place(
        sell(ALICE, ETH_USDT, px(2_000), eth(1)).cid(5),
        RejectReason::DuplicateClientOrderId,
    );
    h.reject_place(
        market_sell(ALICE, BTC_USDT, btc(1)).cid(5),
        RejectReason::DuplicateClientOrderId,
    );
    // Another account may use it.
    h.rest(buy(BOB, BTC_USDT, px(90), btc(1)).cid(5));
    // 0 means "none": any number of orders may have it.
    h.rest(buy(ALICE, BTC_USDT, px(80), btc(1)));
    h.rest(buy(ALICE, BTC_USDT, px(81), btc(1)));
    // Reusable once the first is done (cancelled) ...
    h.cancel(ALICE, OrderRef::Id(a));
    let a2 = h.rest(buy(ALICE, BTC_USDT, px(85), btc(1)).cid(5));
    assert_eq!(h.ex.order_by_client_id(ALICE, 5).unwrap().order_id, a2);
    // ... or filled.
    // (Carol's 2 lots fill Bob's better bid at 90 first, then Alice's at 85.)
    let (_, events) = h.place_ok(sell(CAROL, BTC_USDT, px(85), btc(2)));
    assert_eq!(done_reason(&events, a2), (DoneReason::Filled, btc(1)));
    assert!(h.ex.order_by_client_id(ALICE, 5).is_none());
    let (_, events) = h.place_ok(buy(ALICE, BTC_USDT, px(70), btc(1)).cid(5).ioc());
    assert_eq!(done_of(&events, accepted(&events).unwrap().order_id).reason, DoneReason::Expired);
    // An IOC that finished at once frees the id immediately.
    h.rest(buy(ALICE, BTC_USDT, px(70), btc(1)).cid(5));
}

#[test]
fn halted_market_refuses_place_and_amend_but_cancels() {
    let mut h = Harness::new();
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(2)));
    let b = h.rest(buy(BOB, BTC_USDT, px(91), btc(2)));
    let events = h.set_status(BTC_USDT, MarketStatus::Halted);
    assert!(events.iter().any(|e| e.kind
        == EventKind::Admin(AdminApplied::MarketStatus {
            market: BTC_USDT,
            status: MarketStatus::Halted
        })));
    assert_eq!(h.ex.market(BTC_USDT).unwrap().status, MarketStatus::Halted);
    h.reject_place(sell(CAROL, BTC_USDT, px(90), btc(1)), RejectReason::MarketHalted);
    h.reject_place(market_buy(CAROL, BTC_USDT, 1_000), RejectReason::MarketHalted);
    // MarketHalted comes before UnknownAccount for a place ...
    h.reject_place(sell(NOBODY, BTC_USDT, px(90), btc(1)), RejectReason::MarketHalted);
    let amend =
        |account, id, price| Command::Amend { account, order: OrderRef::Id(id), price, qty: 0 };
    h.reject(amend(ALICE, a, px(95)), RejectReason::MarketHalted);
    // ... but after UnknownOrder for an amend.
    h.reject(amend(CAROL, a, px(95)), RejectReason::UnknownOrder);
    // The other market trades on.
    h.rest(sell(CAROL, ETH_USDT, px(2_000), eth(1)));
    // Cancels and mass cancels work while halted.
    let events = h.cancel(ALICE, OrderRef::Id(a));
    assert_eq!(done_reason(&events, a), (DoneReason::Cancelled, 0));
    h.assert_bal(ALICE, USDT, FUND_USDT, 0);
    let events = h.mass_cancel(BOB, Some(BTC_USDT));
    assert_eq!(done_reason(&events, b), (DoneReason::Cancelled, 0));
    // Reopened: trading resumes.
    h.set_status(BTC_USDT, MarketStatus::Open);
    h.rest(sell(CAROL, BTC_USDT, px(90), btc(1)));
    h.reject(
        Command::SetMarketStatus { market: NO_MARKET, status: MarketStatus::Halted },
        RejectReason::UnknownMarket,
    );
}
