//! The sans-IO session layer of one net core: every connection and every resumable
//! session it serves, as one deterministic state machine.
//!
//! The server (a later task) owns the sockets and the clock and only moves bytes:
//!
//! ```text
//! accept            -> gateway.on_connect(now, peer, random_nonce, &mut actions) -> ConnId
//! bytes from socket -> gateway.on_bytes(conn, now, bytes, &mut actions)
//! socket writable   -> write gateway.outbound(conn); gateway.consume_outbound(conn, n, now)
//! timer             -> gateway.on_tick(now, &mut actions)
//! socket gone       -> gateway.on_disconnected(conn, now, &mut actions)
//! shard events      -> gateway.on_events(origin, &events, &mut actions)
//! query answers     -> gateway.reply_balances / reply_open_orders / reply_status /
//!                      reply_reference / reply_book_snapshot / reject_subscribe
//! audit             -> gateway.take_audit(&mut records): logons, logouts, admin actions
//! actions           -> Submit (to the shard), Query (to the shard), Subscribe (book
//!                      snapshot from the shard), Close (flush, then close the socket)
//! ```
//!
//! # Connections and sessions
//!
//! A *connection* is one TCP connection: it awaits a logon, is logged on, or is closing.
//! A *session* is the resumable stream of sequenced server messages of one API key:
//! every key has exactly one, from the start, and its id is the key id. Sequence numbers
//! belong to the stream, so they continue across reconnects and across restarts of the
//! server. A key's stream receives its account's execution reports and balance updates
//! (an admin key's: the admin outcomes), whether or not it is connected.
//!
//! Only what derives from the command log is sequenced: execution reports, balance
//! updates and admin outcomes, in log order. Each command's log entry records the key and
//! request id it came from, so replaying the log rebuilds every stream exactly, request
//! ids included (`durable.rs`), and a snapshot carries the streams at its index
//! (`export_streams` / `import_streams`). Replies to queries, session-level rejects and
//! market data are answers on one connection, not history: they carry sequence number 0
//! and are not kept.
//!
//! # Exactly once
//!
//! Every sequenced message is appended to the stream's bounded [`Journal`] first; a
//! connection is fed from the journal through a cursor (`deliver_seq`) that only moves
//! forward. A reconnecting client names the first sequence number it has not processed;
//! the new connection's cursor starts there, so each message reaches the client once per
//! request and none is skipped. If the journal no longer holds that sequence number, the
//! logon is refused with `ResumeTooOld` (and the oldest retained / next numbers), never
//! silently patched over. A connection whose cursor falls behind the journal (it stopped
//! reading while messages kept coming) is closed with `SlowConsumer`. A stream may feed
//! several connections of its key, each with its own cursor; a logon that *resumes* takes
//! the stream over (the others get `Replaced`), since it is the same client continuing.
//!
//! Everything here lives on one net core and is `!Sync` by design.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use bourse_engine::{AccountId, AssetId, Balance, Command, DepthLevel, Event, LogIndex, MarketId};
use flatbuffers::VerifierOptions;

use crate::auth::{AuthError, KeyId, KeyStore, Role, NONCE_BYTES};
use crate::codec::{decode_client, DecodeError, Encoder};
use crate::frame::{self, FrameDecoder, FrameError};
use crate::journal::{Journal, JournalLimits, ResumeError};
use crate::protocol::*;
use crate::ratelimit::{RateLimit, TokenBucket, RATE_MAX};
use crate::view::{self, PublicItem};
use crate::wire::{self, PROTOCOL_VERSION};

/// Smallest configurable client frame limit: room for a logon and every other request.
pub const FRAME_BYTES_MAX_FLOOR: usize = 256;

/// Bytes an outbound buffer may hold beyond `outbound_bytes_max` for the few control
/// messages that must get through even to a slow reader (logon ack, logout).
pub const CONTROL_RESERVE_BYTES: usize = 1024;

/// Bounds and timings of a gateway. Every bound is enforced where it is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Largest client frame, bytes after the length prefix.
    pub frame_bytes_max: usize,
    /// The server sends a heartbeat after this long without other output.
    pub heartbeat_interval_ns: u64,
    /// A logged-on connection that sends nothing for this long is closed.
    pub idle_timeout_ns: u64,
    /// A connection that does not log on within this long is closed.
    pub logon_timeout_ns: u64,
    /// Message rate of one API key, shared by all its connections (every message of a
    /// logged-on connection counts, heartbeats too).
    pub rate: RateLimit,
    /// Consecutive session-level rejects after which the connection is closed.
    pub rejects_in_row_max: u32,
    /// Unsent bytes a connection may hold (plus `CONTROL_RESERVE_BYTES`). Sequenced
    /// messages fill at most half of it from the journal; the rest takes market data.
    pub outbound_bytes_max: usize,
    /// Market data subscriptions per connection.
    pub subscriptions_max: usize,
    /// Simultaneous connections (closing ones included). Connections evicted to make
    /// room for a new one may exceed it until the server has closed them (they go within
    /// its `CLOSE_FLUSH`): at most `connections_max + unauthenticated_max` exist.
    pub connections_max: usize,
    /// Connections awaiting a logon at once, over all peers (capped at
    /// `connections_max`). When they are this many, or `connections_max` is reached, a
    /// new connection evicts the oldest one awaiting a logon: connections that never log
    /// on cannot lock out those that do.
    pub unauthenticated_max: usize,
    /// Connections awaiting a logon from one IP address (one IPv6 /64, `peer_group`);
    /// more are refused at once.
    pub unauthenticated_per_ip_max: usize,
    /// Logged-on connections of one API key; another logon is refused with
    /// `SessionsLimit` (a logon that resumes takes the stream over and is not refused).
    pub connections_per_key_max: usize,
    /// Retained sequenced messages per session.
    pub journal: JournalLimits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            frame_bytes_max: frame::FRAME_BYTES_MAX,
            heartbeat_interval_ns: 5_000_000_000,
            idle_timeout_ns: 15_000_000_000,
            logon_timeout_ns: 5_000_000_000,
            rate: RateLimit { rate_per_sec: 2_000, burst: 500 },
            rejects_in_row_max: 100,
            outbound_bytes_max: 1 << 20,
            subscriptions_max: 64,
            connections_max: 1024,
            unauthenticated_max: 256,
            unauthenticated_per_ip_max: 16,
            connections_per_key_max: 16,
            journal: JournalLimits { messages_max: 16_384, bytes_max: 2 << 20 },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(&'static str),
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let largest_frame = frame::FRAME_HEADER_BYTES + frame::SERVER_FRAME_BYTES_MAX;
        // LogonAck reports the timers in milliseconds as u32.
        let ms_max = u32::MAX as u64 * 1_000_000;
        let checks: [(bool, &'static str); 13] = [
            (
                self.frame_bytes_max >= FRAME_BYTES_MAX_FLOOR
                    && self.frame_bytes_max <= frame::FRAME_BYTES_MAX_CEILING,
                "frame_bytes_max must be in 256..=16 MiB",
            ),
            (self.idle_timeout_ns <= ms_max, "idle_timeout_ns too large"),
            (self.heartbeat_interval_ns > 0, "heartbeat_interval_ns must be positive"),
            (
                self.idle_timeout_ns > self.heartbeat_interval_ns,
                "idle_timeout_ns must exceed heartbeat_interval_ns",
            ),
            (self.logon_timeout_ns > 0, "logon_timeout_ns must be positive"),
            (
                (1..=RATE_MAX).contains(&self.rate.rate_per_sec)
                    && (1..=RATE_MAX).contains(&self.rate.burst),
                "rate and burst must be in 1..=1_000_000",
            ),
            (self.rejects_in_row_max > 0, "rejects_in_row_max must be positive"),
            (
                self.outbound_bytes_max >= 2 * largest_frame,
                "outbound_bytes_max must hold two of the largest server frames",
            ),
            (
                self.journal.bytes_max >= largest_frame && self.journal.messages_max > 0,
                "journal must hold the largest server frame",
            ),
            (self.connections_max > 0, "connections_max must be positive"),
            (self.unauthenticated_max > 0, "unauthenticated_max must be positive"),
            (self.unauthenticated_per_ip_max > 0, "unauthenticated_per_ip_max must be positive"),
            (self.connections_per_key_max > 0, "connections_per_key_max must be positive"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(ConfigError::Invalid(message)),
            None => Ok(()),
        }
    }
}

/// A connection handle: slot and generation, so a stale handle never reaches a new
/// connection that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl ConnId {
    /// No connection: the origin of a replayed command (its connection is long gone).
    pub const NONE: ConnId = ConnId(u64::MAX);

    fn new(slot: usize, generation: u32) -> ConnId {
        ConnId(((generation as u64) << 32) | slot as u64)
    }
    fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// Where a request came from; hand it back with the events or the answer it caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub conn: ConnId,
    pub session_id: SessionId,
    pub request_id: RequestId,
}

