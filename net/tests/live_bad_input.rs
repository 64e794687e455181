//! Bad input and logon over real TCP against the real daemon (`server::run_with` on
//! loopback), one test per case of the table in net/README.md ("Bad input").
//!
//! Every test follows one pattern: a well-behaved session (the maker, `Witness`) places
//! an order before and after the abuse and must get exactly its normal answers; the
//! abusive connection must get the documented reject or be closed with the documented
//! `SessionReason` (read to EOF); and at the end the server's engine must equal a fresh
//! engine that applied only the commands the test expects to have reached it (`finish`).

mod live;

use std::time::{Duration, Instant};

use bourse_engine::{CommandKind, OrderRef, RejectReason, Side};
use bourse_net::client::{
    demo_secret, BlockingClient, ClientCodec, ClientError, Incoming, LogonOptions,
};
use bourse_net::config::Config;
use bourse_net::protocol::*;
use bourse_net::wire;
use live::*;

/// A demo server with `edit` applied to its config; returns the config too, for the
/// reference engine.
fn start(edit: impl FnOnce(&mut Config)) -> (LiveServer, Config) {
    let config = demo_config(edit);
    (LiveServer::start(config.clone()), config)
}

/// A valid NewOrder of alice's (never crosses anything): a frame to send, damage or cut.
fn alice_bid(cl: u64) -> ClientRequest {
    // 10_000.00 USDT per BTC, 0.001 BTC: 10 USDT, far below every ask.
    limit_order(BTC_USDT, Side::Buy, 10_000_000_000, 100_000, cl)
}

/// A frame that verifies as a BRS1 `Message` but carries union tag `body_type`.
fn frame_of_type(request_id: u64, body_type: u8) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let body = wire::Heartbeat::create(&mut fbb, &wire::HeartbeatArgs { time_ns: 1 });
    let args = wire::MessageArgs {
        seq: request_id,
        body_type: wire::Body(body_type),
        body: Some(body.as_union_value()),
    };
    let message = wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(wire::MESSAGE_IDENTIFIER));
    fbb.finished_data().to_vec()
}

/// A server-to-client message type (Done) sent by a client: valid, but not ours to take.
fn server_only_frame(request_id: u64) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let body = wire::Done::create(&mut fbb, &wire::DoneArgs::default());
    let args = wire::MessageArgs {
        seq: request_id,
        body_type: wire::Body::Done,
        body: Some(body.as_union_value()),
    };
    let message = wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(wire::MESSAGE_IDENTIFIER));
    fbb.finished_data().to_vec()
}

/// Reads a refused logon to its end: exactly one `LogonReject` with `reason`, then EOF.
fn assert_logon_refused(conn: &mut RawConn, reason: SessionReason) {
    let ending = conn.read_to_end(TIMEOUT);
    assert!(ending.messages.is_empty(), "{ending:?}");
    assert_eq!(ending.logout, None, "a refused logon is answered by LogonReject only");
    let reject = ending.logon_reject.expect("LogonReject before the close");
    assert_eq!(reject, LogonReject { reason, oldest_seq: 0, next_seq: 0 });
}

// ----- Logon -------------------------------------------------------------------------------

