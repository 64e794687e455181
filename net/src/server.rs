//! The `bourse` daemon: one net core and one shard core, each pinned to its CPU.
//!
//! ```text
//!  clients ──TCP──> net core (monoio, io_uring)            shard core (own thread)
//!                   accept, read, Gateway::on_bytes         Sequencer: index + time
//!                   Submit/Query ──> request ring ───────>  CommandLog (commit)
//!                                                           Exchange::apply
//!                   Gateway::on_events <── output ring <──  events + Applied marker
//!                   write outbound to sockets
//! ```
//!
//! The net core is a single-threaded monoio runtime on the io_uring driver: every
//! connection has a reader task and a writer task, a response task drains the output
//! ring, and a tick task drives timers and shutdown. All of them share one `NetCore`
//! (`Rc`, `RefCell`: one thread). The shard core is a plain thread that never does I/O
//! (`shard.rs`). The two rings are bounded lock-free SPSC queues (`rtrb`); each side
//! rings the other's bell only when the other may be asleep, so a busy system pays no
//! syscall per message.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bourse_engine::{Event, Exchange};
use monoio::io::Splitable;
use monoio::net::{TcpListener, TcpStream};

use crate::audit::AuditLog;
use crate::auth::KeyStore;
use crate::config::{Config, Durability};
use crate::datalock::DataDirLock;
use crate::durable::{self, SnapshotJob, SnapshotThread, WalLog};
use crate::metrics::{Hop, HopRecorder, Metrics};
use crate::metrics_http::MetricsServer;
use crate::port::{PortError, ReservedPort};
use crate::protocol::{
    AssetInfo, MarketInfo, OpenOrderInfo, SessionReason, OPEN_ORDERS_PER_REPLY_MAX,
    REFERENCE_ASSETS_MAX, REFERENCE_MARKETS_MAX,
};
use crate::session::{Action, Audit, ConnId, Gateway, Origin, Query as GatewayQuery};
use crate::shard::{
    Bells, CommandLog, IdleWait, MemoryLog, Output, Query, Reply, Request, Shard, ShardOptions,
    SnapshotPolicy, SystemClock,
};
use crate::tls::{ReadBytes, WriteBytes};
use bourse_replication::{DurabilityMode, WalOptions};

/// Bytes one socket read takes at most.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Bytes one socket write sends at most.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// Requests the net core may hold back while the request ring is full; readers stop
/// reading above it (TCP back-pressure to the clients).
const BACKLOG_REQUESTS_MAX: usize = 16 * 1024;
/// Outputs handled between two rounds of waking writers.
const OUTPUT_BATCH_MAX: usize = 4096;
/// How often timers (heartbeats, idle timeouts, session expiry) run.
const TICK: Duration = Duration::from_millis(50);
/// How long shutdown waits for connections to flush before closing them hard.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// How long a closing connection may take to flush its last bytes (a logout) before its
/// socket is shut anyway: a peer that does not read must not hold it for ever.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// How long the net core waits for the shard core to stop once it has asked (after the
/// connections are closed); past it the server reports an error and the process exits.
const SHARD_STOP_MAX: Duration = Duration::from_secs(10);