/// Read-only questions for the shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// Answer with `reply_balances` (`Exchange::balances(account)`).
    Balances { account: AccountId },
    /// Answer with `reply_open_orders` (`Exchange::open_orders(account)`, filtered).
    OpenOrders { account: AccountId, market: Option<MarketId> },
    /// Answer with `reply_status` (`Exchange::last_index`, `state_hash`).
    Status,
    /// Answer with `reply_reference` (`Exchange::assets`, `Exchange::markets`).
    Reference,
}

/// What the server must do on the gateway's behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `command` to the shard; pass the events it causes to
    /// `on_events(Some(origin), ..)`. The command always carries the session's own
    /// account (or is an admin command from an admin key).
    Submit { origin: Origin, command: Command },
    /// Ask the shard and answer with the matching `reply_*` call.
    Query { origin: Origin, query: Query },
    /// Take a snapshot of `market`'s book (`depth` levels a side) and call
    /// `reply_book_snapshot`, or `reject_subscribe` if the market does not exist.
    Subscribe { conn: ConnId, request_id: RequestId, market: MarketId, depth: usize },
    /// Write out what `outbound(conn)` still holds, close the socket, then call
    /// `on_disconnected`.
    Close { conn: ConnId, reason: SessionReason },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("connection limit reached (connections_max; none awaits a logon to evict)")]
    TooManyConnections,
    #[error(
        "too many connections awaiting a logon from this address (unauthenticated_per_ip_max)"
    )]
    TooManyFromPeer,
}

/// Audit records the gateway leaves for the server to log (`take_audit`): who logged on
/// and off, from where, and every admin action with its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audit {
    Logon {
        peer: SocketAddr,
        key_id: KeyId,
        admin: bool,
        resumed: bool,
    },
    /// `key_id` 0: the logon did not decode far enough to name a key.
    LogonRefused {
        peer: SocketAddr,
        key_id: KeyId,
        reason: SessionReason,
    },
    /// A logged-on connection ended; `reason` `None`: the peer closed it.
    Logout {
        peer: SocketAddr,
        key_id: KeyId,
        reason: Option<SessionReason>,
    },
    /// A connection closed by the server before it logged on.
    ClosedBeforeLogon {
        peer: SocketAddr,
        reason: SessionReason,
    },
    /// A connection awaiting a logon made room for a newer one (`unauthenticated_max` or
    /// `connections_max` reached).
    Evicted {
        peer: SocketAddr,
    },
    /// An admin key's command, as submitted to the shard.
    Admin {
        peer: SocketAddr,
        key_id: KeyId,
        command: Command,
    },
}