#[test]
fn logon_is_acknowledged_with_the_session_terms() {
    let (server, config) = start(|_| {});
    let mut witness = Witness::maker(&server);
    let ack = witness.client.established.ack;
    assert_eq!(ack.role, WireRole::Trader);
    assert_eq!(ack.account, MAKER);
    // The maker's stream already holds its bootstrap deposits (BTC, USDT, ETH); a logon
    // without a resume point starts live after them.
    assert_eq!((ack.next_seq, ack.replay_from, ack.replay_count), (4, 4, 0));
    assert_eq!(ack.session_id, MAKER, "the stream of a key is named by the key");
    assert_eq!(ack.protocol_version, wire::PROTOCOL_VERSION);
    assert_eq!((ack.rate_per_sec, ack.rate_burst), (200_000, 20_000), "demo.toml");
    assert_eq!((ack.heartbeat_interval_ms, ack.idle_timeout_ms), (5_000, 15_000), "demo.toml");
    assert!(!ack.cancel_on_disconnect);
    assert_ne!(ack.session_id, 0);
    witness.place();

    // An admin key: no account, and cancel-on-disconnect does not apply to it.
    let admin = server
        .connect_with(LogonOptions { cancel_on_disconnect: true, ..LogonOptions::demo(ADMIN) })
        .expect("admin logon");
    let admin_ack = admin.established.ack;
    assert_eq!((admin_ack.role, admin_ack.account), (WireRole::Admin, 0));
    assert!(!admin_ack.cancel_on_disconnect);
    assert_ne!(admin_ack.session_id, ack.session_id);

    // A trader asking for cancel-on-disconnect gets it; a second logon on a logged-on
    // connection is refused (an answer on the connection: sequence 0, with its request
    // id) and the session goes on.
    let options = LogonOptions { cancel_on_disconnect: true, ..LogonOptions::demo(ALICE) };
    let (mut alice, alice_ack) = RawConn::logon(server.addr, options);
    assert!(alice_ack.cancel_on_disconnect);
    assert_eq!(alice_ack.account, ALICE);
    let again = ClientCodec::logon_request(&LogonOptions::demo(ALICE), &alice.nonce);
    alice.send(9, &again);
    let (seq, message) = alice.recv(TIMEOUT).expect("reject");
    assert_eq!(seq, 0, "session-level rejects are not part of the stream");
    let Incoming::Msg(ServerMessage::Rejected(reject)) = message else { panic!("{message:?}") };
    assert_eq!(
        (reject.request_id, reject.refused_type, reject.cause),
        (9, wire::Body::Logon.0, RejectCause::Session(SessionReason::AlreadyLoggedOn))
    );
    alice.send(10, &ClientRequest::BalanceQuery);
    match alice.recv(TIMEOUT) {
        Some((0, Incoming::Balances { request_id: 10, balances })) => {
            assert_eq!(
                balances,
                vec![(USDT, bourse_engine::Balance { available: 100_000_000_000, held: 0 })]
            );
        }
        other => panic!("expected alice's balances, got {other:?}"),
    }
    // A clean logout closes with LoggedOut (alice has no orders to cancel).
    alice.send(11, &ClientRequest::Logout);
    let ending = alice.read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::LoggedOut), "{ending:?}");
    // Her cancel-on-disconnect fired on the logout (a mass cancel of nothing).
    witness.log.push(bourse_engine::Command::MassCancel { account: ALICE, market: None });

    witness.place();
    finish(server, &config, &witness.log);
}

#[test]
fn wrong_hmac_is_refused_and_closed() {
    let (server, config) = start(|_| {});
    let mut witness = Witness::maker(&server);
    witness.place();

    // Another key's secret.
    let mut conn = RawConn::connect(server.addr);
    let options = LogonOptions { secret: demo_secret(BOB), ..LogonOptions::demo(ALICE) };
    conn.send(1, &ClientCodec::logon_request(&options, &conn.nonce));
    assert_logon_refused(&mut conn, SessionReason::BadSignature);

    // The right secret, but a signature replayed from another connection's challenge.
    let first = RawConn::connect(server.addr);
    let replayed = ClientCodec::logon_request(&LogonOptions::demo(ALICE), &first.nonce);
    let mut second = RawConn::connect(server.addr);
    assert_ne!(first.nonce, second.nonce, "every connection gets a fresh nonce");
    second.send(1, &replayed);
    assert_logon_refused(&mut second, SessionReason::BadSignature);
    drop(first);

    // The library says the same.
    let refused = server.connect_with(options).expect_err("bad signature");
    assert!(
        matches!(
            refused,
            bourse_net::client::ClientError::LogonRejected {
                reason: SessionReason::BadSignature,
                ..
            }
        ),
        "{refused:?}"
    );

    witness.place();
    finish(server, &config, &witness.log);
}

#[test]
fn unknown_key_is_refused_and_closed() {
    let (server, config) = start(|_| {});
    let mut witness = Witness::maker(&server);
    witness.place();

    let mut conn = RawConn::connect(server.addr);
    // Signed correctly with a secret that simply is not configured for key 55.
    let options = LogonOptions::demo(55);
    conn.send(1, &ClientCodec::logon_request(&options, &conn.nonce));
    assert_logon_refused(&mut conn, SessionReason::UnknownKey);

    witness.place();
    finish(server, &config, &witness.log);
}

#[test]
fn wrong_protocol_version_is_refused_and_closed() {
    let (server, config) = start(|_| {});
    let mut witness = Witness::maker(&server);
    witness.place();

    for version in [0, wire::PROTOCOL_VERSION + 1, u16::MAX] {
        let mut conn = RawConn::connect(server.addr);
        let mut logon = ClientCodec::logon_request(&LogonOptions::demo(ALICE), &conn.nonce);
        let ClientRequest::Logon(inner) = &mut logon else { unreachable!() };
        inner.protocol_version = version;
        conn.send(1, &logon);
        assert_logon_refused(&mut conn, SessionReason::UnsupportedVersion);
    }

    witness.place();
    finish(server, &config, &witness.log);
}

