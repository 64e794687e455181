//! A real server on loopback for integration tests: the daemon's server on an ephemeral
//! port (threads unpinned, `BackgroundServer`), stopped and joined at the end.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bourse_net::client::{BlockingClient, Incoming, LogonOptions};
use bourse_net::config::Config;
use bourse_net::server::{BackgroundServer, ServerReport};

pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const ADMIN: u64 = 1;
pub const MAKER: u64 = 100;
pub const ALICE: u64 = 200;
pub const BOB: u64 = 300;
pub const BTC: u32 = 1;
pub const USDT: u32 = 2;
pub const BTC_USDT: u32 = 1;

pub struct LiveServer {
    pub addr: SocketAddr,
    server: Option<BackgroundServer>,
}

/// The demo config on an ephemeral port, unpinned, with `edit` applied.
pub fn demo_config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::demo();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.pin = false;
    config.server.ring_entries = 4096;
    // Tests run servers in parallel: metrics on a free port too.
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    edit(&mut config);
    config
}

impl LiveServer {
    pub fn start(config: Config) -> LiveServer {
        let config_keys = config.keys.clone();
        let bootstrap_len = config.bootstrap.len() as u64;
        let background = BackgroundServer::start(config).expect("server starts");
        let server = LiveServer { addr: background.addr, server: Some(background) };
        server.wait_for_bootstrap(&config_keys, bootstrap_len);
        server
    }

    /// The server accepts connections only once the config's bootstrap is applied; an
    /// admin status query checks that (it is answered after every command queued before
    /// it) and gives the tests a known start.
    fn wait_for_bootstrap(&self, keys: &[bourse_net::auth::ApiKey], bootstrap_len: u64) {
        let Some(admin) = keys.iter().find(|k| k.role == bourse_net::auth::Role::Admin) else {
            return;
        };
        let options = LogonOptions { secret: admin.secret, ..LogonOptions::demo(admin.key_id) };
        let mut client = self.connect_with(options).expect("admin logon");
        let request_id = client.send(&ClientRequest::StatusQuery).expect("status query");
        let report = expect(&mut client, "status", |m| match m {
            Incoming::Msg(ServerMessage::Status(s)) if s.request_id == request_id => Some(*s),
            _ => None,
        });
        assert_eq!(report.last_index, bootstrap_len, "the bootstrap is applied first");
    }

    pub fn demo() -> LiveServer {
        LiveServer::start(demo_config(|_| {}))
    }

    pub fn connect(&self, key_id: u64) -> BlockingClient {
        BlockingClient::connect(self.addr, LogonOptions::demo(key_id), TIMEOUT).expect("logon")
    }

    pub fn connect_with(
        &self,
        options: LogonOptions,
    ) -> Result<BlockingClient, bourse_net::client::ClientError> {
        BlockingClient::connect(self.addr, options, TIMEOUT)
    }

    /// Stops the server (SIGTERM's path) and returns what it reports.
    pub fn stop(mut self) -> ServerReport {
        self.server.take().expect("running").stop().expect("server stops cleanly")
    }
}

