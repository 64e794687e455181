//! Crash tests: the real `bourse` daemon, `kill -9`ed at random moments under load from
//! the client library, restarted on the same data directory, and checked.
//!
//! Each round starts the daemon, checks what the previous crash left (below), runs
//! three traders (place, cancel, amend around one price, so orders cross), a trader
//! whose report stream is followed across crashes (alice) and the admin key (deposits
//! and transfers with unique tx ids) until SIGKILL at a random moment. Every command
//! whose outcome reached its client before the kill (Accepted, Amended, Done of a
//! cancel, AdminAck, or the engine's Rejected) is recorded with the log index its
//! report named. Then, with the daemon dead:
//!
//! - the log is replayed from index 1 with no snapshot, read-only, through a fresh
//!   engine: in `disk` mode every acknowledged command is in it at the index its ack
//!   named, with the same key, request id and command, and the replay produces the
//!   acknowledged outcome there (the order id accepted, the tx applied...);
//! - the replayed engine's invariants hold (conservation, holds, books);
//! - the restarted daemon reports (StatusQuery) exactly that last index and state hash,
//!   although it recovered from its newest snapshot plus the log after it;
//! - repeating a few acknowledged deposits/transfers answers `duplicate = true`;
//! - alice resumes her stream from the first sequence number she had not processed and
//!   gets exactly the rest, in order, once; a second key of her account (201) resumes
//!   from 1 and sees the same stream, message for message, as alice saw before the crash;
//!   her request in flight at the kill has its outcome in the resumed stream if and only
//!   if it reached the log.
//!
//! `BOURSE_CRASH_SEED` replays the command streams and kill moments of a run (thread
//! interleavings are the machine's); `BOURSE_CRASH_ROUNDS` sets the number of kills
//! (default 20).

mod daemon;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bourse_engine::{
    Command, DoneReason, Event, EventKind, LogIndex, OrderRef, OrderType, RejectReason, Side,
    StpMode, TimeInForce,
};
use bourse_net::client::{BlockingClient, ClientError, Incoming, LogonOptions};
use bourse_net::protocol::*;
use daemon::*;

/// The trader whose report stream is followed across crashes.
const ALICE: u64 = 200;
/// A second key of alice's account: the same stream, under its own numbering.
const ALICE_MIRROR: u64 = 201;
/// Load traders (demo accounts with large balances; trader key N acts for account N).
const TRADERS: [u64; 3] = [1001, 1002, 1003];
/// Accounts the admin deposits to and transfers between.
const LEDGER_ACCOUNTS: [u64; 4] = [1001, 1002, 1003, 1004];
const BTC_USDT: u32 = 1;
const BTC: u32 = 1;
const USDT: u32 = 2;
/// 50,000.00 USDT per BTC; the demo's BTC-USDT tick (0.01 USDT) and lot (0.0001 BTC).
const PRICE: u64 = 50_000_000_000;
const TICK: u64 = 10_000;
const LOT: u64 = 10_000;
/// Default number of kills.
const ROUNDS_DEFAULT: u64 = 20;
/// Transaction ids of one round: `round * TX_PER_ROUND + n` (unique over the test).
const TX_PER_ROUND: u64 = 1 << 24;
/// Pause between two of alice's commands, which keeps her stream (and so every
/// snapshot, which carries the streams) small while leaving her a request in flight
/// at many of the kills.
const ALICE_PAUSE: Duration = Duration::from_micros(500);
/// Acknowledged ledger commands repeated after each restart (must say duplicate).
const DUPLICATE_PROBES: usize = 3;

/// What a client was told about one of its commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Accepted { order_id: u64 },
    Rejected { reason: RejectReason, duplicate: bool },
    Amended { order_id: u64 },
    Cancelled { order_id: u64 },
    Ledger { tx: u64, duplicate: bool },
}

/// A command whose outcome reached its client: it is committed.
#[derive(Clone, Debug)]
struct Ack {
    key: u64,
    request_id: RequestId,
    /// The engine command the request became (the session fills in the account).
    command: Command,
    /// The admin request, for repeating a ledger command after a restart.
    admin: Option<AdminRequest>,
    outcome: Outcome,
    index: LogIndex,
}

/// What a request waits for besides `Rejected` with its request id.
#[derive(Clone, Copy, Debug)]
enum Waiting {
    Order,
    Cancel { order_id: u64 },
    Amend { order_id: u64 },
    Admin,
}

#[derive(Clone, Copy, Debug)]
struct OpenOrder {
    order_id: u64,
    price: u64,
    qty: u64,
}