#[test]
fn message_before_logon_closes_the_connection() {
    let (server, config) = start(|_| {});
    let mut witness = Witness::maker(&server);
    witness.place();

    // An order (it must never reach the engine), a query, and a heartbeat.
    let requests =
        [alice_bid(1), ClientRequest::BalanceQuery, ClientRequest::Heartbeat { time_ns: 1 }];
    for request in requests {
        let mut conn = RawConn::connect(server.addr);
        conn.send(1, &request);
        let ending = conn.read_to_end(TIMEOUT);
        assert!(ending.messages.is_empty(), "{request:?}: {ending:?}");
        assert_eq!(ending.logout, Some(SessionReason::NotLoggedOn), "{request:?}");
    }

    witness.place();
    finish(server, &config, &witness.log);
}

// ----- Bad frames --------------------------------------------------------------------------

#[test]
fn garbage_bytes_close_only_that_connection() {
    let (server, config) = start(|_| {});
    let mut witness = Witness::maker(&server);
    witness.place();
    // A logged-on bystander on another connection must be untouched by all of it.
    let (mut bob, _) = RawConn::logon(server.addr, LogonOptions::demo(BOB));

    // Text on a logged-on connection: "GET " read as a length is far over the limit.
    let (mut alice, _) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    alice.send_raw(b"GET / HTTP/1.1\r\nHost: bourse\r\n\r\n");
    let ending = alice.read_to_end(TIMEOUT);
    assert!(ending.messages.is_empty(), "{ending:?}");
    assert_eq!(ending.logout, Some(SessionReason::FrameTooLarge));

    // A plausible length, then bytes that are not a FlatBuffer (before logon).
    let mut conn = RawConn::connect(server.addr);
    let mut junk = 64u32.to_le_bytes().to_vec();
    let mut x = 0x9e37_79b9_u32;
    junk.extend((0..64).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    conn.send_raw(&junk);
    let ending = conn.read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::Malformed), "{ending:?}");

    // A valid order frame with its file identifier damaged, on a logged-on connection.
    let (mut alice, _) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    let mut frame = alice.frame(2, &alice_bid(2));
    assert_eq!(&frame[8..12], b"BRS1", "size prefix, root offset, identifier");
    frame[8] = b'X';
    alice.send_raw(&frame);
    let ending = alice.read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::Malformed), "{ending:?}");

    // The same frame with a root offset pointing outside it.
    let (mut alice, _) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    let mut frame = alice.frame(3, &alice_bid(3));
    frame[4..8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    alice.send_raw(&frame);
    let ending = alice.read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::Malformed), "{ending:?}");

    // A zero length.
    let mut conn = RawConn::connect(server.addr);
    conn.send_raw(&0u32.to_le_bytes());
    let ending = conn.read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::EmptyFrame), "{ending:?}");

    // The bystander still works and heard nothing.
    bob.send(7, &ClientRequest::BalanceQuery);
    match bob.recv(TIMEOUT) {
        Some((0, Incoming::Balances { request_id: 7, .. })) => {}
        other => panic!("bystander expected its balances first, got {other:?}"),
    }
    witness.place();
    finish(server, &config, &witness.log);
}

#[test]
fn truncated_frame_waits_then_times_out() {
    const LOGON_TIMEOUT: Duration = Duration::from_millis(500);
    const IDLE_TIMEOUT: Duration = Duration::from_millis(1_000);
    let (server, config) = start(|c| {
        c.gateway.logon_timeout_ns = LOGON_TIMEOUT.as_nanos() as u64;
        c.gateway.heartbeat_interval_ns = 200_000_000;
        c.gateway.idle_timeout_ns = IDLE_TIMEOUT.as_nanos() as u64;
    });
    let mut witness = Witness::maker(&server);
    witness.place();

    // A logon cut one byte short: the server waits for the rest, then gives up.
    let connected = Instant::now();
    let mut conn = RawConn::connect(server.addr);
    let logon = conn.frame(1, &ClientCodec::logon_request(&LogonOptions::demo(ALICE), &conn.nonce));
    conn.send_raw(&logon[..logon.len() - 1]);
    let ending = read_to_end_keeping_alive(&mut conn, &mut witness);
    assert!(ending.messages.is_empty(), "{ending:?}");
    assert_eq!(ending.logout, Some(SessionReason::LogonTimeout));
    assert!(connected.elapsed() >= LOGON_TIMEOUT, "closed before the logon timeout");

    // A logged-on connection with an order cut short: it never reaches the engine, and
    // the connection idles out (only complete frames count as activity).
    let (mut alice, _) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    let sent = Instant::now();
    let frame = alice.frame(2, &alice_bid(2));
    alice.send_raw(&frame[..frame.len() - 1]);
    let ending = read_to_end_keeping_alive(&mut alice, &mut witness);
    let not_heartbeats: Vec<_> = ending
        .messages
        .iter()
        .filter(|(_, m)| !matches!(m, Incoming::Msg(ServerMessage::Heartbeat { .. })))
        .collect();
    assert!(not_heartbeats.is_empty(), "{ending:?}");
    assert_eq!(ending.logout, Some(SessionReason::IdleTimeout));
    assert!(sent.elapsed() >= IDLE_TIMEOUT, "closed before the idle timeout");

    witness.place();
    finish(server, &config, &witness.log);
}

