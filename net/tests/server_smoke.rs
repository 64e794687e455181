mod live;

use bourse_engine::{OrderType, Side, StpMode, TimeInForce};
use bourse_net::client::Incoming;
use bourse_net::protocol::*;
use live::*;

fn limit(side: Side, price: u64, qty: u64, cl: u64) -> ClientRequest {
    ClientRequest::NewOrder(NewOrder {
        market: BTC_USDT,
        client_order_id: cl,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        post_only: false,
        price,
        qty,
        quote_budget: 0,
        stp: StpMode::CancelTaker,
    })
}

#[test]
fn quote_cross_and_fill_over_tcp() {
    let server = LiveServer::demo();
    let mut maker = server.connect(MAKER);
    let mut alice = server.connect(ALICE);
    maker.send(&limit(Side::Sell, 50_000_000_000, 10_000_000, 1)).unwrap();
    let order_id = expect(&mut maker, "accepted", |m| match m {
        Incoming::Msg(ServerMessage::Accepted(a)) => Some(a.order_id),
        _ => None,
    });
    alice.send(&limit(Side::Buy, 50_000_000_000, 10_000_000, 7)).unwrap();
    let trade = expect(&mut alice, "trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) => Some(*t),
        _ => None,
    });
    assert_eq!(trade.qty, 10_000_000);
    let maker_trade = expect(&mut maker, "maker trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) => Some(*t),
        _ => None,
    });
    assert_eq!(maker_trade.order_id, order_id);
    let report = server.stop();
    assert_eq!(report.engine.balance(ALICE, BTC).available, 10_000_000);
    report.engine.check_invariants().unwrap();
}