/// Audit records held for the server at most; more are counted in
/// `GatewayStats::audit_dropped`. The server drains them after every gateway call, and
/// one call produces far fewer (a 64 KiB read holds about 1300 frames at most).
pub const AUDIT_RECORDS_MAX: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    AwaitingLogon {
        nonce: [u8; NONCE_BYTES],
        since_ns: u64,
    },
    LoggedOn(LoggedOn),
    /// A `Close` action was emitted; waiting for `on_disconnected`.
    Closing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LoggedOn {
    session_id: SessionId,
    key_id: KeyId,
    role: Role,
    cancel_on_disconnect: bool,
    /// Next sequence number to copy from the journal into the outbound buffer.
    deliver_seq: Seq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subscription {
    /// Waiting for the snapshot; updates are held back until it is sent.
    Pending,
    Live,
}

/// Unsent bytes of one connection, in a buffer that never grows past its first size.
#[derive(Debug)]
struct Outbound {
    buf: Vec<u8>,
    start: usize,
}

impl Outbound {
    fn with_capacity(capacity: usize) -> Outbound {
        Outbound { buf: Vec::with_capacity(capacity), start: 0 }
    }

    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn push(&mut self, parts: (&[u8], &[u8])) {
        let len = parts.0.len() + parts.1.len();
        if self.buf.len() + len > self.buf.capacity() && self.start > 0 {
            // Shift the unsent bytes to the front instead of growing.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(parts.0);
        self.buf.extend_from_slice(parts.1);
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        assert!(n <= self.pending(), "consumed more than was pending");
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

#[derive(Debug)]
struct Connection {
    id: ConnId,
    /// The peer's address, as the server accepted it (limits per IP, audit lines).
    peer: SocketAddr,
    state: ConnState,
    decoder: FrameDecoder,
    outbound: Outbound,
    rejects_in_row: u32,
    /// The `Close` action was emitted.
    close_emitted: bool,
    last_rx_ns: u64,
    last_tx_ns: u64,
    subscriptions: Vec<(MarketId, Subscription)>,
    /// Listed in `Gateway::dirty` since its outbound buffer last received bytes.
    dirty: bool,
}

/// Records that `c` has new outbound bytes, once per `take_dirty`.
fn mark_dirty(c: &mut Connection, dirty: &mut Vec<ConnId>) {
    if !c.dirty {
        c.dirty = true;
        dirty.push(c.id);
    }
}

/// A resumable stream of sequenced messages for one API key.
#[derive(Debug)]
struct Session {
    journal: Journal,
    /// The key's message rate, shared by all its connections: opening more connections
    /// does not buy a key more messages.
    rate: TokenBucket,
    /// Connections fed from this stream, each through its own cursor.
    attached: Vec<ConnId>,
}

/// Counters for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    pub connections: usize,
    pub logged_on: usize,
    /// Open connections that have not logged on yet.
    pub awaiting_logon: usize,
    pub sessions: usize,
    pub frames_in: u64,
    pub session_rejects: u64,
    pub closes: u64,
    /// Connections refused by a limit (`ConnectError`).
    pub connects_refused: u64,
    /// Connections awaiting a logon evicted to make room for a newer one.
    pub evictions: u64,
    /// Audit records dropped because the server did not take them (`AUDIT_RECORDS_MAX`).
    pub audit_dropped: u64,
    /// Successful logons since start (metrics).
    pub logons: u64,
    /// `session_rejects` by `SessionReason` code (codes at or above the bound share
    /// the last slot).
    pub session_rejects_by_reason: [u64; SESSION_REASON_SLOTS],
}

/// Slots of `GatewayStats::session_rejects_by_reason`.
pub const SESSION_REASON_SLOTS: usize = 32;

/// All connections and sessions of one net core. See the module documentation.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    keys: KeyStore,
    verifier: VerifierOptions,
    encoder: Encoder,
    /// Scratch for one encoded frame.
    frame: Vec<u8>,
    /// Scratch for one encoded control message (kept apart from `frame` because a
    /// connection may be closed, with a logout, while `frame` holds a message for others).
    control_frame: Vec<u8>,
    /// Scratch for one inbound frame being handled.
    frame_in: Vec<u8>,
    conns: Vec<Option<Connection>>,
    generations: Vec<u32>,
    free_slots: Vec<usize>,
    sessions: BTreeMap<SessionId, Session>,
    sessions_by_account: BTreeMap<AccountId, Vec<SessionId>>,
    admin_sessions: Vec<SessionId>,
    started_ns: u64,
    /// Scratch: sessions an event goes to.
    targets: Vec<SessionId>,
    /// Scratch: one command's level changes, with their position for a stable order.
    level_changes: Vec<(MarketId, usize, LevelChange)>,
    /// Scratch: one market's changes for a book update.
    changes: Vec<LevelChange>,
    /// Connections whose outbound buffer received bytes since the last `take_dirty`.
    dirty: Vec<ConnId>,
    /// Scratch: the connections a stream feeds.
    feed: Vec<ConnId>,
    /// Connections awaiting a logon, per peer IP (entries at zero are removed).
    awaiting_by_ip: BTreeMap<IpAddr, usize>,
    /// Records for the server to log, oldest first (`take_audit`).
    audit: Vec<Audit>,
    stats: GatewayStats,
}

impl Gateway {
    pub fn new(config: GatewayConfig, keys: KeyStore, now_ns: u64) -> Result<Gateway, ConfigError> {
        config.validate()?;
        let mut gateway = Gateway {
            config,
            keys,
            verifier: frame::verifier_options(config.frame_bytes_max),
            encoder: Encoder::for_server(),
            frame: Vec::with_capacity(frame::FRAME_HEADER_BYTES + frame::SERVER_FRAME_BYTES_MAX),
            control_frame: Vec::with_capacity(CONTROL_RESERVE_BYTES),
            frame_in: Vec::with_capacity(frame::FRAME_HEADER_BYTES + config.frame_bytes_max),
            conns: Vec::new(),
            generations: Vec::new(),
            free_slots: Vec::new(),
            sessions: BTreeMap::new(),
            sessions_by_account: BTreeMap::new(),
            admin_sessions: Vec::new(),
            started_ns: now_ns,
            targets: Vec::new(),
            level_changes: Vec::new(),
            changes: Vec::new(),
            dirty: Vec::new(),
            feed: Vec::new(),
            awaiting_by_ip: BTreeMap::new(),
            audit: Vec::with_capacity(64),
            stats: GatewayStats::default(),
        };
        let streams: Vec<(KeyId, Role)> = gateway.keys.iter().map(|k| (k.key_id, k.role)).collect();
        for (key_id, role) in streams {
            gateway.add_stream(key_id, role, now_ns);
        }
        Ok(gateway)
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    pub fn stats(&self) -> GatewayStats {
        GatewayStats { sessions: self.sessions.len(), ..self.stats }
    }

    // ----- Connection lifecycle -------------------------------------------------------

    /// A new TCP connection from `peer`. `nonce` must be fresh random bytes (the
    /// caller's RNG); the logon challenge carrying it is queued in the connection's
    /// outbound buffer.
    ///
    /// Limits, in order: a peer IP with `unauthenticated_per_ip_max` connections awaiting
    /// a logon is refused; when `unauthenticated_max` connections await a logon, or
    /// `connections_max` exist, the oldest connection awaiting a logon is closed
    /// (`LogonTimeout`, with an `Evicted` audit record) to make room, and only when none
    /// awaits a logon is the new one refused. An evicted connection is `Closing` until
    /// the server reports it gone, so at most `connections_max + unauthenticated_max`
    /// slots exist at once.
    pub fn on_connect(
        &mut self,
        now_ns: u64,
        peer: SocketAddr,
        nonce: [u8; NONCE_BYTES],
        actions: &mut Vec<Action>,
    ) -> Result<ConnId, ConnectError> {
        if let Err(error) = self.admit(now_ns, peer, actions) {
            self.stats.connects_refused += 1;
            return Err(error);
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                self.generations.push(0);
                self.conns.len() - 1
            }
        };
        assert!(self.conns[slot].is_none());
        let id = ConnId::new(slot, self.generations[slot]);
        self.conns[slot] = Some(Connection {
            id,
            peer,
            state: ConnState::AwaitingLogon { nonce, since_ns: now_ns },
            decoder: FrameDecoder::new(self.config.frame_bytes_max),
            outbound: Outbound::with_capacity(
                self.config.outbound_bytes_max + CONTROL_RESERVE_BYTES,
            ),
            rejects_in_row: 0,
            close_emitted: false,
            last_rx_ns: now_ns,
            last_tx_ns: now_ns,
            subscriptions: Vec::with_capacity(self.config.subscriptions_max),
            dirty: false,
        });
        self.stats.connections += 1;
        self.stats.awaiting_logon += 1;
        *self.awaiting_by_ip.entry(peer_group(peer)).or_insert(0) += 1;
        let challenge = ServerMessage::LogonChallenge { nonce, protocol_version: PROTOCOL_VERSION };
        self.send_control(slot, now_ns, &challenge);
        Ok(id)
    }

    /// Applies the connection limits to a new connection (see `on_connect`).
    fn admit(
        &mut self,
        now_ns: u64,
        peer: SocketAddr,
        actions: &mut Vec<Action>,
    ) -> Result<(), ConnectError> {
        let config = self.config;
        let unauthenticated_max = config.unauthenticated_max.min(config.connections_max);
        let from_peer = self.awaiting_by_ip.get(&peer_group(peer)).copied();
        if from_peer.unwrap_or(0) >= config.unauthenticated_per_ip_max {
            return Err(ConnectError::TooManyFromPeer);
        }
        let full = self.stats.connections >= config.connections_max;
        if self.stats.awaiting_logon >= unauthenticated_max || full {
            let Some(oldest) = self.oldest_awaiting() else {
                return Err(ConnectError::TooManyConnections);
            };
            let peer = self.conns[oldest].as_ref().map(|c| c.peer).expect("live slot");
            self.stats.evictions += 1;
            self.record(Audit::Evicted { peer });
            let reason = SessionReason::LogonTimeout;
            self.send_control(oldest, now_ns, &ServerMessage::Logout { reason });
            self.mark_closing(oldest, reason, actions);
        }
        // Evicted connections close within the server's close flush; until then they
        // hold a slot, and this ceiling bounds how many can.
        if self.stats.connections >= config.connections_max + unauthenticated_max {
            return Err(ConnectError::TooManyConnections);
        }
        debug_assert!(self.stats.awaiting_logon < unauthenticated_max);
        Ok(())
    }

    /// The connection that has awaited a logon longest (lowest slot on a tie). A scan:
    /// it runs only when the connection limits are reached.
    fn oldest_awaiting(&self) -> Option<usize> {
        let awaiting = self.conns.iter().enumerate().filter_map(|(slot, c)| match c {
            Some(Connection { state: ConnState::AwaitingLogon { since_ns, .. }, .. }) => {
                Some((*since_ns, slot))
            }
            _ => None,
        });
        awaiting.min().map(|(_, slot)| slot)
    }

    /// Bookkeeping for a connection leaving `AwaitingLogon` (logged on, closing or gone);
    /// call it before its state changes. Does nothing in any other state.
    fn leave_awaiting(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_ref() else { return };
        if !matches!(c.state, ConnState::AwaitingLogon { .. }) {
            return;
        }
        self.stats.awaiting_logon -= 1;
        let ip = peer_group(c.peer);
        let count = self.awaiting_by_ip.get_mut(&ip).expect("counted at connect");
        assert!(*count > 0);
        *count -= 1;
        if *count == 0 {
            self.awaiting_by_ip.remove(&ip);
        }
    }

    /// Queues an audit record for the server (bounded; see `AUDIT_RECORDS_MAX`).
    fn record(&mut self, audit: Audit) {
        if self.audit.len() < AUDIT_RECORDS_MAX {
            self.audit.push(audit);
        } else {
            self.stats.audit_dropped += 1;
        }
    }

    /// Moves the audit records since the last call into `out`, oldest first.
    pub fn take_audit(&mut self, out: &mut Vec<Audit>) {
        out.append(&mut self.audit);
    }

    /// The socket is gone (closed by either side). Frees the connection; a logged-on
    /// session is kept for resume, and cancel-on-disconnect fires if it was asked for.
    pub fn on_disconnected(&mut self, conn: ConnId, _now_ns: u64, actions: &mut Vec<Action>) {
        let Some(slot) = self.slot(conn) else { return };
        self.leave_awaiting(slot);
        self.end_connection(slot, None, true, actions);
        self.conns[slot] = None;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free_slots.push(slot);
        self.stats.connections -= 1;
    }

    /// Closes a connection on the server's initiative (for instance at shutdown).
    pub fn close(
        &mut self,
        conn: ConnId,
        now_ns: u64,
        reason: SessionReason,
        actions: &mut Vec<Action>,
    ) {
        if let Some(slot) = self.slot(conn) {
            self.close_slot(slot, now_ns, reason, actions);
        }
    }

    /// Whether `conn` is logged on, and to which session.
    pub fn session_of(&self, conn: ConnId) -> Option<SessionId> {
        match self.conn(conn)?.state {
            ConnState::LoggedOn(l) => Some(l.session_id),
            _ => None,
        }
    }

    /// Moves the connections whose outbound buffers received bytes since the last call
    /// into `out` (each once; a connection may have closed meanwhile), so the server
    /// wakes exactly those writers.
    pub fn take_dirty(&mut self, out: &mut Vec<ConnId>) {
        for conn in self.dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(conn.slot()).and_then(Option::as_mut) {
                if c.id == conn {
                    c.dirty = false;
                }
            }
            out.push(conn);
        }
    }

    /// Bytes waiting to be written to `conn`'s socket.
    pub fn outbound(&self, conn: ConnId) -> &[u8] {
        self.conn(conn).map_or(&[][..], |c| c.outbound.as_slice())
    }

    /// `n` bytes of `outbound(conn)` were written; more sequenced messages may follow.
    pub fn consume_outbound(
        &mut self,
        conn: ConnId,
        n: usize,
        now_ns: u64,
        actions: &mut Vec<Action>,
    ) {
        let Some(slot) = self.slot(conn) else { return };
        if let Some(c) = self.conns[slot].as_mut() {
            c.outbound.consume(n);
        }
        self.pump(slot, now_ns, actions);
    }

    // ----- Inbound -------------------------------------------------------------------

    /// Bytes read from `conn`'s socket. Complete frames are handled at once.
    pub fn on_bytes(
        &mut self,
        conn: ConnId,
        now_ns: u64,
        mut bytes: &[u8],
        actions: &mut Vec<Action>,
    ) {
        let Some(slot) = self.slot(conn) else { return };
        while !bytes.is_empty() {
            let Some(c) = self.conns[slot].as_mut() else { return };
            if c.state == ConnState::Closing {
                return;
            }
            let taken = c.decoder.push(bytes);
            bytes = &bytes[taken..];
            self.drain_frames(slot, now_ns, actions);
        }
    }

    /// Handles every complete frame buffered for `slot`.
    fn drain_frames(&mut self, slot: usize, now_ns: u64, actions: &mut Vec<Action>) {
        // Each frame is copied out of the decoder into `frame_in` so that handling it
        // can borrow the gateway mutably; frames are small and the buffer is reused.
        let mut frame_in = std::mem::take(&mut self.frame_in);
        while let Some(c) = self.conns[slot].as_mut() {
            if c.state == ConnState::Closing {
                break;
            }
            match c.decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    frame_in.clear();
                    frame_in.extend_from_slice(frame);
                    c.last_rx_ns = now_ns;
                    self.stats.frames_in += 1;
                    self.on_frame(slot, now_ns, &frame_in, actions);
                }
                Err(error) => {
                    let reason = match error {
                        FrameError::Empty => SessionReason::EmptyFrame,
                        FrameError::TooLarge { .. } => SessionReason::FrameTooLarge,
                    };
                    self.close_slot(slot, now_ns, reason, actions);
                    break;
                }
            }
        }
        frame_in.clear();
        self.frame_in = frame_in;
    }

    /// One complete client frame.
    fn on_frame(&mut self, slot: usize, now_ns: u64, frame: &[u8], actions: &mut Vec<Action>) {
        let Some(c) = self.conns[slot].as_ref() else { return };
        let state = c.state;
        let decoded = decode_client(frame, &self.verifier);
        match (state, decoded) {
            (ConnState::Closing, _) => {}
            (_, Err(DecodeError::Malformed(_))) => {
                // Not our protocol: nothing after this frame can be trusted.
                self.close_slot(slot, now_ns, SessionReason::Malformed, actions);
            }
            // A logon is answered by LogonAck or LogonReject, which carry no request id.
            (ConnState::AwaitingLogon { nonce, .. }, Ok((_, ClientRequest::Logon(l)))) => {
                self.on_logon(slot, now_ns, nonce, &l, actions);
            }
            (ConnState::AwaitingLogon { .. }, Err(DecodeError::InvalidField { body_type, .. }))
                if body_type == wire::Body::Logon.0 =>
            {
                let reason = SessionReason::InvalidField;
                self.refuse_logon(slot, now_ns, 0, reason, 0, 0, actions);
            }
            (ConnState::AwaitingLogon { .. }, _) => {
                self.close_slot(slot, now_ns, SessionReason::NotLoggedOn, actions);
            }
            (ConnState::LoggedOn(_), Err(error)) => {
                let (request_id, body_type) = match error {
                    DecodeError::UnknownMessage { request_id, body_type }
                    | DecodeError::InvalidField { request_id, body_type, .. } => {
                        (request_id, body_type)
                    }
                    DecodeError::Malformed(_) => (0, 0),
                };
                if self.take_token(slot, now_ns, request_id, body_type, actions) {
                    let reason = error.session_reason();
                    self.reject(slot, now_ns, request_id, body_type, reason, actions);
                }
            }
            (ConnState::LoggedOn(logged_on), Ok((request_id, request))) => {
                let body_type = body_type_of(&request);
                if self.take_token(slot, now_ns, request_id, body_type, actions) {
                    self.on_request(slot, now_ns, logged_on, request_id, request, actions);
                }
            }
        }
    }

    /// Charges one message to the rate limit; a message over the limit is rejected.
    fn take_token(
        &mut self,
        slot: usize,
        now_ns: u64,
        request_id: RequestId,
        body_type: BodyType,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(c) = self.conns[slot].as_ref() else { return false };
        let ConnState::LoggedOn(logged_on) = c.state else { return false };
        let session = self.sessions.get_mut(&logged_on.session_id);
        if session.is_some_and(|s| s.rate.try_take(now_ns)) {
            return true;
        }
        let reason = SessionReason::RateLimited;
        self.reject(slot, now_ns, request_id, body_type, reason, actions);
        false
    }

    /// A session-level reject: an answer on this connection, not part of the stream
    /// (sequence number 0). Too many in a row close the connection, so a client stuck in
    /// a loop of bad requests cannot flood its own outbound buffer.
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        slot: usize,
        now_ns: u64,
        request_id: RequestId,
        body_type: BodyType,
        reason: SessionReason,
        actions: &mut Vec<Action>,
    ) {
        self.stats.session_rejects += 1;
        self.stats.session_rejects_by_reason[(reason as usize).min(SESSION_REASON_SLOTS - 1)] += 1;
        let report = RejectReport::session(request_id, body_type, reason);
        let Some(conn) = self.conns[slot].as_ref().map(|c| c.id) else { return };
        self.send_reply(conn, &ServerMessage::Rejected(report), now_ns, actions);
        let Some(c) = self.conns[slot].as_mut() else { return };
        c.rejects_in_row += 1;
        if c.rejects_in_row >= self.config.rejects_in_row_max {
            self.close_slot(slot, now_ns, SessionReason::TooManyRejects, actions);
        }
    }

    fn on_logon(
        &mut self,
        slot: usize,
        now_ns: u64,
        nonce: [u8; NONCE_BYTES],
        logon: &Logon,
        actions: &mut Vec<Action>,
    ) {
        if logon.protocol_version != PROTOCOL_VERSION {
            let reason = SessionReason::UnsupportedVersion;
            return self.refuse_logon(slot, now_ns, logon.key_id, reason, 0, 0, actions);
        }
        let role = match self.keys.authenticate(&nonce, logon.key_id, &logon.signature) {
            Ok(key) => key.role,
            Err(error) => {
                let reason = match error {
                    AuthError::UnknownKey => SessionReason::UnknownKey,
                    AuthError::BadSignature => SessionReason::BadSignature,
                };
                return self.refuse_logon(slot, now_ns, logon.key_id, reason, 0, 0, actions);
            }
        };
        let session_id = match self.find_session(logon) {
            Ok(id) => id,
            Err((reason, oldest, next)) => {
                return self.refuse_logon(slot, now_ns, logon.key_id, reason, oldest, next, actions)
            }
        };
        // A logon that resumes takes the stream over (closing the others), so only a new
        // reader of the stream counts against the key's connection cap.
        let attached = self.sessions.get(&session_id).map_or(0, |s| s.attached.len());
        if logon.resume_from_seq == 0 && attached >= self.config.connections_per_key_max {
            let reason = SessionReason::SessionsLimit;
            return self.refuse_logon(slot, now_ns, logon.key_id, reason, 0, 0, actions);
        }
        self.attach(slot, now_ns, session_id, logon, role, actions);
    }

    /// The key's stream, checked for resume. `session_id` 0 means "the key's stream,
    /// from now on" unless `resume_from_seq` asks for a replay.
    fn find_session(&self, logon: &Logon) -> Result<SessionId, (SessionReason, Seq, Seq)> {
        let id = logon.key_id;
        if logon.session_id != 0 && logon.session_id != id {
            // Another key's stream reads as unknown: ids are not secrets, streams are.
            return Err((SessionReason::UnknownSession, 0, 0));
        }
        let Some(session) = self.sessions.get(&id) else {
            return Err((SessionReason::UnknownSession, 0, 0));
        };
        if logon.resume_from_seq != 0 {
            match session.journal.check_resume(logon.resume_from_seq) {
                Ok(()) => {}
                Err(ResumeError::TooOld { oldest, next, .. }) => {
                    return Err((SessionReason::ResumeTooOld, oldest, next))
                }
                Err(ResumeError::Ahead { next, .. }) => {
                    return Err((SessionReason::ResumeAhead, 0, next))
                }
            }
        }
        Ok(id)
    }

    /// The stream of a key: created for every key when the gateway starts.
    fn add_stream(&mut self, key_id: KeyId, role: Role, now_ns: u64) {
        let session = Session {
            journal: Journal::new(self.config.journal),
            rate: TokenBucket::new(self.config.rate, now_ns),
            attached: Vec::new(),
        };
        assert!(self.sessions.insert(key_id, session).is_none(), "one stream per key");
        match role {
            Role::Trader { account } => {
                self.sessions_by_account.entry(account).or_default().push(key_id)
            }
            Role::Admin => self.admin_sessions.push(key_id),
        }
    }

    fn attach(
        &mut self,
        slot: usize,
        now_ns: u64,
        session_id: SessionId,
        logon: &Logon,
        role: Role,
        actions: &mut Vec<Action>,
    ) {
        // A stream may feed several connections of its key (a trading program and a
        // monitor, say), each through its own cursor. A logon that resumes says "I am
        // the client that was reading this stream": it takes the stream over, so a
        // client whose old connection died silently can reconnect at once. The old
        // connections are closed without cancel-on-disconnect, since the client goes on.
        if logon.resume_from_seq != 0 {
            let previous = self.sessions.get(&session_id).map(|s| s.attached.clone());
            for conn in previous.into_iter().flatten() {
                if let Some(previous) = self.slot(conn) {
                    self.close_replaced(previous, now_ns, actions);
                }
            }
        }
        if !self.sessions.contains_key(&session_id) || self.conns[slot].is_none() {
            return; // Checked by the caller; leaves the state untouched if not.
        }
        self.leave_awaiting(slot);
        if let Some(peer) = self.conns[slot].as_ref().map(|c| c.peer) {
            let admin = role == Role::Admin;
            let resumed = logon.resume_from_seq != 0;
            self.record(Audit::Logon { peer, key_id: logon.key_id, admin, resumed });
        }
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        let next_seq = session.journal.next_seq();
        let deliver_seq = if logon.resume_from_seq == 0 { next_seq } else { logon.resume_from_seq };
        let Some(c) = self.conns[slot].as_mut() else { return };
        session.attached.push(c.id);
        let cancel_on_disconnect = logon.cancel_on_disconnect && role.account().is_some();
        c.state = ConnState::LoggedOn(LoggedOn {
            session_id,
            key_id: logon.key_id,
            role,
            cancel_on_disconnect,
            deliver_seq,
        });
        self.stats.logged_on += 1;
        self.stats.logons += 1;
        let ack = LogonAck {
            session_id,
            next_seq,
            replay_from: deliver_seq,
            replay_count: next_seq - deliver_seq,
            role: match role {
                Role::Trader { .. } => WireRole::Trader,
                Role::Admin => WireRole::Admin,
            },
            account: role.account().unwrap_or(0),
            cancel_on_disconnect,
            heartbeat_interval_ms: (self.config.heartbeat_interval_ns / 1_000_000) as u32,
            idle_timeout_ms: (self.config.idle_timeout_ns / 1_000_000) as u32,
            rate_per_sec: self.config.rate.rate_per_sec,
            rate_burst: self.config.rate.burst,
            protocol_version: PROTOCOL_VERSION,
        };
        self.send_control(slot, now_ns, &ServerMessage::LogonAck(ack));
        self.pump(slot, now_ns, actions);
    }

    #[allow(clippy::too_many_arguments)]
    fn refuse_logon(
        &mut self,
        slot: usize,
        now_ns: u64,
        key_id: KeyId,
        reason: SessionReason,
        oldest_seq: Seq,
        next_seq: Seq,
        actions: &mut Vec<Action>,
    ) {
        if let Some(peer) = self.conns[slot].as_ref().map(|c| c.peer) {
            self.record(Audit::LogonRefused { peer, key_id, reason });
        }
        let reject = LogonReject { reason, oldest_seq, next_seq };
        self.send_control(slot, now_ns, &ServerMessage::LogonReject(reject));
        self.mark_closing(slot, reason, actions);
    }

    /// A logged-on request that passed the rate limit.
    fn on_request(
        &mut self,
        slot: usize,
        now_ns: u64,
        logged_on: LoggedOn,
        request_id: RequestId,
        request: ClientRequest,
        actions: &mut Vec<Action>,
    ) {
        let origin = Origin {
            conn: self.conns[slot].as_ref().map_or(ConnId(0), |c| c.id),
            session_id: logged_on.session_id,
            request_id,
        };
        let body_type = body_type_of(&request);
        let outcome = match request {
            ClientRequest::Logon(_) => Err(SessionReason::AlreadyLoggedOn),
            ClientRequest::Logout => {
                self.close_slot(slot, now_ns, SessionReason::LoggedOut, actions);
                return;
            }
            ClientRequest::Heartbeat { .. } => Ok(None),
            ClientRequest::Subscribe { market, depth } => {
                self.subscribe(slot, origin, market, depth)
            }
            ClientRequest::Unsubscribe { market } => {
                if let Some(c) = self.conns[slot].as_mut() {
                    c.subscriptions.retain(|(m, _)| *m != market);
                }
                Ok(None)
            }
            other => permitted_action(logged_on.role, origin, &other),
        };
        match outcome {
            Ok(action) => {
                let Some(c) = self.conns[slot].as_mut() else { return };
                c.rejects_in_row = 0;
                if let (Role::Admin, Some(Action::Submit { command, .. })) =
                    (logged_on.role, action)
                {
                    let (peer, key_id) = (c.peer, logged_on.key_id);
                    self.record(Audit::Admin { peer, key_id, command });
                }
                actions.extend(action);
            }
            Err(reason) => self.reject(slot, now_ns, request_id, body_type, reason, actions),
        }
    }

    fn subscribe(
        &mut self,
        slot: usize,
        origin: Origin,
        market: MarketId,
        depth: u16,
    ) -> Result<Option<Action>, SessionReason> {
        let Some(c) = self.conns[slot].as_mut() else { return Ok(None) };
        let full = c.subscriptions.len() >= self.config.subscriptions_max;
        match c.subscriptions.iter_mut().find(|(m, _)| *m == market) {
            // Subscribing again asks for a fresh snapshot.
            Some(entry) => entry.1 = Subscription::Pending,
            None if full => return Err(SessionReason::SubscriptionsLimit),
            None => c.subscriptions.push((market, Subscription::Pending)),
        }
        let depth =
            if depth == 0 { BOOK_DEPTH_DEFAULT } else { (depth as usize).min(BOOK_DEPTH_MAX) };
        Ok(Some(Action::Subscribe {
            conn: origin.conn,
            request_id: origin.request_id,
            market,
            depth,
        }))
    }

    // ----- Timers ---------------------------------------------------------------------

    /// Heartbeats, logon and idle timeouts. Call it
    /// at least every `heartbeat_interval_ns / 2`.
    pub fn on_tick(&mut self, now_ns: u64, actions: &mut Vec<Action>) {
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_ref() else { continue };
            match c.state {
                ConnState::Closing => {}
                ConnState::AwaitingLogon { since_ns, .. } => {
                    if now_ns.saturating_sub(since_ns) >= self.config.logon_timeout_ns {
                        self.close_slot(slot, now_ns, SessionReason::LogonTimeout, actions);
                    }
                }
                ConnState::LoggedOn(_) => {
                    if now_ns.saturating_sub(c.last_rx_ns) >= self.config.idle_timeout_ns {
                        self.close_slot(slot, now_ns, SessionReason::IdleTimeout, actions);
                    } else if c.outbound.pending() == 0
                        && now_ns.saturating_sub(c.last_tx_ns) >= self.config.heartbeat_interval_ns
                    {
                        self.send_control(
                            slot,
                            now_ns,
                            &ServerMessage::Heartbeat { time_ns: now_ns },
                        );
                    }
                }
            }
        }
    }

    // ----- Outbound -------------------------------------------------------------------

    /// Unsequenced session-control message; may use the control reserve.
    fn send_control(&mut self, slot: usize, now_ns: u64, message: &ServerMessage<'_>) {
        self.control_frame.clear();
        let encoded = self.encoder.encode_server(0, message, &mut self.control_frame);
        assert!(encoded.is_ok(), "control messages are small: {encoded:?}");
        assert!(self.control_frame.len() <= CONTROL_RESERVE_BYTES);
        let Some(c) = self.conns[slot].as_mut() else { return };
        let limit = self.config.outbound_bytes_max + CONTROL_RESERVE_BYTES;
        // Control messages are few per connection (challenge, ack or reject, logout) and
        // heartbeats go only into an empty buffer, so the reserve is never exhausted.
        if c.outbound.pending() + self.control_frame.len() <= limit {
            c.outbound.push((&self.control_frame, &[]));
            c.last_tx_ns = now_ns;
            mark_dirty(c, &mut self.dirty);
        }
    }

    /// Appends a sequenced message to a session's journal and feeds its connection.
    fn send_sequenced(
        &mut self,
        session_id: SessionId,
        message: &ServerMessage<'_>,
        now_ns: u64,
        actions: &mut Vec<Action>,
    ) {
        debug_assert!(message.is_sequenced());
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        self.frame.clear();
        let seq = session.journal.next_seq();
        let encoded = self.encoder.encode_server(seq, message, &mut self.frame);
        // Every list is cut to its named bound before it gets here, and the bounds fit in
        // SERVER_FRAME_BYTES_MAX (tested), so this only fails on a bug.
        assert!(encoded.is_ok(), "server message does not encode: {encoded:?}");
        assert_eq!(session.journal.append(&self.frame), seq);
        let mut targets = std::mem::take(&mut self.feed);
        targets.clear();
        targets.extend_from_slice(&session.attached);
        for conn in &targets {
            if let Some(slot) = self.slot(*conn) {
                self.pump(slot, now_ns, actions);
            }
        }
        self.feed = targets;
    }

    /// Copies journal frames the connection has not had yet into its outbound buffer,
    /// up to half the buffer (the other half is for market data and control).
    fn pump(&mut self, slot: usize, now_ns: u64, actions: &mut Vec<Action>) {
        let Some(c) = self.conns[slot].as_mut() else { return };
        let ConnState::LoggedOn(mut logged_on) = c.state else { return };
        let Some(session) = self.sessions.get(&logged_on.session_id) else { return };
        let journal = &session.journal;
        if logged_on.deliver_seq < journal.oldest_seq() {
            // The journal dropped messages this connection never got: it is not reading.
            // Its session stays, so the client learns the truth (ResumeTooOld) on resume.
            self.close_slot(slot, now_ns, SessionReason::SlowConsumer, actions);
            return;
        }
        let budget = self.config.outbound_bytes_max / 2;
        while logged_on.deliver_seq < journal.next_seq() {
            let Some(parts) = journal.get(logged_on.deliver_seq) else { break };
            let len = parts.0.len() + parts.1.len();
            if c.outbound.pending() + len > budget {
                break;
            }
            c.outbound.push(parts);
            logged_on.deliver_seq += 1;
            mark_dirty(c, &mut self.dirty);
        }
        c.state = ConnState::LoggedOn(logged_on);
    }

    /// An answer to one connection's request (query reply, session-level reject):
    /// sequence number 0, not journaled. A connection that cannot take it is closed.
    fn send_reply(
        &mut self,
        conn: ConnId,
        message: &ServerMessage<'_>,
        now_ns: u64,
        actions: &mut Vec<Action>,
    ) {
        debug_assert!(!message.is_sequenced());
        let Some(slot) = self.slot(conn) else { return };
        self.frame.clear();
        let encoded = self.encoder.encode_server(0, message, &mut self.frame);
        // Lists are cut to their named bounds before they get here (tested).
        assert!(encoded.is_ok(), "reply does not encode: {encoded:?}");
        self.queue_frame(slot, now_ns, actions);
    }

    /// Queues the frame in `self.frame` on a connection, or closes the connection as a
    /// slow consumer if it does not fit (unsequenced output cannot wait in a journal).
    fn queue_frame(&mut self, slot: usize, now_ns: u64, actions: &mut Vec<Action>) {
        let Some(c) = self.conns[slot].as_mut() else { return };
        if c.state == ConnState::Closing {
            return;
        }
        if c.outbound.pending() + self.frame.len() > self.config.outbound_bytes_max {
            self.close_slot(slot, now_ns, SessionReason::SlowConsumer, actions);
            return;
        }
        c.outbound.push((&self.frame, &[]));
        c.last_tx_ns = now_ns;
        mark_dirty(c, &mut self.dirty);
    }

    /// Market data: unsequenced and not journaled; a connection that cannot take it is
    /// closed (its book would silently go wrong otherwise).
    fn send_market_data(&mut self, market: MarketId, now_ns: u64, actions: &mut Vec<Action>) {
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_ref() else { continue };
            if c.subscriptions.contains(&(market, Subscription::Live)) {
                self.queue_frame(slot, now_ns, actions);
            }
        }
    }

    // ----- Closing ----------------------------------------------------------------------

    fn close_slot(
        &mut self,
        slot: usize,
        now_ns: u64,
        reason: SessionReason,
        actions: &mut Vec<Action>,
    ) {
        let Some(c) = self.conns[slot].as_ref() else { return };
        match c.state {
            ConnState::Closing => return,
            ConnState::AwaitingLogon { .. } => {
                let peer = c.peer;
                self.record(Audit::ClosedBeforeLogon { peer, reason });
            }
            ConnState::LoggedOn(_) => {}
        }
        self.send_control(slot, now_ns, &ServerMessage::Logout { reason });
        self.end_connection(slot, Some(reason), true, actions);
        self.mark_closing(slot, reason, actions);
    }

    /// Closes the old connection of a session that a new logon took over.
    fn close_replaced(&mut self, slot: usize, now_ns: u64, actions: &mut Vec<Action>) {
        let reason = SessionReason::Replaced;
        self.send_control(slot, now_ns, &ServerMessage::Logout { reason });
        self.end_connection(slot, Some(reason), false, actions);
        self.mark_closing(slot, reason, actions);
    }

    fn mark_closing(&mut self, slot: usize, reason: SessionReason, actions: &mut Vec<Action>) {
        self.leave_awaiting(slot);
        let Some(c) = self.conns[slot].as_mut() else { return };
        c.state = ConnState::Closing;
        if !c.close_emitted {
            c.close_emitted = true;
            self.stats.closes += 1;
            actions.push(Action::Close { conn: c.id, reason });
        }
    }

    /// Detaches a logged-on connection from its key's stream (which goes on) and
    /// fires cancel-on-disconnect when `cancel` and the logon asked for it. `reason`
    /// `None`: the peer closed the socket.
    fn end_connection(
        &mut self,
        slot: usize,
        reason: Option<SessionReason>,
        cancel: bool,
        actions: &mut Vec<Action>,
    ) {
        let Some(c) = self.conns[slot].as_mut() else { return };
        let ConnState::LoggedOn(logged_on) = c.state else { return };
        // Only `mark_closing` or `on_disconnected` may follow; neither reads this state.
        c.state = ConnState::Closing;
        let (conn, peer) = (c.id, c.peer);
        self.record(Audit::Logout { peer, key_id: logged_on.key_id, reason });
        self.stats.logged_on -= 1;
        if let Some(session) = self.sessions.get_mut(&logged_on.session_id) {
            session.attached.retain(|&c| c != conn);
        }
        if let (true, true, Some(account)) =
            (cancel, logged_on.cancel_on_disconnect, logged_on.role.account())
        {
            let origin = Origin { conn, session_id: logged_on.session_id, request_id: 0 };
            let command = Command::MassCancel { account, market: None };
            actions.push(Action::Submit { origin, command });
        }
    }

    // ----- Engine output ----------------------------------------------------------------

    /// The events of one command, in order. `origin` is the `Submit` that caused them
    /// when it came from this gateway, so replies carry the client's request id.
    pub fn on_events(
        &mut self,
        origin: Option<Origin>,
        events: &[Event],
        now_ns: u64,
        actions: &mut Vec<Action>,
    ) {
        self.level_changes.clear();
        for (position, event) in events.iter().enumerate() {
            self.route_private(origin, event, now_ns, actions);
            self.route_admin(origin, event, now_ns, actions);
            match view::public_view(event) {
                Some(PublicItem::Level { market, change }) => {
                    self.level_changes.push((market, position, change));
                }
                Some(PublicItem::Trade(trade)) => {
                    self.frame.clear();
                    let message = ServerMessage::PublicTrade(trade);
                    let encoded = self.encoder.encode_server(0, &message, &mut self.frame);
                    assert!(encoded.is_ok(), "public trade encodes: {encoded:?}");
                    self.send_market_data(trade.market, now_ns, actions);
                }
                None => {}
            }
        }
        self.flush_book_updates(events, now_ns, actions);
    }

    fn route_private(
        &mut self,
        origin: Option<Origin>,
        event: &Event,
        now_ns: u64,
        actions: &mut Vec<Action>,
    ) {
        let accounts = view::event_accounts(event);
        for (i, account) in accounts.iter().enumerate() {
            let Some(account) = *account else { continue };
            if i == 1 && accounts[0] == Some(account) {
                continue;
            }
            let mut targets = std::mem::take(&mut self.targets);
            targets.clear();
            targets.extend(self.sessions_by_account.get(&account).into_iter().flatten());
            for &session_id in &targets {
                let request_id = request_id_for(origin, session_id);
                for message in view::account_view(event, account, request_id).iter().flatten() {
                    self.send_sequenced(session_id, message, now_ns, actions);
                }
            }
            self.targets = targets;
        }
    }

    fn route_admin(
        &mut self,
        origin: Option<Origin>,
        event: &Event,
        now_ns: u64,
        actions: &mut Vec<Action>,
    ) {
        if view::admin_view(event, 0).is_none() {
            return;
        }
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        targets.extend_from_slice(&self.admin_sessions);
        for &session_id in &targets {
            if let Some(message) = view::admin_view(event, request_id_for(origin, session_id)) {
                self.send_sequenced(session_id, &message, now_ns, actions);
            }
        }
        self.targets = targets;
    }

    /// One `BookUpdate` per market touched by the command (split at
    /// `BOOK_CHANGES_PER_UPDATE_MAX`), changes in event order.
    fn flush_book_updates(&mut self, events: &[Event], now_ns: u64, actions: &mut Vec<Action>) {
        let Some(first) = events.first() else { return };
        let (index, time_ns) = (first.index, first.time_ns);
        // Sorting by (market, position) is stable by construction and allocates nothing.
        self.level_changes.sort_unstable_by_key(|(market, position, _)| (*market, *position));
        let mut start = 0;
        while start < self.level_changes.len() {
            let market = self.level_changes[start].0;
            let mut end = start;
            while end < self.level_changes.len()
                && self.level_changes[end].0 == market
                && end - start < BOOK_CHANGES_PER_UPDATE_MAX
            {
                end += 1;
            }
            self.changes.clear();
            self.changes.extend(self.level_changes[start..end].iter().map(|(_, _, c)| *c));
            self.frame.clear();
            let message =
                ServerMessage::BookUpdate { market, index, time_ns, changes: &self.changes };
            let encoded = self.encoder.encode_server(0, &message, &mut self.frame);
            assert!(encoded.is_ok(), "book update encodes: {encoded:?}");
            self.send_market_data(market, now_ns, actions);
            start = end;
        }
    }

    // ----- Query answers ----------------------------------------------------------------

    /// Answer to `Query::Balances`: assets with a non-zero total, ascending asset id (cut
    /// at `BALANCES_PER_REPLY_MAX`).
    pub fn reply_balances(
        &mut self,
        origin: Origin,
        now_ns: u64,
        balances: &[(AssetId, Balance)],
        actions: &mut Vec<Action>,
    ) {
        let balances = &balances[..balances.len().min(BALANCES_PER_REPLY_MAX)];
        let message = ServerMessage::Balances { request_id: origin.request_id, balances };
        self.send_reply(origin.conn, &message, now_ns, actions);
    }

    /// Answer to `Query::OpenOrders`, ascending order id; more than
    /// `OPEN_ORDERS_PER_REPLY_MAX` are cut and flagged.
    pub fn reply_open_orders(
        &mut self,
        origin: Origin,
        now_ns: u64,
        orders: &[OpenOrderInfo],
        actions: &mut Vec<Action>,
    ) {
        let truncated = orders.len() > OPEN_ORDERS_PER_REPLY_MAX;
        let orders = &orders[..orders.len().min(OPEN_ORDERS_PER_REPLY_MAX)];
        let message =
            ServerMessage::OpenOrders { request_id: origin.request_id, orders, truncated };
        self.send_reply(origin.conn, &message, now_ns, actions);
    }

    /// Answer to `Query::Status`.
    pub fn reply_status(
        &mut self,
        origin: Origin,
        now_ns: u64,
        last_index: LogIndex,
        state_hash: [u8; 32],
        actions: &mut Vec<Action>,
    ) {
        let report = StatusReport {
            request_id: origin.request_id,
            last_index,
            state_hash,
            uptime_ns: now_ns.saturating_sub(self.started_ns),
            sessions: self.stats.logged_on as u32,
        };
        self.send_reply(origin.conn, &ServerMessage::Status(report), now_ns, actions);
    }

    /// Answer to `Query::Reference`: assets and markets in ascending id order; more than
    /// `REFERENCE_ASSETS_MAX` / `REFERENCE_MARKETS_MAX` are cut and the reply flagged.
    pub fn reply_reference(
        &mut self,
        origin: Origin,
        now_ns: u64,
        assets: &[AssetInfo],
        markets: &[MarketInfo],
        actions: &mut Vec<Action>,
    ) {
        let truncated =
            assets.len() > REFERENCE_ASSETS_MAX || markets.len() > REFERENCE_MARKETS_MAX;
        let assets = &assets[..assets.len().min(REFERENCE_ASSETS_MAX)];
        let markets = &markets[..markets.len().min(REFERENCE_MARKETS_MAX)];
        let message =
            ServerMessage::Reference { request_id: origin.request_id, assets, markets, truncated };
        self.send_reply(origin.conn, &message, now_ns, actions);
    }

    /// Answer to `Action::Subscribe`: the book after log index `index`. Updates for
    /// the market flow to the connection from here on.
    #[allow(clippy::too_many_arguments)]
    pub fn reply_book_snapshot(
        &mut self,
        conn: ConnId,
        now_ns: u64,
        request_id: RequestId,
        market: MarketId,
        index: LogIndex,
        bids: &[DepthLevel],
        asks: &[DepthLevel],
        actions: &mut Vec<Action>,
    ) {
        let Some(slot) = self.slot(conn) else { return };
        let Some(c) = self.conns[slot].as_mut() else { return };
        let Some(entry) = c.subscriptions.iter_mut().find(|(m, _)| *m == market) else {
            return; // Unsubscribed meanwhile.
        };
        entry.1 = Subscription::Live;
        let bids = &bids[..bids.len().min(BOOK_DEPTH_MAX)];
        let asks = &asks[..asks.len().min(BOOK_DEPTH_MAX)];
        self.frame.clear();
        let message = ServerMessage::BookSnapshot { request_id, market, index, bids, asks };
        let encoded = self.encoder.encode_server(0, &message, &mut self.frame);
        assert!(encoded.is_ok(), "book snapshot encodes: {encoded:?}");
        self.queue_frame(slot, now_ns, actions);
    }

    /// Answer to `Action::Subscribe` for a market that does not exist.
    pub fn reject_subscribe(
        &mut self,
        conn: ConnId,
        now_ns: u64,
        request_id: RequestId,
        market: MarketId,
        actions: &mut Vec<Action>,
    ) {
        let Some(slot) = self.slot(conn) else { return };
        let Some(c) = self.conns[slot].as_mut() else { return };
        c.subscriptions.retain(|(m, _)| *m != market);
        if !matches!(c.state, ConnState::LoggedOn(_)) {
            return;
        }
        let body_type = wire::Body::Subscribe.0;
        let report = RejectReport::session(request_id, body_type, SessionReason::UnknownMarket);
        self.send_reply(conn, &ServerMessage::Rejected(report), now_ns, actions);
    }

    // ----- Snapshots -----------------------------------------------------------------

    /// Every stream's retained messages and numbering, for a snapshot taken at the
    /// point of the command log this gateway has seen. Format: `STREAMS_MAGIC`, a u64
    /// count, then per stream its key id, first and next sequence numbers (u64 LE each)
    /// and each retained frame as a u32 LE length and its bytes.
    pub fn export_streams(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&STREAMS_MAGIC);
        out.extend_from_slice(&(self.sessions.len() as u64).to_le_bytes());
        for (key_id, session) in &self.sessions {
            let journal = &session.journal;
            out.extend_from_slice(&key_id.to_le_bytes());
            out.extend_from_slice(&journal.oldest_seq().to_le_bytes());
            out.extend_from_slice(&journal.next_seq().to_le_bytes());
            for seq in journal.oldest_seq()..journal.next_seq() {
                let (front, back) = journal.get(seq).expect("retained");
                out.extend_from_slice(&((front.len() + back.len()) as u32).to_le_bytes());
                out.extend_from_slice(front);
                out.extend_from_slice(back);
            }
        }
        out
    }

    /// Restores the streams of `export_streams` (before any connection). A stream of a
    /// key no longer configured is skipped; a malformed export is an error, never a
    /// panic.
    pub fn import_streams(&mut self, bytes: &[u8]) -> Result<(), String> {
        assert!(self.stats.connections == 0, "streams are restored before any connection");
        let mut reader = Reader { bytes };
        if reader.take(STREAMS_MAGIC.len())? != STREAMS_MAGIC {
            return Err("not a streams export (bad magic)".into());
        }
        let count = reader.u64()?;
        for _ in 0..count {
            let key_id = reader.u64()?;
            let (first, next) = (reader.u64()?, reader.u64()?);
            if first == 0 || next < first {
                return Err(format!("stream {key_id}: bad sequence numbers {first}..{next}"));
            }
            let limits = self.config.journal;
            let mut journal = Journal::starting_at(limits, first);
            for _ in first..next {
                let len = reader.u32()? as usize;
                if len == 0 || len > limits.bytes_max {
                    return Err(format!("stream {key_id}: frame of {len} bytes out of bounds"));
                }
                journal.append(reader.take(len)?);
            }
            if let Some(session) = self.sessions.get_mut(&key_id) {
                session.journal = journal;
            }
        }
        if !reader.bytes.is_empty() {
            return Err("trailing bytes after the streams".into());
        }
        Ok(())
    }

    // ----- Lookup -----------------------------------------------------------------------

    fn slot(&self, conn: ConnId) -> Option<usize> {
        let slot = conn.slot();
        let live = self.conns.get(slot)?.as_ref()?;
        (live.id.generation() == conn.generation()).then_some(slot)
    }

    fn conn(&self, conn: ConnId) -> Option<&Connection> {
        self.conns.get(conn.slot())?.as_ref().filter(|c| c.id == conn)
    }
}

