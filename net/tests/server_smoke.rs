mod live;

use bourse_engine::Side;
use bourse_net::client::Incoming;
use bourse_net::protocol::*;
use live::*;

#[test]
fn quote_cross_and_fill_over_tcp() {
    let server = LiveServer::demo();
    let mut maker = server.connect(MAKER);
    let mut alice = server.connect(ALICE);
    maker.send(&limit_order(BTC_USDT, Side::Sell, 50_000_000_000, 10_000_000, 1)).unwrap();
    let order_id = expect(&mut maker, "accepted", |m| match m {
        Incoming::Msg(ServerMessage::Accepted(a)) => Some(a.order_id),
        _ => None,
    });
    alice.send(&limit_order(BTC_USDT, Side::Buy, 50_000_000_000, 10_000_000, 7)).unwrap();
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
