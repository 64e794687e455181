//! Limits that protect other clients, at the sans-IO level: connections awaiting a logon
//! per IP and in all, eviction of the oldest of them, the logon deadline, connections per
//! key, the rate limit shared by a key's connections, and the audit records.

mod common;

use bourse_engine::{Command, OrderType, Side, StpMode, TimeInForce};
use bourse_net::protocol::*;
use bourse_net::ratelimit::RateLimit;
use bourse_net::session::{Action, Audit, ConnectError, GatewayConfig};
use common::*;

const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const HONEST: [u8; 4] = [127, 0, 0, 1];

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

fn submits(actions: &[Action]) -> usize {
    actions.iter().filter(|a| matches!(a, Action::Submit { .. })).count()
}

fn audit(h: &mut Harness) -> Vec<Audit> {
    let mut out = Vec::new();
    h.gw.take_audit(&mut out);
    out
}

/// Logs `client` on as `key_id`; returns the first message of the answer.
fn log_on(h: &mut Harness, client: &mut Client, key_id: u64, resume_from_seq: Seq) -> Got {
    let request = Harness::logon_request(client, key_id, 0, resume_from_seq, false);
    h.send(client, 1, &request);
    h.read_all(client).remove(0).1
}

#[test]
fn connections_awaiting_logon_are_capped_per_ip() {
    let config = GatewayConfig { unauthenticated_per_ip_max: 3, ..GatewayConfig::default() };
    let mut h = Harness::new(config);
    let mut flood: Vec<Client> = (0..3).map(|_| h.connect_from(ATTACKER)).collect();
    assert_eq!(h.try_connect_from(ATTACKER), Err(ConnectError::TooManyFromPeer));
    assert_eq!(h.gw.stats().connects_refused, 1);
    // Other addresses are not affected.
    let mut honest = h.connect_from(HONEST);
    assert!(matches!(
        log_on(&mut h, &mut honest, TRADER_A, 0),
        Got::Msg(ServerMessage::LogonAck(_))
    ));
    // A connection of that IP that logs on no longer counts against the cap.
    let got = log_on(&mut h, &mut flood[0], TRADER_B, 0);
    assert!(matches!(got, Got::Msg(ServerMessage::LogonAck(_))), "{got:?}");
    assert!(h.try_connect_from(ATTACKER).is_ok());
    assert_eq!(h.try_connect_from(ATTACKER), Err(ConnectError::TooManyFromPeer));
    // One that goes away frees its place too.
    h.gw.on_disconnected(flood[1].conn, h.now_ns, &mut h.actions);
    assert!(h.try_connect_from(ATTACKER).is_ok());
    assert_eq!(h.gw.stats().awaiting_logon, 3);
}

#[test]
fn a_full_gateway_evicts_the_oldest_connection_awaiting_logon() {
    let config = GatewayConfig {
        unauthenticated_max: 4,
        unauthenticated_per_ip_max: 4,
        ..GatewayConfig::default()
    };
    let mut h = Harness::new(config);
    // Attackers from many addresses hold every place for connections awaiting a logon.
    let flood: Vec<Client> = (0..4u8)
        .map(|i| {
            h.now_ns += 1;
            h.connect_from([10, 0, 0, i])
        })
        .collect();
    h.take_actions();
    audit(&mut h);
    // An honest client still gets in: the oldest attacker makes room.
    h.now_ns += 1;
    let mut honest = h.connect_from(HONEST);
    assert_eq!(close_reason(&h.take_actions(), flood[0].conn), Some(SessionReason::LogonTimeout));
    assert_eq!(audit(&mut h), [Audit::Evicted { peer: "10.0.0.0:10001".parse().unwrap() }]);
    assert_eq!(h.gw.stats().evictions, 1);
    assert_eq!(h.gw.stats().awaiting_logon, 4);
    assert!(matches!(
        log_on(&mut h, &mut honest, TRADER_A, 0),
        Got::Msg(ServerMessage::LogonAck(_))
    ));
    // The evicted connection is closing; the server's disconnect frees its slot.
    h.gw.on_disconnected(flood[0].conn, h.now_ns, &mut h.actions);
    assert_eq!(h.gw.stats().connections, 4);
}

