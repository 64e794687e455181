//! The session state machine at the sans-IO level: logon, permissions, bad input,
//! rate limits, heartbeats, cancel-on-disconnect, routing of engine events, market data.

mod common;

use bourse_engine::{
    Command, CommandKind, Event, EventKind, LevelUpdate, OrderRef, OrderType, RejectReason, Side,
    StpMode, TimeInForce,
};
use bourse_net::protocol::*;
use bourse_net::ratelimit::RateLimit;
use bourse_net::session::{Action, GatewayConfig, Origin, Query};
use bourse_net::wire;
use common::*;

fn new_order(client_order_id: u64) -> ClientRequest {
    ClientRequest::NewOrder(NewOrder {
        market: 5,
        client_order_id,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        post_only: false,
        price: 50_000,
        qty: 10,
        quote_budget: 0,
        stp: StpMode::CancelTaker,
    })
}

fn session_reject(got: &Got) -> Option<(RequestId, BodyType, SessionReason)> {
    match got {
        Got::Msg(ServerMessage::Rejected(RejectReport {
            request_id,
            refused_type,
            cause: RejectCause::Session(reason),
            ..
        })) => Some((*request_id, *refused_type, *reason)),
        _ => None,
    }
}

#[test]
fn logon_then_order_is_submitted_for_own_account() {
    let mut h = Harness::with_defaults();
    let (mut client, ack, replay) = h.logon(TRADER_A, 0, 0, false);
    assert!(replay.is_empty());
    assert_eq!(ack.account, ACCOUNT_A);
    assert_eq!(ack.role, WireRole::Trader);
    assert_eq!(ack.next_seq, 1);
    assert_eq!(ack.replay_count, 0);
    assert!(ack.session_id >= 1);
    h.take_actions();
    h.send(&mut client, 42, &new_order(7));
    let actions = h.take_actions();
    assert_eq!(actions.len(), 1, "{actions:?}");
    match actions[0] {
        Action::Submit { origin, command: Command::Place(place) } => {
            assert_eq!(place.account, ACCOUNT_A);
            assert_eq!(place.client_order_id, 7);
            assert_eq!(origin.request_id, 42);
            assert_eq!(origin.session_id, ack.session_id);
            assert_eq!(origin.conn, client.conn);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn message_before_logon_closes_with_reason() {
    let mut h = Harness::with_defaults();
    let mut client = h.connect();
    h.send(&mut client, 1, &new_order(1));
    let got = h.read_all(&mut client);
    assert_eq!(
        got,
        vec![(0, Got::Msg(ServerMessage::Logout { reason: SessionReason::NotLoggedOn }))]
    );
    assert_eq!(close_reason(&h.take_actions(), client.conn), Some(SessionReason::NotLoggedOn));
    // Nothing more is handled on a closing connection.
    h.send(&mut client, 2, &new_order(2));
    assert!(h.take_actions().is_empty());
}

#[test]
fn wrong_hmac_unknown_key_and_version_are_refused() {
    let mut h = Harness::with_defaults();
    let cases = [
        (SessionReason::BadSignature, TRADER_A, true, PROTOCOL_VERSION_OK),
        (SessionReason::UnknownKey, 55, false, PROTOCOL_VERSION_OK),
        (SessionReason::UnsupportedVersion, TRADER_A, false, 2),
    ];
    for (reason, key_id, corrupt, version) in cases {
        let mut client = h.connect();
        let ClientRequest::Logon(mut logon) = Harness::logon_request(&client, key_id, 0, 0, false)
        else {
            unreachable!()
        };
        logon.protocol_version = version;
        if corrupt {
            logon.signature[0] ^= 0x80;
        }
        h.send(&mut client, 1, &ClientRequest::Logon(logon));
        let got = h.read_all(&mut client);
        let expected = LogonReject { reason, oldest_seq: 0, next_seq: 0 };
        assert_eq!(got, vec![(0, Got::Msg(ServerMessage::LogonReject(expected)))]);
        assert_eq!(close_reason(&h.take_actions(), client.conn), Some(reason));
        assert_eq!(h.gw.session_of(client.conn), None);
    }
    // A signature made for another connection's nonce does not work either.
    let first = h.connect();
    let mut second = h.connect();
    let replayed = Harness::logon_request(&first, TRADER_A, 0, 0, false);
    h.send(&mut second, 1, &replayed);
    let got = h.read_all(&mut second);
    assert!(matches!(
        got[0].1,
        Got::Msg(ServerMessage::LogonReject(LogonReject {
            reason: SessionReason::BadSignature,
            ..
        }))
    ));
}

const PROTOCOL_VERSION_OK: u16 = wire::PROTOCOL_VERSION;

#[test]
fn bad_frames_close_only_their_connection() {
    let mut h = Harness::with_defaults();
    let (mut healthy, _, _) = h.logon(TRADER_B, 0, 0, false);
    h.take_actions();

    // Garbage: the length prefix reads as a huge frame.
    let (mut garbage, _, _) = h.logon(TRADER_A, 0, 0, false);
    h.send_raw(&mut garbage, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(close_reason(&h.take_actions(), garbage.conn), Some(SessionReason::FrameTooLarge));
    assert!(h
        .read_all(&mut garbage)
        .contains(&(0, Got::Msg(ServerMessage::Logout { reason: SessionReason::FrameTooLarge }))));

    // A length over the limit, exactly one byte over.
    let mut over = h.connect();
    h.send_raw(&mut over, &(frame_limit() as u32 + 1).to_le_bytes());
    assert_eq!(close_reason(&h.take_actions(), over.conn), Some(SessionReason::FrameTooLarge));

    // An empty frame.
    let mut empty = h.connect();
    h.send_raw(&mut empty, &0u32.to_le_bytes());
    assert_eq!(close_reason(&h.take_actions(), empty.conn), Some(SessionReason::EmptyFrame));

    // A well-framed payload that is not a FlatBuffer of ours.
    let (mut junk, _, _) = h.logon(TRADER_A, 0, 0, false);
    let mut frame = 16u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0xab; 16]);
    h.send_raw(&mut junk, &frame);
    assert_eq!(close_reason(&h.take_actions(), junk.conn), Some(SessionReason::Malformed));

    // The healthy connection is untouched and still works.
    assert!(h.read_all(&mut healthy).is_empty());
    h.send(&mut healthy, 5, &new_order(1));
    let actions = h.take_actions();
    assert!(matches!(actions.as_slice(), [Action::Submit { .. }]), "{actions:?}");
}

fn frame_limit() -> usize {
    GatewayConfig::default().frame_bytes_max
}

#[test]
fn truncated_frame_waits_then_times_out() {
    let mut h = Harness::with_defaults();
    let mut client = h.connect();
    let mut bytes = Vec::new();
    let request = Harness::logon_request(&client, TRADER_A, 0, 0, false);
    bourse_net::codec::Encoder::for_client().encode_client(1, &request, &mut bytes).unwrap();
    // Everything but the last byte: nothing happens yet.
    h.send_raw(&mut client, &bytes[..bytes.len() - 1]);
    assert!(h.take_actions().is_empty());
    assert!(h.read_all(&mut client).is_empty());
    // The logon never completes: the connection times out.
    h.tick(GatewayConfig::default().logon_timeout_ns);
    assert_eq!(close_reason(&h.take_actions(), client.conn), Some(SessionReason::LogonTimeout));

    // The same bytes split anywhere, completed, log on fine.
    for split in [1, 4, 5, bytes.len() / 2, bytes.len() - 1] {
        let mut client = h.connect();
        let request = Harness::logon_request(&client, TRADER_A, 0, 0, false);
        let mut bytes = Vec::new();
        bourse_net::codec::Encoder::for_client().encode_client(1, &request, &mut bytes).unwrap();
        h.send_raw(&mut client, &bytes[..split]);
        h.send_raw(&mut client, &bytes[split..]);
        assert!(h.gw.session_of(client.conn).is_some(), "split at {split}");
    }
}

/// A frame that verifies but carries a union tag this build does not know.
fn unknown_type_frame(request_id: u64) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let body = wire::Heartbeat::create(&mut fbb, &wire::HeartbeatArgs { time_ns: 1 });
    let args = wire::MessageArgs {
        seq: request_id,
        body_type: wire::Body(200),
        body: Some(body.as_union_value()),
    };
    let message = wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(wire::MESSAGE_IDENTIFIER));
    fbb.finished_data().to_vec()
}