/// Reads `conn` to its end while the witness sends heartbeats, so that only `conn`
/// idles out under short timeouts.
fn read_to_end_keeping_alive(conn: &mut RawConn, witness: &mut Witness) -> Ending {
    let deadline = Instant::now() + TIMEOUT;
    let mut ending = Ending { messages: Vec::new(), logout: None, logon_reject: None };
    while Instant::now() < deadline {
        witness.keepalive();
        match conn.try_recv(Duration::from_millis(100)) {
            Err(()) => continue,
            Ok(None) => return ending,
            Ok(Some((seq, message))) => {
                assert!(ending.logout.is_none(), "{message:?} after the logout");
                match message {
                    Incoming::Msg(ServerMessage::Logout { reason }) => ending.logout = Some(reason),
                    other => ending.messages.push((seq, other)),
                }
            }
        }
    }
    panic!("the server did not close the connection within {TIMEOUT:?}: {ending:?}");
}

#[test]
fn length_over_the_limit_closes_with_frame_too_large() {
    let (server, config) = start(|_| {});
    let limit = config.gateway.frame_bytes_max;
    assert_eq!(limit, bourse_net::frame::FRAME_BYTES_MAX, "demo.toml keeps the default");
    let mut witness = Witness::maker(&server);
    witness.place();

    // A valid order frame whose length prefix claims one byte over the limit (and that
    // many bytes follow).
    let (mut alice, _) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    let mut frame = alice.frame(2, &alice_bid(2));
    frame[..4].copy_from_slice(&(limit as u32 + 1).to_le_bytes());
    frame.resize(4 + limit + 1, 0);
    alice.send_raw(&frame);
    let ending = alice.read_to_end(TIMEOUT);
    assert!(ending.messages.is_empty(), "{ending:?}");
    assert_eq!(ending.logout, Some(SessionReason::FrameTooLarge));

    // The largest length there is, before logon, with nothing after it.
    let mut conn = RawConn::connect(server.addr);
    conn.send_raw(&u32::MAX.to_le_bytes());
    let ending = conn.read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::FrameTooLarge), "{ending:?}");

    // Exactly at the limit is a frame: it is read whole, then found not to be a message.
    let (mut alice, _) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    let mut at_limit = (limit as u32).to_le_bytes().to_vec();
    at_limit.resize(4 + limit, 0xab);
    alice.send_raw(&at_limit);
    let ending = alice.read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::Malformed), "{ending:?}");

    witness.place();
    finish(server, &config, &witness.log);
}

#[test]
fn unknown_message_type_is_rejected_and_the_session_goes_on() {
    let (server, config) = start(|_| {});
    let mut witness = Witness::maker(&server);
    witness.place();

    let (mut alice, _) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    // A union tag from a future minor version.
    alice.send_raw(&frame_of_type(31, 200));
    // A server-only message type.
    alice.send_raw(&server_only_frame(32));
    // A known message with an enum value this build does not know: an order's side.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let body = wire::NewOrder::create(
        &mut fbb,
        &wire::NewOrderArgs {
            market: BTC_USDT,
            client_order_id: 5,
            side: wire::Side(77),
            price: 10_000_000_000,
            qty: 100_000,
            ..Default::default()
        },
    );
    let args = wire::MessageArgs {
        seq: 33,
        body_type: wire::Body::NewOrder,
        body: Some(body.as_union_value()),
    };
    let message = wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(wire::MESSAGE_IDENTIFIER));
    alice.send_raw(fbb.finished_data());
    // The session goes on: a query is answered.
    alice.send(34, &ClientRequest::BalanceQuery);

    let mut got = Vec::new();
    while got.len() < 4 {
        got.push(alice.recv(TIMEOUT).expect("answers"));
    }
    let seqs: Vec<Seq> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![0, 0, 0, 0], "session rejects and query answers are not sequenced");
    let reject = |i: usize| match &got[i].1 {
        Incoming::Msg(ServerMessage::Rejected(r)) => (r.request_id, r.refused_type, r.cause),
        other => panic!("expected a reject, got {other:?}"),
    };
    let session = RejectCause::Session;
    assert_eq!(reject(0), (31, 200, session(SessionReason::UnknownMessage)));
    assert_eq!(reject(1), (32, wire::Body::Done.0, session(SessionReason::UnknownMessage)));
    assert_eq!(reject(2), (33, wire::Body::NewOrder.0, session(SessionReason::InvalidField)));
    assert!(matches!(got[3].1, Incoming::Balances { request_id: 34, .. }), "{:?}", got[3]);
    alice.send(35, &ClientRequest::Logout);
    assert_eq!(alice.read_to_end(TIMEOUT).logout, Some(SessionReason::LoggedOut));

    witness.place();
    finish(server, &config, &witness.log);
}