/// Waits for the message `pick` accepts.
pub fn expect<T>(
    client: &mut BlockingClient,
    what: &str,
    pick: impl FnMut(&Incoming) -> Option<T>,
) -> T {
    client.recv_until(TIMEOUT, pick).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

// ----- Additions for the live_* integration tests ------------------------------------------

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use bourse_engine::{
    Command, DoneReason, Event, Exchange, MarketId, OrderType, Side, StpMode, TimeInForce,
};
use bourse_net::client::ClientCodec;
use bourse_net::codec::Encoder;
use bourse_net::protocol::*;

pub const ETH: u32 = 3;
pub const ETH_USDT: u32 = 2;
/// The engine's fee account in the demo config.
pub const FEE_ACCOUNT: u64 = 0;
/// Bytes one raw read takes at most (a server frame is at most 64 KiB).
const RAW_READ_BYTES: usize = 64 * 1024;

/// A limit order on `market`, GTC, `CancelTaker`.
pub fn limit_order(market: MarketId, side: Side, price: u64, qty: u64, cl: u64) -> ClientRequest {
    ClientRequest::NewOrder(NewOrder {
        market,
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

/// The engine command a trader key's request turns into (the session fills in the key's
/// account exactly like this; see `session::permitted_action`).
pub fn as_command(account: u64, request: &ClientRequest) -> Command {
    match *request {
        ClientRequest::NewOrder(order) => Command::Place(order.to_place(account)),
        ClientRequest::Cancel(order) => Command::Cancel { account, order },
        ClientRequest::Amend { order, price, qty } => Command::Amend { account, order, price, qty },
        ClientRequest::MassCancel { market } => Command::MassCancel { account, market },
        ref other => panic!("{other:?} is not a trading command"),
    }
}

/// Sends `request` and waits for its `Accepted` (panics on its `Rejected`).
pub fn place(client: &mut BlockingClient, request: &ClientRequest) -> AcceptedReport {
    let request_id = client.send(request).expect("send");
    expect(client, "accepted", |m| match m {
        Incoming::Msg(ServerMessage::Accepted(a)) if a.request_id == request_id => Some(*a),
        Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == request_id => {
            panic!("order {request:?} rejected: {r:?}")
        }
        _ => None,
    })
}

/// Waits for the `Rejected` answering `request_id`.
pub fn rejected(client: &mut BlockingClient, request_id: RequestId) -> RejectReport {
    expect(client, "rejected", |m| match m {
        Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == request_id => Some(*r),
        _ => None,
    })
}

/// Waits for the `Done` of `order_id`.
pub fn done(client: &mut BlockingClient, order_id: u64) -> DoneReport {
    expect(client, "done", |m| match m {
        Incoming::Msg(ServerMessage::Done(d)) if d.order_id == order_id => Some(*d),
        _ => None,
    })
}

/// Asks for the key's balances and waits for the answer.
pub fn balances(client: &mut BlockingClient) -> Vec<(u32, bourse_engine::Balance)> {
    let request_id = client.send(&ClientRequest::BalanceQuery).expect("send");
    expect(client, "balances", |m| match m {
        Incoming::Balances { request_id: r, balances } if *r == request_id => {
            Some(balances.clone())
        }
        _ => None,
    })
}

/// An admin `StatusQuery`: the engine's last applied index and state hash.
pub fn status(admin: &mut BlockingClient) -> StatusReport {
    let request_id = admin.send(&ClientRequest::StatusQuery).expect("send");
    expect(admin, "status", |m| match m {
        Incoming::Msg(ServerMessage::Status(s)) if s.request_id == request_id => Some(*s),
        _ => None,
    })
}

/// A well-behaved session (the maker) that places orders before and after some abuse
/// and checks that it gets exactly the normal answers. `log` is every command the test
/// expects the engine to have applied, in order, for the reference engine to replay.
pub struct Witness {
    pub client: BlockingClient,
    pub account: u64,
    next_cl: u64,
    last_seq: Seq,
    pub log: Vec<Command>,
}

impl Witness {
    /// The maker (key 100), logged on.
    pub fn maker(server: &LiveServer) -> Witness {
        Witness::new(server.connect(MAKER), MAKER)
    }

    /// A witness on `account`'s key, live from the stream's next message (the stream
    /// already holds what happened before, e.g. the bootstrap deposits).
    pub fn new(client: BlockingClient, account: u64) -> Witness {
        let last_seq = client.established.ack.next_seq - 1;
        Witness { client, account, next_cl: 1, last_seq, log: Vec::new() }
    }

    /// Rests a small ask far above anything else. The next sequenced messages must be
    /// exactly its `Accepted` and the hold's `BalanceUpdate`, numbered without a gap:
    /// nothing of anyone else's leaks in, nothing is lost. Heartbeats may come between.
    pub fn place(&mut self) -> AcceptedReport {
        let cl = 1_000_000 + self.next_cl;
        // 60_000.00 USDT and up, 0.01 BTC: never crosses anything in these tests.
        let price = 60_000_000_000 + self.next_cl * 1_000_000;
        self.next_cl += 1;
        let request = limit_order(BTC_USDT, Side::Sell, price, 1_000_000, cl);
        let request_id = self.client.send(&request).expect("witness sends");
        let (seq, accepted) = self.next_sequenced();
        let Incoming::Msg(ServerMessage::Accepted(accepted)) = accepted else {
            panic!("witness expected Accepted, got {accepted:?}")
        };
        assert_eq!((accepted.request_id, accepted.client_order_id), (request_id, cl));
        assert_eq!(seq, self.last_seq + 1, "witness sequence");
        let (seq, hold) = self.next_sequenced();
        match hold {
            Incoming::Msg(ServerMessage::BalanceUpdate(b)) => {
                assert_eq!((b.asset, b.delta_held), (BTC, 1_000_000), "{b:?}");
            }
            other => panic!("witness expected the hold, got {other:?}"),
        }
        assert_eq!(seq, self.last_seq + 2, "witness sequence");
        self.last_seq = seq;
        self.log.push(as_command(self.account, &request));
        accepted
    }

    /// Keeps the witness's connection from idling out during a long wait.
    pub fn keepalive(&mut self) {
        self.client.send(&ClientRequest::Heartbeat { time_ns: 0 }).expect("witness heartbeat");
    }

    /// After activity other than `place` (trades, batches): reads until the witness has
    /// been quiet for a moment and takes up the sequence from there.
    pub fn resync(&mut self) {
        while self.client.recv(Duration::from_millis(100)).is_ok() {}
        self.last_seq = self.client.last_seq();
    }

    fn next_sequenced(&mut self) -> (Seq, Incoming) {
        loop {
            match self.client.recv(TIMEOUT) {
                Ok((_, Incoming::Msg(ServerMessage::Heartbeat { .. }))) => continue,
                Ok(next) => return next,
                Err(e) => panic!("witness: {e}"),
            }
        }
    }
}

/// Stops the server and checks that its engine holds exactly what `log` produces on a
/// fresh engine from the same bootstrap: nothing else reached the engine (same last
/// index) and nothing else changed (same balances, orders, books). Returns the engine.
pub fn finish(server: LiveServer, config: &Config, log: &[Command]) -> Exchange {
    let report = server.stop();
    let mut reference = Reference::new(config);
    for command in log {
        reference.apply(command);
    }
    assert_same_state(&report.engine, &reference.engine);
    assert_eq!(
        report.engine.last_index(),
        reference.engine.last_index(),
        "exactly the expected commands reached the engine"
    );
    report.engine
}

/// A client that keeps every message it reads, in order, including the ones it waited
/// for: the complete stream a session saw.
pub struct Recorder {
    pub client: BlockingClient,
    pub seen: Vec<(Seq, Incoming)>,
}

impl Recorder {
    pub fn new(client: BlockingClient) -> Recorder {
        Recorder { client, seen: Vec::new() }
    }

    /// Reads (and records) until `pick` accepts a message.
    pub fn until<T>(&mut self, what: &str, mut pick: impl FnMut(&Incoming) -> Option<T>) -> T {
        loop {
            let (seq, message) =
                self.client.recv(TIMEOUT).unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            let picked = pick(&message);
            self.seen.push((seq, message));
            if let Some(found) = picked {
                return found;
            }
        }
    }

    /// Sends an order and waits for its `Accepted`.
    pub fn place(&mut self, request: &ClientRequest) -> AcceptedReport {
        let request_id = self.client.send(request).expect("send");
        self.until("accepted", |m| match m {
            Incoming::Msg(ServerMessage::Accepted(a)) if a.request_id == request_id => Some(*a),
            Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == request_id => {
                panic!("order {request:?} rejected: {r:?}")
            }
            _ => None,
        })
    }

    /// Waits for the `Done` of `order_id`.
    pub fn done(&mut self, order_id: u64) -> DoneReport {
        self.until("done", |m| match m {
            Incoming::Msg(ServerMessage::Done(d)) if d.order_id == order_id => Some(*d),
            _ => None,
        })
    }
}

/// A fresh engine with the config's bootstrap applied: what the server started from.
pub struct Reference {
    pub engine: Exchange,
    events: Vec<Event>,
}

impl Reference {
    pub fn new(config: &Config) -> Reference {
        let mut reference = Reference {
            engine: Exchange::new(config.engine).expect("engine config"),
            events: Vec::new(),
        };
        for command in &config.bootstrap {
            reference.apply(command);
        }
        reference
    }

    /// Applies one command at the next index; returns its events.
    pub fn apply(&mut self, command: &Command) -> &[Event] {
        let index = self.engine.last_index() + 1;
        self.events.clear();
        self.engine.apply(index, index, command, &mut self.events).expect("next index applies");
        &self.events
    }
}

/// Everything observable about the engine's state except the log position and times:
/// accounts, every balance, every open order, every book, markets and assets.
pub fn assert_same_state(actual: &Exchange, expected: &Exchange) {
    actual.check_invariants().expect("server engine invariants");
    expected.check_invariants().expect("reference engine invariants");
    assert_eq!(actual.accounts(), expected.accounts(), "accounts");
    for account in expected.accounts() {
        assert_eq!(actual.balances(account), expected.balances(account), "balances of {account}");
        assert_eq!(
            actual.open_orders(account),
            expected.open_orders(account),
            "open orders of {account}"
        );
    }
    assert_eq!(actual.markets(), expected.markets(), "markets");
    assert_eq!(actual.assets(), expected.assets(), "assets");
    for market in expected.markets() {
        let id = market.spec.market;
        assert_eq!(actual.depth(id, usize::MAX), expected.depth(id, usize::MAX), "book {id}");
    }
}

/// How a raw connection ended.
#[derive(Debug)]
pub struct Ending {
    /// Every message before the end, in order.
    pub messages: Vec<(Seq, Incoming)>,
    /// The `Logout` that came last, if any.
    pub logout: Option<SessionReason>,
    /// The `LogonReject` that came last, if any.
    pub logon_reject: Option<LogonReject>,
}

impl Ending {
    /// The session rejects among the messages: (request id, refused type, reason).
    pub fn session_rejects(&self) -> Vec<(RequestId, BodyType, SessionReason)> {
        self.messages
            .iter()
            .filter_map(|(_, m)| match m {
                Incoming::Msg(ServerMessage::Rejected(RejectReport {
                    request_id,
                    refused_type,
                    cause: RejectCause::Session(reason),
                    ..
                })) => Some((*request_id, *refused_type, *reason)),
                _ => None,
            })
            .collect()
    }
}

/// A connection over a bare `TcpStream`, for tests that send bytes no client library
/// would: it frames and decodes with the library's codec but sends whatever it is given.
pub struct RawConn {
    pub stream: TcpStream,
    codec: ClientCodec,
    encoder: Encoder,
    /// The nonce of the server's logon challenge.
    pub nonce: [u8; 32],
    inbox: VecDeque<(Seq, Incoming)>,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    /// Connects and reads the logon challenge.
    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::try_connect(addr).expect("the server closed the connection before its challenge")
    }

    /// Connects and reads the logon challenge; `None` if the server closes the
    /// connection instead (it does so over `connections_max`).
    pub fn try_connect(addr: SocketAddr) -> Option<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        RawConn::challenged(stream)
    }

    /// `try_connect` from the local address `source` (any 127/8 address works on
    /// Linux loopback), so a test can play clients from several IPs.
    pub fn try_connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Option<RawConn> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
        socket.bind(&SocketAddr::new(source, 0).into()).expect("bind the source address");
        socket.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
        RawConn::challenged(socket.into())
    }

    /// Reads the logon challenge on a connected stream; `None` if the server closes it.
    fn challenged(stream: TcpStream) -> Option<RawConn> {
        stream.set_nodelay(true).unwrap();
        let mut conn = RawConn {
            stream,
            codec: ClientCodec::new(),
            encoder: Encoder::for_client(),
            nonce: [0; 32],
            inbox: VecDeque::new(),
            buf: vec![0; RAW_READ_BYTES],
            eof: false,
        };
        match conn.recv(TIMEOUT) {
            Some((0, Incoming::Msg(ServerMessage::LogonChallenge { nonce, protocol_version }))) => {
                assert_eq!(protocol_version, bourse_net::wire::PROTOCOL_VERSION);
                conn.nonce = nonce;
            }
            None => return None,
            other => panic!("expected a logon challenge, got {other:?}"),
        }
        Some(conn)
    }

    /// Connects and logs on with `options`; panics unless acknowledged.
    pub fn logon(addr: SocketAddr, options: LogonOptions) -> (RawConn, LogonAck) {
        let mut conn = RawConn::connect(addr);
        let logon = ClientCodec::logon_request(&options, &conn.nonce);
        conn.send(1, &logon);
        match conn.recv(TIMEOUT) {
            Some((0, Incoming::Msg(ServerMessage::LogonAck(ack)))) => (conn, ack),
            other => panic!("expected a logon ack, got {other:?}"),
        }
    }

    /// The frame of `request` with envelope `request_id`, as a client library sends it.
    pub fn frame(&mut self, request_id: RequestId, request: &ClientRequest) -> Vec<u8> {
        let mut out = Vec::new();
        self.encoder.encode_client(request_id, request, &mut out).expect("encodes");
        out
    }

    pub fn send(&mut self, request_id: RequestId, request: &ClientRequest) {
        let frame = self.frame(request_id, request);
        self.send_raw(&frame);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next message, `None` at EOF (or reset); panics after `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<(Seq, Incoming)> {
        match self.try_recv(timeout) {
            Ok(next) => next,
            Err(()) => panic!("no message from the server within {timeout:?}"),
        }
    }

    /// The next message, `Ok(None)` at EOF (or reset), `Err(())` after `timeout`.
    pub fn try_recv(&mut self, timeout: Duration) -> Result<Option<(Seq, Incoming)>, ()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(next) = self.inbox.pop_front() {
                return Ok(Some(next));
            }
            if self.eof {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(());
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    let mut out = Vec::new();
                    self.codec.push(&self.buf[..n], &mut out).expect("server frames decode");
                    self.inbox.extend(out);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads until the server closes the connection (EOF); panics if it does not within
    /// `timeout`, or if anything follows a `Logout` / `LogonReject`.
    pub fn read_to_end(&mut self, timeout: Duration) -> Ending {
        let deadline = Instant::now() + timeout;
        let mut ending = Ending { messages: Vec::new(), logout: None, logon_reject: None };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.try_recv(left).unwrap_or_else(|()| {
                panic!("the server did not close the connection within {timeout:?}: {ending:?}")
            });
            let Some((seq, message)) = next else { return ending };
            assert!(
                ending.logout.is_none() && ending.logon_reject.is_none(),
                "{message:?} after the end of {ending:?}"
            );
            match message {
                Incoming::Msg(ServerMessage::Logout { reason }) => ending.logout = Some(reason),
                Incoming::Msg(ServerMessage::LogonReject(r)) => ending.logon_reject = Some(r),
                other => ending.messages.push((seq, other)),
            }
        }
    }

    /// Shuts both directions of the socket, as a dying client would.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The `Done` reasons a stream of messages reports, for order `order_id`.
pub fn done_reasons(messages: &[(Seq, Incoming)], order_id: u64) -> Vec<DoneReason> {
    messages
        .iter()
        .filter_map(|(_, m)| match m {
            Incoming::Msg(ServerMessage::Done(d)) if d.order_id == order_id => Some(d.reason),
            _ => None,
        })
        .collect()
}

/// A seed from `env` if set (to replay a failure), otherwise from the clock; printed
/// either way.
pub fn seed_from_env(env: &str) -> u64 {
    let seed = match std::env::var(env) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{env}={text:?} is not a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    eprintln!("seed: {seed} (replay the clients' command streams with {env}={seed})");
    seed
}