/// One logged-on connection of a load client: every sequenced message is checked for
/// its number (no gap, no repeat on a live connection) and, for alice, recorded.
struct Session {
    key: u64,
    client: BlockingClient,
    next_seq: Seq,
    record: bool,
    seen: Vec<(Seq, Incoming)>,
    open: Vec<OpenOrder>,
    acks: Vec<Ack>,
    /// The request sent whose outcome has not arrived (at most one: clients wait).
    in_flight: Option<(RequestId, Command)>,
    /// Highest log index named by a sequenced message processed.
    last_index_seen: LogIndex,
}

impl Session {
    fn new(key: u64, client: BlockingClient, record: bool) -> Session {
        let next_seq = client.established.ack.replay_from;
        Session {
            key,
            client,
            next_seq,
            record,
            seen: Vec::new(),
            open: Vec::new(),
            acks: Vec::new(),
            in_flight: None,
            last_index_seen: 0,
        }
    }

    /// Processes one message: sequence check, own open orders, recording.
    fn handle(&mut self, seq: Seq, message: &Incoming) {
        if seq == 0 {
            return;
        }
        assert_eq!(
            seq, self.next_seq,
            "key {}: gap or repeat in the stream: {message:?}",
            self.key
        );
        self.next_seq += 1;
        if let Some(index) = message_index(message) {
            self.last_index_seen = self.last_index_seen.max(index);
        }
        match message {
            Incoming::Msg(ServerMessage::Accepted(a)) if a.order_type == OrderType::Limit => {
                self.open.push(OpenOrder { order_id: a.order_id, price: a.price, qty: a.qty })
            }
            Incoming::Msg(ServerMessage::Done(d)) => self.open.retain(|o| o.order_id != d.order_id),
            Incoming::Msg(ServerMessage::Amended(a)) => {
                if let Some(o) = self.open.iter_mut().find(|o| o.order_id == a.order_id) {
                    (o.price, o.qty) = (a.price, a.qty);
                }
            }
            _ => {}
        }
        if self.record {
            self.seen.push((seq, message.clone()));
        }
    }

    /// Sends `request` and reads until its outcome; records the acknowledgement.
    fn request(
        &mut self,
        request: &ClientRequest,
        command: Command,
        waiting: Waiting,
    ) -> Result<(), ClientError> {
        let request_id = self.client.send(request)?;
        self.in_flight = Some((request_id, command));
        loop {
            let (seq, message) = self.client.recv(TIMEOUT)?;
            self.handle(seq, &message);
            if let Some((outcome, index)) = outcome_of(&message, request_id, waiting) {
                let admin = match request {
                    ClientRequest::Admin(admin) => Some(*admin),
                    _ => None,
                };
                self.in_flight = None;
                let key = self.key;
                self.acks.push(Ack { key, request_id, command, admin, outcome, index });
                return Ok(());
            }
        }
    }
}

/// The log index a sequenced message names.
fn message_index(message: &Incoming) -> Option<LogIndex> {
    let Incoming::Msg(message) = message else { return None };
    Some(match message {
        ServerMessage::Accepted(a) => a.index,
        ServerMessage::Rejected(r) => r.index,
        ServerMessage::Trade(t) => t.index,
        ServerMessage::Done(d) => d.index,
        ServerMessage::Amended(a) => a.index,
        ServerMessage::MassCancelDone(m) => m.index,
        ServerMessage::BalanceUpdate(b) => b.index,
        ServerMessage::AdminAck(a) => a.index,
        _ => return None,
    })
}

/// The outcome `message` reports for the request `request_id`, if it does.
fn outcome_of(
    message: &Incoming,
    request_id: RequestId,
    waiting: Waiting,
) -> Option<(Outcome, LogIndex)> {
    let Incoming::Msg(message) = message else { return None };
    match (message, waiting) {
        (ServerMessage::Rejected(r), _) if r.request_id == request_id => match r.cause {
            RejectCause::Engine { reason, .. } => {
                Some((Outcome::Rejected { reason, duplicate: r.duplicate }, r.index))
            }
            RejectCause::Session(reason) => panic!("request {request_id} refused: {reason}"),
        },
        (ServerMessage::Accepted(a), Waiting::Order) if a.request_id == request_id => {
            Some((Outcome::Accepted { order_id: a.order_id }, a.index))
        }
        (ServerMessage::Amended(a), Waiting::Amend { .. }) if a.request_id == request_id => {
            Some((Outcome::Amended { order_id: a.order_id }, a.index))
        }
        // A Done carries no request id; only this client's cancel (or amend) cancels
        // its order, and it waits for each before sending the next.
        (ServerMessage::Done(d), Waiting::Cancel { order_id } | Waiting::Amend { order_id })
            if d.order_id == order_id && d.reason == DoneReason::Cancelled =>
        {
            Some((Outcome::Cancelled { order_id }, d.index))
        }
        (ServerMessage::AdminAck(a), Waiting::Admin) if a.request_id == request_id => {
            Some((Outcome::Ledger { tx: a.tx, duplicate: a.duplicate }, a.index))
        }
        _ => None,
    }
}