/// What `unauthenticated_per_ip_max` counts per: the IPv4 address (an IPv4-mapped IPv6
/// address counts as its IPv4 one), or the IPv6 /64 prefix, since one IPv6 host usually
/// holds a whole /64 and could otherwise use a fresh address per connection.
pub fn peer_group(peer: SocketAddr) -> IpAddr {
    match peer.ip().to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

fn request_id_for(origin: Option<Origin>, session_id: SessionId) -> RequestId {
    match origin {
        Some(o) if o.session_id == session_id => o.request_id,
        _ => 0,
    }
}

/// First bytes of `Gateway::export_streams`.
const STREAMS_MAGIC: [u8; 8] = *b"BRSSTRM1";

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("streams export is truncated".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
}

/// The wire body type of a request (echoed in rejects).
pub fn body_type_of(request: &ClientRequest) -> BodyType {
    use wire::Body;
    let body = match request {
        ClientRequest::Logon(_) => Body::Logon,
        ClientRequest::Logout => Body::Logout,
        ClientRequest::Heartbeat { .. } => Body::Heartbeat,
        ClientRequest::NewOrder(_) => Body::NewOrder,
        ClientRequest::Cancel(_) => Body::Cancel,
        ClientRequest::Amend { .. } => Body::Amend,
        ClientRequest::MassCancel { .. } => Body::MassCancel,
        ClientRequest::BalanceQuery => Body::BalanceQuery,
        ClientRequest::OpenOrdersQuery { .. } => Body::OpenOrdersQuery,
        ClientRequest::Subscribe { .. } => Body::Subscribe,
        ClientRequest::Unsubscribe { .. } => Body::Unsubscribe,
        ClientRequest::StatusQuery => Body::StatusQuery,
        ClientRequest::ReferenceQuery => Body::ReferenceQuery,
        ClientRequest::Admin(admin) => return view::refused_type(admin.to_command().kind()),
    };
    body.0
}

/// The action a permitted request turns into. Trading requests always carry the key's
/// own account: a trader can only ever act for itself, and the engine answers
/// `UnknownOrder` for another account's order id.
fn permitted_action(
    role: Role,
    origin: Origin,
    request: &ClientRequest,
) -> Result<Option<Action>, SessionReason> {
    let submit = |command| Ok(Some(Action::Submit { origin, command }));
    let query = |query| Ok(Some(Action::Query { origin, query }));
    match (role, *request) {
        (Role::Trader { account }, ClientRequest::NewOrder(order)) => {
            submit(Command::Place(order.to_place(account)))
        }
        (Role::Trader { account }, ClientRequest::Cancel(order)) => {
            submit(Command::Cancel { account, order })
        }
        (Role::Trader { account }, ClientRequest::Amend { order, price, qty }) => {
            submit(Command::Amend { account, order, price, qty })
        }
        (Role::Trader { account }, ClientRequest::MassCancel { market }) => {
            submit(Command::MassCancel { account, market })
        }
        (Role::Trader { account }, ClientRequest::BalanceQuery) => {
            query(Query::Balances { account })
        }
        (Role::Trader { account }, ClientRequest::OpenOrdersQuery { market }) => {
            query(Query::OpenOrders { account, market })
        }
        (Role::Admin, ClientRequest::Admin(admin)) => submit(admin.to_command()),
        (Role::Admin, ClientRequest::StatusQuery) => query(Query::Status),
        // Reference data is public: every logged-on key may read it.
        (_, ClientRequest::ReferenceQuery) => query(Query::Reference),
        _ => Err(SessionReason::NotPermitted),
    }
}
