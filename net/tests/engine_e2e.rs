//! End to end against the real engine: clients speak the wire protocol, a tiny
//! single-threaded stand-in for the server carries the gateway's actions to an
//! `Exchange` and its events back. This is also the reference for how the server wires
//! the two (minus sockets, rings and replication).

mod common;

use bourse_engine::{
    CommandKind, Config, DoneReason, Event, Exchange, MarketSpec, OrderRef, OrderType,
    RejectReason, Side, StpMode, Symbol, TimeInForce,
};
use bourse_net::protocol::*;
use bourse_net::session::{Action, Query};
use common::*;

const BTC: u32 = 1;
const USDT: u32 = 2;
const MARKET: u32 = 1;
/// 50_000.00 USDT per BTC, in micro-USDT per whole BTC.
const PRICE: u64 = 50_000_000_000;

struct Node {
    h: Harness,
    exchange: Exchange,
    index: u64,
    events: Vec<Event>,
}

impl Node {
    fn new() -> Node {
        Node {
            h: Harness::with_defaults(),
            exchange: Exchange::new(Config::default()).unwrap(),
            index: 0,
            events: Vec::new(),
        }
    }

    /// Carries out every pending action, as the server would, until none are left.
    fn run(&mut self) {
        while !self.h.actions.is_empty() {
            for action in self.h.take_actions() {
                self.execute(action);
            }
        }
    }

    fn execute(&mut self, action: Action) {
        let now = self.h.now_ns;
        match action {
            Action::Submit { origin, command } => {
                self.index += 1;
                self.events.clear();
                self.exchange.apply(self.index, now, &command, &mut self.events).unwrap();
                let events = std::mem::take(&mut self.events);
                self.h.gw.on_events(Some(origin), &events, now, &mut self.h.actions);
                self.events = events;
            }
            Action::Query { origin, query } => match query {
                Query::Balances { account } => {
                    let balances = self.exchange.balances(account);
                    self.h.gw.reply_balances(origin, now, &balances, &mut self.h.actions);
                }
                Query::OpenOrders { account, market } => {
                    let orders: Vec<OpenOrderInfo> = self
                        .exchange
                        .open_orders(account)
                        .iter()
                        .filter(|o| market.is_none_or(|m| o.market == m))
                        .map(OpenOrderInfo::from)
                        .collect();
                    self.h.gw.reply_open_orders(origin, now, &orders, &mut self.h.actions);
                }
                Query::Status => {
                    let (index, hash) = (self.exchange.last_index(), self.exchange.state_hash());
                    self.h.gw.reply_status(origin, now, index, hash, &mut self.h.actions);
                }
                Query::Reference => {
                    let assets: Vec<AssetInfo> =
                        self.exchange.assets().iter().map(AssetInfo::from).collect();
                    let markets: Vec<MarketInfo> =
                        self.exchange.markets().iter().map(MarketInfo::from).collect();
                    self.h.gw.reply_reference(origin, now, &assets, &markets, &mut self.h.actions);
                }
            },
            Action::Subscribe { conn, request_id, market, depth } => {
                match self.exchange.depth(market, depth) {
                    Some(d) => self.h.gw.reply_book_snapshot(
                        conn,
                        now,
                        request_id,
                        market,
                        self.exchange.last_index(),
                        &d.bids,
                        &d.asks,
                        &mut self.h.actions,
                    ),
                    None => self.h.gw.reject_subscribe(
                        conn,
                        now,
                        request_id,
                        market,
                        &mut self.h.actions,
                    ),
                }
            }
            Action::Close { conn, .. } => {
                self.h.gw.on_disconnected(conn, now, &mut self.h.actions);
            }
        }
    }

    fn send(&mut self, client: &mut Client, request_id: RequestId, request: ClientRequest) {
        self.h.send(client, request_id, &request);
        self.run();
    }
}

fn admin(request: AdminRequest) -> ClientRequest {
    ClientRequest::Admin(request)
}

fn limit(side: Side, qty: u64, tif: TimeInForce, client_order_id: u64) -> ClientRequest {
    ClientRequest::NewOrder(NewOrder {
        market: MARKET,
        client_order_id,
        side,
        order_type: OrderType::Limit,
        tif,
        post_only: false,
        price: PRICE,
        qty,
        quote_budget: 0,
        stp: StpMode::CancelTaker,
    })
}

fn messages(got: Vec<(Seq, Got)>) -> Vec<Got> {
    got.into_iter().map(|(_, g)| g).collect()
}