// ----- Permissions ---------------------------------------------------------------------------

#[test]
fn another_accounts_order_id_is_refused_to_the_sender_only() {
    let (server, config) = start(|_| {});
    let mut witness = Witness::maker(&server);
    let makers = witness.place();
    let mut log = std::mem::take(&mut witness.log);

    let mut alice = server.connect(ALICE);
    let attempts = [
        ClientRequest::Cancel(OrderRef::Id(makers.order_id)),
        ClientRequest::Cancel(OrderRef::Client(makers.client_order_id)),
        ClientRequest::Amend { order: OrderRef::Id(makers.order_id), price: 0, qty: 500_000 },
    ];
    for request in attempts {
        let request_id = alice.send(&request).unwrap();
        let reject = rejected(&mut alice, request_id);
        let kind = match request {
            ClientRequest::Cancel(_) => CommandKind::Cancel,
            _ => CommandKind::Amend,
        };
        assert_eq!(
            reject.cause,
            RejectCause::Engine { command: kind, reason: RejectReason::UnknownOrder },
            "{request:?}"
        );
        // The refused command reached the engine as alice's own.
        log.push(as_command(ALICE, &request));
    }
    // A mass cancel only ever touches alice's own orders: there are none.
    let request = ClientRequest::MassCancel { market: None };
    let request_id = alice.send(&request).unwrap();
    let report = expect(&mut alice, "mass cancel", |m| match m {
        Incoming::Msg(ServerMessage::MassCancelDone(r)) if r.request_id == request_id => Some(*r),
        _ => None,
    });
    assert_eq!(report.count, 0);
    log.push(as_command(ALICE, &request));

    // The maker heard nothing of it: its next sequenced messages are exactly its own
    // (Witness::place checks the sequence numbers too), and its order is still open.
    witness.log = log;
    witness.place();
    let engine = finish(server, &config, &witness.log);
    assert!(engine.order(makers.order_id).is_some());
}

// ----- Rate limit ----------------------------------------------------------------------------

#[test]
fn flood_past_the_rate_limit_is_rejected_then_closed() {
    const BURST: u32 = 10;
    const REJECTS_IN_ROW_MAX: u32 = 20;
    const FLOOD: u64 = 60;
    let (server, config) = start(|c| {
        // One token per 200 ms: the flood below arrives within a few ms.
        c.gateway.rate = bourse_net::ratelimit::RateLimit { rate_per_sec: 5, burst: BURST };
        c.gateway.rejects_in_row_max = REJECTS_IN_ROW_MAX;
    });
    let mut witness = Witness::maker(&server);
    witness.place();
    let mut log = std::mem::take(&mut witness.log);

    let (mut alice, ack) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    assert_eq!((ack.rate_per_sec, ack.rate_burst), (5, BURST));
    // Sixty valid orders in one write; request id = client order id.
    let mut flood = Vec::new();
    for cl in 1..=FLOOD {
        flood.extend(alice.frame(cl, &alice_bid(cl)));
    }
    alice.send_raw(&flood);
    let ending = alice.read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::TooManyRejects), "{ending:?}");
    let rejects = ending.session_rejects();
    assert!(rejects.len() >= REJECTS_IN_ROW_MAX as usize, "{rejects:?}");
    for &(request_id, refused_type, reason) in &rejects {
        assert_eq!((refused_type, reason), (wire::Body::NewOrder.0, SessionReason::RateLimited));
        assert!((1..=FLOOD).contains(&request_id));
    }
    // The rejects are answers on this connection (sequence 0); the reports of the
    // orders that got through are the stream, numbered without gaps.
    let seqs: Vec<Seq> = ending.messages.iter().map(|(s, _)| *s).filter(|&s| s != 0).collect();
    let first = seqs.first().copied().unwrap_or(1);
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
    assert!(ending.session_rejects().len() >= REJECTS_IN_ROW_MAX as usize);
    // The last REJECTS_IN_ROW_MAX requests before the close were all refused; nothing
    // after the one that closed the connection was handled.
    let rejected_ids: Vec<u64> = rejects.iter().map(|r| r.0).collect();
    let last = *rejected_ids.last().unwrap();
    let tail: Vec<u64> = (last + 1 - REJECTS_IN_ROW_MAX as u64..=last).collect();
    assert_eq!(rejected_ids[rejected_ids.len() - tail.len()..], tail[..]);
    let passed: Vec<u64> = (1..=last).filter(|cl| !rejected_ids.contains(cl)).collect();
    assert!(passed.len() >= BURST as usize, "the burst passes: {passed:?}");
    assert!(passed.len() <= BURST as usize + 5, "only refills pass beyond it: {passed:?}");
    assert_eq!(passed[..BURST as usize], (1..=BURST as u64).collect::<Vec<_>>()[..]);
    for &cl in &passed {
        log.push(as_command(ALICE, &alice_bid(cl)));
    }

    // Other sessions are served as before (and this orders after alice's orders).
    witness.log = log;
    witness.place();

    // Alice's session kept everything: resuming from 1 replays the rejects and the
    // Accepted reports of exactly the orders that passed.
    let options = LogonOptions {
        session_id: ack.session_id,
        resume_from_seq: 1,
        ..LogonOptions::demo(ALICE)
    };
    let mut again = server.connect_with(options).expect("resume");
    let resumed = again.established.ack;
    assert_eq!(resumed.replay_from, 1);
    let mut accepted = Vec::new();
    let mut replay_rejects = 0;
    for expected_seq in 1..resumed.next_seq {
        let (seq, message) = again.recv(TIMEOUT).expect("replay");
        assert_eq!(seq, expected_seq);
        match message {
            Incoming::Msg(ServerMessage::Accepted(a)) => accepted.push(a.client_order_id),
            Incoming::Msg(ServerMessage::Rejected(_)) => replay_rejects += 1,
            Incoming::Msg(ServerMessage::BalanceUpdate(_)) => {}
            other => panic!("unexpected replay {other:?}"),
        }
    }
    assert_eq!(accepted, passed);
    // Rate-limit rejects answered the connection; they are not in the stream.
    assert_eq!(replay_rejects, 0);
    drop(again);

    finish(server, &config, &witness.log);
}