#[test]
fn connections_max_refuses_only_when_none_awaits_a_logon() {
    let config = GatewayConfig { connections_max: 2, ..GatewayConfig::default() };
    let mut h = Harness::new(config);
    let (_a, _, _) = h.logon(TRADER_A, 0, 0, false);
    let waiting = h.connect_from(ATTACKER);
    h.take_actions();
    // Full: the one awaiting a logon makes room for the newcomer.
    let mut newcomer = h.connect_from(HONEST);
    assert_eq!(close_reason(&h.take_actions(), waiting.conn), Some(SessionReason::LogonTimeout));
    assert!(matches!(
        log_on(&mut h, &mut newcomer, TRADER_B, 0),
        Got::Msg(ServerMessage::LogonAck(_))
    ));
    // Both places hold logged-on sessions: now a connection is refused.
    assert_eq!(h.try_connect_from(HONEST), Err(ConnectError::TooManyConnections));
}

#[test]
fn the_logon_deadline_closes_an_idle_connection() {
    let config = GatewayConfig { logon_timeout_ns: 2_000_000_000, ..GatewayConfig::default() };
    let mut h = Harness::new(config);
    let idle = h.connect_from(ATTACKER);
    h.tick(1_999_999_999);
    assert!(h.take_actions().is_empty());
    h.tick(1);
    assert_eq!(close_reason(&h.take_actions(), idle.conn), Some(SessionReason::LogonTimeout));
    assert_eq!(h.gw.stats().awaiting_logon, 0);
    let peer = "127.0.0.2:10001".parse().unwrap();
    let reason = SessionReason::LogonTimeout;
    assert_eq!(audit(&mut h), [Audit::ClosedBeforeLogon { peer, reason }]);
}

#[test]
fn a_key_has_at_most_connections_per_key_max() {
    let config = GatewayConfig { connections_per_key_max: 2, ..GatewayConfig::default() };
    let mut h = Harness::new(config);
    let (_a1, _, _) = h.logon(TRADER_A, 0, 0, false);
    let (_a2, _, _) = h.logon(TRADER_A, 0, 0, false);
    let mut third = h.connect();
    let got = log_on(&mut h, &mut third, TRADER_A, 0);
    let Got::Msg(ServerMessage::LogonReject(reject)) = got else { panic!("{got:?}") };
    assert_eq!(reject.reason, SessionReason::SessionsLimit);
    assert_eq!(close_reason(&h.take_actions(), third.conn), Some(SessionReason::SessionsLimit));
    // Another key is not affected; a resuming logon takes the stream over instead.
    let (_b, _, _) = h.logon(TRADER_B, 0, 0, false);
    let mut resumer = h.connect();
    let got = log_on(&mut h, &mut resumer, TRADER_A, 1);
    assert!(matches!(got, Got::Msg(ServerMessage::LogonAck(_))), "{got:?}");
    let replaced = h.take_actions();
    let closes = replaced.iter().filter(|a| matches!(a, Action::Close { .. })).count();
    assert_eq!(closes, 2, "both earlier connections are replaced: {replaced:?}");
}

#[test]
fn a_keys_connections_share_one_rate_budget() {
    let config = GatewayConfig {
        rate: RateLimit { rate_per_sec: 10, burst: 4 },
        ..GatewayConfig::default()
    };
    let mut h = Harness::new(config);
    let (mut one, _, _) = h.logon(TRADER_A, 0, 0, false);
    let (mut two, _, _) = h.logon(TRADER_A, 0, 0, false);
    let (mut other_key, _, _) = h.logon(TRADER_B, 0, 0, false);
    h.take_actions();
    for i in 0..2 {
        h.send(&mut one, 10 + i, &new_order(10 + i));
        h.send(&mut two, 20 + i, &new_order(20 + i));
    }
    assert_eq!(submits(&h.take_actions()), 4, "the burst of 4 is shared");
    // The key's budget is spent, whichever connection asks.
    h.send(&mut one, 30, &new_order(30));
    h.send(&mut two, 31, &new_order(31));
    assert_eq!(submits(&h.take_actions()), 0);
    for client in [&mut one, &mut two] {
        let got = h.read_all(client);
        let rate_limited = got.iter().any(|(_, g)| {
            matches!(g, Got::Msg(ServerMessage::Rejected(r))
                if r.cause == RejectCause::Session(SessionReason::RateLimited))
        });
        assert!(rate_limited, "{got:?}");
    }
    // Another key has its own budget.
    h.send(&mut other_key, 40, &new_order(40));
    assert_eq!(submits(&h.take_actions()), 1);
    // 100 ms later one token has come back, for one connection of the key.
    h.now_ns += 100_000_000;
    h.send(&mut two, 50, &new_order(50));
    h.send(&mut one, 51, &new_order(51));
    assert_eq!(submits(&h.take_actions()), 1);
}

