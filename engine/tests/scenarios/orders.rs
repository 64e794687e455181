//! Order types, matching, price-time priority and holds. All on BTC/USDT (qptl 1, no
//! fees) unless a test says otherwise, so `notional = ticks * lots` micro-USDT.

use bourse_engine::{BalanceReason, DoneReason, EventKind, Side, TimeInForce};

use crate::support::*;

/// Sum of the (available, held) deltas of `account`'s `asset` with `reason`.
fn deltas(
    events: &[bourse_engine::Event],
    account: u64,
    asset: u32,
    reason: BalanceReason,
) -> (i64, i64) {
    balance_events(events)
        .iter()
        .filter(|b| b.account == account && b.asset == asset && b.reason == reason)
        .fold((0, 0), |(a, h), b| (a + b.delta_available, h + b.delta_held))
}

#[test]
fn gtc_buy_rests_and_holds_its_notional() {
    let mut h = Harness::new();
    // 3 lots at 100 ticks: notional 100 * 3 * qptl 1 = 300 micro-USDT, fee 0.
    let (a, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(3)));
    let acc = accepted(&events).unwrap();
    assert_eq!((acc.account, acc.market, acc.side), (ALICE, BTC_USDT, Side::Buy));
    assert_eq!((acc.price, acc.qty, acc.tif), (px(100), btc(3), TimeInForce::Gtc));
    assert!(matches!(events[0].kind, EventKind::Accepted(_)), "Accepted comes first");
    assert_eq!(deltas(&events, ALICE, USDT, BalanceReason::OrderHold(a)), (-300, 300));
    assert!(trades(&events).is_empty() && dones(&events).is_empty());
    h.assert_bal(ALICE, USDT, FUND_USDT - 300, 300);
    let view = h.open(a);
    assert_eq!((view.leaves_qty, view.filled_qty, view.reserved), (btc(3), 0, 300));
    assert_eq!(h.bids(BTC_USDT), vec![(px(100), btc(3), 1)]);
    let level = level_events(&events);
    assert_eq!(level.len(), 1);
    assert_eq!(
        (level[0].side, level[0].price, level[0].qty, level[0].orders),
        (Side::Buy, px(100), btc(3), 1)
    );
    assert_eq!(h.ex.open_orders(ALICE).len(), 1);
    assert_eq!(h.ex.market(BTC_USDT).unwrap().open_orders, 1);
}

#[test]
fn gtc_sell_rests_and_holds_its_quantity() {
    let mut h = Harness::new();
    // A sell holds lots * lot_size base: 4 * 10_000 = 40_000 sat.
    let b = h.rest(sell(BOB, BTC_USDT, px(120), btc(4)));
    h.assert_bal(BOB, BTC, FUND_BTC - 40_000, 40_000);
    h.assert_bal(BOB, USDT, FUND_USDT, 0);
    assert_eq!(h.open(b).reserved, 40_000);
    assert_eq!(h.asks(BTC_USDT), vec![(px(120), btc(4), 1)]);
}