// ----- Slow consumers --------------------------------------------------------------------------

/// The smallest outbound buffer the gateway accepts: two of the largest server frames.
const OUTBOUND_MIN: usize = 2 * (4 + bourse_net::frame::SERVER_FRAME_BYTES_MAX);
/// The lowest ask of the maker's ladder: 55_000.00 USDT.
const LADDER_FROM: u64 = 55_000_000_000;

/// Rests `levels` one-lot asks of the maker's at 55_000 USDT and up (below the witness's
/// own asks at 60_000 and up); logs them.
fn rest_ladder(witness: &mut Witness, levels: u64) {
    let requests: Vec<ClientRequest> = (0..levels)
        .map(|i| limit_order(BTC_USDT, Side::Sell, LADDER_FROM + i * 10_000, 10_000, 5_000 + i))
        .collect();
    let ids = witness.client.send_batch(&requests).unwrap();
    let last = *ids.last().unwrap();
    expect(&mut witness.client, "last ladder order", |m| match m {
        Incoming::Msg(ServerMessage::Accepted(a)) if a.request_id == last => Some(()),
        Incoming::Msg(ServerMessage::Rejected(r)) => panic!("ladder order rejected: {r:?}"),
        _ => None,
    });
    witness.log.extend(requests.iter().map(|r| as_command(MAKER, r)));
}

/// Sends `rounds` rounds of `per_round` requests from a client that never reads, each
/// round followed by a witness round trip: the witness's answer comes after the
/// round's answers in the server's output, so the server has had the chance to write
/// each round out before the next. The socket buffers fill first, then the outbound
/// buffer; a client that read would never be closed.
fn flood_paced(
    abuser: &mut RawConn,
    witness: &mut Witness,
    request: &ClientRequest,
    rounds: u64,
    per_round: u64,
) {
    for round in 0..rounds {
        let mut frames = Vec::new();
        for i in 1..=per_round {
            frames.extend(abuser.frame(round * per_round + i, request));
        }
        abuser.send_raw(&frames);
        balances(&mut witness.client);
    }
    witness.resync();
}