#[test]
fn unknown_type_and_invalid_fields_are_rejected_and_the_session_goes_on() {
    let mut h = Harness::with_defaults();
    let (mut client, _, _) = h.logon(TRADER_A, 0, 0, false);
    h.take_actions();
    h.send_raw(&mut client, &unknown_type_frame(31));
    let got = h.read_all(&mut client);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 0, "session rejects answer the connection, outside the stream");
    assert_eq!(session_reject(&got[0].1), Some((31, 200, SessionReason::UnknownMessage)));

    // A server-to-client message type sent by a client.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let body = wire::Done::create(&mut fbb, &wire::DoneArgs::default());
    let args = wire::MessageArgs {
        seq: 32,
        body_type: wire::Body::Done,
        body: Some(body.as_union_value()),
    };
    let message = wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(wire::MESSAGE_IDENTIFIER));
    h.send_raw(&mut client, fbb.finished_data());
    let got = h.read_all(&mut client);
    assert_eq!(
        session_reject(&got[0].1),
        Some((32, wire::Body::Done.0, SessionReason::UnknownMessage))
    );

    // An enum value this build does not know.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let body = wire::NewOrder::create(
        &mut fbb,
        &wire::NewOrderArgs { side: wire::Side(9), ..Default::default() },
    );
    let args = wire::MessageArgs {
        seq: 33,
        body_type: wire::Body::NewOrder,
        body: Some(body.as_union_value()),
    };
    let message = wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(wire::MESSAGE_IDENTIFIER));
    h.send_raw(&mut client, fbb.finished_data());
    let got = h.read_all(&mut client);
    assert_eq!(
        session_reject(&got[0].1),
        Some((33, wire::Body::NewOrder.0, SessionReason::InvalidField))
    );
    assert_eq!(got[0].0, 0);

    // A cancel naming no order at all.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let body = wire::Cancel::create(&mut fbb, &wire::CancelArgs::default());
    let args = wire::MessageArgs {
        seq: 34,
        body_type: wire::Body::Cancel,
        body: Some(body.as_union_value()),
    };
    let message = wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(wire::MESSAGE_IDENTIFIER));
    h.send_raw(&mut client, fbb.finished_data());
    let got = h.read_all(&mut client);
    assert_eq!(
        session_reject(&got[0].1),
        Some((34, wire::Body::Cancel.0, SessionReason::InvalidField))
    );

    assert!(h.take_actions().is_empty());
    assert!(h.gw.session_of(client.conn).is_some());
}