fn limit_order(side: Side, price: u64, qty: u64, cl: u64, tif: TimeInForce) -> NewOrder {
    NewOrder {
        market: BTC_USDT,
        client_order_id: cl,
        side,
        order_type: OrderType::Limit,
        tif,
        post_only: false,
        price,
        qty,
        quote_budget: 0,
        stp: StpMode::CancelTaker,
    }
}

/// One step of a trader: a crossing order around `PRICE`, or a cancel or amend of one
/// of its open orders.
fn trade_once(session: &mut Session, rng: &mut Rng, next_cl: &mut u64) -> Result<(), ClientError> {
    let account = session.key_account();
    let pick = (!session.open.is_empty()).then(|| {
        let k = rng.range(0, session.open.len() as u64) as usize;
        session.open[k]
    });
    let roll = rng.range(0, 100);
    match pick {
        Some(order) if roll < 25 => {
            let target = OrderRef::Id(order.order_id);
            let command = Command::Cancel { account, order: target };
            let waiting = Waiting::Cancel { order_id: order.order_id };
            session.request(&ClientRequest::Cancel(target), command, waiting)
        }
        Some(order) if roll < 40 => {
            let target = OrderRef::Id(order.order_id);
            // A new price, or more quantity: never at or below what has filled, so the
            // outcome is Amended or Rejected, not a cancel.
            let (price, qty) = if rng.chance(50) {
                let price = PRICE + rng.range(0, 11) * TICK - 5 * TICK;
                (if price == order.price { price + TICK } else { price }, 0)
            } else {
                (0, order.qty + LOT * rng.range(1, 3))
            };
            let command = Command::Amend { account, order: target, price, qty };
            let waiting = Waiting::Amend { order_id: order.order_id };
            session.request(&ClientRequest::Amend { order: target, price, qty }, command, waiting)
        }
        _ => {
            let side = if rng.chance(50) { Side::Buy } else { Side::Sell };
            let price = PRICE + rng.range(0, 11) * TICK - 5 * TICK;
            let qty = LOT * rng.range(1, 6);
            let tif = if rng.chance(10) { TimeInForce::Ioc } else { TimeInForce::Gtc };
            *next_cl += 1;
            let order = limit_order(side, price, qty, *next_cl, tif);
            let command = Command::Place(order.to_place(account));
            session.request(&ClientRequest::NewOrder(order), command, Waiting::Order)
        }
    }
}

impl Session {
    fn key_account(&self) -> u64 {
        match self.key {
            ALICE | ALICE_MIRROR => ALICE,
            key => key,
        }
    }
}

/// One step of the admin: a deposit or a transfer with a fresh tx id.
fn admin_once(session: &mut Session, rng: &mut Rng, next_tx: &mut u64) -> Result<(), ClientError> {
    *next_tx += 1;
    let tx = *next_tx;
    let admin = if rng.chance(50) {
        let accounts = [ALICE, 1001, 1002, 1003, 1004];
        let account = accounts[rng.range(0, accounts.len() as u64) as usize];
        let (asset, amount) = if rng.chance(70) {
            (USDT, rng.range(1, 1000) * 1_000_000)
        } else {
            (BTC, rng.range(1, 10) * LOT)
        };
        AdminRequest::Deposit { tx, account, asset, amount }
    } else {
        let from = LEDGER_ACCOUNTS[rng.range(0, 4) as usize];
        let to = LEDGER_ACCOUNTS[(rng.range(1, 4) as usize + (from - 1001) as usize) % 4];
        let amount = rng.range(1, 100) * 1_000_000;
        AdminRequest::Transfer { tx, from, to, asset: USDT, amount, create_account: false }
    };
    session.request(&ClientRequest::Admin(admin), admin.to_command(), Waiting::Admin)
}

/// What a load thread hands back after the kill.
struct LoadResult {
    session: Option<Session>,
    /// An error that happened before the kill (a real failure).
    early_error: Option<String>,
}