#[test]
fn client_that_stops_reading_market_data_is_closed_as_slow_consumer() {
    const SUBSCRIBES: u64 = 3_000;
    let (server, config) = start(|c| c.gateway.outbound_bytes_max = OUTBOUND_MIN);
    let mut witness = Witness::maker(&server);
    witness.place();
    rest_ladder(&mut witness, 200);
    witness.resync();

    // Bob subscribes again and again (each a fresh ~5 KB snapshot), ~15 MB in all, and
    // never reads. (Here ~900 got through into the socket buffers and the outbound
    // buffer before the close.)
    let (mut bob, _) = RawConn::logon(server.addr, LogonOptions::demo(BOB));
    let subscribe = ClientRequest::Subscribe { market: BTC_USDT, depth: 1000 };
    flood_paced(&mut bob, &mut witness, &subscribe, SUBSCRIBES / 10, 10);

    // Meanwhile others keep trading: alice lifts the lowest ask; both sides hear of it.
    let mut alice = server.connect(ALICE);
    let take = limit_order(BTC_USDT, Side::Buy, LADDER_FROM, 10_000, 1);
    let request_id = alice.send(&take).unwrap();
    let trade = expect(&mut alice, "alice's trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) => Some(*t),
        Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == request_id => {
            panic!("{r:?}")
        }
        _ => None,
    });
    assert_eq!((trade.price, trade.qty), (LADDER_FROM, 10_000));
    witness.log.push(as_command(ALICE, &take));
    let maker_trade = expect(&mut witness.client, "maker's trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) => Some(*t),
        _ => None,
    });
    assert_eq!(maker_trade.trade_id, trade.trade_id);
    // Trade, balance changes and Done of the maker's order: skip to the last of them.
    expect(&mut witness.client, "maker's done", |m| match m {
        Incoming::Msg(ServerMessage::Done(_)) => Some(()),
        _ => None,
    });
    witness.resync();
    witness.place();

    // Now bob reads: whatever got through, then Logout(SlowConsumer), then EOF.
    let ending = bob.read_to_end(TIMEOUT);
    assert_eq!(
        ending.logout,
        Some(SessionReason::SlowConsumer),
        "last messages: {:?}",
        ending.messages.last()
    );
    let snapshots =
        ending.messages.iter().filter(|(_, m)| matches!(m, Incoming::BookSnapshot { .. })).count();
    assert!(snapshots > 0 && snapshots < SUBSCRIBES as usize, "{snapshots} snapshots got through");
    eprintln!("slow consumer: {snapshots} of {SUBSCRIBES} snapshots got through");

    finish(server, &config, &witness.log);
}

#[test]
fn client_that_stops_reading_its_reports_is_closed_and_keeps_its_session() {
    const DEPOSITS: u64 = 60_000;
    const BATCH: u64 = 100;
    const JOURNAL: usize = 200;
    let (server, config) = start(|c| {
        c.gateway.outbound_bytes_max = OUTBOUND_MIN;
        c.gateway.journal.messages_max = JOURNAL;
    });
    let mut witness = Witness::maker(&server);
    witness.place();

    // Bob logs on and never reads while the admin credits him 60_000 times: each
    // credit is a sequenced balance update in bob's stream (~6 MB). The socket buffers
    // fill, then half the outbound buffer, then the journal moves past what bob got.
    let (mut bob, ack) = RawConn::logon(server.addr, LogonOptions::demo(BOB));
    let mut admin = server.connect(ADMIN);
    for batch in 0..DEPOSITS / BATCH {
        let deposits: Vec<ClientRequest> = (1..=BATCH)
            .map(|i| {
                let tx = 5_000_000 + batch * BATCH + i;
                let deposit = AdminRequest::Deposit { tx, account: BOB, asset: USDT, amount: 1 };
                witness.log.push(deposit.to_command());
                ClientRequest::Admin(deposit)
            })
            .collect();
        admin.send_batch(&deposits).expect("admin sends");
        let last_tx = 5_000_000 + (batch + 1) * BATCH;
        expect(&mut admin, "the batch's last ack", |m| match m {
            Incoming::Msg(ServerMessage::AdminAck(a)) if a.tx == last_tx => Some(()),
            _ => None,
        });
    }
    witness.place();

    // The server closes bob as a slow consumer. If he still does not read within
    // CLOSE_FLUSH, the socket is shut with the Logout unsent behind his full buffers:
    // he sees what was buffered, then the end of the stream.
    let ending = bob.read_to_end(TIMEOUT);
    assert!(
        matches!(ending.logout, Some(SessionReason::SlowConsumer) | None),
        "{:?}",
        ending.logout
    );
    let seqs: Vec<Seq> = ending.messages.iter().map(|(s, _)| *s).filter(|&s| s != 0).collect();
    let got = seqs.len() as u64;
    assert!(got > 0 && got < DEPOSITS, "{got} updates got through");
    eprintln!("slow consumer: {got} of {DEPOSITS} balance updates got through");
    let first = ack.next_seq;
    assert_eq!(seqs, (first..first + got).collect::<Vec<_>>(), "what got through has no gaps");

    // The stream stays, and tells the truth: what bob missed is no longer retained.
    let mut conn = RawConn::connect(server.addr);
    let options = LogonOptions {
        session_id: ack.session_id,
        resume_from_seq: first + got,
        ..LogonOptions::demo(BOB)
    };
    conn.send(1, &ClientCodec::logon_request(&options, &conn.nonce));
    let ending = conn.read_to_end(TIMEOUT);
    let reject = ending.logon_reject.expect("resume refused");
    assert_eq!(reject.reason, SessionReason::ResumeTooOld);
    let (oldest, next) = (reject.oldest_seq, reject.next_seq);
    assert!(oldest > first + got, "the journal dropped what bob never got");
    assert_eq!(next - oldest, JOURNAL as u64, "the journal is full");
    assert_eq!(next - first, DEPOSITS, "one update per credit");

    // Resuming from what is retained delivers exactly that, in order: the last credits.
    let options = LogonOptions { resume_from_seq: oldest, ..options };
    let (mut resumed, ack) = RawConn::logon(server.addr, options);
    assert_eq!((ack.replay_from, ack.replay_count, ack.next_seq), (oldest, JOURNAL as u64, next));
    for expected in oldest..next {
        match resumed.recv(TIMEOUT) {
            Some((seq, Incoming::Msg(ServerMessage::BalanceUpdate(update)))) => {
                assert_eq!(seq, expected);
                let tx = 5_000_000 + (expected - first) + 1;
                assert_eq!(update.reason, bourse_engine::BalanceReason::Deposit(tx), "its tx");
            }
            other => panic!("expected replayed update {expected}, got {other:?}"),
        }
    }
    resumed.send(1, &ClientRequest::Logout);
    assert_eq!(resumed.read_to_end(TIMEOUT).logout, Some(SessionReason::LoggedOut));

    witness.place();
    finish(server, &config, &witness.log);
}