#[test]
fn second_logon_is_rejected() {
    let mut h = Harness::with_defaults();
    let (mut client, _, _) = h.logon(TRADER_A, 0, 0, false);
    let again = Harness::logon_request(&client, TRADER_A, 0, 0, false);
    h.send(&mut client, 9, &again);
    let got = h.read_all(&mut client);
    assert_eq!(
        session_reject(&got[0].1),
        Some((9, wire::Body::Logon.0, SessionReason::AlreadyLoggedOn))
    );
}

#[test]
fn roles_are_enforced() {
    let mut h = Harness::with_defaults();
    let (mut trader, _, _) = h.logon(TRADER_A, 0, 0, false);
    let (mut admin, admin_ack, _) = h.logon(ADMIN, 0, 0, false);
    assert_eq!(admin_ack.role, WireRole::Admin);
    assert_eq!(admin_ack.account, 0);
    h.take_actions();

    let deposit = ClientRequest::Admin(AdminRequest::Deposit {
        tx: 1,
        account: ACCOUNT_A,
        asset: 1,
        amount: 5,
    });
    for (i, request) in [deposit, ClientRequest::StatusQuery].iter().enumerate() {
        h.send(&mut trader, 10 + i as u64, request);
        let got = h.read_all(&mut trader);
        assert_eq!(session_reject(&got[0].1).map(|r| r.2), Some(SessionReason::NotPermitted));
    }
    for (i, request) in
        [new_order(1), ClientRequest::BalanceQuery, ClientRequest::MassCancel { market: None }]
            .iter()
            .enumerate()
    {
        h.send(&mut admin, 20 + i as u64, request);
        let got = h.read_all(&mut admin);
        assert_eq!(session_reject(&got[0].1).map(|r| r.2), Some(SessionReason::NotPermitted));
    }
    assert!(h.take_actions().is_empty(), "nothing refused reaches the engine");

    h.send(&mut admin, 30, &deposit);
    h.send(&mut admin, 31, &ClientRequest::StatusQuery);
    let actions = h.take_actions();
    assert!(matches!(
        actions[0],
        Action::Submit { command: Command::Deposit { tx: 1, account: ACCOUNT_A, .. }, .. }
    ));
    let Action::Query { origin, query: Query::Status } = actions[1] else { panic!("{actions:?}") };
    h.gw.reply_status(origin, h.now_ns, 1234, [7; 32], &mut h.actions);
    let got = h.read_all(&mut admin);
    let Got::Msg(ServerMessage::Status(status)) = got.last().unwrap().1 else { panic!("{got:?}") };
    assert_eq!(status.request_id, 31);
    assert_eq!(status.last_index, 1234);
    assert_eq!(status.state_hash, [7; 32]);
    assert_eq!(status.sessions, 2);
    assert_eq!(status.uptime_ns, h.now_ns);
}

#[test]
fn another_accounts_order_id_is_cancelled_as_own_account() {
    // Trader B names A's order: the command carries B's account, so the engine can only
    // answer UnknownOrder, and only B hears about it.
    let mut h = Harness::with_defaults();
    let (mut a, _, _) = h.logon(TRADER_A, 0, 0, false);
    let (mut b, b_ack, _) = h.logon(TRADER_B, 0, 0, false);
    h.take_actions();
    h.send(&mut b, 5, &ClientRequest::Cancel(OrderRef::Id(11)));
    h.send(&mut b, 6, &ClientRequest::Amend { order: OrderRef::Id(11), price: 1, qty: 1 });
    let actions = h.take_actions();
    assert!(matches!(
        actions[0],
        Action::Submit {
            command: Command::Cancel { account: ACCOUNT_B, order: OrderRef::Id(11) },
            ..
        }
    ));
    assert!(matches!(
        actions[1],
        Action::Submit { command: Command::Amend { account: ACCOUNT_B, .. }, .. }
    ));
    let Action::Submit { origin, .. } = actions[0] else { unreachable!() };
    let reject = Event {
        index: 9,
        time_ns: 90,
        kind: EventKind::Rejected(bourse_engine::Rejected {
            command: CommandKind::Cancel,
            account: ACCOUNT_B,
            order_id: 11,
            client_order_id: 0,
            tx: 0,
            reason: RejectReason::UnknownOrder,
            duplicate: false,
            shortfall: None,
        }),
    };
    h.events(Some(origin), &[reject]);
    let got = h.read_all(&mut b);
    let Got::Msg(ServerMessage::Rejected(report)) = got[0].1 else { panic!("{got:?}") };
    assert_eq!(report.request_id, 5);
    assert_eq!(
        report.cause,
        RejectCause::Engine { command: CommandKind::Cancel, reason: RejectReason::UnknownOrder }
    );
    assert_eq!(report.order_id, 11);
    assert_eq!(origin.session_id, b_ack.session_id);
    assert!(h.read_all(&mut a).is_empty(), "A hears nothing about B's attempt");
}