#[test]
fn trading_session_end_to_end() {
    let mut node = Node::new();
    let (mut root, _, _) = node.h.logon(ADMIN, 0, 0, false);
    let setup = [
        admin(AdminRequest::CreateAsset {
            asset: BTC,
            scale: 8,
            symbol: Symbol::new("BTC").unwrap(),
        }),
        admin(AdminRequest::CreateAsset {
            asset: USDT,
            scale: 6,
            symbol: Symbol::new("USDT").unwrap(),
        }),
        admin(AdminRequest::CreateMarket(MarketSpec {
            market: MARKET,
            symbol: Symbol::new("BTC/USDT").unwrap(),
            base: BTC,
            quote: USDT,
            tick_size: 10_000,
            lot_size: 10_000,
            min_notional: 1_000_000,
            maker_fee_bps: 10,
            taker_fee_bps: 20,
        })),
        admin(AdminRequest::Deposit { tx: 1, account: ACCOUNT_A, asset: BTC, amount: 100_000_000 }),
        admin(AdminRequest::Deposit {
            tx: 2,
            account: ACCOUNT_B,
            asset: USDT,
            amount: 100_000_000_000,
        }),
        // Repeating a tx id is acknowledged as a duplicate and changes nothing.
        admin(AdminRequest::Deposit {
            tx: 2,
            account: ACCOUNT_B,
            asset: USDT,
            amount: 100_000_000_000,
        }),
        admin(AdminRequest::CreateMarket(MarketSpec {
            market: MARKET,
            symbol: Symbol::new("AGAIN").unwrap(),
            base: BTC,
            quote: USDT,
            tick_size: 10_000,
            lot_size: 10_000,
            min_notional: 0,
            maker_fee_bps: 0,
            taker_fee_bps: 0,
        })),
    ];
    for (i, request) in setup.into_iter().enumerate() {
        node.send(&mut root, 100 + i as u64, request);
    }
    let got = messages(node.h.read_all(&mut root));
    let acks: Vec<(RequestId, AdminKind, bool)> = got
        .iter()
        .filter_map(|g| match g {
            Got::Msg(ServerMessage::AdminAck(a)) => Some((a.request_id, a.kind, a.duplicate)),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        vec![
            (100, AdminKind::AssetCreated, false),
            (101, AdminKind::AssetCreated, false),
            (102, AdminKind::MarketCreated, false),
            (103, AdminKind::Deposit, false),
            (104, AdminKind::Deposit, false),
            (105, AdminKind::Deposit, true),
        ]
    );
    let Some(Got::Msg(ServerMessage::Rejected(reject))) = got.last() else { panic!("{got:?}") };
    assert_eq!(reject.request_id, 106);
    assert_eq!(
        reject.cause,
        RejectCause::Engine {
            command: CommandKind::CreateMarket,
            reason: RejectReason::MarketExists
        }
    );

    // A sells half a BTC, resting; it asked for cancel-on-disconnect.
    let (mut a, _, _) = node.h.logon(TRADER_A, 0, 0, true);
    let (mut b, _, _) = node.h.logon(TRADER_B, 0, 0, false);
    node.send(&mut b, 1, ClientRequest::Subscribe { market: MARKET, depth: 5 });
    node.send(&mut a, 1, limit(Side::Sell, 50_000_000, TimeInForce::Gtc, 501));
    let got = messages(node.h.read_all(&mut a));
    let accepted = got.iter().find_map(|g| match g {
        Got::Msg(ServerMessage::Accepted(x)) => Some(*x),
        _ => None,
    });
    let accepted = accepted.expect("accepted");
    assert_eq!((accepted.request_id, accepted.client_order_id), (1, 501));
    let order_id = accepted.order_id;

    // B tries to cancel A's order by id: the command carries B's account, so the engine
    // says UnknownOrder to B and A's order stays.
    node.send(&mut b, 2, ClientRequest::Cancel(OrderRef::Id(order_id)));
    let got = messages(node.h.read_all(&mut b));
    let rejected = got.iter().find_map(|g| match g {
        Got::Msg(ServerMessage::Rejected(r)) => Some(*r),
        _ => None,
    });
    let rejected = rejected.expect("B's cancel is refused");
    assert_eq!(rejected.request_id, 2);
    assert_eq!(
        rejected.cause,
        RejectCause::Engine { command: CommandKind::Cancel, reason: RejectReason::UnknownOrder }
    );
    assert!(node.exchange.order(order_id).is_some());
    assert!(node.h.read_all(&mut a).is_empty(), "A hears nothing of B's attempt");

    // B buys 0.2 BTC against it.
    node.send(&mut b, 3, limit(Side::Buy, 20_000_000, TimeInForce::Ioc, 502));
    let got_a = messages(node.h.read_all(&mut a));
    let got_b = messages(node.h.read_all(&mut b));
    let fill = |got: &[Got]| {
        got.iter()
            .find_map(|g| match g {
                Got::Msg(ServerMessage::Trade(t)) => Some(*t),
                _ => None,
            })
            .expect("a fill")
    };
    let (maker, taker) = (fill(&got_a), fill(&got_b));
    assert_eq!(
        (maker.order_id, maker.side, maker.liquidity),
        (order_id, Side::Sell, Liquidity::Maker)
    );
    assert_eq!(
        (taker.client_order_id, taker.side, taker.liquidity),
        (502, Side::Buy, Liquidity::Taker)
    );
    assert_eq!((maker.qty, maker.price, maker.trade_id), (20_000_000, PRICE, taker.trade_id));
    // Notional 0.2 * 50_000 USDT = 10_000 USDT; fees 10 and 20 bps of it.
    assert_eq!((maker.fee, taker.fee), (10_000_000, 20_000_000));
    assert!(got_b.iter().any(|g| matches!(
        g,
        Got::Msg(ServerMessage::Done(d)) if d.client_order_id == 502 && d.reason == DoneReason::Filled
    )));
    // B, subscribed, sees the public trade (no ids) and the book change.
    assert!(got_b.iter().any(|g| matches!(
        g,
        Got::Msg(ServerMessage::PublicTrade(t)) if t.qty == 20_000_000 && t.taker_side == Side::Buy
    )));
    let book_update = got_b.iter().find_map(|g| match g {
        Got::BookUpdate { changes, .. } => Some(changes.clone()),
        _ => None,
    });
    assert_eq!(
        book_update.expect("book update"),
        vec![LevelChange { side: Side::Sell, price: PRICE, qty: 30_000_000, orders: 1 }]
    );

    // Balances answered from the engine, in A's own stream.
    node.send(&mut a, 4, ClientRequest::BalanceQuery);
    let got = messages(node.h.read_all(&mut a));
    assert_eq!(got, vec![Got::Balances(4, node.exchange.balances(ACCOUNT_A))]);
    node.send(&mut a, 5, ClientRequest::OpenOrdersQuery { market: None });
    let Got::OpenOrders(5, orders, false) = &messages(node.h.read_all(&mut a))[0] else {
        panic!("open orders")
    };
    assert_eq!(orders.len(), 1);
    assert_eq!(
        (orders[0].order_id, orders[0].leaves_qty, orders[0].filled_qty),
        (order_id, 30_000_000, 20_000_000)
    );

    // A's connection drops: cancel-on-disconnect pulls its order; A learns it on resume.
    let a_session = node.h.gw.session_of(a.conn).unwrap();
    node.h.gw.on_disconnected(a.conn, node.h.now_ns, &mut node.h.actions);
    node.run();
    assert!(node.exchange.order(order_id).is_none());
    assert!(node.exchange.open_orders(ACCOUNT_A).is_empty());
    let (_, ack, replay) = node.h.logon(TRADER_A, a_session, 0, false);
    assert!(replay.is_empty(), "resume from 0 replays nothing");
    let next = ack.next_seq;
    // Resume from three back: the released funds, the order's Done(Cancelled) and the
    // MassCancelDone, each once.
    let (_, _, replay) = node.h.logon(TRADER_A, a_session, next - 3, false);
    let replay = messages(replay);
    assert_eq!(replay.len(), 3, "{replay:?}");
    assert!(
        matches!(
            replay[0],
            Got::Msg(ServerMessage::BalanceUpdate(BalanceUpdate {
                reason: bourse_engine::BalanceReason::OrderRelease(id),
                held: 0,
                ..
            })) if id == order_id
        ),
        "{replay:?}"
    );
    assert!(replay.iter().any(|g| matches!(
        g,
        Got::Msg(ServerMessage::Done(d)) if d.order_id == order_id && d.reason == DoneReason::Cancelled
    )));
    assert!(matches!(
        replay.last(),
        Some(Got::Msg(ServerMessage::MassCancelDone(m))) if m.count == 1 && m.request_id == 0
    ));

    // Admin status carries the engine's own state hash.
    node.send(&mut root, 200, ClientRequest::StatusQuery);
    let got = messages(node.h.read_all(&mut root));
    let Some(Got::Msg(ServerMessage::Status(status))) = got.last() else { panic!("{got:?}") };
    assert_eq!(status.request_id, 200);
    assert_eq!(status.last_index, node.exchange.last_index());
    assert_eq!(status.state_hash, node.exchange.state_hash());
    node.exchange.check_invariants().unwrap();
}