#[test]
fn gtc_partial_fill_then_rests() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let (a, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(5)));
    // Hold 5 * 100 = 500; fill 2 lots at 100 = 200; the 3 resting lots keep 300.
    let t = trades(&events);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].price, t[0].qty, t[0].taker_side), (px(100), btc(2), Side::Buy));
    assert_eq!((t[0].maker_order_id, t[0].taker_order_id), (b, a));
    assert_eq!((t[0].maker_account, t[0].taker_account), (BOB, ALICE));
    assert_eq!((t[0].maker_fee, t[0].taker_fee), (0, 0));
    assert_eq!(done_reason(&events, b), (DoneReason::Filled, btc(2)));
    assert_eq!(dones(&events).len(), 1, "the taker rests: no Done for it");
    h.assert_bal(ALICE, USDT, FUND_USDT - 500, 300);
    h.assert_bal(ALICE, BTC, FUND_BTC + 20_000, 0);
    h.assert_bal(BOB, BTC, FUND_BTC - 20_000, 0);
    h.assert_bal(BOB, USDT, FUND_USDT + 200, 0);
    let view = h.open(a);
    assert_eq!(
        (view.qty, view.leaves_qty, view.filled_qty, view.reserved),
        (btc(5), btc(3), btc(2), 300)
    );
    assert!(h.ex.order(b).is_none());
    assert_eq!(h.asks(BTC_USDT), vec![]);
    assert_eq!(h.bids(BTC_USDT), vec![(px(100), btc(3), 1)]);
    // The README's order: Accepted, hold, Trade, balances, maker Done, maker Level, then
    // the taker's Level last.
    let pos = |f: &dyn Fn(&EventKind) -> bool| events.iter().position(|e| f(&e.kind)).unwrap();
    let trade_at = pos(&|k| matches!(k, EventKind::Trade(_)));
    let done_at = pos(&|k| matches!(k, EventKind::Done(_)));
    let ask_level_at = pos(&|k| matches!(k, EventKind::Level(l) if l.side == Side::Sell));
    assert!(matches!(events[0].kind, EventKind::Accepted(_)));
    assert!(
        matches!(events[1].kind, EventKind::Balance(b) if b.reason == BalanceReason::OrderHold(a))
    );
    assert!(1 < trade_at && trade_at < done_at && done_at < ask_level_at, "{events:#?}");
    assert!(
        matches!(events.last().unwrap().kind, EventKind::Level(l) if l.side == Side::Buy && l.qty == btc(3)),
        "{events:#?}"
    );
}

#[test]
fn gtc_full_fill_of_the_taker() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(7)));
    let (a, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(5)));
    assert_eq!(fills(&events), vec![(b, px(100), btc(5))]);
    assert_eq!(done_reason(&events, a), (DoneReason::Filled, btc(5)));
    assert!(matches!(events.last().unwrap().kind, EventKind::Done(d) if d.order_id == a));
    // Alice paid 500 exactly; Bob keeps 2 lots (20_000 sat) on the book.
    h.assert_bal(ALICE, USDT, FUND_USDT - 500, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC + 50_000, 0);
    h.assert_bal(BOB, BTC, FUND_BTC - 70_000, 20_000);
    h.assert_bal(BOB, USDT, FUND_USDT + 500, 0);
    let view = h.open(b);
    assert_eq!((view.leaves_qty, view.filled_qty, view.reserved), (btc(2), btc(5), 20_000));
    assert!(h.ex.order(a).is_none());
}

#[test]
fn trade_at_maker_price_releases_the_price_improvement() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(90), btc(2)));
    let (a, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(5)));
    // Trades at the maker's 90: 2 * 90 = 180. Hold 500, then the resting 3 lots need
    // 3 * 100 = 300, so 500 - 180 - 300 = 20 goes back to available.
    assert_eq!(fills(&events), vec![(b, px(90), btc(2))]);
    assert_eq!(deltas(&events, ALICE, USDT, BalanceReason::OrderRelease(a)), (20, -20));
    h.assert_bal(ALICE, USDT, FUND_USDT - 480, 300);
    assert_eq!(h.open(a).reserved, 300);
    h.assert_bal(BOB, USDT, FUND_USDT + 180, 0);

    // Same with the taker filling completely: it pays 180 of its 200 hold, 20 released.
    // (Alice's bid goes first, or Bob's new ask would trade with it.)
    h.cancel(ALICE, bourse_engine::OrderRef::Id(a));
    let b2 = h.rest(sell(BOB, BTC_USDT, px(90), btc(2)));
    let (c, events) = h.place_ok(buy(CAROL, BTC_USDT, px(100), btc(2)));
    assert_eq!(fills(&events), vec![(b2, px(90), btc(2))]);
    assert_eq!(done_reason(&events, c), (DoneReason::Filled, btc(2)));
    h.assert_bal(CAROL, USDT, FUND_USDT - 180, 0);
}