/// Logs on, retrying while the server refuses the connection (over `connections_max`,
/// which it answers by closing the socket before the challenge); `None` if it still
/// refuses after `within`.
fn raw_logon_retrying(
    addr: std::net::SocketAddr,
    options: LogonOptions,
    within: Duration,
) -> Option<RawConn> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(mut conn) = RawConn::try_connect(addr) {
            conn.send(1, &ClientCodec::logon_request(&options, &conn.nonce));
            match conn.recv(TIMEOUT) {
                Some((0, Incoming::Msg(ServerMessage::LogonAck(_)))) => return Some(conn),
                other => panic!("expected a logon ack, got {other:?}"),
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn logon_retrying(addr: std::net::SocketAddr, key: u64) -> BlockingClient {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match BlockingClient::connect(addr, LogonOptions::demo(key), TIMEOUT) {
            Ok(client) => return client,
            Err(ClientError::Closed) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("logon of {key}: {e}"),
        }
    }
}

#[test]
fn slow_consumer_that_never_reads_is_disconnected() {
    const SUBSCRIBES: u64 = 3_000;
    // Room for the witness, the abuser and alice: a fourth connection gets in only once
    // the server has let go of the abuser's socket.
    let (server, config) = start(|c| {
        c.gateway.outbound_bytes_max = OUTBOUND_MIN;
        c.gateway.connections_max = 3;
    });
    // (The harness's own admin connection may still hold a slot for a moment.)
    let mut witness = Witness::new(logon_retrying(server.addr, MAKER), MAKER);
    witness.place();
    rest_ladder(&mut witness, 200);
    witness.resync();
    let mut bob = raw_logon_retrying(server.addr, LogonOptions::demo(BOB), TIMEOUT).expect("bob");
    let mut alice = logon_retrying(server.addr, ALICE);

    // Bob asks for ~15 MB of snapshots and never reads them.
    let subscribe = ClientRequest::Subscribe { market: BTC_USDT, depth: 1000 };
    flood_paced(&mut bob, &mut witness, &subscribe, SUBSCRIBES / 10, 10);
    // Alice trades (bob's book would change: he is far behind by now).
    let take = limit_order(BTC_USDT, Side::Buy, LADDER_FROM, 10_000, 1);
    place(&mut alice, &take);
    witness.log.push(as_command(ALICE, &take));
    expect(&mut witness.client, "maker's done", |m| match m {
        Incoming::Msg(ServerMessage::Done(_)) => Some(()),
        _ => None,
    });
    witness.resync();

    // Bob still reads nothing. His snapshots overflowed the outbound buffer long ago, so
    // the server has closed his connection as a slow consumer. If it only queued a
    // Logout behind bytes he will never read, his socket and slot are held for good.
    let probe = raw_logon_retrying(server.addr, LogonOptions::demo(1001), Duration::from_secs(5));
    let freed = probe.is_some();
    drop(probe);
    // Reading now lets whatever the server still holds through.
    let ending = bob.read_to_end(TIMEOUT);
    assert!(
        freed,
        "5 s after it became a slow consumer, the server still held the connection of a \
         client that does not read (no connection slot was free); once he read, bob got \
         {} messages and then {:?}",
        ending.messages.len(),
        ending.logout
    );
    assert!(
        matches!(ending.logout, None | Some(SessionReason::SlowConsumer)),
        "{:?}",
        ending.logout
    );
    witness.place();
    drop(alice);
    finish(server, &config, &witness.log);
}
