//! Amend rules. `qty` is the new total (fills included); price 0 / qty 0 keep the old
//! value. BTC/USDT (qptl 1, no fees) unless said otherwise.

use bourse_engine::{Command, DoneReason, OrderRef, RejectReason, Side};

use crate::support::*;

fn amend_cmd(account: u64, id: u64, price: u64, qty: u64) -> Command {
    Command::Amend { account, order: OrderRef::Id(id), price, qty }
}

#[test]
fn qty_down_keeps_priority() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    let c = h.rest(sell(CAROL, BTC_USDT, px(100), btc(5)));
    let events = h.amend(BOB, OrderRef::Id(b), 0, btc(3));
    let am = amended(&events).expect("Amended");
    assert_eq!((am.order_id, am.price, am.qty, am.leaves_qty), (b, px(100), btc(3), btc(3)));
    assert!(am.priority_kept);
    assert!(trades(&events).is_empty());
    // 2 lots (20_000 sat) released.
    h.assert_bal(BOB, BTC, FUND_BTC - 30_000, 30_000);
    assert_eq!(h.open(b).reserved, 30_000);
    assert_eq!(h.asks(BTC_USDT), vec![(px(100), btc(8), 2)]);
    // Naming the same price explicitly is still "qty down at the same price".
    let events = h.amend(BOB, OrderRef::Id(b), px(100), btc(2));
    assert!(amended(&events).unwrap().priority_kept);
    // Bob is still first in line.
    let (_, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(1)));
    assert_eq!(fills(&events), vec![(b, px(100), btc(1))]);
    assert_eq!(h.open(c).leaves_qty, btc(5));
}

#[test]
fn qty_up_loses_priority() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    let c = h.rest(sell(CAROL, BTC_USDT, px(100), btc(5)));
    let events = h.amend(BOB, OrderRef::Id(b), 0, btc(6));
    let am = amended(&events).expect("Amended");
    assert_eq!((am.qty, am.leaves_qty, am.priority_kept), (btc(6), btc(6), false));
    // One more lot held.
    h.assert_bal(BOB, BTC, FUND_BTC - 60_000, 60_000);
    let (_, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(1)));
    assert_eq!(fills(&events), vec![(c, px(100), btc(1))]);
}

#[test]
fn qty_up_after_a_partial_fill_counts_fills_in_the_total() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(2)));
    // New total 6 with 2 filled: 4 left, so 40_000 sat held.
    let events = h.amend(BOB, OrderRef::Id(b), 0, btc(6));
    let am = amended(&events).expect("Amended");
    assert_eq!((am.qty, am.leaves_qty), (btc(6), btc(4)));
    let view = h.open(b);
    assert_eq!(
        (view.qty, view.leaves_qty, view.filled_qty, view.reserved),
        (btc(6), btc(4), btc(2), 40_000)
    );
    h.assert_bal(BOB, BTC, FUND_BTC - 60_000, 40_000);
}

#[test]
fn price_change_requeues_at_the_back_of_the_new_level() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    let c = h.rest(sell(CAROL, BTC_USDT, px(101), btc(5)));
    let events = h.amend(BOB, OrderRef::Id(b), px(101), 0);
    let am = amended(&events).expect("Amended");
    assert_eq!((am.price, am.qty, am.priority_kept), (px(101), btc(5), false));
    assert_eq!(h.asks(BTC_USDT), vec![(px(101), btc(10), 2)]);
    let (_, events) = h.place_ok(buy(ALICE, BTC_USDT, px(101), btc(1)));
    assert_eq!(fills(&events), vec![(c, px(101), btc(1))]);
}

#[test]
fn price_change_can_cross_and_trades_at_the_maker_price() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(2)));
    h.assert_bal(ALICE, USDT, FUND_USDT - 180, 180);
    // New limit 110 needs 220 held, crosses Bob's 100: pays 2 * 100 = 200, done, 20 back.
    let events = h.amend(ALICE, OrderRef::Id(a), px(110), 0);
    assert_eq!(fills(&events), vec![(b, px(100), btc(2))]);
    let t = trades(&events)[0];
    assert_eq!((t.taker_order_id, t.taker_side), (a, Side::Buy));
    assert_eq!(done_reason(&events, a), (DoneReason::Filled, btc(2)));
    assert_eq!(done_reason(&events, b), (DoneReason::Filled, btc(2)));
    h.assert_bal(ALICE, USDT, FUND_USDT - 200, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC + 20_000, 0);
    h.assert_bal(BOB, USDT, FUND_USDT + 200, 0);
    assert_eq!((h.bids(BTC_USDT), h.asks(BTC_USDT)), (vec![], vec![]));
}

#[test]
fn price_change_partially_crosses_and_rests_the_rest() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(5)));
    let events = h.amend(ALICE, OrderRef::Id(a), px(100), 0);
    assert_eq!(fills(&events), vec![(b, px(100), btc(2))]);
    // Held 450, then 500 for the new price; 200 paid; 3 lots rest needing 300.
    h.assert_bal(ALICE, USDT, FUND_USDT - 500, 300);
    let view = h.open(a);
    assert_eq!(
        (view.price, view.leaves_qty, view.filled_qty, view.reserved),
        (px(100), btc(3), btc(2), 300)
    );
    assert_eq!(h.bids(BTC_USDT), vec![(px(100), btc(3), 1)]);
}