#[test]
fn sell_taker_trades_at_the_bid_price() {
    let mut h = Harness::new();
    let a = h.rest(buy(ALICE, BTC_USDT, px(110), btc(2)));
    let (b, events) = h.place_ok(sell(BOB, BTC_USDT, px(100), btc(2)));
    // The bid's 110 is the price: Bob receives 2 * 110 = 220, not 200.
    assert_eq!(fills(&events), vec![(a, px(110), btc(2))]);
    assert_eq!(trades(&events)[0].taker_side, Side::Sell);
    assert_eq!(done_reason(&events, b), (DoneReason::Filled, btc(2)));
    assert_eq!(done_reason(&events, a), (DoneReason::Filled, btc(2)));
    h.assert_bal(BOB, USDT, FUND_USDT + 220, 0);
    h.assert_bal(BOB, BTC, FUND_BTC - 20_000, 0);
    h.assert_bal(ALICE, USDT, FUND_USDT - 220, 0);
}

#[test]
fn ioc_partial_fill_then_expires() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let (a, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(5)).ioc());
    assert_eq!(fills(&events), vec![(b, px(100), btc(2))]);
    assert_eq!(done_reason(&events, a), (DoneReason::Expired, btc(2)));
    // Paid 200 of the 500 hold, the rest released; nothing rests.
    h.assert_bal(ALICE, USDT, FUND_USDT - 200, 0);
    assert!(h.ex.order(a).is_none());
    assert_eq!((h.bids(BTC_USDT), h.asks(BTC_USDT)), (vec![], vec![]));

    // With nothing to match it expires at once, unfilled.
    let (a2, events) = h.place_ok(sell(ALICE, BTC_USDT, px(100), btc(1)).ioc());
    assert_eq!(done_reason(&events, a2), (DoneReason::Expired, 0));
    h.assert_bal(ALICE, BTC, FUND_BTC + 20_000, 0);
}

#[test]
fn fok_fills_fully_across_levels() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let c = h.rest(sell(CAROL, BTC_USDT, px(101), btc(3)));
    let (a, events) = h.place_ok(buy(ALICE, BTC_USDT, px(101), btc(5)).fok());
    // 2 * 100 + 3 * 101 = 503 paid out of a 5 * 101 = 505 hold.
    assert_eq!(fills(&events), vec![(b, px(100), btc(2)), (c, px(101), btc(3))]);
    assert_eq!(done_reason(&events, a), (DoneReason::Filled, btc(5)));
    h.assert_bal(ALICE, USDT, FUND_USDT - 503, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC + 50_000, 0);
}

#[test]
fn fok_that_cannot_fill_expires_without_any_balance_change() {
    let mut h = Harness::new();
    h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    // Enough lots on the book (2 + 5), but only 2 within the limit of 101.
    h.rest(sell(CAROL, BTC_USDT, px(102), btc(5)));
    let before = h.observable();
    let (a, events) = h.place_ok(buy(ALICE, BTC_USDT, px(101), btc(5)).fok());
    assert_eq!(events.len(), 2, "only Accepted then Done: {events:#?}");
    assert!(matches!(events[0].kind, EventKind::Accepted(_)));
    assert_eq!(done_reason(&events, a), (DoneReason::Expired, 0));
    assert!(balance_events(&events).is_empty());
    assert_eq!(h.observable(), before);

    // The same for a FOK sell.
    h.rest(buy(DAVE, BTC_USDT, px(95), btc(1)));
    let before = h.observable();
    let (s, events) = h.place_ok(sell(ALICE, BTC_USDT, px(95), btc(2)).fok());
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(done_reason(&events, s), (DoneReason::Expired, 0));
    assert_eq!(h.observable(), before);
}

#[test]
fn post_only_rests_or_is_rejected_when_it_would_take() {
    let mut h = Harness::new();
    h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let a = h.rest(buy(ALICE, BTC_USDT, px(99), btc(1)).post_only());
    assert!(h.open(a).post_only);
    h.assert_bal(ALICE, USDT, FUND_USDT - 99, 99);
    h.reject_place(
        buy(ALICE, BTC_USDT, px(100), btc(1)).post_only(),
        bourse_engine::RejectReason::PostOnlyWouldTake,
    );
    h.reject_place(
        buy(ALICE, BTC_USDT, px(150), btc(1)).post_only(),
        bourse_engine::RejectReason::PostOnlyWouldTake,
    );
    h.reject_place(
        sell(CAROL, BTC_USDT, px(99), btc(1)).post_only(),
        bourse_engine::RejectReason::PostOnlyWouldTake,
    );
    let c = h.rest(sell(CAROL, BTC_USDT, px(100), btc(1)).post_only());
    assert_eq!(h.asks(BTC_USDT), vec![(px(100), btc(3), 2)]);
    assert!(h.open(c).post_only);
}