#[test]
fn flood_past_rate_limit_is_rejected_then_closed() {
    let config = GatewayConfig {
        rate: RateLimit { rate_per_sec: 10, burst: 5 },
        rejects_in_row_max: 20,
        ..GatewayConfig::default()
    };
    let mut h = Harness::new(config);
    let (mut client, ack, _) = h.logon(TRADER_A, 0, 0, false);
    assert_eq!((ack.rate_per_sec, ack.rate_burst), (10, 5));
    h.take_actions();
    // The burst passes.
    for i in 0..5 {
        h.send(&mut client, i, &new_order(i + 1));
    }
    assert_eq!(h.take_actions().len(), 5);
    // The next ones are rejected, and say why.
    h.send(&mut client, 100, &new_order(100));
    let got = h.read_all(&mut client);
    assert_eq!(
        session_reject(&got[0].1),
        Some((100, wire::Body::NewOrder.0, SessionReason::RateLimited))
    );
    assert!(h.take_actions().is_empty());
    // After 100 ms one more token has arrived.
    h.now_ns += 100_000_000;
    h.send(&mut client, 101, &new_order(101));
    assert_eq!(h.take_actions().len(), 1);
    // A sustained flood ends the connection once rejects_in_row_max are in a row.
    for i in 0..30 {
        h.send(&mut client, 200 + i, &new_order(200 + i));
    }
    let actions = h.take_actions();
    assert_eq!(close_reason(&actions, client.conn), Some(SessionReason::TooManyRejects));
    let got = h.read_all(&mut client);
    let rejects = got.iter().filter(|(_, g)| session_reject(g).is_some()).count();
    assert_eq!(rejects, 20);
    assert_eq!(
        got.last().unwrap().1,
        Got::Msg(ServerMessage::Logout { reason: SessionReason::TooManyRejects })
    );
}

#[test]
fn heartbeat_and_idle_timeout() {
    let mut h = Harness::with_defaults();
    let config = GatewayConfig::default();
    let (mut client, _, _) = h.logon(TRADER_A, 0, 0, false);
    h.tick(config.heartbeat_interval_ns - 1);
    assert!(h.read_all(&mut client).is_empty());
    h.tick(1);
    let got = h.read_all(&mut client);
    assert_eq!(got, vec![(0, Got::Msg(ServerMessage::Heartbeat { time_ns: h.now_ns }))]);
    // The client's heartbeat keeps it alive past the idle timeout...
    h.tick(config.idle_timeout_ns - config.heartbeat_interval_ns - 1);
    h.send(&mut client, 0, &ClientRequest::Heartbeat { time_ns: 0 });
    h.tick(config.heartbeat_interval_ns);
    assert!(close_reason(&h.take_actions(), client.conn).is_none());
    // ...and silence ends it.
    h.tick(config.idle_timeout_ns);
    assert_eq!(close_reason(&h.take_actions(), client.conn), Some(SessionReason::IdleTimeout));
}

fn mass_cancels(actions: &[Action]) -> Vec<Command> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Submit { command: c @ Command::MassCancel { .. }, .. } => Some(*c),
            _ => None,
        })
        .collect()
}

#[test]
fn cancel_on_disconnect() {
    let mut h = Harness::with_defaults();
    // Socket drop.
    let (client, ack, _) = h.logon(TRADER_A, 0, 0, true);
    assert!(ack.cancel_on_disconnect);
    h.take_actions();
    h.gw.on_disconnected(client.conn, h.now_ns, &mut h.actions);
    assert_eq!(
        mass_cancels(&h.take_actions()),
        vec![Command::MassCancel { account: ACCOUNT_A, market: None }]
    );

    // Logout.
    let (mut client, _, _) = h.logon(TRADER_A, 0, 0, true);
    h.take_actions();
    h.send(&mut client, 3, &ClientRequest::Logout);
    let actions = h.take_actions();
    assert_eq!(
        mass_cancels(&actions),
        vec![Command::MassCancel { account: ACCOUNT_A, market: None }]
    );
    assert_eq!(close_reason(&actions, client.conn), Some(SessionReason::LoggedOut));
    // The socket closing afterwards does not cancel twice.
    h.gw.on_disconnected(client.conn, h.now_ns, &mut h.actions);
    assert!(mass_cancels(&h.take_actions()).is_empty());

    // Without the flag nothing is cancelled.
    let (client, ack, _) = h.logon(TRADER_B, 0, 0, false);
    assert!(!ack.cancel_on_disconnect);
    h.gw.on_disconnected(client.conn, h.now_ns, &mut h.actions);
    assert!(mass_cancels(&h.take_actions()).is_empty());

    // Admin keys have no orders: the flag is refused in the ack.
    let (_, ack, _) = h.logon(ADMIN, 0, 0, true);
    assert!(!ack.cancel_on_disconnect);

    // A stream resumed on a new connection does not cancel when the old one goes.
    let (old, ack, _) = h.logon(TRADER_A, 0, 0, true);
    h.take_actions();
    let (new, _, _) = h.logon(TRADER_A, ack.session_id, ack.next_seq, true);
    let actions = h.take_actions();
    assert_eq!(close_reason(&actions, old.conn), Some(SessionReason::Replaced));
    assert!(mass_cancels(&actions).is_empty());
    h.gw.on_disconnected(old.conn, h.now_ns, &mut h.actions);
    assert!(mass_cancels(&h.take_actions()).is_empty());
    h.gw.on_disconnected(new.conn, h.now_ns, &mut h.actions);
    assert_eq!(mass_cancels(&h.take_actions()).len(), 1);
}

