//! Limits that protect other clients, over real TCP against the server: a connection
//! flood from one address (and from many) while honest clients log on and trade, one
//! rate budget for all connections of a key, and the logon deadline.

mod live;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bourse_engine::Side;
use bourse_net::client::{ClientCodec, Incoming, LogonOptions};
use bourse_net::protocol::*;
use live::*;

const FLOOD: [u8; 4] = [127, 0, 0, 2];
const HONEST: [u8; 4] = [127, 0, 0, 1];

fn ip(octets: [u8; 4]) -> IpAddr {
    IpAddr::from(octets)
}

/// 0.1 BTC at 50,000 USDT (BTC has 8 decimals, USDT 6).
fn btc_order(side: Side, cl: u64) -> ClientRequest {
    limit_order(BTC_USDT, side, 50_000_000_000, 10_000_000, cl)
}

#[test]
fn a_connection_flood_does_not_lock_out_honest_clients() {
    const PER_IP_MAX: usize = 8;
    let server = LiveServer::start(demo_config(|c| {
        c.gateway.connections_max = 96;
        c.gateway.unauthenticated_max = 16;
        c.gateway.unauthenticated_per_ip_max = PER_IP_MAX;
        // The flood's connections would stay for the whole test if nothing evicted them.
        c.gateway.logon_timeout_ns = 60_000_000_000;
    }));
    let addr = server.addr;

    // The attack: 45 connections from one address that never log on. Only
    // PER_IP_MAX get a challenge; the others are closed at once.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..45 {
        match RawConn::try_connect_from(ip(FLOOD), addr) {
            Some(conn) => held.push(conn),
            None => refused += 1,
        }
    }
    assert_eq!((held.len(), refused), (PER_IP_MAX, 45 - PER_IP_MAX));

    // A distributed flood, one connection per address, fills every place for
    // connections awaiting a logon (the oldest are evicted as newer ones come).
    let distributed: Vec<RawConn> = (10..40u8)
        .map(|i| RawConn::try_connect_from(ip([127, 0, 0, i]), addr).expect("admitted"))
        .collect();

    // And it keeps reopening from one address while the honest clients log on.
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reopened = 0u32;
            let mut kept = Vec::new();
            while !stop.load(Ordering::Relaxed) && reopened < 5_000 {
                if let Some(conn) = RawConn::try_connect_from(ip(FLOOD), addr) {
                    kept.push(conn);
                }
                reopened += 1;
            }
            reopened
        })
    };

    // 45 fresh logons from elsewhere all succeed.
    for i in 0..45u64 {
        let key = [ALICE, BOB, MAKER][(i % 3) as usize];
        let mut conn = RawConn::try_connect_from(ip(HONEST), addr).expect("admitted");
        let logon = ClientCodec::logon_request(&LogonOptions::demo(key), &conn.nonce);
        conn.send(1, &logon);
        match conn.recv(TIMEOUT) {
            Some((0, Incoming::Msg(ServerMessage::LogonAck(ack)))) => {
                assert_eq!(ack.session_id, key)
            }
            other => panic!("honest logon {i} of key {key}: {other:?}"),
        }
    }
    // And they trade.
    let mut bob = server.connect(BOB);
    let mut alice = server.connect(ALICE);
    let ask = place(&mut bob, &btc_order(Side::Sell, 1));
    let bid = place(&mut alice, &btc_order(Side::Buy, 2));
    expect(&mut alice, "alice's trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) if t.order_id == bid.order_id => Some(()),
        _ => None,
    });
    expect(&mut bob, "bob's trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) if t.order_id == ask.order_id => Some(()),
        _ => None,
    });
    stop.store(true, Ordering::Relaxed);
    let reopened = flooder.join().expect("the flooder does not panic");
    assert!(reopened > 0);

    // The first flood connections were evicted, told why, and closed.
    let ending = held.remove(0).read_to_end(TIMEOUT);
    assert_eq!(ending.logout, Some(SessionReason::LogonTimeout), "{ending:?}");
    drop((held, distributed));
    server.stop();
}

/// Answers to `count` balance queries sent on `conn` with ids `first..`: (answered,
/// rate-limited).
fn balance_answers(conn: &mut RawConn, first: RequestId, count: u64) -> (u64, u64) {
    let (mut answered, mut limited) = (0, 0);
    while answered + limited < count {
        match conn.recv(TIMEOUT) {
            Some((_, Incoming::Balances { request_id, .. })) => {
                assert!((first..first + count).contains(&request_id));
                answered += 1;
            }
            Some((_, Incoming::Msg(ServerMessage::Rejected(r)))) => {
                assert_eq!(r.cause, RejectCause::Session(SessionReason::RateLimited), "{r:?}");
                limited += 1;
            }
            Some(_) => {}
            None => panic!("closed after {answered} answers and {limited} rejects"),
        }
    }
    (answered, limited)
}

#[test]
fn a_keys_connections_share_one_rate_budget() {
    const BURST: u64 = 10;
    const PER_CONN: u64 = 20;
    let server = LiveServer::start(demo_config(|c| {
        c.gateway.rate = bourse_net::ratelimit::RateLimit { rate_per_sec: 1, burst: BURST as u32 };
    }));
    let (mut one, ack) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    assert_eq!((ack.rate_per_sec, ack.rate_burst), (1, BURST as u32));
    let (mut two, _) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    let started = Instant::now();
    for i in 0..PER_CONN {
        one.send(100 + i, &ClientRequest::BalanceQuery);
        two.send(200 + i, &ClientRequest::BalanceQuery);
    }
    let (answered_one, _) = balance_answers(&mut one, 100, PER_CONN);
    let (answered_two, _) = balance_answers(&mut two, 200, PER_CONN);
    let elapsed_secs = started.elapsed().as_secs();
    // One budget for the key: the burst, plus what refilled meanwhile (1 a second).
    // Separate budgets would have answered all 2 * PER_CONN.
    let answered = answered_one + answered_two;
    assert!(answered >= BURST, "{answered}");
    assert!(answered <= BURST + elapsed_secs + 1, "{answered} answered in {elapsed_secs} s");
    // Another key is not charged for Alice's traffic.
    let (mut bob, _) = RawConn::logon(server.addr, LogonOptions::demo(BOB));
    bob.send(300, &ClientRequest::BalanceQuery);
    assert_eq!(balance_answers(&mut bob, 300, 1), (1, 0));
    server.stop();
}

#[test]
fn the_logon_deadline_closes_an_idle_connection() {
    const LOGON_TIMEOUT: Duration = Duration::from_millis(300);
    let server = LiveServer::start(demo_config(|c| {
        c.gateway.logon_timeout_ns = LOGON_TIMEOUT.as_nanos() as u64;
    }));
    let connected = Instant::now();
    let mut idle = RawConn::try_connect_from(ip(FLOOD), server.addr).expect("admitted");
    let ending = idle.read_to_end(TIMEOUT);
    assert!(ending.messages.is_empty(), "{ending:?}");
    assert_eq!(ending.logout, Some(SessionReason::LogonTimeout));
    assert!(connected.elapsed() >= LOGON_TIMEOUT, "closed before the deadline");
    // A client that logs on in time is not affected.
    let (_alice, ack) = RawConn::logon(server.addr, LogonOptions::demo(ALICE));
    assert_eq!(ack.session_id, ALICE);
    server.stop();
}
