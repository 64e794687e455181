//! Queries (depth, open orders, balances, views) and the snapshot as a black box: a
//! restored engine carries the limits and behaves exactly like the original.

use bourse_engine::{Command, Exchange, Limits, MarketStatus, OrderRef, Side};

use crate::support::*;

/// A book with several levels and accounts, a partial fill, a halted market and a
/// pending withdrawal.
fn busy() -> Harness {
    let mut h = Harness::with_limits(Limits { orders_max: 77, ..roomy_limits() }, &TRADERS);
    h.rest(sell(BOB, BTC_USDT, px(101), btc(2)));
    h.rest(sell(CAROL, BTC_USDT, px(101), btc(3)).cid(4));
    h.rest(sell(DAVE, BTC_USDT, px(103), btc(1)));
    h.rest(buy(ALICE, BTC_USDT, px(99), btc(4)).post_only());
    h.rest(buy(BOB, BTC_USDT, px(98), btc(1)));
    h.place_ok(buy(DAVE, BTC_USDT, px(101), btc(1)));
    h.rest(buy(ALICE, ETH_USDT, px(1_003), eth(3)));
    h.run_ok(Command::WithdrawRequest { tx: 500, account: CAROL, asset: USDT, amount: 1_234 });
    h.set_status(ETH_USDT, MarketStatus::Halted);
    h
}

#[test]
fn depth_lists_levels_best_first_and_respects_levels_max() {
    let h = busy();
    // Bob's ask at 101 lost 1 lot to Dave: 1 + Carol's 3 = 4 lots, 2 orders.
    assert_eq!(h.asks(BTC_USDT), vec![(px(101), btc(4), 2), (px(103), btc(1), 1)]);
    assert_eq!(h.bids(BTC_USDT), vec![(px(99), btc(4), 1), (px(98), btc(1), 1)]);
    let top = h.ex.depth(BTC_USDT, 1).expect("known market");
    assert_eq!((top.market, top.bids.len(), top.asks.len()), (BTC_USDT, 1, 1));
    assert_eq!((top.bids[0].price, top.asks[0].price), (px(99), px(101)));
    assert!(h.ex.depth(NO_MARKET, 5).is_none());
    let empty = h.ex.depth(BTC_USDT, 0).expect("known market");
    assert!(empty.bids.is_empty() && empty.asks.is_empty());
}