#[test]
fn accounts_see_only_their_own_reports() {
    let mut h = Harness::with_defaults();
    let (mut a, _, _) = h.logon(TRADER_A, 0, 0, false);
    let (mut a2, _, _) = h.logon(TRADER_A2, 0, 0, false);
    let (mut b, _, _) = h.logon(TRADER_B, 0, 0, false);
    let (mut admin, _, _) = h.logon(ADMIN, 0, 0, false);
    h.take_actions();
    // A is the maker, B the taker.
    h.events(None, &[trade_event(3, ACCOUNT_A, ACCOUNT_B), balance_event(3, ACCOUNT_A, 10)]);
    let got_a = h.read_all(&mut a);
    let got_b = h.read_all(&mut b);
    assert_eq!(got_a.len(), 2);
    let Got::Msg(ServerMessage::Trade(fill)) = got_a[0].1 else { panic!("{got_a:?}") };
    assert_eq!(
        (fill.order_id, fill.client_order_id, fill.side, fill.liquidity, fill.fee),
        (11, 111, Side::Sell, Liquidity::Maker, 4)
    );
    assert!(matches!(
        got_a[1].1,
        Got::Msg(ServerMessage::BalanceUpdate(BalanceUpdate { available: 10, .. }))
    ));
    assert_eq!(got_b.len(), 1, "B sees its fill, not A's balance: {got_b:?}");
    let Got::Msg(ServerMessage::Trade(fill)) = got_b[0].1 else { panic!("{got_b:?}") };
    assert_eq!(
        (fill.order_id, fill.client_order_id, fill.side, fill.liquidity, fill.fee),
        (12, 112, Side::Buy, Liquidity::Taker, 9)
    );
    // The other session of account A gets the same reports, numbered on its own.
    let got_a2 = h.read_all(&mut a2);
    assert_eq!(got_a2.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(
        got_a2.iter().map(|(_, g)| g.clone()).collect::<Vec<_>>(),
        got_a.iter().map(|(_, g)| g.clone()).collect::<Vec<_>>()
    );
    assert!(h.read_all(&mut admin).is_empty());
}

#[test]
fn request_id_goes_only_to_the_requesting_session() {
    let mut h = Harness::with_defaults();
    let (mut a, ack, _) = h.logon(TRADER_A, 0, 0, false);
    let (mut a2, _, _) = h.logon(TRADER_A2, 0, 0, false);
    h.take_actions();
    let origin = Origin { conn: a.conn, session_id: ack.session_id, request_id: 77 };
    let accepted = Event {
        index: 4,
        time_ns: 40,
        kind: EventKind::Accepted(bourse_engine::Accepted {
            order_id: 1,
            client_order_id: 5,
            account: ACCOUNT_A,
            market: 5,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            post_only: false,
            stp: StpMode::CancelTaker,
            price: 100,
            qty: 10,
            quote_budget: 0,
        }),
    };
    h.events(Some(origin), &[accepted]);
    let Got::Msg(ServerMessage::Accepted(mine)) = h.read_all(&mut a)[0].1 else { panic!() };
    let Got::Msg(ServerMessage::Accepted(other)) = h.read_all(&mut a2)[0].1 else { panic!() };
    assert_eq!(mine.request_id, 77);
    assert_eq!(other.request_id, 0);
    assert_eq!((mine.order_id, mine.client_order_id, mine.index, mine.time_ns), (1, 5, 4, 40));
}

#[test]
fn admin_sees_ledger_and_admin_outcomes() {
    let mut h = Harness::with_defaults();
    let (mut admin, ack, _) = h.logon(ADMIN, 0, 0, false);
    let (mut a, _, _) = h.logon(TRADER_A, 0, 0, false);
    let origin = Origin { conn: admin.conn, session_id: ack.session_id, request_id: 5 };
    let ledger = Event {
        index: 2,
        time_ns: 20,
        kind: EventKind::Ledger(bourse_engine::LedgerApplied {
            kind: bourse_engine::LedgerKind::Deposit,
            tx: 9,
            account: ACCOUNT_A,
            counterparty: 0,
            asset: 1,
            amount: 500,
            duplicate: false,
        }),
    };
    let reject = Event {
        index: 3,
        time_ns: 30,
        kind: EventKind::Rejected(bourse_engine::Rejected {
            command: CommandKind::CreateMarket,
            account: 0,
            order_id: 0,
            client_order_id: 0,
            tx: 0,
            reason: RejectReason::MarketExists,
            duplicate: false,
            shortfall: None,
        }),
    };
    h.events(Some(origin), &[ledger, balance_event(2, ACCOUNT_A, 500)]);
    h.events(None, &[reject]);
    let got = h.read_all(&mut admin);
    assert_eq!(got.len(), 2);
    let Got::Msg(ServerMessage::AdminAck(admin_ack)) = got[0].1 else { panic!("{got:?}") };
    assert_eq!(
        (admin_ack.kind, admin_ack.tx, admin_ack.account, admin_ack.amount, admin_ack.request_id),
        (AdminKind::Deposit, 9, ACCOUNT_A, 500, 5)
    );
    let Got::Msg(ServerMessage::Rejected(r)) = got[1].1 else { panic!("{got:?}") };
    assert_eq!(
        r.cause,
        RejectCause::Engine {
            command: CommandKind::CreateMarket,
            reason: RejectReason::MarketExists
        }
    );
    // The trader sees its balance, not the admin traffic.
    let got = h.read_all(&mut a);
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0].1, Got::Msg(ServerMessage::BalanceUpdate(_))));
}