/// Runs `step` on a session until the connection dies; an error before `killed` is set
/// is reported as a failure.
fn load_thread(
    name: String,
    connect: impl FnOnce() -> Result<Session, ClientError> + Send + 'static,
    mut step: impl FnMut(&mut Session) -> Result<(), ClientError> + Send + 'static,
    killed: Arc<AtomicBool>,
) -> JoinHandle<LoadResult> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut session = match connect() {
                Ok(session) => session,
                Err(e) => {
                    let early = (!killed.load(Ordering::SeqCst)).then(|| format!("{name}: {e}"));
                    return LoadResult { session: None, early_error: early };
                }
            };
            // Stop sending once the kill is on its way: a request written to a dead
            // connection would only count as "in flight" without ever having had a chance.
            while !killed.load(Ordering::SeqCst) {
                if let Err(error) = step(&mut session) {
                    let early =
                        (!killed.load(Ordering::SeqCst)).then(|| format!("{name}: {error}"));
                    return LoadResult { session: Some(session), early_error: early };
                }
            }
            LoadResult { session: Some(session), early_error: None }
        })
        .expect("spawn a load thread")
}

/// Alice's stream as she processed it, across every connection and crash.
#[derive(Default)]
struct AliceStream {
    /// Every sequenced message she processed, by sequence number.
    seen: BTreeMap<Seq, Incoming>,
    /// Last sequence number processed.
    last: Seq,
    /// Highest log index among the messages processed.
    last_index: LogIndex,
    /// Her request whose outcome had not arrived when the daemon died.
    in_flight: Option<(RequestId, Command)>,
    /// The first sequence number of her previous connection: the mirror key checks
    /// the stream from there, which spans the last crash and the snapshots before it.
    previous_from: Seq,
    /// The first sequence number of her current connection.
    round_from: Seq,
}

/// Everything the test knows, across rounds.
struct Crash {
    seed: u64,
    /// Holds the data directory for the run (removed when the test passes).
    _dir: TestDir,
    config: std::path::PathBuf,
    data: std::path::PathBuf,
    engine: bourse_engine::Config,
    disk: bool,
    acks: Vec<Ack>,
    alice: AliceStream,
    /// Whether alice's stream is checked (disk mode only: memory mode may lose what she
    /// was told).
    follow_alice: bool,
    next_tx: u64,
    next_cl: u64,
    /// What became of alice's request in flight at each kill.
    in_flight_fates: Vec<InFlight>,
}

/// What the replay after a kill found, for the next restart to compare.
struct AfterKill {
    last_index: LogIndex,
    state_hash: [u8; 32],
    /// Alice's entries after the last index she saw a report for.
    alice_late: Vec<LogEntry>,
}

impl Crash {
    fn new(name: &str, seed: u64, settings: &Settings) -> Crash {
        let dir = TestDir::new(name);
        let data = dir.join("data");
        let config = write_config(&dir, "bourse", &data, settings);
        let engine = engine_config(&config);
        Crash {
            seed,
            config,
            data,
            engine,
            disk: settings.durability == "disk",
            acks: Vec::new(),
            alice: AliceStream::default(),
            follow_alice: settings.durability == "disk",
            next_tx: 0,
            next_cl: 0,
            in_flight_fates: Vec::new(),
            _dir: dir,
        }
    }

    /// Replays the dead daemon's log from scratch and checks every acknowledgement
    /// against it. In memory mode the acknowledgements beyond the log are dropped (and
    /// counted): that is the window memory durability leaves open.
    fn check_disk(&mut self, round: u64) -> AfterKill {
        let mut by_index: HashMap<LogIndex, usize> = HashMap::with_capacity(self.acks.len());
        for (k, ack) in self.acks.iter().enumerate() {
            let earlier = by_index.insert(ack.index, k);
            assert!(earlier.is_none(), "two acknowledgements name index {}", ack.index);
        }
        let mut mismatches = Vec::new();
        let mut verified = 0usize;
        let mut alice_late = Vec::new();
        let alice_last_index = self.alice.last_index;
        let replay = replay_log(&self.data, self.engine, LogIndex::MAX, &mut |entry, events| {
            if let Some(&k) = by_index.get(&entry.index) {
                verified += 1;
                if let Err(why) = check_ack(&self.acks[k], entry, events) {
                    mismatches.push(why);
                }
            }
            if entry.origin.is_some_and(|o| o.stream == ALICE) && entry.index > alice_last_index {
                alice_late.push(entry.clone());
            }
        });
        assert!(
            mismatches.is_empty(),
            "round {round} (seed {}): {} acknowledged commands differ in the log, e.g. {:?}",
            self.seed,
            mismatches.len(),
            &mismatches[..mismatches.len().min(5)]
        );
        let missing: Vec<&Ack> = self.acks.iter().filter(|a| a.index > replay.last_index).collect();
        if self.disk {
            assert!(
                missing.is_empty(),
                "round {round} (seed {}): disk mode lost {} acknowledged commands: the log \
                 ends at {} but these were acknowledged: {:?}",
                self.seed,
                missing.len(),
                replay.last_index,
                &missing[..missing.len().min(5)]
            );
        } else if !missing.is_empty() {
            // Memory durability acknowledges once sequenced, before the fsync: a kill -9
            // loses what was still queued or being written (replication/README.md,
            // "Durability modes"). What is left must still be a clean prefix.
            eprintln!(
                "round {round}: memory mode lost {} acknowledged commands after index {} \
                 (acknowledged before their fsync; allowed in this mode)",
                missing.len(),
                replay.last_index
            );
            self.acks.retain(|a| a.index <= replay.last_index);
        }
        assert_eq!(verified, self.acks.len(), "every acknowledged index was replayed");
        replay.engine.check_invariants().unwrap_or_else(|e| {
            panic!(
                "round {round} (seed {}): the replayed engine breaks an invariant: {e}",
                self.seed
            )
        });
        if let Some(torn) = &replay.torn_tail {
            eprintln!("round {round}: the kill left a torn tail: {torn}");
        }
        AfterKill { last_index: replay.last_index, state_hash: replay.state_hash(), alice_late }
    }
}