#[test]
fn sell_amended_down_into_the_bids_trades() {
    let mut h = Harness::new();
    let a = h.rest(buy(ALICE, BTC_USDT, px(100), btc(3)));
    let b = h.rest(sell(BOB, BTC_USDT, px(105), btc(3)));
    let events = h.amend(BOB, OrderRef::Id(b), px(100), 0);
    assert_eq!(fills(&events), vec![(a, px(100), btc(3))]);
    assert_eq!(done_reason(&events, b), (DoneReason::Filled, btc(3)));
    h.assert_bal(BOB, BTC, FUND_BTC - 30_000, 0);
    h.assert_bal(BOB, USDT, FUND_USDT + 300, 0);
}

#[test]
fn amend_down_releases_the_buy_reservation_with_fees() {
    let mut h = Harness::new();
    // ETH/USDT: 3 lots at 1_003: 300_900 + floor(752.25) = 301_652.
    let a = h.rest(buy(ALICE, ETH_USDT, px(1_003), eth(3)));
    h.amend(ALICE, OrderRef::Id(a), 0, eth(2));
    // 2 lots: 200_600 + floor(501.5) = 201_101; 100_551 released.
    h.assert_bal(ALICE, USDT, FUND_USDT - 201_101, 201_101);
    assert_eq!(h.open(a).reserved, 201_101);
    // Price down: 2 lots at 1_000 = 200_000 + 500 = 200_500.
    h.amend(ALICE, OrderRef::Id(a), px(1_000), 0);
    h.assert_bal(ALICE, USDT, FUND_USDT - 200_500, 200_500);
}

#[test]
fn amend_to_at_or_below_the_filled_qty_cancels() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(2)));
    let events = h.amend(BOB, OrderRef::Id(b), 0, btc(2));
    assert_eq!(done_reason(&events, b), (DoneReason::Cancelled, btc(2)));
    assert!(h.ex.order(b).is_none());
    h.assert_bal(BOB, BTC, FUND_BTC - 20_000, 0);
    // Below the filled qty too.
    let c = h.rest(sell(CAROL, BTC_USDT, px(100), btc(5)));
    h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(3)));
    let events = h.amend(CAROL, OrderRef::Id(c), 0, btc(1));
    assert_eq!(done_reason(&events, c), (DoneReason::Cancelled, btc(3)));
    h.assert_bal(CAROL, BTC, FUND_BTC - 30_000, 0);
    assert_eq!(h.asks(BTC_USDT), vec![]);
}

#[test]
fn post_only_amend_that_would_cross_is_rejected_unchanged() {
    let mut h = Harness::new();
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(2)).post_only());
    h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    h.reject(amend_cmd(ALICE, a, px(100), 0), RejectReason::PostOnlyWouldTake);
    h.reject(amend_cmd(ALICE, a, px(101), btc(3)), RejectReason::PostOnlyWouldTake);
    let events = h.amend(ALICE, OrderRef::Id(a), px(95), 0);
    assert_eq!(amended(&events).unwrap().price, px(95));
    assert!(h.open(a).post_only);
}

#[test]
fn amend_needing_more_funds_than_available_is_rejected_unchanged() {
    let mut h = Harness::new();
    let erin = 5;
    h.deposit(erin, USDT, 300);
    let e = h.rest(buy(erin, BTC_USDT, px(100), btc(3)));
    h.assert_bal(erin, USDT, 0, 300);
    // 4 lots need 400: 100 more than the 0 available.
    h.reject(amend_cmd(erin, e, 0, btc(4)), RejectReason::InsufficientFunds);
    // 3 lots at 101 need 303.
    h.reject(amend_cmd(erin, e, px(101), 0), RejectReason::InsufficientFunds);
    // Down is always affordable.
    h.amend(erin, OrderRef::Id(e), px(99), 0);
    h.assert_bal(erin, USDT, 3, 297);
}

#[test]
fn amend_by_client_order_id() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)).cid(42));
    let events = h.amend(BOB, OrderRef::Client(42), 0, btc(4));
    let am = amended(&events).expect("Amended");
    assert_eq!((am.order_id, am.client_order_id, am.account, am.leaves_qty), (b, 42, BOB, btc(4)));
    assert_eq!(h.ex.order_by_client_id(BOB, 42).unwrap().leaves_qty, btc(4));
    // Another account's client id of the same value is not Bob's order.
    h.reject(
        Command::Amend { account: CAROL, order: OrderRef::Client(42), price: 0, qty: btc(1) },
        RejectReason::UnknownOrder,
    );
}