#[test]
fn balance_and_open_order_queries() {
    let mut h = Harness::with_defaults();
    let (mut a, _, _) = h.logon(TRADER_A, 0, 0, false);
    h.take_actions();
    h.send(&mut a, 8, &ClientRequest::BalanceQuery);
    h.send(&mut a, 9, &ClientRequest::OpenOrdersQuery { market: Some(5) });
    let actions = h.take_actions();
    let Action::Query { origin, query: Query::Balances { account: ACCOUNT_A } } = actions[0] else {
        panic!("{actions:?}")
    };
    let Action::Query {
        origin: origin2,
        query: Query::OpenOrders { account: ACCOUNT_A, market: Some(5) },
    } = actions[1]
    else {
        panic!("{actions:?}")
    };
    let balances = [
        (1, bourse_engine::Balance { available: 10, held: 2 }),
        (3, bourse_engine::Balance { available: 0, held: 7 }),
    ];
    h.gw.reply_balances(origin, h.now_ns, &balances, &mut h.actions);
    let orders: Vec<OpenOrderInfo> = (1..=300)
        .map(|i| OpenOrderInfo {
            order_id: i,
            client_order_id: i + 1000,
            market: 5,
            side: Side::Sell,
            price: 10 * i,
            qty: 5,
            leaves_qty: 4,
            filled_qty: 1,
            post_only: i % 2 == 0,
            stp: StpMode::Decrement,
        })
        .collect();
    h.gw.reply_open_orders(origin2, h.now_ns, &orders, &mut h.actions);
    let got = h.read_all(&mut a);
    // Answers to queries are not part of the stream: sequence number 0.
    assert_eq!(got[0], (0, Got::Balances(8, balances.to_vec())));
    assert_eq!(got[1], (0, Got::OpenOrders(9, orders[..OPEN_ORDERS_PER_REPLY_MAX].to_vec(), true)));
}

#[test]
fn market_data_snapshot_then_updates() {
    let mut h = Harness::with_defaults();
    let (mut a, _, _) = h.logon(TRADER_A, 0, 0, false);
    let (mut b, _, _) = h.logon(TRADER_B, 0, 0, false);
    h.take_actions();
    h.send(&mut a, 4, &ClientRequest::Subscribe { market: 5, depth: 0 });
    let actions = h.take_actions();
    assert_eq!(
        actions,
        vec![Action::Subscribe {
            conn: a.conn,
            request_id: 4,
            market: 5,
            depth: BOOK_DEPTH_DEFAULT
        }]
    );
    let level = |index, price, qty| Event {
        index,
        time_ns: index * 10,
        kind: EventKind::Level(LevelUpdate { market: 5, side: Side::Sell, price, qty, orders: 1 }),
    };
    // Before the snapshot, updates are held back.
    h.events(None, &[level(10, 500, 3)]);
    assert!(h.read_all(&mut a).is_empty());
    let bids = [bourse_engine::DepthLevel { price: 400, qty: 2, orders: 1 }];
    let asks = [bourse_engine::DepthLevel { price: 500, qty: 3, orders: 1 }];
    h.gw.reply_book_snapshot(a.conn, h.now_ns, 4, 5, 10, &bids, &asks, &mut h.actions);
    h.events(None, &[trade_event(11, ACCOUNT_B, 999), level(11, 500, 0), level(11, 600, 8)]);
    let got = h.read_all(&mut a);
    assert_eq!(
        got[0],
        (
            0,
            Got::BookSnapshot {
                request_id: 4,
                market: 5,
                index: 10,
                bids: bids.to_vec(),
                asks: asks.to_vec()
            }
        )
    );
    let Got::Msg(ServerMessage::PublicTrade(trade)) = got[1].1 else { panic!("{got:?}") };
    assert_eq!(
        (trade.market, trade.trade_id, trade.price, trade.qty, trade.taker_side, trade.index),
        (5, 77, 50_000, 3, Side::Buy, 11)
    );
    let changes = vec![
        LevelChange { side: Side::Sell, price: 500, qty: 0, orders: 1 },
        LevelChange { side: Side::Sell, price: 600, qty: 8, orders: 1 },
    ];
    assert_eq!(got[2], (0, Got::BookUpdate { market: 5, index: 11, changes }));
    assert_eq!(got.len(), 3);
    // B did not subscribe: it sees its own fill only.
    let got = h.read_all(&mut b);
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0].1, Got::Msg(ServerMessage::Trade(_))));
    // Unsubscribed: nothing more.
    h.send(&mut a, 5, &ClientRequest::Unsubscribe { market: 5 });
    h.events(None, &[level(12, 600, 0)]);
    assert!(h.read_all(&mut a).is_empty());
    // An unknown market is refused.
    h.send(&mut a, 6, &ClientRequest::Subscribe { market: 99, depth: 10 });
    h.take_actions();
    h.gw.reject_subscribe(a.conn, h.now_ns, 6, 99, &mut h.actions);
    let got = h.read_all(&mut a);
    assert_eq!(
        session_reject(&got[0].1),
        Some((6, wire::Body::Subscribe.0, SessionReason::UnknownMarket))
    );
}