#[test]
fn market_buy_walks_levels_until_the_budget_cannot_afford_a_lot() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let c = h.rest(sell(CAROL, BTC_USDT, px(110), btc(2)));
    let d = h.rest(sell(DAVE, BTC_USDT, px(120), btc(5)));
    let (a, events) = h.place_ok(market_buy(ALICE, BTC_USDT, 500));
    assert_eq!(accepted(&events).unwrap().quote_budget, 500);
    // 2 lots at 100 = 200 (300 left), 2 lots at 110 = 220 (80 left), a lot at 120 is
    // beyond 80: it stops having filled something, so Filled.
    assert_eq!(fills(&events), vec![(b, px(100), btc(2)), (c, px(110), btc(2))]);
    assert_eq!(done_reason(&events, a), (DoneReason::Filled, btc(4)));
    assert_eq!(deltas(&events, ALICE, USDT, BalanceReason::OrderHold(a)), (-500, 500));
    h.assert_bal(ALICE, USDT, FUND_USDT - 420, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC + 40_000, 0);
    assert_eq!(h.open(d).leaves_qty, btc(5));
    assert_eq!(h.asks(BTC_USDT), vec![(px(120), btc(5), 1)]);
}

#[test]
fn market_buy_budget_includes_the_taker_fee() {
    let mut h = Harness::new();
    // ETH/USDT: one lot at 1_000 ticks is 1_000 * 1 * 100 = 100_000; taker fee 25 bps =
    // 250, so l lots cost 100_250 * l. A budget of 200_400 would buy 2 lots without the
    // fee (200_000) but with it only 1 (2 lots cost 200_500).
    let b = h.rest(sell(BOB, ETH_USDT, px(1_000), eth(3)));
    let (a, events) = h.place_ok(market_buy(ALICE, ETH_USDT, 200_400));
    assert_eq!(fills(&events), vec![(b, px(1_000), eth(1))]);
    let t = trades(&events)[0];
    // Maker fee 10 bps of 100_000 = 100.
    assert_eq!((t.taker_fee, t.maker_fee), (250, 100));
    assert_eq!(done_reason(&events, a), (DoneReason::Filled, eth(1)));
    h.assert_bal(ALICE, USDT, FUND_USDT - 100_250, 0);
    h.assert_bal(ALICE, ETH, FUND_ETH + 1_000_000, 0);
    h.assert_bal(BOB, USDT, FUND_USDT + 99_900, 0);
    h.assert_bal(BOB, ETH, FUND_ETH - 3_000_000, 2_000_000);
    h.assert_bal(FEE, USDT, 350, 0);
    assert_eq!(h.open(b).leaves_qty, eth(2));
}

#[test]
fn market_buy_that_fills_nothing_expires() {
    let mut h = Harness::new();
    // Empty book.
    let (a, events) = h.place_ok(market_buy(ALICE, BTC_USDT, 500));
    assert_eq!(done_reason(&events, a), (DoneReason::Expired, 0));
    h.assert_bal(ALICE, USDT, FUND_USDT, 0);
    // A book whose best lot (100) is beyond the budget (99): nothing filled, Expired.
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    let (a, events) = h.place_ok(market_buy(ALICE, BTC_USDT, 99));
    assert!(trades(&events).is_empty());
    assert_eq!(done_reason(&events, a), (DoneReason::Expired, 0));
    h.assert_bal(ALICE, USDT, FUND_USDT, 0);
    assert_eq!(h.open(b).leaves_qty, btc(1));
}

