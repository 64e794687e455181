//! Self-trade prevention: the taker's mode decides; self-trades never execute. BTC/USDT,
//! no fees, `notional = ticks * lots`.

use bourse_engine::{DoneReason, StpMode};

use crate::support::*;

#[test]
fn cancel_taker_stops_the_taker_and_keeps_the_maker() {
    let mut h = Harness::new();
    let b99 = h.rest(sell(BOB, BTC_USDT, px(99), btc(1)));
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(2)));
    let b100 = h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    let (t, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(3)).stp(StpMode::CancelTaker));
    // Fills Bob's 1 lot at 99, then meets its own ask (older than Bob's at 100): stops.
    assert_eq!(fills(&events), vec![(b99, px(99), btc(1))]);
    assert_eq!(done_reason(&events, t), (DoneReason::SelfTradePrevented, btc(1)));
    assert_eq!(dones(&events).len(), 2, "Bob's 99 filled, the taker done; own maker stays");
    assert_eq!(h.open(own).leaves_qty, btc(2));
    assert_eq!(h.open(b100).leaves_qty, btc(1));
    // Paid 99; the rest of the 300 hold released. BTC: +1 lot, 2 lots still held.
    h.assert_bal(ALICE, USDT, FUND_USDT - 99, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC - 20_000 + 10_000, 20_000);
    assert_eq!(h.asks(BTC_USDT), vec![(px(100), btc(3), 2)]);
    assert_eq!(h.bids(BTC_USDT), vec![]);
}

#[test]
fn cancel_maker_removes_own_makers_and_continues() {
    let mut h = Harness::new();
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(2)));
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(3)));
    let (t, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(3)).stp(StpMode::CancelMaker));
    assert_eq!(done_reason(&events, own), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(fills(&events), vec![(b, px(100), btc(3))]);
    assert_eq!(done_reason(&events, t), (DoneReason::Filled, btc(3)));
    assert_eq!(done_reason(&events, b), (DoneReason::Filled, btc(3)));
    // The cancelled maker's 20_000 sat come back; 3 lots bought for 300.
    h.assert_bal(ALICE, BTC, FUND_BTC + 30_000, 0);
    h.assert_bal(ALICE, USDT, FUND_USDT - 300, 0);
    assert!(h.ex.order(own).is_none());
    assert_eq!(h.asks(BTC_USDT), vec![]);
}

#[test]
fn cancel_both_removes_maker_and_taker() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(99), btc(1)));
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(2)));
    let c = h.rest(sell(CAROL, BTC_USDT, px(100), btc(3)));
    let (t, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(5)).stp(StpMode::CancelBoth));
    assert_eq!(fills(&events), vec![(b, px(99), btc(1))]);
    assert_eq!(done_reason(&events, own), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(done_reason(&events, t), (DoneReason::SelfTradePrevented, btc(1)));
    assert_eq!(h.open(c).leaves_qty, btc(3));
    // Paid 99 for 1 lot; the own ask's 2 lots released.
    h.assert_bal(ALICE, USDT, FUND_USDT - 99, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC + 10_000, 0);
    assert_eq!(h.asks(BTC_USDT), vec![(px(100), btc(3), 1)]);
    assert_eq!(h.bids(BTC_USDT), vec![]);
}

#[test]
fn decrement_taker_smaller() {
    let mut h = Harness::new();
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(5)));
    let (t, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(2)).stp(StpMode::Decrement));
    // Both lose 2 lots, no trade; the taker reaches 0.
    assert!(trades(&events).is_empty());
    assert_eq!(done_reason(&events, t), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(dones(&events).len(), 1, "the maker stays");
    let view = h.open(own);
    assert_eq!((view.leaves_qty, view.filled_qty, view.reserved), (btc(3), 0, 30_000));
    // 2 of the 5 held lots are freed; the buy's 200 hold is released whole.
    h.assert_bal(ALICE, BTC, FUND_BTC - 30_000, 30_000);
    h.assert_bal(ALICE, USDT, FUND_USDT, 0);
    assert_eq!(h.asks(BTC_USDT), vec![(px(100), btc(3), 1)]);
}