/// Checks that the log entry at an acknowledged index is the acknowledged command and
/// that replaying it produces the acknowledged outcome.
fn check_ack(ack: &Ack, entry: &LogEntry, events: &[Event]) -> Result<(), String> {
    let origin = entry.origin.map(|o| (o.stream, o.request_id));
    if origin != Some((ack.key, ack.request_id)) || entry.command != ack.command {
        return Err(format!("index {}: acknowledged {ack:?}, log has {entry:?}", ack.index));
    }
    let found = events.iter().any(|e| match (ack.outcome, &e.kind) {
        (Outcome::Accepted { order_id }, EventKind::Accepted(a)) => a.order_id == order_id,
        (Outcome::Rejected { reason, duplicate }, EventKind::Rejected(r)) => {
            (r.reason, r.duplicate) == (reason, duplicate)
        }
        (Outcome::Amended { order_id }, EventKind::Amended(a)) => a.order_id == order_id,
        (Outcome::Cancelled { order_id }, EventKind::Done(d)) => {
            d.order_id == order_id && d.reason == DoneReason::Cancelled
        }
        (Outcome::Ledger { tx, duplicate }, EventKind::Ledger(l)) => {
            (l.tx, l.duplicate) == (tx, duplicate)
        }
        _ => false,
    });
    if !found {
        return Err(format!("index {}: acknowledged {ack:?}, replay gives {events:?}", ack.index));
    }
    Ok(())
}

/// A sequenced message with the request id taken out: two keys of one account get the
/// same stream except for the request ids, which only the sender's key sees.
fn without_request_id(message: &Incoming) -> Incoming {
    let mut message = message.clone();
    if let Incoming::Msg(m) = &mut message {
        match m {
            ServerMessage::Accepted(a) => a.request_id = 0,
            ServerMessage::Rejected(r) => r.request_id = 0,
            ServerMessage::Amended(a) => a.request_id = 0,
            ServerMessage::MassCancelDone(m) => m.request_id = 0,
            ServerMessage::AdminAck(a) => a.request_id = 0,
            _ => {}
        }
    }
    message
}

/// The request id a sequenced message carries (0: none, or another key's request).
fn request_id_of(message: &Incoming) -> RequestId {
    match message {
        Incoming::Msg(ServerMessage::Accepted(a)) => a.request_id,
        Incoming::Msg(ServerMessage::Rejected(r)) => r.request_id,
        Incoming::Msg(ServerMessage::Amended(a)) => a.request_id,
        Incoming::Msg(ServerMessage::MassCancelDone(m)) => m.request_id,
        _ => 0,
    }
}

/// Reads the `count` sequenced messages a resuming logon replays, from `first` on.
fn read_replay(client: &mut BlockingClient, first: Seq, count: u64) -> Vec<(Seq, Incoming)> {
    let mut replayed = Vec::with_capacity(count as usize);
    while (replayed.len() as u64) < count {
        let (seq, message) =
            client.recv(TIMEOUT).unwrap_or_else(|e| panic!("reading the replayed stream: {e}"));
        if seq == 0 {
            continue;
        }
        assert_eq!(seq, first + replayed.len() as u64, "replay out of order: {message:?}");
        replayed.push((seq, message));
    }
    replayed
}