#[test]
fn logons_logouts_and_admin_actions_are_audited() {
    let mut h = Harness::with_defaults();
    let (mut admin, _, _) = h.logon(ADMIN, 0, 0, false);
    let peer = "127.0.0.1:10001".parse().unwrap();
    assert_eq!(audit(&mut h), [Audit::Logon { peer, key_id: ADMIN, admin: true, resumed: false }]);
    let deposit = ClientRequest::Admin(AdminRequest::Deposit {
        tx: 7,
        account: ACCOUNT_A,
        asset: 1,
        amount: 5,
    });
    h.send(&mut admin, 2, &deposit);
    let command = Command::Deposit { tx: 7, account: ACCOUNT_A, asset: 1, amount: 5 };
    assert_eq!(audit(&mut h), [Audit::Admin { peer, key_id: ADMIN, command }]);
    h.send(&mut admin, 3, &ClientRequest::Logout);
    let reason = Some(SessionReason::LoggedOut);
    assert_eq!(audit(&mut h), [Audit::Logout { peer, key_id: ADMIN, reason }]);
    // A refused logon names the key it claimed and the reason.
    let mut bad = h.connect();
    let mut request = Harness::logon_request(&bad, TRADER_A, 0, 0, false);
    if let ClientRequest::Logon(logon) = &mut request {
        logon.signature[0] ^= 1;
    }
    h.send(&mut bad, 1, &request);
    let peer = "127.0.0.1:10002".parse().unwrap();
    let reason = SessionReason::BadSignature;
    assert_eq!(audit(&mut h), [Audit::LogonRefused { peer, key_id: TRADER_A, reason }]);
    // A trader's peer that just goes away is logged out with no reason.
    let (trader, _, _) = h.logon(TRADER_B, 0, 0, false);
    h.gw.on_disconnected(trader.conn, h.now_ns, &mut h.actions);
    let records = audit(&mut h);
    assert!(
        matches!(records[1], Audit::Logout { key_id: TRADER_B, reason: None, .. }),
        "{records:?}"
    );
}

#[test]
fn ipv6_peers_count_per_64_prefix_and_mapped_ipv4_as_ipv4() {
    use bourse_net::session::peer_group;
    let a: std::net::SocketAddr = "[2001:db8:1:2:aaaa::1]:5".parse().unwrap();
    let b: std::net::SocketAddr = "[2001:db8:1:2:bbbb::9]:6".parse().unwrap();
    let other: std::net::SocketAddr = "[2001:db8:1:3::1]:5".parse().unwrap();
    assert_eq!(peer_group(a), peer_group(b));
    assert_ne!(peer_group(a), peer_group(other));
    let mapped: std::net::SocketAddr = "[::ffff:10.1.2.3]:7".parse().unwrap();
    let v4: std::net::SocketAddr = "10.1.2.3:8".parse().unwrap();
    assert_eq!(peer_group(mapped), peer_group(v4));
    assert_eq!(peer_group(v4), "10.1.2.3".parse::<std::net::IpAddr>().unwrap());
}

#[test]
fn limits_are_validated() {
    for config in [
        GatewayConfig { unauthenticated_max: 0, ..GatewayConfig::default() },
        GatewayConfig { unauthenticated_per_ip_max: 0, ..GatewayConfig::default() },
        GatewayConfig { connections_per_key_max: 0, ..GatewayConfig::default() },
    ] {
        assert!(config.validate().is_err(), "{config:?}");
    }
    // Configured through the TOML file.
    let config = bourse_net::config::Config::from_toml(
        "[gateway]\nunauthenticated_max = 9\nunauthenticated_per_ip_max = 3\n\
         connections_per_key_max = 2\nlogon_timeout_ms = 1500\n",
    )
    .unwrap();
    assert_eq!(config.gateway.unauthenticated_max, 9);
    assert_eq!(config.gateway.unauthenticated_per_ip_max, 3);
    assert_eq!(config.gateway.connections_per_key_max, 2);
    assert_eq!(config.gateway.logon_timeout_ns, 1_500_000_000);
}