/// Nanoseconds since the Unix epoch (session timers and heartbeats).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A one-waiter notification for tasks of the net core's thread.
#[derive(Default)]
struct LocalNotify {
    notified: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LocalNotify {
    fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.notified.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The socket side of one connection, as the net core's tasks see it.
struct ConnIo {
    fd: RawFd,
    /// Wakes the writer: new outbound bytes, or a close.
    writer: LocalNotify,
    /// When the connection started closing (the gateway asked, or the peer went):
    /// the writer flushes, then shuts the socket; a flush that takes longer than
    /// `CLOSE_FLUSH` (the peer does not read) is cut short by the tick task.
    closing_since: Cell<Option<Instant>>,
    /// When the oldest command whose reports wait to be written was applied (wall ns;
    /// 0: none): the `apply_to_write` hop ends when a write taken after it completes.
    ack_since: Cell<u64>,
}

impl ConnIo {
    fn closing(&self) -> bool {
        self.closing_since.get().is_some()
    }

    /// Starts closing (once) and wakes the writer to flush.
    fn close(&self) {
        if self.closing_since.get().is_none() {
            self.closing_since.set(Some(Instant::now()));
        }
        self.writer.notify();
    }
}

/// What the server reports when it stops.
#[derive(Debug)]
pub struct ServerReport {
    pub engine: Exchange,
    pub connections_served: u64,
    /// Why the server stopped on its own (the command log failed); `None` on a clean
    /// shutdown.
    pub failure: Option<String>,
}

/// Everything the net core's tasks share. Lives on the net core's thread only.
struct NetCore {
    gateway: RefCell<Gateway>,
    conns: RefCell<HashMap<ConnId, Rc<ConnIo>>>,
    requests: RefCell<rtrb::Producer<Request>>,
    /// Requests waiting for room in the ring, in order.
    backlog: RefCell<VecDeque<Request>>,
    backlog_drained: LocalNotify,
    outputs: RefCell<rtrb::Consumer<Output>>,
    bells: Arc<Bells>,
    /// Scratch buffers reused by every call into the gateway.
    actions: RefCell<Vec<Action>>,
    dirty: RefCell<Vec<ConnId>>,
    stopping: Cell<bool>,
    stop: LocalNotify,
    /// The shard stopped on a log failure: exit with an error.
    fatal: Cell<bool>,
    snapshots: SnapshotPolicy,
    snapshot_thread: RefCell<Option<SnapshotThread>>,
    /// Events of the command being received, until its `Applied` marker.
    events: RefCell<Vec<Event>>,
    connections_served: Cell<u64>,
    /// Commands the server issued itself (the bootstrap) still to be applied; nobody
    /// is let in before they are, so no client sees a half-built exchange.
    bootstrap_left: Cell<usize>,
    bootstrap_done: LocalNotify,
    /// Audit lines and rate-limited connection noise (`audit.rs`).
    audit_log: RefCell<AuditLog>,
    /// Scratch for `Gateway::take_audit`.
    audit: RefCell<Vec<Audit>>,
    /// TLS on the client port (`[server.tls]`); `None`: plaintext.
    tls: Option<Arc<rustls::ServerConfig>>,
    metrics: Arc<Metrics>,
    /// The net core's latency recording (read -> ring, apply -> write).
    recorder: RefCell<HopRecorder>,
    /// When the bytes being handled were read (wall ns; the start of `read_to_ring`).
    read_ns: Cell<u64>,
}

impl NetCore {
    /// Carries out the gateway's actions (which may produce more) and wakes every
    /// writer with new bytes. Called after every gateway call.
    fn settle(&self) {
        let mut rang = false;
        loop {
            let mut actions = std::mem::take(&mut *self.actions.borrow_mut());
            if actions.is_empty() {
                *self.actions.borrow_mut() = actions;
                break;
            }
            for action in actions.drain(..) {
                rang |= self.act(action);
            }
            let mut slot = self.actions.borrow_mut();
            actions.append(&mut slot);
            *slot = actions;
        }
        if rang {
            self.bells.ring_shard();
        }
        self.log_audit();
        let mut dirty = self.dirty.borrow_mut();
        self.gateway.borrow_mut().take_dirty(&mut dirty);
        let conns = self.conns.borrow();
        for conn in dirty.drain(..) {
            if let Some(io) = conns.get(&conn) {
                io.writer.notify();
            }
        }
    }

    /// Logs what the gateway recorded for the audit trail (logons, logouts, admin).
    fn log_audit(&self) {
        let mut audit = self.audit.borrow_mut();
        self.gateway.borrow_mut().take_audit(&mut audit);
        if audit.is_empty() {
            return;
        }
        let now = now_ns();
        let mut log = self.audit_log.borrow_mut();
        for record in audit.drain(..) {
            log.record(now, &record);
        }
    }

    /// One action; true if it queued a request for the shard.
    fn act(&self, action: Action) -> bool {
        match action {
            Action::Submit { origin, command } => {
                let ring_ns = self.read_ns.get();
                self.submit(Request::Command { origin: Some(origin), command, ring_ns })
            }
            Action::Query { origin, query } => {
                let query = match query {
                    GatewayQuery::Balances { account } => Query::Balances { account },
                    GatewayQuery::OpenOrders { account, market } => Query::OpenOrders {
                        account,
                        market,
                        orders_max: OPEN_ORDERS_PER_REPLY_MAX + 1,
                    },
                    GatewayQuery::Status => Query::Status,
                    GatewayQuery::Reference => Query::Reference,
                };
                self.submit(Request::Query { origin: Some(origin), query })
            }
            Action::Subscribe { conn, request_id, market, depth } => {
                let origin = Origin { conn, session_id: 0, request_id };
                let query = Query::Depth { market, levels_max: depth };
                self.submit(Request::Query { origin: Some(origin), query })
            }
            Action::Close { conn, .. } => {
                if let Some(io) = self.conns.borrow().get(&conn) {
                    io.close();
                }
                false
            }
        }
    }

    /// Queues a request for the shard, in order: behind the backlog if there is one.
    fn submit(&self, mut request: Request) -> bool {
        let mut backlog = self.backlog.borrow_mut();
        let mut requests = self.requests.borrow_mut();
        // Stamped only when it is sure to go in, so each command is measured once.
        if backlog.is_empty() && requests.slots() > 0 {
            self.stamp_ring(&mut request);
            let pushed = requests.push(request);
            assert!(pushed.is_ok(), "the producer saw a free slot");
            return true;
        }
        backlog.push_back(request);
        false
    }

    /// Moves backlogged requests into the ring as room appears.
    fn flush_backlog(&self) {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.is_empty() {
            return;
        }
        let mut requests = self.requests.borrow_mut();
        let mut moved = false;
        while requests.slots() > 0 {
            let Some(mut request) = backlog.pop_front() else { break };
            self.stamp_ring(&mut request);
            let pushed = requests.push(request);
            assert!(pushed.is_ok(), "the producer saw a free slot");
            moved = true;
        }
        if moved {
            self.bells.ring_shard();
        }
        if backlog.len() < BACKLOG_REQUESTS_MAX / 2 {
            self.backlog_drained.notify();
        }
    }

    /// Why the snapshot writer failed, once it has (fatal, like a log failure).
    fn snapshot_failure(&self) -> Option<String> {
        self.snapshot_thread.borrow().as_ref().and_then(SnapshotThread::failure)
    }

    /// Ends `read_to_ring` for a command about to enter the ring and stamps it with the
    /// time, for the shard to end `ring_to_sequenced`.
    fn stamp_ring(&self, request: &mut Request) {
        let Request::Command { ring_ns, .. } = request else { return };
        if *ring_ns == 0 {
            return;
        }
        let mut recorder = self.recorder.borrow_mut();
        if !recorder.enabled() {
            *ring_ns = 0;
            return;
        }
        let now = now_ns();
        recorder.record(Hop::ReadToRing, now.saturating_sub(*ring_ns));
        *ring_ns = now;
    }

    fn backlogged(&self) -> bool {
        self.backlog.borrow().len() >= BACKLOG_REQUESTS_MAX
    }

    /// A copy of the engine right after `index`. Every output before it has gone
    /// through the gateway and none after, so the streams are exported at exactly the
    /// same point; the snapshot thread encodes and writes both.
    fn snapshot(&self, index: u64, engine: Box<Exchange>) {
        let thread = self.snapshot_thread.borrow();
        match thread.as_ref() {
            Some(thread) => {
                let streams = self.gateway.borrow().export_streams();
                thread.submit(SnapshotJob { index, engine, streams });
            }
            None => self.snapshots.in_flight.store(false, Ordering::Release),
        }
    }

    /// Copies the gateway's counters and the ring depths into the metrics (every tick),
    /// and hands the net core's latencies to the metrics thread when due.
    fn publish_metrics(&self) {
        use crate::metrics::set;
        let stats = self.gateway.borrow().stats();
        let n = &self.metrics.net;
        set(&n.connections_accepted, self.connections_served.get());
        set(&n.connections_open, stats.connections as u64);
        set(&n.sessions_logged_on, stats.logged_on as u64);
        set(&n.logons, stats.logons);
        set(&n.frames_in, stats.frames_in);
        set(&n.session_rejects, stats.session_rejects);
        for (slot, value) in n.session_rejects_by_reason.iter().zip(stats.session_rejects_by_reason)
        {
            set(slot, value);
        }
        set(&n.closes, stats.closes);
        let requests = self.requests.borrow();
        set(&n.request_ring_depth, (requests.buffer().capacity() - requests.slots()) as u64);
        set(&n.output_ring_depth, self.outputs.borrow().slots() as u64);
        set(&n.backlog_depth, self.backlog.borrow().len() as u64);
        drop(requests);
        self.recorder.borrow_mut().maybe_publish(now_ns());
    }

    /// Handles what the shard produced; true if there was anything.
    fn drain_outputs(&self) -> bool {
        let mut handled = 0;
        let now = now_ns();
        loop {
            let output = self.outputs.borrow_mut().pop();
            let Ok(output) = output else { break };
            handled += 1;
            if let Output::Snapshot { index, engine } = output {
                self.snapshot(index, engine);
                continue;
            }
            let mut actions = self.actions.borrow_mut();
            let mut gateway = self.gateway.borrow_mut();
            let mut events = self.events.borrow_mut();
            match output {
                Output::Event(event) => {
                    self.metrics.net.on_event(&event.kind);
                    events.push(event)
                }
                Output::Applied { origin, kind, applied_ns, .. } => {
                    self.metrics.net.on_applied(kind);
                    if let (Some(origin), true) = (origin, applied_ns != 0) {
                        if let Some(io) = self.conns.borrow().get(&origin.conn) {
                            if io.ack_since.get() == 0 {
                                io.ack_since.set(applied_ns);
                            }
                        }
                    }
                    gateway.on_events(origin, &events, now, &mut actions);
                    events.clear();
                    if origin.is_none() && self.bootstrap_left.get() > 0 {
                        self.bootstrap_left.set(self.bootstrap_left.get() - 1);
                        if self.bootstrap_left.get() == 0 {
                            self.bootstrap_done.notify();
                        }
                    }
                }
                Output::Reply { origin, index, reply } => {
                    reply_to_gateway(&mut gateway, origin, index, reply, now, &mut actions)
                }
                Output::Snapshot { .. } => unreachable!("handled above"),
                Output::Fatal(why) => {
                    eprintln!("bourse: the command log failed, stopping: {why}");
                    self.fatal.set(true);
                    self.stop.notify();
                }
            }
            drop((actions, gateway, events));
            if handled % OUTPUT_BATCH_MAX == 0 {
                self.settle();
            }
        }
        if handled > 0 {
            self.settle();
            self.flush_backlog();
        }
        handled > 0
    }
}

fn reply_to_gateway(
    gateway: &mut Gateway,
    origin: crate::shard::Origin,
    index: u64,
    reply: Reply,
    now: u64,
    actions: &mut Vec<Action>,
) {
    let Some(origin) = origin else { return };
    match reply {
        Reply::Balances(balances) => gateway.reply_balances(origin, now, &balances, actions),
        Reply::OpenOrders { orders, .. } => {
            let orders: Vec<OpenOrderInfo> = orders.iter().map(OpenOrderInfo::from).collect();
            gateway.reply_open_orders(origin, now, &orders, actions)
        }
        Reply::Depth { market, depth: Some(depth) } => gateway.reply_book_snapshot(
            origin.conn,
            now,
            origin.request_id,
            market,
            index,
            &depth.bids,
            &depth.asks,
            actions,
        ),
        Reply::Depth { market, depth: None } => {
            gateway.reject_subscribe(origin.conn, now, origin.request_id, market, actions)
        }
        Reply::Status { last_index, state_hash } => {
            gateway.reply_status(origin, now, last_index, state_hash, actions)
        }
        Reply::Reference { assets, markets } => {
            // One past each bound is enough for the gateway to see that it must cut and
            // flag the reply.
            let assets: Vec<AssetInfo> =
                assets.iter().take(REFERENCE_ASSETS_MAX + 1).map(AssetInfo::from).collect();
            let markets: Vec<MarketInfo> =
                markets.iter().take(REFERENCE_MARKETS_MAX + 1).map(MarketInfo::from).collect();
            gateway.reply_reference(origin, now, &assets, &markets, actions)
        }
    }
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("io_uring runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
}

/// Pins the current thread to `cpu` if asked and possible; says what it did.
pub fn pin_current(what: &str, cpu: usize, pin: bool) {
    if !pin {
        return;
    }
    // Not `core_affinity::get_core_ids()`: that is this thread's mask, which
    // `affinity::keep_off` has narrowed.
    let core = core_affinity::CoreId { id: cpu };
    match crate::affinity::may_use(cpu).then_some(core) {
        Some(core) if core_affinity::set_for_current(core) => {
            eprintln!("bourse: {what} pinned to cpu {cpu}");
        }
        _ => eprintln!("bourse: {what}: cpu {cpu} is not available here; not pinned"),
    }
}

/// The pieces `run_with` needs beyond the config: an engine and report streams (fresh
/// or recovered), the command log the shard core appends to, and, with a data
/// directory, where snapshots go.
pub struct Start<L> {
    pub engine: Exchange,
    pub gateway: Gateway,
    /// The log's last index (the sequencer continues after it).
    pub last_index: u64,
    pub last_time_ns: u64,
    /// When the shard hands over engine copies to snapshot (`SnapshotPolicy::never()`
    /// without a data directory).
    pub snapshots: SnapshotPolicy,
    pub log: L,
    /// Commands to run before anything else (the config's bootstrap on a fresh exchange).
    pub bootstrap: Vec<bourse_engine::Command>,
    /// The bells between the cores (the WAL's io thread rings the shard's).
    pub bells: Arc<Bells>,
    /// Writes snapshots; `None` without a data directory.
    pub snapshot_thread: Option<SnapshotThread>,
    /// The data directory's lock, held until the server has stopped; `None` without one.
    pub data_dir_lock: Option<DataDirLock>,
    /// The client port, bound before recovery (`None`: `run_with` binds it).
    pub reserved_port: Option<ReservedPort>,
    /// Counters, gauges and latency recorders of this run.
    pub metrics: Arc<Metrics>,
    /// The metrics thread, if it was started before recovery (`run` does, so `/ready`
    /// answers 503 while recovery runs); otherwise `run_with` starts it.
    pub metrics_server: Option<MetricsServer>,
}

/// Starts the metrics thread the config asks for. A port that cannot be bound stops
/// nothing but metrics: the trading port matters more (said loudly on stderr).
pub fn start_metrics(config: &Config, metrics: &Arc<Metrics>) -> Option<MetricsServer> {
    let m = &config.metrics;
    if !m.enabled {
        return None;
    }
    let avoid = config.server.pin.then_some(config.server.shard_core);
    match MetricsServer::start(m.listen, metrics.clone(), avoid, m.hlog_file.clone()) {
        Ok(server) => {
            metrics.set_http_addr(server.addr);
            eprintln!("bourse: metrics on http://{}/metrics", server.addr);
            Some(server)
        }
        Err(e) => {
            eprintln!(
                "bourse: WARNING: metrics: cannot listen on {}: {e}; metrics are off",
                m.listen
            );
            None
        }
    }
}

fn new_gateway(config: &Config) -> Result<Gateway, ServerError> {
    let keys = KeyStore::new(config.keys.iter().cloned())
        .map_err(|e| ServerError::Config(format!("keys: {e}")))?;
    Gateway::new(config.gateway, keys, now_ns())
        .map_err(|e| ServerError::Config(format!("gateway: {e}")))
}

impl Start<MemoryLog> {
    /// A fresh, memory-only exchange set up by the config's bootstrap commands.
    pub fn memory(config: &Config) -> Result<Start<MemoryLog>, ServerError> {
        let engine =
            Exchange::new(config.engine).map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(Start {
            engine,
            gateway: new_gateway(config)?,
            last_index: 0,
            last_time_ns: 0,
            snapshots: SnapshotPolicy::never(),
            log: MemoryLog::default(),
            bootstrap: config.bootstrap.clone(),
            bells: Arc::new(Bells::default()),
            snapshot_thread: None,
            data_dir_lock: None,
            reserved_port: None,
            metrics: Metrics::new(config.metrics.histograms),
            metrics_server: None,
        })
    }
}

impl Start<WalLog> {
    /// The exchange in `data_dir`: recovered from its newest snapshot and log, or fresh
    /// (then set up by the config's bootstrap, through the log like any command).
    pub fn durable(config: &Config, data_dir: &Path) -> Result<Start<WalLog>, ServerError> {
        Start::durable_observed(config, data_dir, Metrics::new(config.metrics.histograms))
    }

    /// `durable`, measured into `metrics` (the WAL's fsync latency and counters).
    pub fn durable_observed(
        config: &Config,
        data_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Start<WalLog>, ServerError> {
        let storage = &config.storage;
        // Before anything in the directory is read: one daemon per data directory.
        let data_dir_lock = DataDirLock::acquire(data_dir).map_err(ServerError::Storage)?;
        // And the port: a busy one is found now, not after a long recovery.
        let reserved_port = ReservedPort::bind(config.server.listen)?;
        let engine =
            Exchange::new(config.engine).map_err(|e| ServerError::Config(e.to_string()))?;
        let bells = Arc::new(Bells::default());
        let ring = bells.clone();
        let io_cpu = (config.server.pin && cpu_exists(config.server.io_core))
            .then_some(config.server.io_core);
        let mode = match storage.durability {
            Durability::Memory => DurabilityMode::Memory,
            Durability::Disk => DurabilityMode::Disk,
        };
        let batch_interval = match mode {
            DurabilityMode::Memory => Duration::from_micros(storage.flush_interval_us),
            // Acknowledgements wait for the fsync: never delay it.
            DurabilityMode::Disk => Duration::ZERO,
        };
        let wal_options = WalOptions {
            // An fsync that commits entries (disk mode) wakes a parked shard core.
            on_durable: Some(Arc::new(move |_| ring.ring_shard())),
            on_sync: wal_sync_recorder(&metrics),
            io_cpu,
            batch_interval,
            ..WalOptions::default()
        };
        let gateway = new_gateway(config)?;
        let recovered =
            durable::recover(data_dir, storage.snapshots_keep, wal_options, engine, gateway)
                .map_err(ServerError::Storage)?;
        let snapshots = SnapshotPolicy {
            every_entries: storage.snapshot_every_entries,
            every: (storage.snapshot_every_secs > 0)
                .then(|| Duration::from_secs(storage.snapshot_every_secs)),
            requested: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicBool::new(false)),
        };
        let keep_from = Arc::new(AtomicU64::new(0));
        let snapshot_thread =
            SnapshotThread::spawn(recovered.store, snapshots.in_flight.clone(), keep_from.clone())
                .map_err(ServerError::Runtime)?;
        let last_time_ns = recovered.engine.last_time_ns();
        metrics.watch_wal(recovered.wal.monitor());
        Ok(Start {
            engine: recovered.engine,
            gateway: recovered.gateway,
            last_index: recovered.last_index,
            last_time_ns,
            snapshots,
            log: WalLog::new(recovered.wal, mode, keep_from),
            bootstrap: if recovered.fresh { config.bootstrap.clone() } else { Vec::new() },
            bells,
            snapshot_thread: Some(snapshot_thread),
            data_dir_lock: Some(data_dir_lock),
            reserved_port: Some(reserved_port),
            metrics,
            metrics_server: None,
        })
    }
}

/// The WAL io thread's `wal_sync` recorder. The callback must be `Sync`; only the io
/// thread ever calls it, so the mutex is never contended, and `try_lock` makes sure it
/// could never wait anyway (a sample would be dropped instead).
fn wal_sync_recorder(metrics: &Arc<Metrics>) -> Option<bourse_replication::wal::SyncCallback> {
    if !metrics.histograms() {
        return None;
    }
    let recorder = std::sync::Mutex::new(metrics.recorder(&[Hop::WalSync]));
    Some(Arc::new(move |took: Duration| {
        if let Ok(mut recorder) = recorder.try_lock() {
            recorder.record(Hop::WalSync, took.as_nanos() as u64);
            recorder.maybe_publish(now_ns());
        }
    }))
}

/// A memory-only server on its own thread (tests, the load generator's in-process
/// mode): started on `config.server.listen` (port 0 picks a free one), stopped the way
/// SIGTERM stops the daemon, and stopped on drop.
pub struct BackgroundServer {
    pub addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<ServerReport, ServerError>>>,
}

impl BackgroundServer {
    /// Starts it and waits (up to 20 s) until it listens.
    pub fn start(config: Config) -> Result<BackgroundServer, ServerError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bourse-server".into())
            .spawn(move || {
                let start = Start::memory(&config)?;
                let metrics = start.metrics.clone();
                run_with(&config, start, thread_stop, |addr| {
                    let _ = tx.send((addr, metrics));
                })
            })
            .map_err(ServerError::Runtime)?;
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((addr, metrics)) => {
                Ok(BackgroundServer { addr, metrics, stop, thread: Some(thread) })
            }
            // It stopped before listening: its own error says why.
            Err(_) => Err(match thread.join() {
                Ok(Err(e)) => e,
                _ => ServerError::Config("the server did not start within 20 s".into()),
            }),
        }
    }

    /// Where its metrics are served (`metrics.listen`; `None` if metrics are off).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.http_addr()
    }