#[test]
fn subscriptions_are_bounded() {
    let config = GatewayConfig { subscriptions_max: 2, ..GatewayConfig::default() };
    let mut h = Harness::new(config);
    let (mut a, _, _) = h.logon(TRADER_A, 0, 0, false);
    for market in 0..3 {
        h.send(&mut a, market as u64, &ClientRequest::Subscribe { market, depth: 1 });
    }
    let got = h.read_all(&mut a);
    assert_eq!(
        session_reject(&got[0].1),
        Some((2, wire::Body::Subscribe.0, SessionReason::SubscriptionsLimit))
    );
    // Subscribing again to a market already held is a refresh, not a new one.
    h.send(&mut a, 7, &ClientRequest::Subscribe { market: 1, depth: 1 });
    assert!(h.read_all(&mut a).is_empty());
}

#[test]
fn client_that_stops_reading_is_closed_and_can_resume() {
    let config = GatewayConfig {
        outbound_bytes_max: 2 * (4 + bourse_net::frame::SERVER_FRAME_BYTES_MAX),
        journal: bourse_net::journal::JournalLimits { messages_max: 5_000, bytes_max: 1 << 20 },
        ..GatewayConfig::default()
    };
    let mut h = Harness::new(config);
    let (a, ack, _) = h.logon(TRADER_A, 0, 0, false);
    h.take_actions();
    // The client reads nothing; the pump fills half the buffer and stops.
    for i in 1..=4_000u64 {
        h.events(None, &[balance_event(i, ACCOUNT_A, i)]);
    }
    assert!(h.gw.outbound(a.conn).len() <= config.outbound_bytes_max / 2);
    assert!(h.take_actions().is_empty(), "within the journal bound the connection is kept");
    // When the journal drops what the connection never got, it is closed.
    for i in 4_001..=6_000u64 {
        h.events(None, &[balance_event(i, ACCOUNT_A, i)]);
    }
    assert_eq!(close_reason(&h.take_actions(), a.conn), Some(SessionReason::SlowConsumer));
    h.gw.on_disconnected(a.conn, h.now_ns, &mut h.actions);
    // The session stays; resuming from the start is honestly refused...
    let mut client = h.connect();
    let request = Harness::logon_request(&client, TRADER_A, ack.session_id, 1, false);
    h.send(&mut client, 1, &request);
    let got = h.read_all(&mut client);
    assert_eq!(
        got,
        vec![(
            0,
            Got::Msg(ServerMessage::LogonReject(LogonReject {
                reason: SessionReason::ResumeTooOld,
                oldest_seq: 1_001,
                next_seq: 6_001
            }))
        )]
    );
    // ...and resuming from what is retained delivers exactly that, in order.
    let (mut client, ack2, mut got) = h.logon(TRADER_A, ack.session_id, 1_001, false);
    assert_eq!((ack2.replay_from, ack2.replay_count, ack2.next_seq), (1_001, 5_000, 6_001));
    while got.len() < 5_000 {
        let more = h.read_all(&mut client);
        assert!(!more.is_empty());
        got.extend(more);
    }
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1_001..=6_000).collect::<Vec<_>>());
    let Got::Msg(ServerMessage::BalanceUpdate(last)) = got.last().unwrap().1 else { panic!() };
    assert_eq!(last.available, 6_000);
}

#[test]
fn resume_errors() {
    let mut h = Harness::with_defaults();
    let (a, ack, _) = h.logon(TRADER_A, 0, 0, false);
    h.events(None, &[balance_event(1, ACCOUNT_A, 1), balance_event(2, ACCOUNT_A, 2)]);
    h.gw.on_disconnected(a.conn, h.now_ns, &mut h.actions);
    let attempts = [
        (TRADER_A, ack.session_id, 4, SessionReason::ResumeAhead, 0, 3),
        (TRADER_A, ack.session_id + 1000, 1, SessionReason::UnknownSession, 0, 0),
        // Another key cannot take over this session, even of the same account.
        (TRADER_A2, ack.session_id, 1, SessionReason::UnknownSession, 0, 0),
        // A logon without a session id resumes the key's stream too.
        (TRADER_A, 0, 4, SessionReason::ResumeAhead, 0, 3),
    ];
    for (key, session_id, from, reason, oldest_seq, next_seq) in attempts {
        let mut client = h.connect();
        let request = Harness::logon_request(&client, key, session_id, from, false);
        h.send(&mut client, 1, &request);
        let got = h.read_all(&mut client);
        assert_eq!(
            got,
            vec![(
                0,
                Got::Msg(ServerMessage::LogonReject(LogonReject { reason, oldest_seq, next_seq }))
            )],
            "{key} {session_id} {from}"
        );
    }
    // Resume from 0 skips the replay; from next_seq replays nothing either.
    let (_, ack0, replay) = h.logon(TRADER_A, ack.session_id, 0, false);
    assert_eq!((ack0.next_seq, ack0.replay_count), (3, 0));
    assert!(replay.is_empty());
}