#[test]
fn market_sell_sells_its_quantity_down_the_bids() {
    let mut h = Harness::new();
    let a = h.rest(buy(ALICE, BTC_USDT, px(100), btc(2)));
    let c = h.rest(buy(CAROL, BTC_USDT, px(95), btc(3)));
    let (b, events) = h.place_ok(market_sell(BOB, BTC_USDT, btc(4)));
    // 2 * 100 + 2 * 95 = 390.
    assert_eq!(fills(&events), vec![(a, px(100), btc(2)), (c, px(95), btc(2))]);
    assert_eq!(done_reason(&events, b), (DoneReason::Filled, btc(4)));
    h.assert_bal(BOB, USDT, FUND_USDT + 390, 0);
    h.assert_bal(BOB, BTC, FUND_BTC - 40_000, 0);
    assert_eq!(h.open(c).leaves_qty, btc(1));
    // More than the book holds: the 1 lot left fills at 95, the other 9 expire.
    let (d, events) = h.place_ok(market_sell(DAVE, BTC_USDT, btc(10)));
    assert_eq!(fills(&events), vec![(c, px(95), btc(1))]);
    assert_eq!(done_reason(&events, d), (DoneReason::Expired, btc(1)));
    h.assert_bal(DAVE, BTC, FUND_BTC - 10_000, 0);
    h.assert_bal(DAVE, USDT, FUND_USDT + 95, 0);
    assert_eq!(h.bids(BTC_USDT), vec![]);
}

#[test]
fn market_sell_is_not_checked_against_min_notional() {
    let mut h = Harness::new();
    // ETH/USDT min notional 10_000: a resting bid of 2 lots at 50 ticks is worth
    // 50 * 2 * 100 = 10_000, just enough.
    let a = h.rest(buy(ALICE, ETH_USDT, px(50), eth(2)));
    // A market sell of 1 lot trades 5_000 worth: market sells are not checked.
    let (b, events) = h.place_ok(market_sell(BOB, ETH_USDT, eth(1)));
    assert_eq!(fills(&events), vec![(a, px(50), eth(1))]);
    assert_eq!(done_reason(&events, b), (DoneReason::Filled, eth(1)));
    // A limit sell of the same value is refused.
    h.reject_place(
        sell(BOB, ETH_USDT, px(50), eth(1)),
        bourse_engine::RejectReason::BelowMinNotional,
    );
}

#[test]
fn price_time_priority() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(2)));
    let c = h.rest(sell(CAROL, BTC_USDT, px(100), btc(2)));
    let d = h.rest(sell(DAVE, BTC_USDT, px(99), btc(2)));
    // Better price first (Dave at 99), then the oldest at 100 (Bob).
    let (_, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(3)));
    assert_eq!(fills(&events), vec![(d, px(99), btc(2)), (b, px(100), btc(1))]);
    // 2 * 99 + 1 * 100 = 298 of a 300 hold.
    h.assert_bal(ALICE, USDT, FUND_USDT - 298, 0);
    assert_eq!(h.asks(BTC_USDT), vec![(px(100), btc(3), 2)]);
    // Bob's partly filled order keeps its place ahead of Carol.
    let (_, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(2)));
    assert_eq!(fills(&events), vec![(b, px(100), btc(1)), (c, px(100), btc(1))]);

    // The bid side: higher first, then oldest.
    let a1 = h.rest(buy(ALICE, BTC_USDT, px(90), btc(1)));
    let b1 = h.rest(buy(BOB, BTC_USDT, px(90), btc(1)));
    let c1 = h.rest(buy(CAROL, BTC_USDT, px(91), btc(1)));
    let (_, events) = h.place_ok(sell(DAVE, BTC_USDT, px(90), btc(3)));
    assert_eq!(
        fills(&events),
        vec![(c1, px(91), btc(1)), (a1, px(90), btc(1)), (b1, px(90), btc(1))]
    );
}