impl Crash {
    /// Alice resumes from the first sequence number she has not processed; returns her
    /// connection, caught up, for this round's load.
    fn resume_alice(&mut self, addr: SocketAddr, after: Option<&AfterKill>) -> Session {
        let from = self.alice.last + 1;
        self.alice.previous_from = self.alice.round_from;
        self.alice.round_from = from;
        let options =
            LogonOptions { session_id: ALICE, resume_from_seq: from, ..LogonOptions::demo(ALICE) };
        let mut client = connect_with(addr, options).unwrap_or_else(|e| {
            panic!("alice resumes from {from} after the restart (seed {}): {e}", self.seed)
        });
        let ack = client.established.ack;
        assert_eq!(ack.replay_from, from, "alice's replay starts where she stopped");
        assert_eq!(ack.replay_count, ack.next_seq - from, "alice gets everything after it");
        let resumed = read_replay(&mut client, from, ack.replay_count);
        let in_flight = self.alice.in_flight.take();
        if let (Some(after), Some((request_id, command))) = (after, &in_flight) {
            let fate = check_in_flight(&resumed, &after.alice_late, *request_id, command);
            self.in_flight_fates.push(fate);
        }
        for (seq, message) in &resumed {
            // Every older request of hers was answered (and processed) before she sent
            // the next, so only the one in flight can be answered in what she missed.
            let id = request_id_of(message);
            assert!(
                id == 0 || Some(id) == in_flight.as_ref().map(|f| f.0),
                "seq {seq}: alice is answered again for request {id}: {message:?}"
            );
            self.alice.seen.insert(*seq, message.clone());
        }
        let mut session = Session::new(ALICE, client, true);
        for (seq, message) in &resumed {
            session.handle(*seq, message);
        }
        session.seen.clear();
        self.alice.last = ack.next_seq - 1;
        session
    }

    /// The mirror key resumes from where alice's previous connection started and must
    /// see her stream exactly: same numbers, same messages, across the crash. (One
    /// round's messages are far fewer than a stream retains, so `ResumeTooOld` here is
    /// a failure.)
    fn check_mirror(&self, addr: SocketAddr) {
        let from = self.alice.previous_from.max(1);
        let options = LogonOptions {
            session_id: ALICE_MIRROR,
            resume_from_seq: from,
            ..LogonOptions::demo(ALICE_MIRROR)
        };
        let mut client = connect_with(addr, options)
            .unwrap_or_else(|e| panic!("the mirror key resumes from {from}: {e}"));
        let ack = client.established.ack;
        assert_eq!(
            ack.next_seq,
            self.alice.last + 1,
            "both keys of account {ALICE} have the same stream length"
        );
        for (seq, message) in read_replay(&mut client, from, ack.replay_count) {
            let alice = self.alice.seen.get(&seq).unwrap_or_else(|| {
                panic!("seq {seq}: the mirror has it, alice never processed it")
            });
            assert_eq!(
                without_request_id(alice),
                without_request_id(&message),
                "seq {seq}: the stream after recovery differs from what alice was told"
            );
        }
    }
}

/// Alice's request in flight at the kill: its outcome is in the resumed stream if and
/// only if its command reached the log.
fn check_in_flight(
    resumed: &[(Seq, Incoming)],
    alice_late: &[LogEntry],
    request_id: RequestId,
    command: &Command,
) -> InFlight {
    assert!(alice_late.len() <= 1, "alice had one request in flight: {alice_late:?}");
    match alice_late.first() {
        Some(entry) => {
            let origin = entry.origin.map(|o| o.request_id);
            assert_eq!(
                (origin, &entry.command),
                (Some(request_id), command),
                "the entry after alice's last report is her request in flight"
            );
            let waiting = match *command {
                Command::Place(_) => Waiting::Order,
                Command::Cancel { order: OrderRef::Id(order_id), .. } => {
                    Waiting::Cancel { order_id }
                }
                Command::Amend { order: OrderRef::Id(order_id), .. } => Waiting::Amend { order_id },
                ref other => panic!("alice does not send {other:?}"),
            };
            let answered = resumed.iter().any(|(_, m)| {
                outcome_of(m, request_id, waiting).is_some_and(|(_, index)| index == entry.index)
            });
            assert!(
                answered,
                "her request {request_id} in flight reached the log at {}, but the resumed \
                 stream does not answer it: {resumed:?}",
                entry.index
            );
            InFlight::Answered
        }
        None => {
            assert!(
                resumed.iter().all(|(_, m)| request_id_of(m) != request_id),
                "the resumed stream answers request {request_id}, which is not in the log"
            );
            InFlight::Lost
        }
    }
}

/// What became of alice's request in flight at a kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    /// It reached the log: the resumed stream answered it.
    Answered,
    /// It never reached the log: nothing answers it (the client must send it again).
    Lost,
}