#[test]
fn decrement_maker_smaller() {
    let mut h = Harness::new();
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(2)));
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let (t, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(5)).stp(StpMode::Decrement));
    // Own maker and taker lose 2: the maker is done (0 filled), the taker has 3 left,
    // fills Bob's 2 and rests 1 lot.
    assert_eq!(done_reason(&events, own), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(fills(&events), vec![(b, px(100), btc(2))]);
    let view = h.open(t);
    assert_eq!((view.leaves_qty, view.filled_qty, view.reserved), (btc(1), btc(2), 100));
    // Paid 200, 100 held for the resting lot. BTC: own ask released, 2 lots bought.
    h.assert_bal(ALICE, USDT, FUND_USDT - 300, 100);
    h.assert_bal(ALICE, BTC, FUND_BTC + 20_000, 0);
    assert_eq!(h.bids(BTC_USDT), vec![(px(100), btc(1), 1)]);
    assert_eq!(h.asks(BTC_USDT), vec![]);
}

#[test]
fn decrement_equal_sizes_finishes_both() {
    let mut h = Harness::new();
    let own = h.rest(buy(ALICE, BTC_USDT, px(100), btc(3)));
    // A sell taker this time.
    let (t, events) = h.place_ok(sell(ALICE, BTC_USDT, px(100), btc(3)).stp(StpMode::Decrement));
    assert!(trades(&events).is_empty());
    assert_eq!(done_reason(&events, own), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(done_reason(&events, t), (DoneReason::SelfTradePrevented, 0));
    h.assert_bal(ALICE, USDT, FUND_USDT, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC, 0);
    assert_eq!((h.bids(BTC_USDT), h.asks(BTC_USDT)), (vec![], vec![]));
}

#[test]
fn decrement_ioc_taker_at_zero_is_self_trade_prevented_not_expired() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(99), btc(1)));
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(4)));
    let (t, events) =
        h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(3)).ioc().stp(StpMode::Decrement));
    // 1 lot from Bob, then the last 2 decremented away against its own ask.
    assert_eq!(fills(&events), vec![(b, px(99), btc(1))]);
    assert_eq!(done_reason(&events, t), (DoneReason::SelfTradePrevented, btc(1)));
    assert_eq!(h.open(own).leaves_qty, btc(2));
    h.assert_bal(ALICE, USDT, FUND_USDT - 99, 0);
}

/// Bob 2 lots, then Alice's own 2, then Carol 3, all at 100.
fn fok_book() -> (Harness, u64, u64, u64) {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(2)));
    let c = h.rest(sell(CAROL, BTC_USDT, px(100), btc(3)));
    (h, b, own, c)
}

#[test]
fn fok_feasibility_stops_at_the_first_own_order() {
    for mode in [StpMode::CancelTaker, StpMode::CancelBoth, StpMode::Decrement] {
        let (mut h, _, _, _) = fok_book();
        let before = h.observable();
        // Only Bob's 2 lots count before the own order: 2 < 5, so nothing happens.
        let (t, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(5)).fok().stp(mode));
        assert_eq!(events.len(), 2, "{mode:?}: {events:#?}");
        assert_eq!(done_reason(&events, t), (DoneReason::Expired, 0), "{mode:?}");
        assert!(balance_events(&events).is_empty());
        assert_eq!(h.observable(), before, "{mode:?}");
    }
}

#[test]
fn fok_within_the_lots_before_the_own_order_fills() {
    let (mut h, b, own, _) = fok_book();
    let (t, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(2)).fok());
    assert_eq!(fills(&events), vec![(b, px(100), btc(2))]);
    assert_eq!(done_reason(&events, t), (DoneReason::Filled, btc(2)));
    assert_eq!(h.open(own).leaves_qty, btc(2));
}

#[test]
fn fok_cancel_maker_skips_own_orders() {
    let (mut h, b, own, c) = fok_book();
    // Bob's 2 + Carol's 3 = 5 lots of others: feasible.
    let (t, events) =
        h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(5)).fok().stp(StpMode::CancelMaker));
    assert_eq!(fills(&events), vec![(b, px(100), btc(2)), (c, px(100), btc(3))]);
    assert_eq!(done_reason(&events, own), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(done_reason(&events, t), (DoneReason::Filled, btc(5)));
    h.assert_bal(ALICE, USDT, FUND_USDT - 500, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC + 50_000, 0);
    assert_eq!(h.asks(BTC_USDT), vec![]);
}

#[test]
fn fok_cancel_maker_infeasible_leaves_own_order_alone() {
    let (mut h, _, own, _) = fok_book();
    let before = h.observable();
    // Others have 5 lots; 6 cannot fill, so the own maker is not cancelled either.
    let (t, events) =
        h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(6)).fok().stp(StpMode::CancelMaker));
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(done_reason(&events, t), (DoneReason::Expired, 0));
    assert_eq!(h.observable(), before);
    assert_eq!(h.open(own).leaves_qty, btc(2));
}
