//! Maker/taker fees: floor per fill, charged in quote on both sides, moved whole to the
//! fee account, and reservations at the larger of the two rates. ETH/USDT: qptl 100,
//! maker 10 bps, taker 25 bps, so `notional = ticks * lots * 100`.

use bourse_engine::{AssetId, Command, MarketSpec, Side, StpMode};

use crate::support::*;

fn totals(h: &Harness) -> [(u128, u64); 3] {
    [BTC, USDT, ETH].map(|asset: AssetId| (h.asset_total(asset), h.supply(asset)))
}

#[test]
fn fees_floor_per_fill_and_go_to_the_fee_account() {
    let mut h = Harness::new();
    let before = totals(&h);
    let b = h.rest(sell(BOB, ETH_USDT, px(1_003), eth(1)));
    let c = h.rest(sell(CAROL, ETH_USDT, px(1_003), eth(1)));
    let (a, events) = h.place_ok(buy(ALICE, ETH_USDT, px(1_003), eth(2)));
    // Hold: N = 1_003 * 2 * 100 = 200_600, fee at max(10, 25) = 25 bps:
    // floor(200_600 * 25 / 10_000) = floor(501.5) = 501, so 201_101.
    // Each fill: N = 100_300; taker floor(250.75) = 250; maker floor(100.3) = 100.
    // Per-fill flooring charges Alice 250 + 250 = 500, one less than floor(501.5) on the
    // whole: the floor really is per fill.
    let t = trades(&events);
    assert_eq!(fills(&events), vec![(b, px(1_003), eth(1)), (c, px(1_003), eth(1))]);
    for trade in &t {
        assert_eq!((trade.taker_fee, trade.maker_fee), (250, 100), "{trade:?}");
    }
    assert_eq!(done_reason(&events, a).1, eth(2));
    // Alice pays 2 * (100_300 + 250) = 201_100; 1 of the hold is released.
    h.assert_bal(ALICE, USDT, FUND_USDT - 201_100, 0);
    h.assert_bal(ALICE, ETH, FUND_ETH + 2_000_000, 0);
    // Each seller receives 100_300 - 100 = 100_200.
    for seller in [BOB, CAROL] {
        h.assert_bal(seller, USDT, FUND_USDT + 100_200, 0);
        h.assert_bal(seller, ETH, FUND_ETH - 1_000_000, 0);
    }
    // The fee account gets 2 * (250 + 100) = 700 and nothing else.
    h.assert_bal(FEE, USDT, 700, 0);
    assert_eq!(h.ex.balances(FEE).len(), 1);
    // Nothing created or destroyed, per asset.
    assert_eq!(totals(&h), before);
    for (total, supply) in totals(&h) {
        assert_eq!(total, supply as u128);
    }
}

#[test]
fn resting_buy_reserves_at_the_max_rate_and_pays_the_maker_rate() {
    let mut h = Harness::new();
    let before = totals(&h);
    let a = h.rest(buy(ALICE, ETH_USDT, px(1_003), eth(3)));
    // N = 1_003 * 3 * 100 = 300_900; fee at 25 bps = floor(752.25) = 752; hold 301_652.
    h.assert_bal(ALICE, USDT, FUND_USDT - 301_652, 301_652);
    assert_eq!(h.open(a).reserved, 301_652);
    let (b, events) = h.place_ok(sell(BOB, ETH_USDT, px(1_003), eth(1)));
    assert_eq!(fills(&events), vec![(a, px(1_003), eth(1))]);
    let t = trades(&events)[0];
    assert_eq!(t.taker_side, Side::Sell);
    // N = 100_300: maker (Alice) floor(100.3) = 100, taker (Bob) floor(250.75) = 250.
    assert_eq!((t.maker_fee, t.taker_fee), (100, 250));
    assert_eq!(done_reason(&events, b).1, eth(1));
    // Alice pays 100_400; her 2 lots left need reserve_buy = 200_600 + floor(501.5) =
    // 201_101; released 301_652 - 100_400 - 201_101 = 151.
    h.assert_bal(ALICE, USDT, FUND_USDT - 301_652 + 151, 201_101);
    let view = h.open(a);
    assert_eq!((view.leaves_qty, view.filled_qty, view.reserved), (eth(2), eth(1), 201_101));
    h.assert_bal(ALICE, ETH, FUND_ETH + 1_000_000, 0);
    // Bob receives 100_300 - 250.
    h.assert_bal(BOB, USDT, FUND_USDT + 100_050, 0);
    h.assert_bal(BOB, ETH, FUND_ETH - 1_000_000, 0);
    h.assert_bal(FEE, USDT, 350, 0);
    assert_eq!(totals(&h), before);
}