#[test]
fn each_fill_settles_taker_then_maker_then_fee_account() {
    let mut h = Harness::new();
    h.rest(sell(BOB, ETH_USDT, px(1_000), eth(1)));
    h.rest(sell(CAROL, ETH_USDT, px(1_001), eth(1)));
    let (_, events) = h.place_ok(buy(ALICE, ETH_USDT, px(1_001), eth(2)));
    assert_eq!(trades(&events).len(), 2);
    // After each Trade, the run of Balance events goes taker, maker, fee account.
    for (i, event) in events.iter().enumerate() {
        let EventKind::Trade(t) = event.kind else { continue };
        let rank = |account: u64| match account {
            a if a == t.taker_account => 0,
            a if a == t.maker_account => 1,
            FEE => 2,
            other => panic!("account {other} settled in trade {t:?}"),
        };
        let run: Vec<u8> = events[i + 1..]
            .iter()
            .map_while(|e| match e.kind {
                EventKind::Balance(b)
                    if b.reason != BalanceReason::OrderRelease(t.taker_order_id) =>
                {
                    Some(rank(b.account))
                }
                _ => None,
            })
            .collect();
        assert!(run.contains(&0) && run.contains(&1) && run.contains(&2), "{run:?}");
        assert!(run.windows(2).all(|w| w[0] <= w[1]), "settlement order {run:?} in {events:#?}");
    }
}

#[test]
fn order_ids_and_trade_ids_increase_from_one() {
    let mut h = Harness::new();
    let first = h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    assert_eq!(first, 1);
    let (second, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(1)));
    assert_eq!(second, 2);
    assert_eq!(trades(&events)[0].trade_id, 1);
    // A rejected place uses no id; an expired FOK does.
    h.reject_place(buy(ALICE, BTC_USDT, 0, btc(1)), bourse_engine::RejectReason::InvalidPrice);
    let (third, _) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(1)).fok());
    assert_eq!(third, 3);
    h.rest(sell(BOB, BTC_USDT, px(100), btc(1)));
    let (_, events) = h.place_ok(buy(ALICE, BTC_USDT, px(100), btc(1)));
    assert_eq!(trades(&events)[0].trade_id, 2);
}

#[test]
fn market_buy_stops_inside_a_level_when_the_budget_runs_out() {
    let mut h = Harness::new();
    let b = h.rest(sell(BOB, BTC_USDT, px(100), btc(5)));
    // 250 affords 2 lots at 100; 50 left cannot buy a third.
    let (a, events) = h.place_ok(market_buy(ALICE, BTC_USDT, 250).cid(71));
    assert_eq!(fills(&events), vec![(b, px(100), btc(2))]);
    let t = trades(&events)[0];
    assert_eq!((t.taker_client_order_id, t.maker_client_order_id), (71, 0));
    assert_eq!(done_reason(&events, a), (DoneReason::Filled, btc(2)));
    h.assert_bal(ALICE, USDT, FUND_USDT - 200, 0);
    assert_eq!(h.asks(BTC_USDT), vec![(px(100), btc(3), 1)]);
}

#[test]
fn post_only_that_would_cross_its_own_order_is_refused() {
    let mut h = Harness::new();
    h.rest(sell(ALICE, BTC_USDT, px(100), btc(1)));
    h.reject_place(
        buy(ALICE, BTC_USDT, px(100), btc(1)).post_only().stp(bourse_engine::StpMode::CancelMaker),
        bourse_engine::RejectReason::PostOnlyWouldTake,
    );
}

#[test]
fn market_buy_cancel_maker_skips_its_own_ask() {
    let mut h = Harness::new();
    let own = h.rest(sell(ALICE, BTC_USDT, px(100), btc(1)));
    let b = h.rest(sell(BOB, BTC_USDT, px(101), btc(1)));
    let (a, events) =
        h.place_ok(market_buy(ALICE, BTC_USDT, 1_000).stp(bourse_engine::StpMode::CancelMaker));
    assert_eq!(done_reason(&events, own), (DoneReason::SelfTradePrevented, 0));
    assert_eq!(fills(&events), vec![(b, px(101), btc(1))]);
    // The book is empty after Bob's lot: it filled something, then ran out of book.
    assert_eq!(done_reason(&events, a), (DoneReason::Expired, btc(1)));
    h.assert_bal(ALICE, USDT, FUND_USDT - 101, 0);
    h.assert_bal(ALICE, BTC, FUND_BTC + 10_000, 0);
}