#[test]
fn open_orders_are_in_ascending_order_id_and_views_are_exact() {
    let mut h = busy();
    let ids: Vec<u64> = h.ex.open_orders(ALICE).iter().map(|o| o.order_id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // A new order and a cancel in the middle keep the order.
    let extra = h.rest(sell(ALICE, BTC_USDT, px(110), btc(1)));
    h.cancel(ALICE, OrderRef::Id(ids[1]));
    let now: Vec<u64> = h.ex.open_orders(ALICE).iter().map(|o| o.order_id).collect();
    assert_eq!(now, vec![ids[0], extra]);
    let carol = h.ex.order_by_client_id(CAROL, 4).expect("Carol's order");
    assert_eq!(
        order_fields(&carol),
        (
            carol.order_id,
            4,
            CAROL,
            BTC_USDT,
            Side::Sell,
            px(101),
            btc(3),
            btc(3),
            0,
            30_000,
            false,
            bourse_engine::StpMode::CancelTaker
        )
    );
    // 5 in `busy`, plus the extra ask (the cancelled order was on ETH/USDT).
    assert_eq!(h.ex.market(BTC_USDT).unwrap().open_orders, 6);
    assert_eq!(h.ex.market(ETH_USDT).unwrap().status, MarketStatus::Halted);
    assert!(h.ex.market(NO_MARKET).is_none());
    assert!(h.ex.order(9_999).is_none());
}

#[test]
fn balances_list_nonzero_assets_in_ascending_id() {
    let mut h = Harness::with_limits(roomy_limits(), &[]);
    h.deposit(ALICE, ETH, 5);
    h.deposit(ALICE, BTC, 7);
    let ids: Vec<u32> = h.ex.balances(ALICE).iter().map(|(a, _)| *a).collect();
    assert_eq!(ids, vec![BTC, ETH]);
    // Withdrawn to zero: gone from the list (and zero from `balance`).
    h.run_ok(Command::WithdrawRequest { tx: 900, account: ALICE, asset: BTC, amount: 7 });
    assert_eq!(h.ex.balances(ALICE).len(), 2, "held funds still count");
    h.run_ok(Command::WithdrawComplete { tx: 900 });
    let ids: Vec<u32> = h.ex.balances(ALICE).iter().map(|(a, _)| *a).collect();
    assert_eq!(ids, vec![ETH]);
    h.assert_bal(ALICE, BTC, 0, 0);
    h.assert_bal(NOBODY, BTC, 0, 0);
    assert!(h.ex.balances(NOBODY).is_empty());
    let assets: Vec<(u32, u8, String, u64)> =
        h.ex.assets().iter().map(|a| (a.asset, a.scale, a.symbol.to_string(), a.supply)).collect();
    assert_eq!(
        assets,
        vec![(BTC, 8, "BTC".into(), 0), (USDT, 6, "USDT".into(), 0), (ETH, 8, "ETH".into(), 5)]
    );
}

#[test]
fn a_restored_snapshot_carries_everything_and_behaves_the_same() {
    let mut h = busy();
    let mut bytes = Vec::new();
    h.ex.encode_snapshot(&mut bytes);
    let mut restored = Exchange::decode_snapshot(&bytes).expect("own snapshot decodes");
    assert_eq!(restored.state_hash(), h.ex.state_hash());
    assert_eq!(restored.limits().orders_max, 77, "limits are state");
    assert_eq!(restored.fee_account(), FEE);
    assert_eq!(restored.last_index(), h.ex.last_index());
    let mut again = Vec::new();
    restored.encode_snapshot(&mut again);
    assert_eq!(again, bytes, "the encoding is canonical");
    // The same commands give the same events and the same state on both.
    let commands = [
        Command::Place(buy(CAROL, BTC_USDT, px(103), btc(6))),
        Command::Amend { account: ALICE, order: OrderRef::Client(0), price: 0, qty: 0 },
        Command::SetMarketStatus { market: ETH_USDT, status: MarketStatus::Open },
        Command::Place(sell(BOB, ETH_USDT, px(1_000), eth(2))),
        Command::WithdrawComplete { tx: 500 },
        Command::Place(buy(CAROL, BTC_USDT, px(101), btc(1)).cid(4)),
        Command::MassCancel { account: ALICE, market: None },
    ];
    for command in commands {
        let index = h.index + 1;
        let time_ns = h.time_ns + 1_000;
        let original = h.run(command);
        let mut copy = Vec::new();
        restored.apply(index, time_ns, &command, &mut copy).expect("increasing index");
        assert_eq!(copy, original, "{command:?}");
        assert_eq!(restored.state_hash(), h.ex.state_hash(), "{command:?}");
    }
}

#[test]
fn corrupt_snapshots_are_errors() {
    let h = busy();
    let mut bytes = Vec::new();
    h.ex.encode_snapshot(&mut bytes);
    assert!(Exchange::decode_snapshot(&[]).is_err());
    for len in [1, 8, 12, bytes.len() / 2, bytes.len() - 1] {
        assert!(Exchange::decode_snapshot(&bytes[..len]).is_err(), "cut to {len}");
    }
    let mut magic = bytes.clone();
    magic[0] ^= 0xFF;
    assert!(Exchange::decode_snapshot(&magic).is_err());
    // Flipping any single byte either fails to decode or yields a consistent engine
    // (a balance or price may legitimately change); it never panics.
    for at in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01;
        if let Ok(ex) = Exchange::decode_snapshot(&flipped) {
            assert!(ex.check_invariants().is_ok(), "byte {at}: decoded an inconsistent engine");
        }
    }
}