#[test]
fn reservation_uses_the_maker_rate_when_it_is_the_larger() {
    let mut h = Harness::new();
    // BTC/ETH: BTC scale 8 base, ETH quote; tick 10_000 * lot 10_000 = 10^8, qptl 1.
    // Maker 30 bps, taker 5 bps.
    let spec = MarketSpec {
        market: 3,
        symbol: symbol("BTC/ETH"),
        base: BTC,
        quote: ETH,
        tick_size: 10_000,
        lot_size: 10_000,
        min_notional: 1,
        maker_fee_bps: 30,
        taker_fee_bps: 5,
    };
    h.run_ok(Command::CreateMarket(spec));
    let before = totals(&h);
    let a = h.rest(buy(ALICE, 3, px(1_001), btc(2)));
    // N = 2_002; fee at 30 bps = floor(6.006) = 6; hold 2_008.
    assert_eq!(h.open(a).reserved, 2_008);
    h.assert_bal(ALICE, ETH, FUND_ETH - 2_008, 2_008);
    let (_, events) = h.place_ok(sell(BOB, 3, px(1_001), btc(1)));
    // N = 1_001: maker floor(3.003) = 3, taker floor(0.5005) = 0 (rounded down to
    // nothing, in the user's favour).
    let t = trades(&events)[0];
    assert_eq!((t.maker_fee, t.taker_fee), (3, 0));
    // Alice pays 1_004; 1 lot left needs 1_001 + floor(3.003) = 1_004; nothing to
    // release: 2_008 - 1_004 - 1_004 = 0.
    h.assert_bal(ALICE, ETH, FUND_ETH - 2_008, 1_004);
    assert_eq!(h.open(a).reserved, 1_004);
    h.assert_bal(BOB, ETH, FUND_ETH + 1_001, 0);
    h.assert_bal(FEE, ETH, 3, 0);
    assert_eq!(totals(&h), before);
}

#[test]
fn sum_of_balances_is_unchanged_by_a_busy_book() {
    let mut h = Harness::new();
    let before = totals(&h);
    // A few crossing orders of every kind on the fee market.
    for (i, &account) in TRADERS.iter().enumerate() {
        let i = i as u64;
        h.rest(sell(account, ETH_USDT, px(1_000 + i * 7), eth(3 + i)));
        h.rest(buy(account, ETH_USDT, px(990 - i * 3), eth(2 + i)));
    }
    // Alice's own ask is first in line: CancelMaker removes it and matching goes on.
    h.place_ok(buy(ALICE, ETH_USDT, px(1_030), eth(7)).ioc().stp(StpMode::CancelMaker));
    h.place_ok(market_buy(BOB, ETH_USDT, 333_333));
    h.place_ok(market_sell(CAROL, ETH_USDT, eth(5)));
    h.place_ok(sell(DAVE, ETH_USDT, px(980), eth(3)));
    assert!(h.bal(FEE, USDT).available > 0);
    assert_eq!(totals(&h), before);
}

#[test]
fn a_fee_that_takes_the_whole_notional_emits_no_empty_balance_event() {
    let mut h = Harness::new();
    // BTC/USDT terms with a 100% maker fee (allowed: 0..=10_000 bps).
    let spec = MarketSpec {
        market: 4,
        symbol: symbol("BTC/USDT.X"),
        maker_fee_bps: 10_000,
        ..btc_usdt_spec()
    };
    h.run_ok(Command::CreateMarket(spec));
    let b = h.rest(sell(BOB, 4, px(100), btc(1)));
    let (_, events) = h.place_ok(buy(ALICE, 4, px(100), btc(1)));
    assert_eq!(fills(&events), vec![(b, px(100), btc(1))]);
    // Bob's proceeds are 100 - fee 100 = 0: his USDT balance does not change, so there
    // is no balance change to report (as for a zero release, which is not reported).
    let t = trades(&events)[0];
    assert_eq!((t.maker_fee, t.taker_fee), (100, 0));
    h.assert_bal(BOB, USDT, FUND_USDT, 0);
    h.assert_bal(FEE, USDT, 100, 0);
    let empty: Vec<_> = balance_events(&events)
        .into_iter()
        .filter(|b| b.delta_available == 0 && b.delta_held == 0)
        .collect();
    assert!(empty.is_empty(), "BalanceChange events that change nothing: {empty:#?}");
}