#[test]
fn amend_no_change() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    h.reject(amend_cmd(BOB, b, 0, 0), RejectReason::AmendNoChange);
    h.reject(amend_cmd(BOB, b, px(100), btc(5)), RejectReason::AmendNoChange);
    h.reject(amend_cmd(BOB, b, px(100), 0), RejectReason::AmendNoChange);
    h.reject(amend_cmd(BOB, b, 0, btc(5)), RejectReason::AmendNoChange);
    // The first AmendNoChange (both zero) comes before the price and qty rules; the
    // second only after them.
    h.reject(amend_cmd(BOB, b, 12_345, btc(5)), RejectReason::PriceNotOnTick);
    h.reject(amend_cmd(BOB, b, px(100), 12_345), RejectReason::QtyNotOnLot);
}

#[test]
fn amend_validation_order() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    h.reject(amend_cmd(NOBODY, b, px(101), 0), RejectReason::UnknownAccount);
    h.reject(amend_cmd(CAROL, b, px(101), 0), RejectReason::UnknownOrder);
    h.reject(amend_cmd(BOB, 999, px(101), 0), RejectReason::UnknownOrder);
    // ETH/USDT min notional 10_000: 1 lot at 99 ticks is 9_900.
    let e = h.rest(sell(BOB, ETH_USDT, px(100), eth(1)));
    h.reject(amend_cmd(BOB, e, px(99), 0), RejectReason::BelowMinNotional);
    // The qty rules come before the "at or below filled" cancel: an off-lot qty is
    // refused, not treated as a cancel.
    h.reject(amend_cmd(BOB, e, 0, 5), RejectReason::QtyNotOnLot);
}

#[test]
fn amend_of_a_done_order_is_unknown() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(1)));
    h.reject(amend_cmd(BOB, b, 0, btc(2)), RejectReason::UnknownOrder);
}

#[test]
fn cancel_by_amend_comes_before_the_min_notional_check() {
    let mut h = Harness::new();
    // ETH/USDT: 5 lots at 100 ticks (50_000 >= min 10_000); 3 of them fill.
    let b = h.rest(sell(BOB, ETH_USDT, px(100), eth(5)));
    h.place_ok(buy(ALICE, ETH_USDT, px(100), eth(3)));
    // New total 3 lots = filled: cancelled, although 3 lots at 1 tick (300) would be
    // below the minimum.
    let events = h.amend(BOB, OrderRef::Id(b), px(1), eth(3));
    assert_eq!(done_reason(&events, b), (DoneReason::Cancelled, eth(3)));
    h.assert_bal(BOB, ETH, FUND_ETH - 3_000_000, 0);
}

#[test]
fn amend_min_notional_counts_the_total_quantity() {
    let mut h = Harness::new();
    // 2 lots at 60 ticks: 2 * 60 * 100 = 12_000 >= 10_000.
    let b = h.rest(sell(BOB, ETH_USDT, px(60), eth(2)));
    // A market buy fills 1 lot (a 1-lot limit, 6_000, would be below the minimum):
    // 6_000 + taker fee 15 of a 10_000 budget; the rest cannot buy another lot.
    let (_, events) = h.place_ok(market_buy(ALICE, ETH_USDT, 10_000));
    assert_eq!(fills(&events), vec![(b, px(60), eth(1))]);
    // To 55 ticks: the total (2 lots, fills included) is 11_000, fine; the leaves alone
    // would be 5_500.
    let events = h.amend(BOB, OrderRef::Id(b), px(55), 0);
    assert_eq!(amended(&events).unwrap().price, px(55));
    // To 45 ticks: 2 * 45 * 100 = 9_000 is below the minimum.
    h.reject(amend_cmd(BOB, b, px(45), 0), RejectReason::BelowMinNotional);
}

#[test]
fn amended_order_matches_with_its_own_stp_mode() {
    let mut h = Harness::new();
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(2)));
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(2)).stp(bourse_engine::StpMode::CancelTaker));
    // Repriced to 100 it meets its own ask first: CancelTaker ends the amended order.
    let events = h.amend(ALICE, OrderRef::Id(a), px(100), 0);
    assert!(trades(&events).is_empty());
    assert_eq!(done_reason(&events, a), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(h.open(own).leaves_qty, btc(2));
    h.assert_bal(ALICE, USDT, FUND_USDT, 0);
    // With CancelMaker the own ask goes and the amended bid trades with Bob behind it.
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    let a = h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)).stp(bourse_engine::StpMode::CancelMaker));
    let events = h.amend(ALICE, OrderRef::Id(a), px(100), 0);
    assert_eq!(done_reason(&events, own), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(fills(&events), vec![(b, px(100), btc(1))]);
    assert_eq!(done_reason(&events, a), (DoneReason::Filled, btc(1)));
}

#[test]
fn amend_on_a_halted_market_is_refused_even_when_it_changes_nothing() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    h.set_status(BTC_USDT, bourse_engine::MarketStatus::Halted);
    // MarketHalted comes before AmendNoChange.
    h.reject(amend_cmd(BOB, b, 0, 0), RejectReason::MarketHalted);
    h.reject(amend_cmd(BOB, b, 0, btc(1)), RejectReason::MarketHalted);
}