mod model {
    //! Random sequences of connects from a few addresses, logons, disconnects and
    //! timer ticks, with the server's part played at once (every `Close` is followed by
    //! `on_disconnected`): the gateway's counts match a model of the connections, and
    //! no bound is ever exceeded.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Connect(u8),
        Logon { pick: usize, key: usize },
        Disconnect(usize),
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..4u8).prop_map(Op::Connect),
            3 => (any::<usize>(), 0..4usize).prop_map(|(pick, key)| Op::Logon { pick, key }),
            1 => any::<usize>().prop_map(Op::Disconnect),
            1 => (0..3_000u64).prop_map(Op::Tick),
        ]
    }

    #[derive(Debug, PartialEq)]
    enum State {
        Awaiting,
        LoggedOn(u64),
    }

    struct Model {
        conns: BTreeMap<u64, (Client, [u8; 4], State)>,
    }

    impl Model {
        fn count(&self, pred: impl Fn(&[u8; 4], &State) -> bool) -> usize {
            self.conns.values().filter(|(_, ip, s)| pred(ip, s)).count()
        }
    }

    /// The server's part: every closed connection goes away at once.
    fn settle(h: &mut Harness, model: &mut Model) {
        loop {
            let actions = h.take_actions();
            let closed: Vec<_> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Close { conn, .. } => Some(*conn),
                    _ => None,
                })
                .collect();
            if closed.is_empty() {
                return;
            }
            for conn in closed {
                model.conns.remove(&conn.raw());
                h.gw.on_disconnected(conn, h.now_ns, &mut h.actions);
            }
        }
    }

    const KEYS: [u64; 4] = [TRADER_A, TRADER_B, TRADER_A2, ADMIN];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn counts_match_the_model_and_bounds_hold(ops in proptest::collection::vec(op(), 1..300)) {
            let config = GatewayConfig {
                connections_max: 7,
                unauthenticated_max: 6,
                unauthenticated_per_ip_max: 3,
                connections_per_key_max: 2,
                logon_timeout_ns: 2_000_000_000,
                ..GatewayConfig::default()
            };
            let mut h = Harness::new(config);
            let mut model = Model { conns: BTreeMap::new() };
            for op in ops {
                match op {
                    Op::Connect(i) => {
                        let ip = [10, 0, 0, i];
                        let from_ip = model.count(|p, s| *p == ip && *s == State::Awaiting);
                        match h.try_client_from(ip) {
                            Ok(client) => {
                                prop_assert!(from_ip < 3);
                                model.conns.insert(client.conn.raw(), (client, ip, State::Awaiting));
                            }
                            Err(ConnectError::TooManyFromPeer) => prop_assert_eq!(from_ip, 3),
                            Err(ConnectError::TooManyConnections) => {
                                prop_assert_eq!(model.count(|_, s| *s == State::Awaiting), 0);
                                prop_assert!(model.conns.len() >= 7);
                            }
                        }
                    }
                    Op::Logon { pick, key } => {
                        let awaiting: Vec<u64> = model
                            .conns
                            .iter()
                            .filter(|(_, (_, _, s))| *s == State::Awaiting)
                            .map(|(id, _)| *id)
                            .collect();
                        if awaiting.is_empty() {
                            continue;
                        }
                        let id = awaiting[pick % awaiting.len()];
                        let key_id = KEYS[key];
                        let of_key = model.count(|_, s| *s == State::LoggedOn(key_id));
                        let (client, _, state) = model.conns.get_mut(&id).unwrap();
                        let request = Harness::logon_request(client, key_id, 0, 0, false);
                        h.send(client, 1, &request);
                        let got = h.read_all(client);
                        match &got[0].1 {
                            Got::Msg(ServerMessage::LogonAck(_)) => {
                                prop_assert!(of_key < 2);
                                *state = State::LoggedOn(key_id);
                            }
                            Got::Msg(ServerMessage::LogonReject(r)) => {
                                prop_assert_eq!(r.reason, SessionReason::SessionsLimit);
                                prop_assert_eq!(of_key, 2);
                            }
                            other => prop_assert!(false, "{:?}", other),
                        }
                    }
                    Op::Disconnect(pick) => {
                        let ids: Vec<u64> = model.conns.keys().copied().collect();
                        if let Some(id) = ids.get(pick % ids.len().max(1)) {
                            let (client, _, _) = model.conns.remove(id).unwrap();
                            h.gw.on_disconnected(client.conn, h.now_ns, &mut h.actions);
                        }
                    }
                    Op::Tick(ms) => h.tick(ms * 1_000_000),
                }
                settle(&mut h, &mut model);
                let stats = h.gw.stats();
                prop_assert_eq!(stats.connections, model.conns.len());
                prop_assert_eq!(stats.awaiting_logon, model.count(|_, s| *s == State::Awaiting));
                prop_assert_eq!(stats.logged_on, model.count(|_, s| *s != State::Awaiting));
                prop_assert!(stats.awaiting_logon <= 6);
                prop_assert!(stats.connections <= 7);
                for i in 0..4u8 {
                    let ip = [10, 0, 0, i];
                    prop_assert!(model.count(|p, s| *p == ip && *s == State::Awaiting) <= 3);
                }
            }
        }
    }
}