impl Crash {
    /// Repeats a few acknowledged ledger commands of the last round: the engine must
    /// know them (`duplicate = true`), so they survived the crash.
    fn probe_duplicates(&mut self, addr: SocketAddr, rng: &mut Rng, from_ack: usize) {
        let candidates: Vec<Ack> = self.acks[from_ack..]
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Ledger { duplicate: false, .. }))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return;
        }
        let mut admin = Session::new(ADMIN, connect(addr, ADMIN), false);
        for _ in 0..DUPLICATE_PROBES {
            let original = &candidates[rng.range(0, candidates.len() as u64) as usize];
            let request = original.admin.expect("a ledger ack has its admin request");
            admin
                .request(&ClientRequest::Admin(request), request.to_command(), Waiting::Admin)
                .expect("the repeated ledger command is answered");
            let repeat = admin.acks.last().expect("acknowledged");
            let Outcome::Ledger { tx, .. } = original.outcome else { unreachable!() };
            assert_eq!(
                repeat.outcome,
                Outcome::Ledger { tx, duplicate: true },
                "tx {tx} (acknowledged at index {}) is known after the crash",
                original.index
            );
        }
        self.acks.append(&mut admin.acks);
    }

    /// Starts the load threads; returns them with the flag to raise before the kill.
    fn start_load(
        &mut self,
        addr: SocketAddr,
        round: u64,
        alice: Session,
    ) -> (Vec<JoinHandle<LoadResult>>, Arc<AtomicBool>) {
        let killed = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (k, &key) in TRADERS.iter().enumerate() {
            let mut rng = Rng::new(self.seed ^ (round << 32) ^ key);
            let mut next_cl = self.next_cl + (k as u64) * TX_PER_ROUND;
            let connect =
                move || Ok(Session::new(key, connect_with(addr, LogonOptions::demo(key))?, false));
            let step = move |s: &mut Session| trade_once(s, &mut rng, &mut next_cl);
            threads.push(load_thread(format!("trader-{key}"), connect, step, killed.clone()));
        }
        let mut rng = Rng::new(self.seed ^ (round << 32) ^ ALICE);
        let mut next_cl = self.next_cl + 3 * TX_PER_ROUND;
        let step = move |s: &mut Session| {
            std::thread::sleep(ALICE_PAUSE);
            trade_once(s, &mut rng, &mut next_cl)
        };
        threads.push(load_thread("alice".into(), move || Ok(alice), step, killed.clone()));
        let mut rng = Rng::new(self.seed ^ (round << 32) ^ ADMIN);
        let mut next_tx = self.next_tx;
        let connect =
            move || Ok(Session::new(ADMIN, connect_with(addr, LogonOptions::demo(ADMIN))?, false));
        let step = move |s: &mut Session| admin_once(s, &mut rng, &mut next_tx);
        threads.push(load_thread("admin".into(), connect, step, killed.clone()));
        // Ids of the next round start past anything this one can use.
        self.next_cl += 4 * TX_PER_ROUND;
        self.next_tx = (round + 1) * TX_PER_ROUND;
        (threads, killed)
    }

    /// Collects what the load threads were told before the kill.
    fn collect_load(&mut self, threads: Vec<JoinHandle<LoadResult>>, round: u64) -> usize {
        let mut early = Vec::new();
        let mut acks = 0;
        for thread in threads {
            let result = thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            early.extend(result.early_error);
            let Some(mut session) = result.session else { continue };
            acks += session.acks.len();
            if session.key == ALICE {
                for (seq, message) in session.seen.drain(..) {
                    self.alice.seen.insert(seq, message);
                }
                self.alice.last = session.next_seq - 1;
                self.alice.last_index = self.alice.last_index.max(session.last_index_seen);
                self.alice.in_flight = session.in_flight.take();
            }
            self.acks.append(&mut session.acks);
        }
        assert!(
            early.is_empty(),
            "round {round} (seed {}): failures before the kill: {early:?}",
            self.seed
        );
        acks
    }
}

/// The recovery line of a restart: "recovered to index N (snapshot at S, K commands
/// replayed)", if the daemon printed one.
fn recovery_line(daemon: &Daemon) -> Option<String> {
    daemon.stderr_lines().into_iter().find(|l| l.starts_with("bourse: recovered to index"))
}

/// After the clean stop that ends a run: the state the daemon printed is the state of
/// replaying its whole log.
fn check_clean_stop(crash: &Crash, stderr: &str) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("bourse: stopped cleanly at log index"))
        .unwrap_or_else(|| panic!("no clean-stop line in:\n{stderr}"));
    let replay = replay_log(&crash.data, crash.engine, LogIndex::MAX, &mut |_, _| {});
    let expected = format!(
        "bourse: stopped cleanly at log index {} (state hash {},",
        replay.last_index,
        hex(&replay.state_hash())
    );
    assert!(line.starts_with(&expected), "{line:?} is not the replayed {expected:?}");
    replay.engine.check_invariants().expect("the final state keeps the invariants");
}