    /// Its counters and gauges, as the metrics thread sees them.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops it and returns what it reports (the final engine among it).
    pub fn stop(mut self) -> Result<ServerReport, ServerError> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("a server is stopped once");
        thread.join().map_err(|_| ServerError::Config("the server thread panicked".into()))?
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn cpu_exists(cpu: usize) -> bool {
    crate::affinity::may_use(cpu)
}

/// Runs the server the config describes until `stop` is set: memory only, or durable
/// in `storage.data_dir`. SIGUSR1 asks for a snapshot.
pub fn run(config: &Config, stop: Arc<AtomicBool>) -> Result<ServerReport, ServerError> {
    if config.server.pin {
        // Before any thread starts: they inherit this mask (see `affinity`).
        match crate::affinity::keep_off(config.server.shard_core) {
            Ok(()) => {
                eprintln!("bourse: unpinned threads kept off cpu {}", config.server.shard_core)
            }
            Err(why) => eprintln!("bourse: unpinned threads may share the shard core: {why}"),
        }
    }
    match &config.storage.data_dir {
        None => run_with(config, Start::memory(config)?, stop, |_| {}),
        Some(dir) => {
            // Metrics first, so `/health` answers and `/ready` says 503 during recovery.
            let metrics = Metrics::new(config.metrics.histograms);
            let metrics_server = start_metrics(config, &metrics);
            let mut start = Start::durable_observed(config, dir, metrics)?;
            start.metrics_server = metrics_server;
            signal_hook::flag::register(
                signal_hook::consts::SIGUSR1,
                start.snapshots.requested.clone(),
            )
            .map_err(ServerError::Runtime)?;
            run_with(config, start, stop, |_| {})
        }
    }
}

/// Runs the server with a given engine and command log until `stop` is set; `ready` is
/// called with the bound address once the listener is up.
pub fn run_with<L: CommandLog + Send + 'static>(
    config: &Config,
    start: Start<L>,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<ServerReport, ServerError> {
    // Checked here too: `--listen` and programmatic configs bypass the file's check.
    if config.server.tls.is_none() {
        crate::tls::check_plaintext(config.server.listen, config.server.plaintext)
            .map_err(|e| ServerError::Config(format!("config: {e}")))?;
    }
    let listener = match start.reserved_port {
        Some(port) => port.listen()?,
        None => ReservedPort::bind(config.server.listen)?.listen()?,
    };
    let local = listener.local_addr().map_err(ServerError::Runtime)?;
    let tls = match &config.server.tls {
        Some(files) => Some(crate::tls::server_config(files).map_err(ServerError::Config)?),
        None => None,
    };

    let (mut requests_tx, requests_rx) =
        rtrb::RingBuffer::<Request>::new(config.server.ring_entries);
    let (outputs_tx, outputs_rx) = rtrb::RingBuffer::<Output>::new(config.server.ring_entries);
    let bells = start.bells.clone();
    let bootstrap_len = start.bootstrap.len();
    for command in start.bootstrap {
        // The ring is empty and sized for thousands; a bootstrap larger than it is a
        // config error worth stopping for.
        requests_tx
            .push(Request::Command { origin: None, command, ring_ns: 0 })
            .map_err(|_| ServerError::Config("bootstrap larger than server.ring_entries".into()))?;
    }
    let options = ShardOptions {
        idle_spin: Duration::from_micros(config.server.shard_idle_spin_us),
        idle: match config.server.shard_idle {
            crate::config::ShardIdle::Spin => IdleWait::Spin,
            crate::config::ShardIdle::Yield => IdleWait::Yield,
        },
        ..ShardOptions::default()
    };
    let shard = Shard::new(
        start.engine,
        start.log,
        SystemClock,
        start.last_index,
        start.last_time_ns,
        options,
        start.snapshots.clone(),
    );
    let start_snapshots = start.snapshots.clone();
    let start_index = start.last_index;
    // Held until everything below has stopped and the log is closed.
    let data_dir_lock = start.data_dir_lock;
    let shard = shard.with_metrics(&start.metrics);
    let metrics = start.metrics.clone();
    let _metrics_server = start.metrics_server.or_else(|| start_metrics(config, &metrics));
    let shard_bells = bells.clone();
    let (shard_core, pin) = (config.server.shard_core, config.server.pin);
    let shard_thread = std::thread::Builder::new()
        .name("bourse-shard".into())
        .spawn(move || {
            pin_current("shard core", shard_core, pin);
            shard.run(requests_rx, outputs_tx, shard_bells)
        })
        .map_err(ServerError::Runtime)?;

    pin_current("net core", config.server.net_core, config.server.pin);
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build()
        .map_err(ServerError::Runtime)?;
    let core = Rc::new(NetCore {
        gateway: RefCell::new(start.gateway),
        conns: RefCell::new(HashMap::new()),
        requests: RefCell::new(requests_tx),
        backlog: RefCell::new(VecDeque::new()),
        backlog_drained: LocalNotify::default(),
        outputs: RefCell::new(outputs_rx),
        bells: bells.clone(),
        actions: RefCell::new(Vec::new()),
        dirty: RefCell::new(Vec::new()),
        stopping: Cell::new(false),
        stop: LocalNotify::default(),
        fatal: Cell::new(false),
        snapshots: start_snapshots,
        snapshot_thread: RefCell::new(start.snapshot_thread),
        events: RefCell::new(Vec::with_capacity(4096)),
        connections_served: Cell::new(0),
        bootstrap_left: Cell::new(bootstrap_len),
        bootstrap_done: LocalNotify::default(),
        audit_log: RefCell::new(AuditLog::default()),
        audit: RefCell::new(Vec::new()),
        tls,
        recorder: RefCell::new(metrics.recorder(&[Hop::ReadToRing, Hop::ApplyToWrite])),
        metrics,
        read_ns: Cell::new(0),
    });
    bells.ring_shard();
    ready(local);
    eprintln!("bourse: listening on {local}");
    runtime.block_on(net_main(core.clone(), listener, stop));
    // Everything before the shutdown request is applied; the outputs still in the ring
    // go through the gateway as usual, so the report streams end where the engine does.
    // The shard keeps reading requests even after a log failure, so both waits end;
    // they are bounded all the same: a stuck shard must not keep the process alive.
    let deadline = Instant::now() + SHARD_STOP_MAX;
    let stuck =
        || ServerError::Storage(format!("the shard core did not stop within {SHARD_STOP_MAX:?}"));
    let mut shutdown = Request::Shutdown;
    loop {
        match core.requests.borrow_mut().push(shutdown) {
            Ok(()) => break,
            Err(rtrb::PushError::Full(back)) => shutdown = back,
        }
        core.drain_outputs();
        if Instant::now() >= deadline {
            return Err(stuck());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bells.ring_shard();
    let (engine, log) = loop {
        if shard_thread.is_finished() {
            break shard_thread.join().expect("the shard core does not panic");
        }
        core.drain_outputs();
        bells.ring_shard();
        if Instant::now() >= deadline {
            return Err(stuck());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    core.drain_outputs();
    let mut failure = log.close().err();
    let snapshot_failure = core.snapshot_failure();
    if let Some(thread) = core.snapshot_thread.borrow_mut().take() {
        let healthy = failure.is_none() && !core.fatal.get() && snapshot_failure.is_none();
        if healthy && engine.last_index() > start_index {
            // A last snapshot makes the next start fast; the log is closed and complete.
            let streams = core.gateway.borrow().export_streams();
            let job = SnapshotJob {
                index: engine.last_index(),
                engine: Box::new(engine.clone()),
                streams,
            };
            thread.submit(job);
        }
        if let Err(why) = thread.finish() {
            failure.get_or_insert(format!("the snapshot writer failed: {why}"));
        }
    }
    if core.fatal.get() && failure.is_none() {
        failure = Some("the command log failed (see above)".into());
    }
    drop(data_dir_lock);
    Ok(ServerReport { engine, connections_served: core.connections_served.get(), failure })
}

async fn net_main(core: Rc<NetCore>, listener: TcpListener, stop: Arc<AtomicBool>) {
    monoio::spawn(response_task(core.clone()));
    monoio::spawn(tick_task(core.clone(), stop));
    if core.bootstrap_left.get() > 0 {
        core.bootstrap_done.wait().await;
        eprintln!("bourse: bootstrap applied; accepting connections");
    }
    if let Ok(local) = listener.local_addr() {
        crate::notify::ready(local);
    }
    core.metrics.ready.store(true, Ordering::Relaxed);
    loop {
        monoio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => accept(&core, stream, peer),
                Err(e) => {
                    core.audit_log.borrow_mut().accept_failed(now_ns(), &e);
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = core.stop.wait() => break,
        }
    }
    core.metrics.ready.store(false, Ordering::Relaxed);
    drop(listener);
    // Close every connection with a Logout(Shutdown), let the writers flush, then go.
    let now = now_ns();
    let conns: Vec<ConnId> = core.conns.borrow().keys().copied().collect();
    for conn in conns {
        core.gateway.borrow_mut().close(
            conn,
            now,
            SessionReason::Shutdown,
            &mut core.actions.borrow_mut(),
        );
    }
    core.settle();
    let deadline = Instant::now() + SHUTDOWN_FLUSH;
    while !core.conns.borrow().is_empty() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    for io in core.conns.borrow().values() {
        let _ = nix::sys::socket::shutdown(io.fd, nix::sys::socket::Shutdown::Both);
    }
}

fn accept(core: &Rc<NetCore>, stream: TcpStream, peer: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut nonce = [0u8; crate::auth::NONCE_BYTES];
    if getrandom::fill(&mut nonce).is_err() {
        crate::log_error!("no randomness for a logon challenge; connection refused");
        return;
    }
    let connected = {
        let mut actions = core.actions.borrow_mut();
        core.gateway.borrow_mut().on_connect(now_ns(), peer, nonce, &mut actions)
    };
    let conn = match connected {
        Ok(conn) => conn,
        Err(error) => {
            // Over a limit: the socket is dropped (closed) at once.
            core.audit_log.borrow_mut().connect_refused(now_ns(), peer, error);
            core.settle();
            return;
        }
    };
    core.connections_served.set(core.connections_served.get() + 1);
    let io = Rc::new(ConnIo {
        fd: stream.as_raw_fd(),
        writer: LocalNotify::default(),
        closing_since: Cell::new(None),
        ack_since: Cell::new(0),
    });
    core.conns.borrow_mut().insert(conn, io.clone());
    match core.tls.clone() {
        None => {
            let (reader, writer) = stream.into_split();
            spawn_loops(core, conn, io, reader, writer);
        }
        Some(tls) => {
            monoio::spawn(tls_handshake(core.clone(), conn, io, tls, stream));
        }
    }
    core.settle();
}

/// Starts a connection's reader and writer over its byte stream (plain TCP or TLS).
fn spawn_loops<R, W>(core: &Rc<NetCore>, conn: ConnId, io: Rc<ConnIo>, reader: R, writer: W)
where
    R: ReadBytes + 'static,
    W: WriteBytes + 'static,
{
    monoio::spawn(write_loop(core.clone(), conn, io.clone(), writer));
    monoio::spawn(read_loop(core.clone(), conn, io, reader));
}

/// The server side of a TLS handshake, bounded by `tls::HANDSHAKE_DEADLINE` (and by the
/// gateway's logon timeout, which shuts the socket under it). The connection already
/// counts against `connections_max`; its logon challenge waits in the gateway until the
/// writer starts. A failed handshake only ends the connection.
async fn tls_handshake(
    core: Rc<NetCore>,
    conn: ConnId,
    io: Rc<ConnIo>,
    tls: Arc<rustls::ServerConfig>,
    stream: TcpStream,
) {
    let handshake = crate::tls::accept(stream, tls);
    match monoio::time::timeout(crate::tls::HANDSHAKE_DEADLINE, handshake).await {
        Ok(Ok((reader, writer))) if !io.closing() => spawn_loops(&core, conn, io, reader, writer),
        // Timed out, refused, or closed meanwhile: the stream is dropped (closed).
        _ => {
            io.close();
            {
                let mut actions = core.actions.borrow_mut();
                core.gateway.borrow_mut().on_disconnected(conn, now_ns(), &mut actions);
            }
            core.conns.borrow_mut().remove(&conn);
            core.settle();
        }
    }
}

async fn read_loop<R: ReadBytes>(core: Rc<NetCore>, conn: ConnId, io: Rc<ConnIo>, mut reader: R) {
    let mut buf = Vec::with_capacity(READ_BUFFER_BYTES);
    loop {
        while core.backlogged() {
            core.backlog_drained.wait().await;
        }
        let (result, returned) = reader.read_bytes(buf).await;
        buf = returned;
        let n = match result {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = now_ns();
        core.read_ns.set(now);
        crate::metrics::bump(&core.metrics.net.bytes_in, n as u64);
        {
            let mut actions = core.actions.borrow_mut();
            core.gateway.borrow_mut().on_bytes(conn, now, &buf[..n], &mut actions);
        }
        buf.clear();
        core.settle();
        core.read_ns.set(0);
        if io.closing() {
            // The writer flushes and shuts the socket; the read then returns 0.
            continue;
        }
    }
    io.close();
    {
        let mut actions = core.actions.borrow_mut();
        core.gateway.borrow_mut().on_disconnected(conn, now_ns(), &mut actions);
    }
    core.conns.borrow_mut().remove(&conn);
    core.settle();
}

async fn write_loop<W: WriteBytes>(core: Rc<NetCore>, conn: ConnId, io: Rc<ConnIo>, mut writer: W) {
    let mut buf = Vec::with_capacity(WRITE_BUFFER_BYTES);
    loop {
        {
            let gateway = core.gateway.borrow();
            let pending = gateway.outbound(conn);
            let take = pending.len().min(WRITE_BUFFER_BYTES);
            buf.extend_from_slice(&pending[..take]);
        }
        if buf.is_empty() {
            if io.closing() {
                break;
            }
            io.writer.wait().await;
            continue;
        }
        let n = buf.len();
        // Reports of commands applied before this copy are in it.
        let acked_since = io.ack_since.replace(0);
        let (result, returned) = writer.write_all_bytes(buf).await;
        buf = returned;
        buf.clear();
        if result.is_err() {
            break;
        }
        crate::metrics::bump(&core.metrics.net.bytes_out, n as u64);
        if acked_since != 0 {
            let now = now_ns();
            let mut recorder = core.recorder.borrow_mut();
            recorder.record(Hop::ApplyToWrite, now.saturating_sub(acked_since));
            recorder.maybe_publish(now);
        }
        {
            let mut actions = core.actions.borrow_mut();
            core.gateway.borrow_mut().consume_outbound(conn, n, now_ns(), &mut actions);
        }
        core.settle();
    }
    // Flushed (or the peer is gone): shut both directions so the reader ends too.
    let _ = nix::sys::socket::shutdown(io.fd, nix::sys::socket::Shutdown::Both);
}

async fn response_task(core: Rc<NetCore>) {
    loop {
        if core.drain_outputs() {
            // Let the connection tasks run between batches.
            yield_now().await;
            continue;
        }
        // Nothing to do: register with the shard's bell, look once more, then sleep.
        poll_fn(|cx| {
            core.bells.register_net(cx.waker());
            if core.outputs.borrow().is_empty() && core.backlog.borrow().is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }
}

/// Lets the runtime's other tasks run once before this one continues.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

async fn tick_task(core: Rc<NetCore>, stop: Arc<AtomicBool>) {
    // Fed here, on the net core, so a net core that stops turning starves it.
    let mut watchdog = crate::notify::Watchdog::from_env();
    loop {
        monoio::time::sleep(TICK).await;
        watchdog.tick();
        {
            let mut actions = core.actions.borrow_mut();
            core.gateway.borrow_mut().on_tick(now_ns(), &mut actions);
        }
        core.settle();
        core.flush_backlog();
        core.audit_log.borrow_mut().flush(now_ns());
        core.publish_metrics();
        // A connection still in the map has its reader alive, so its fd is open.
        for io in core.conns.borrow().values() {
            if io.closing_since.get().is_some_and(|since| since.elapsed() >= CLOSE_FLUSH) {
                let _ = nix::sys::socket::shutdown(io.fd, nix::sys::socket::Shutdown::Both);
            }
        }
        if stop.load(Ordering::Relaxed) && !core.stopping.get() {
            core.stopping.set(true);
            crate::notify::stopping("signal received; logging out clients and flushing the log");
            core.stop.notify();
        }
        if let Some(why) = core.snapshot_failure() {
            if !core.fatal.get() {
                eprintln!("bourse: the snapshot writer failed, stopping: {why}");
                core.fatal.set(true);
                core.stopping.set(true);
                core.stop.notify();
            }
        }
    }
}