#[test]
fn one_stream_per_key_outlives_connections_and_takeovers() {
    let mut h = Harness::with_defaults();
    // A key's stream exists before its first logon: reports are kept for it.
    h.events(None, &[balance_event(1, ACCOUNT_B, 5)]);
    let (b, ack_b, replay) = h.logon(TRADER_B, 0, 1, false);
    assert_eq!((ack_b.session_id, ack_b.next_seq, ack_b.replay_count), (TRADER_B, 2, 1));
    assert_eq!(replay.len(), 1);
    // A second plain logon of the same key is fed from the same stream too.
    let (mut monitor, _, _) = h.logon(TRADER_B, TRADER_B, 0, false);
    h.events(None, &[balance_event(2, ACCOUNT_B, 6)]);
    let mut b = b;
    assert_eq!(h.read_all(&mut b).len(), 1);
    assert_eq!(h.read_all(&mut monitor).len(), 1);
    // A logon that resumes is the client continuing: it takes the stream over, and the
    // other connections are told.
    let (_b2, ack_b2, _) = h.logon(TRADER_B, TRADER_B, 3, false);
    assert_eq!(ack_b2.session_id, TRADER_B);
    let got = h.read_all(&mut b);
    assert!(
        got.iter().any(|(_, m)| matches!(
            m,
            Got::Msg(ServerMessage::Logout { reason: SessionReason::Replaced })
        )),
        "{got:?}"
    );
    // Another key's stream id is unknown to this key.
    let mut c = h.connect();
    let request = Harness::logon_request(&c, TRADER_A, TRADER_B, 0, false);
    h.send(&mut c, 1, &request);
    assert!(matches!(
        h.read_all(&mut c)[0].1,
        Got::Msg(ServerMessage::LogonReject(LogonReject {
            reason: SessionReason::UnknownSession,
            ..
        }))
    ));
    assert_eq!(h.gw.stats().sessions, keys().iter().count());
}

#[test]
fn streams_survive_export_and_import() {
    let mut h = Harness::with_defaults();
    let (a, _, _) = h.logon(TRADER_A, 0, 0, false);
    let events: Vec<_> = (1..=40).map(|i| balance_event(i, ACCOUNT_A, i * 10)).collect();
    h.events(None, &events);
    let mut a = a;
    let live = h.read_all(&mut a);
    let exported = h.gw.export_streams();
    // A new gateway (a restarted server) restores the streams and replays them exactly.
    let mut restored = Harness::with_defaults();
    restored.gw.import_streams(&exported).unwrap();
    assert_eq!(restored.gw.export_streams(), exported);
    let (_, ack, replay) = restored.logon(TRADER_A, TRADER_A, 1, false);
    assert_eq!((ack.next_seq, ack.replay_count), (41, 40));
    assert_eq!(replay, live);
    // Damaged exports are refused with an error, never a panic.
    for cut in 0..exported.len() {
        assert!(Harness::with_defaults().gw.import_streams(&exported[..cut]).is_err());
    }
    let mut flipped = exported.clone();
    flipped[0] ^= 1;
    assert!(Harness::with_defaults().gw.import_streams(&flipped).is_err());
}

#[test]
fn connection_limit_and_stale_handles() {
    let config = GatewayConfig { connections_max: 2, ..GatewayConfig::default() };
    let mut h = Harness::new(config);
    let (a, _, _) = h.logon(TRADER_A, 0, 0, false);
    let _b = h.logon(TRADER_B, 0, 0, false);
    // Every place holds a logged-on session (one awaiting a logon would be evicted).
    assert!(h.try_connect_from([127, 0, 0, 1]).is_err());
    h.gw.on_disconnected(a.conn, h.now_ns, &mut h.actions);
    let c = h.connect();
    // The slot is reused under a new generation: the old handle reaches nothing.
    assert_ne!(a.conn, c.conn);
    h.gw.on_bytes(a.conn, h.now_ns, &[0, 0, 0, 0], &mut h.actions);
    assert!(h.take_actions().is_empty());
    assert!(h.gw.outbound(a.conn).is_empty());
}

#[test]
fn config_is_validated() {
    let bad = [
        GatewayConfig { frame_bytes_max: 4, ..GatewayConfig::default() },
        GatewayConfig { idle_timeout_ns: 1, ..GatewayConfig::default() },
        GatewayConfig { outbound_bytes_max: 1000, ..GatewayConfig::default() },
        GatewayConfig { rate: RateLimit { rate_per_sec: 0, burst: 1 }, ..GatewayConfig::default() },
        GatewayConfig { connections_max: 0, ..GatewayConfig::default() },
    ];
    for config in bad {
        assert!(config.validate().is_err(), "{config:?}");
    }
    assert!(GatewayConfig::default().validate().is_ok());
}