/// Runs `rounds` kills on one data directory; the last start ends with a clean stop.
fn run_crash_rounds(crash: &mut Crash, rounds: u64) {
    let started = Instant::now();
    let mut rng = Rng::new(crash.seed);
    let mut after: Option<AfterKill> = None;
    let mut last_round_acks = 0;
    for round in 0..=rounds {
        let mut daemon = Daemon::start(&crash.config);
        let addr = daemon.addr();
        let status = status(addr);
        if let Some(after) = &after {
            assert_eq!(
                (status.last_index, hex(&status.state_hash)),
                (after.last_index, hex(&after.state_hash)),
                "round {round} (seed {}): the recovered daemon differs from a replay of the \
                 whole log from index 1 ({})",
                crash.seed,
                recovery_line(&daemon).unwrap_or_default()
            );
        }
        let alice = if crash.follow_alice {
            let alice = crash.resume_alice(addr, after.as_ref());
            crash.check_mirror(addr);
            alice
        } else {
            Session::new(ALICE, connect(addr, ALICE), false)
        };
        if round > 0 {
            let from = last_round_acks.min(crash.acks.len());
            crash.probe_duplicates(addr, &mut rng, from);
        }
        if round == rounds {
            drop(alice);
            let stderr = daemon.terminate();
            check_clean_stop(crash, &stderr);
            eprintln!("clean stop after {rounds} kills, {:.1} s", started.elapsed().as_secs_f64());
            return;
        }
        last_round_acks = crash.acks.len();
        let (threads, killed) = crash.start_load(addr, round, alice);
        // Mostly mid-load; sometimes right away, while clients are still logging on.
        let delay_ms = if rng.chance(10) { rng.range(0, 40) } else { rng.range(150, 1000) };
        std::thread::sleep(Duration::from_millis(delay_ms));
        killed.store(true, Ordering::SeqCst);
        daemon.kill9();
        let acked = crash.collect_load(threads, round);
        let checked = crash.check_disk(round);
        let torn_snapshots = std::fs::read_dir(snapshot_dir(&crash.data)).map_or(0, |dir| {
            dir.flatten().filter(|f| f.path().extension() == Some("tmp".as_ref())).count()
        });
        eprintln!(
            "round {round}: kill -9 after {delay_ms} ms, {acked} acknowledged, log ends at {}, \
             {torn_snapshots} half-written snapshots left; started as: {}",
            checked.last_index,
            recovery_line(&daemon).unwrap_or_else(|| "fresh start".into())
        );
        after = Some(checked);
    }
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged_in_disk_mode() {
    let _one = exclusive();
    let seed = seed_from_env("BOURSE_CRASH_SEED");
    let rounds = match std::env::var("BOURSE_CRASH_ROUNDS") {
        Ok(text) => text.trim().parse().expect("BOURSE_CRASH_ROUNDS is a number"),
        Err(_) => ROUNDS_DEFAULT,
    };
    assert!(rounds >= 1, "at least one kill");
    let settings = Settings {
        // Snapshots every few hundred commands, so kills also land while one is being
        // written, and recoveries start from a snapshot plus the log after it.
        snapshot_every_entries: 400,
        extra_keys: vec![(ALICE_MIRROR, ALICE)],
        ..Settings::disk()
    };
    let mut crash = Crash::new("crash-disk", seed, &settings);
    run_crash_rounds(&mut crash, rounds);
    let snapshots = snapshots(&crash.data);
    assert!(!snapshots.is_empty(), "the runs took snapshots");
    let answered = crash.in_flight_fates.iter().filter(|f| **f == InFlight::Answered).count();
    eprintln!(
        "{} acknowledged commands checked over {rounds} kills; alice's stream: {} messages; \
         her request in flight at a kill: answered after the restart {answered} times, never \
         logged {} times; snapshots kept: {:?}",
        crash.acks.len(),
        crash.alice.last,
        crash.in_flight_fates.len() - answered,
        snapshots.iter().map(|s| s.index).collect::<Vec<_>>()
    );
}

#[test]
fn kill_9_in_memory_mode_leaves_a_consistent_prefix() {
    let _one = exclusive();
    let seed = seed_from_env("BOURSE_CRASH_SEED");
    // No snapshots: the log on disk alone must explain the recovered state. (With them,
    // memory mode may keep a snapshot newer than its log, which recovery handles by
    // restarting the log after the snapshot.)
    let settings = Settings { extra_keys: vec![(ALICE_MIRROR, ALICE)], ..Settings::memory() };
    let mut crash = Crash::new("crash-memory", seed, &settings);
    run_crash_rounds(&mut crash, 3);
    assert!(!crash.acks.is_empty(), "the load was acknowledged");
    assert!(Path::new(&crash.data).join("log").is_dir());
}
