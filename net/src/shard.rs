//! The shard core: sequencer, command log seam and engine, on one pinned thread.
//!
//! Requests arrive from the net core over a bounded SPSC ring; the sequencer stamps each
//! command with the next log index and the time, hands it to the command log, and the
//! engine applies it once the log says it is committed. The engine's events go back to
//! the net core over a second bounded SPSC ring, followed by an `Applied` marker naming
//! the command's origin. Queries ride the same FIFO, so a query sees every command sent
//! before it on the same connection. This thread never does I/O and never blocks on it:
//! when idle it spins for a while, then parks until the net core rings its bell.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use bourse_engine::{
    AccountId, AssetView, Balance, Command, CommandKind, Depth, Event, Exchange, LogIndex,
    MarketId, MarketView, OrderView,
};

use crate::metrics::{self, Hop, HopRecorder, Metrics};

/// Where a request came from: the gateway's origin, or `None` for commands the server
/// issues itself (bootstrap from the config).
pub type Origin = Option<crate::session::Origin>;

/// Read-only questions answered from the applied state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    Balances {
        account: AccountId,
    },
    OpenOrders {
        account: AccountId,
        market: Option<MarketId>,
        orders_max: usize,
    },
    /// A market-data subscription's book snapshot (for `conn`, whose request id it was).
    Depth {
        market: MarketId,
        levels_max: usize,
    },
    Status,
    Reference,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Balances(Vec<(bourse_engine::AssetId, Balance)>),
    OpenOrders { orders: Vec<OrderView>, truncated: bool },
    Depth { market: MarketId, depth: Option<Depth> },
    Status { last_index: LogIndex, state_hash: [u8; 32] },
    Reference { assets: Vec<AssetView>, markets: Vec<MarketView> },
}

/// Net core -> shard core.
#[derive(Clone, Debug)]
pub enum Request {
    Command {
        origin: Origin,
        command: Command,
        /// Wall-clock ns (`server::now_ns`) when the net core pushed it into the ring
        /// (until then: when its bytes were read); 0 when not measured (metrics).
        ring_ns: u64,
    },
    Query {
        origin: Origin,
        query: Query,
    },
    /// Finish everything queued, then return the engine.
    Shutdown,
}

/// Shard core -> net core.
#[derive(Clone, Debug)]
pub enum Output {
    Event(Event),
    /// Ends the events of the command at `index`.
    Applied {
        index: LogIndex,
        time_ns: u64,
        origin: Origin,
        kind: CommandKind,
        /// Wall-clock ns when the engine finished applying it; 0 when not measured.
        applied_ns: u64,
    },
    /// Answers a query; `index` is the last applied index it reflects.
    Reply {
        origin: Origin,
        index: LogIndex,
        reply: Reply,
    },
    /// A copy of the engine right after `index`: everything before this output belongs
    /// to it, nothing after. The net core adds its own state at the same point and has
    /// it written.
    Snapshot {
        index: LogIndex,
        engine: Box<Exchange>,
    },
    /// The command log failed; the shard has stopped taking commands.
    Fatal(String),
}

/// A command the sequencer has stamped.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub index: LogIndex,
    pub time_ns: u64,
    pub origin: Origin,
    pub command: &'a Command,
}

/// The log could not take an entry right now (its queue is full); nothing was queued.
/// The shard keeps the entry and tries again once the log has drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBusy;

/// The seam between "sequenced" and "applied": a command log. The in-memory log commits
/// at once; the durable log and Raft commit later and say so through `committed_index`.
/// No method may block on I/O.
pub trait CommandLog {
    fn append(&mut self, entry: &Entry<'_>) -> Result<(), LogBusy>;
    fn committed_index(&self) -> LogIndex;
    /// Set once the log can no longer make entries durable (a failed write or fsync):
    /// the node must stop rather than acknowledge what it cannot keep.
    fn failure(&self) -> Option<String> {
        None
    }
    /// Housekeeping on the shard core between batches (e.g. dropping segments a new
    /// snapshot made unnecessary). Must be cheap.
    fn maintain(&mut self) {}
    /// Makes everything appended durable and releases the log (clean shutdown).
    fn close(self) -> Result<(), String>
    where
        Self: Sized,
    {
        Ok(())
    }
}

/// A log that keeps nothing: every sequenced command is committed at once.
#[derive(Debug, Default)]
pub struct MemoryLog {
    last: LogIndex,
}

impl MemoryLog {
    /// A log whose next entry follows `last`.
    pub fn after(last: LogIndex) -> MemoryLog {
        MemoryLog { last }
    }
}

impl CommandLog for MemoryLog {
    fn append(&mut self, entry: &Entry<'_>) -> Result<(), LogBusy> {
        assert_eq!(entry.index, self.last + 1, "log indices are contiguous");
        self.last = entry.index;
        Ok(())
    }

    fn committed_index(&self) -> LogIndex {
        self.last
    }
}

/// When the shard hands the net core a copy of the engine to snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotPolicy {
    /// After this many applied entries (0: never by count).
    pub every_entries: u64,
    /// After this long with new entries (None: never by time).
    pub every: Option<Duration>,
    /// Set by an operator (signal or admin request) to take one now.
    pub requested: Arc<AtomicBool>,
    /// Set while a snapshot is being written; cleared by the writer.
    pub in_flight: Arc<AtomicBool>,
}

impl SnapshotPolicy {
    /// Never snapshots (no data directory).
    pub fn never() -> SnapshotPolicy {
        SnapshotPolicy {
            every_entries: 0,
            every: None,
            requested: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Wakes a parked thread or task on the other side of a ring. `ring` is cheap when the
/// other side is busy: one atomic load.
#[derive(Default)]
pub struct Bells {
    /// Net core -> shard core: the shard parks its thread.
    shard_sleeping: AtomicBool,
    shard_thread: OnceLock<Thread>,
    /// Shard core -> net core: the net core's response task registers its waker.
    net_waker: AtomicWaker,
    /// Counters for metrics.
    pub shard_wakeups: AtomicU64,
}

impl std::fmt::Debug for Bells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bells").finish_non_exhaustive()
    }
}

impl Bells {
    /// Called by the net core after pushing requests.
    pub fn ring_shard(&self) {
        if self.shard_sleeping.load(Ordering::SeqCst) {
            if let Some(thread) = self.shard_thread.get() {
                thread.unpark();
            }
        }
    }

    /// Called by the shard core after pushing outputs.
    pub fn ring_net(&self) {
        self.net_waker.wake();
    }

    /// The net core's response task registers here before it sleeps.
    pub fn register_net(&self, waker: &std::task::Waker) {
        self.net_waker.register(waker);
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ShardOptions {
    /// Requests taken per loop turn before applying and answering.
    pub batch_max: usize,
    /// How long the shard waits for work, by `idle`, before it parks.
    pub idle_spin: Duration,
    /// How it waits during `idle_spin`.
    pub idle: IdleWait,
    /// Longest park (a safety net against a lost wakeup).
    pub park_max: Duration,
}

/// How the shard core waits for work before it parks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleWait {
    /// Busy-spin: the lowest wake-up latency, for a core nothing else runs on.
    Spin,
    /// Spin, but offer the CPU to any other runnable thread at each turn
    /// (`sched_yield`): as quick as a spin on a dedicated core (the call returns at
    /// once), and it does not starve the net core or a client sharing the CPU.
    Yield,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            batch_max: 256,
            idle_spin: Duration::from_micros(50),
            idle: IdleWait::Spin,
            park_max: Duration::from_millis(1),
        }
    }
}

/// A time source for the sequencer: nanoseconds since the Unix epoch.
pub trait Clock {
    fn now_ns(&mut self) -> u64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

/// Assigns log indices and times. Times never go backwards, even if the wall clock does.
#[derive(Debug)]
pub struct Sequencer<C> {
    clock: C,
    next_index: LogIndex,
    last_time_ns: u64,
}

impl<C: Clock> Sequencer<C> {
    pub fn new(clock: C, last_index: LogIndex, last_time_ns: u64) -> Self {
        Sequencer { clock, next_index: last_index + 1, last_time_ns }
    }

    pub fn stamp(&mut self) -> (LogIndex, u64) {
        let index = self.next_index;
        self.next_index += 1;
        self.last_time_ns = self.last_time_ns.max(self.clock.now_ns());
        (index, self.last_time_ns)
    }
}

enum Pending {
    Command { index: LogIndex, time_ns: u64, origin: Origin, command: Command },
    Query { origin: Origin, query: Query },
}

/// The shard core's state: everything here is touched by the shard thread only.
pub struct Shard<L, C> {
    pub engine: Exchange,
    log: L,
    sequencer: Sequencer<C>,
    pending: VecDeque<Pending>,
    /// A stamped command the log could not take yet (back-pressure).
    stalled: Option<(LogIndex, u64, Origin, Command)>,
    events: Vec<Event>,
    options: ShardOptions,
    snapshots: SnapshotPolicy,
    applied_since_snapshot: u64,
    last_snapshot_at: Instant,
    failed: bool,
    /// Turns of the current idle wait.
    idle_turns: u64,
    /// Latency recording and gauges (`with_metrics`); `None`: nothing measured.
    metrics: Option<(Arc<Metrics>, HopRecorder)>,
}

/// Idle turns between two looks at the clock.
const IDLE_CLOCK_TURNS: u64 = 64;

impl<L: CommandLog, C: Clock> Shard<L, C> {
    /// `last_index` is the log's last index (at or after the engine's: the log may end
    /// with entries the engine never sees, such as no-ops).
    pub fn new(
        engine: Exchange,
        log: L,
        clock: C,
        last_index: LogIndex,
        last_time_ns: u64,
        options: ShardOptions,
        snapshots: SnapshotPolicy,
    ) -> Self {
        assert!(last_index >= engine.last_index(), "the log is behind the engine");
        let sequencer = Sequencer::new(clock, last_index, last_time_ns);
        Shard {
            engine,
            log,
            sequencer,
            pending: VecDeque::with_capacity(options.batch_max * 4),
            stalled: None,
            events: Vec::with_capacity(1024),
            options,
            snapshots,
            applied_since_snapshot: 0,
            last_snapshot_at: Instant::now(),
            failed: false,
            idle_turns: 0,
            metrics: None,
        }
    }

    /// Measures the shard core's hops (ring -> sequenced, sequenced -> committed, apply,
    /// snapshot stall) and publishes its gauges into `metrics`.
    pub fn with_metrics(mut self, metrics: &Arc<Metrics>) -> Self {
        let recorder = metrics.recorder(&[
            Hop::RingToSequenced,
            Hop::SequencedToCommitted,
            Hop::Apply,
            Hop::SnapshotStall,
        ]);
        self.metrics = Some((metrics.clone(), recorder));
        self
    }

    /// The recorder if latencies are measured (then the clock is read for them).
    fn recorder(&mut self) -> Option<&mut HopRecorder> {
        self.metrics.as_mut().map(|(_, r)| r).filter(|r| r.enabled())
    }

    /// Publishes the gauges (a few relaxed stores) after a turn that did work.
    fn publish_gauges(&self) {
        let Some((metrics, _)) = &self.metrics else { return };
        let g = &metrics.shard;
        metrics::set(&g.sequenced_index, self.sequencer.next_index - 1);
        metrics::set(&g.committed_index, self.log.committed_index());
        metrics::set(&g.applied_index, self.engine.last_index());
        metrics::set(&g.open_orders, self.engine.open_orders_len());
        metrics::set(&g.accounts, self.engine.accounts_len() as u64);
    }

    /// Runs until a `Shutdown` request (or the net core goes away); returns the engine
    /// and the log, for the caller to close.
    pub fn run(
        mut self,
        mut requests: rtrb::Consumer<Request>,
        mut outputs: rtrb::Producer<Output>,
        bells: Arc<Bells>,
    ) -> (Exchange, L) {
        let _ = bells.shard_thread.set(std::thread::current());
        let mut idle_since: Option<Instant> = None;
        let mut shutting_down = false;
        loop {
            // The log's health first: once it has failed, nothing more is applied (so
            // nothing more is acknowledged) and nothing more is snapshotted.
            let mut worked = self.check_log(&mut outputs, &bells);
            if self.failed {
                worked |= self.discard_requests(&mut requests, &mut shutting_down);
            } else {
                worked |= self.take_requests(&mut requests, &mut shutting_down);
                worked |= self.apply_committed(&mut outputs, &bells);
                worked |= self.maybe_snapshot(&mut outputs, &bells);
                self.log.maintain();
            }
            if worked {
                self.publish_gauges();
                bells.ring_net();
                idle_since = None;
                continue;
            }
            let drained = self.pending.is_empty() && self.stalled.is_none();
            if shutting_down && (drained || self.failed) {
                return (self.engine, self.log);
            }
            if requests.is_abandoned() && requests.is_empty() && (drained || self.failed) {
                return (self.engine, self.log);
            }
            self.idle(&requests, &bells, &mut idle_since);
        }
    }

    /// Sequences up to `batch_max` requests and hands their commands to the log (until
    /// it is busy); true if it did anything.
    fn take_requests(
        &mut self,
        requests: &mut rtrb::Consumer<Request>,
        shutting_down: &mut bool,
    ) -> bool {
        let mut worked = self.retry_stalled();
        for _ in 0..self.options.batch_max {
            if self.stalled.is_some() {
                break;
            }
            let Ok(request) = requests.pop() else { break };
            worked = true;
            match request {
                Request::Command { origin, command, ring_ns } => {
                    let (index, time_ns) = self.sequencer.stamp();
                    if ring_ns != 0 {
                        if let Some(r) = self.recorder() {
                            r.record(Hop::RingToSequenced, time_ns.saturating_sub(ring_ns));
                        }
                    }
                    self.stalled = Some((index, time_ns, origin, command));
                    self.retry_stalled();
                }
                Request::Query { origin, query } => {
                    self.pending.push_back(Pending::Query { origin, query })
                }
                Request::Shutdown => *shutting_down = true,
            }
        }
        worked
    }

    /// After a log failure: drops every request (no command is sequenced, applied or
    /// acknowledged any more; the net core logs the clients out) but still notices the
    /// shutdown request, so that the process can stop. Commands sequenced before the
    /// failure and not committed are dropped with the queries behind them: their
    /// clients get no answer, which is the truth (recovery decides what the log kept).
    /// True if it took anything.
    fn discard_requests(
        &mut self,
        requests: &mut rtrb::Consumer<Request>,
        shutting_down: &mut bool,
    ) -> bool {
        debug_assert!(self.failed, "requests are discarded only after a log failure");
        self.stalled = None;
        self.pending.clear();
        let mut worked = false;
        for _ in 0..self.options.batch_max {
            let Ok(request) = requests.pop() else { break };
            worked = true;
            if let Request::Shutdown = request {
                *shutting_down = true;
            }
        }
        worked
    }

    /// Hands the stalled command to the log if it has room now; true if it did.
    fn retry_stalled(&mut self) -> bool {
        let Some((index, time_ns, origin, command)) = self.stalled.take() else { return false };
        match self.log.append(&Entry { index, time_ns, origin, command: &command }) {
            Ok(()) => {
                self.pending.push_back(Pending::Command { index, time_ns, origin, command });
                true
            }
            Err(LogBusy) => {
                self.stalled = Some((index, time_ns, origin, command));
                false
            }
        }
    }

    /// Stops taking commands for good if the log failed, and says so once.
    fn check_log(&mut self, outputs: &mut rtrb::Producer<Output>, bells: &Bells) -> bool {
        if self.failed {
            return false;
        }
        let Some(why) = self.log.failure() else { return false };
        self.failed = true;
        push(outputs, Output::Fatal(why), bells);
        true
    }

    /// Hands a copy of the engine to the net core when a snapshot is due and none is
    /// being written. The copy is the only stall this costs the shard core: a memcpy of
    /// the state (see ARCHITECTURE.md for the figures).
    /// True if it handed one over (the net core must be woken for it, even when no
    /// command is flowing: a SIGUSR1 on an idle exchange).
    fn maybe_snapshot(&mut self, outputs: &mut rtrb::Producer<Output>, bells: &Bells) -> bool {
        let policy = &self.snapshots;
        let requested = policy.requested.load(Ordering::Relaxed);
        let by_count =
            policy.every_entries > 0 && self.applied_since_snapshot >= policy.every_entries;
        let by_time = policy.every.is_some_and(|every| {
            self.applied_since_snapshot > 0 && self.last_snapshot_at.elapsed() >= every
        });
        if !(requested || by_count || by_time) || policy.in_flight.load(Ordering::Acquire) {
            return false;
        }
        policy.requested.store(false, Ordering::Relaxed);
        policy.in_flight.store(true, Ordering::Release);
        self.applied_since_snapshot = 0;
        self.last_snapshot_at = Instant::now();
        let index = self.engine.last_index();
        let copy_started_ns = self.recorder().is_some().then(|| self.sequencer.clock.now_ns());
        let engine = Box::new(self.engine.clone());
        if let Some(started) = copy_started_ns {
            let now = self.sequencer.clock.now_ns();
            if let Some(r) = self.recorder() {
                r.record(Hop::SnapshotStall, now.saturating_sub(started));
            }
        }
        if let Some((metrics, _)) = &self.metrics {
            metrics::bump(&metrics.shard.snapshots_taken, 1);
        }
        push(outputs, Output::Snapshot { index, engine }, bells);
        true
    }

    /// Applies every pending command the log has committed and answers the queries
    /// behind them, in order.
    fn apply_committed(&mut self, outputs: &mut rtrb::Producer<Output>, bells: &Bells) -> bool {
        let committed = self.log.committed_index();
        let mut worked = false;
        // Latency clock (0: not measured): when the next command starts applying.
        let mut now_ns = 0;
        while let Some(front) = self.pending.front() {
            if let Pending::Command { index, .. } = front {
                if *index > committed {
                    break;
                }
            }
            worked = true;
            match self.pending.pop_front().expect("front exists") {
                Pending::Command { index, time_ns, origin, command } => {
                    if now_ns == 0 && self.recorder().is_some() {
                        now_ns = self.sequencer.clock.now_ns();
                    }
                    self.events.clear();
                    let applied = self.engine.apply(index, time_ns, &command, &mut self.events);
                    assert!(applied.is_ok(), "sequenced indices always follow the engine's");
                    let applied_ns = self.record_apply(time_ns, &mut now_ns);
                    for event in self.events.drain(..) {
                        push(outputs, Output::Event(event), bells);
                    }
                    let kind = command.kind();
                    let applied = Output::Applied { index, time_ns, origin, kind, applied_ns };
                    push(outputs, applied, bells);
                    self.applied_since_snapshot += 1;
                }
                Pending::Query { origin, query } => {
                    let reply = answer(&self.engine, query);
                    let index = self.engine.last_index();
                    push(outputs, Output::Reply { origin, index, reply }, bells);
                }
            }
        }
        worked
    }

    /// Records sequenced -> committed (up to `now_ns`, when this command's apply
    /// started) and the apply itself; moves `now_ns` to its end and returns it (0 when
    /// not measured).
    fn record_apply(&mut self, time_ns: u64, now_ns: &mut u64) -> u64 {
        if *now_ns == 0 {
            return 0;
        }
        let started = *now_ns;
        let ended = self.sequencer.clock.now_ns().max(started);
        let Some(r) = self.recorder() else { return 0 };
        r.record(Hop::SequencedToCommitted, started.saturating_sub(time_ns));
        r.record(Hop::Apply, ended - started);
        r.maybe_publish(ended);
        *now_ns = ended;
        ended
    }

    /// True if the log has committed something pending, or may take the stalled entry.
    fn can_progress(&self) -> bool {
        if self.failed {
            return false;
        }
        let committed = self.log.committed_index();
        let ready = match self.pending.front() {
            Some(Pending::Command { index, .. }) => *index <= committed,
            Some(Pending::Query { .. }) => true,
            None => false,
        };
        ready || self.stalled.is_some() && self.log.failure().is_none()
    }

    fn idle(
        &mut self,
        requests: &rtrb::Consumer<Request>,
        bells: &Bells,
        since: &mut Option<Instant>,
    ) {
        let started = *since.get_or_insert_with(|| {
            self.idle_turns = 0;
            Instant::now()
        });
        self.idle_turns += 1;
        // Reading the clock costs tens of nanoseconds: look at it every IDLE_CLOCK_TURNS
        // turns only. Waiting for the log to commit (disk mode) parks too: the log's io
        // thread rings the bell when an fsync completes.
        if self.idle_turns % IDLE_CLOCK_TURNS != 0 || started.elapsed() < self.options.idle_spin {
            match self.options.idle {
                IdleWait::Spin => std::hint::spin_loop(),
                IdleWait::Yield => std::thread::yield_now(),
            }
            return;
        }
        // Announce the nap, then look once more: a request pushed before the flag was
        // visible is seen here, one pushed after it rings the bell (both SeqCst).
        if self.recorder().is_some() {
            let now = self.sequencer.clock.now_ns();
            if let Some(r) = self.recorder() {
                r.maybe_publish(now);
            }
        }
        bells.shard_sleeping.store(true, Ordering::SeqCst);
        if requests.is_empty() && !self.can_progress() {
            bells.shard_wakeups.fetch_add(1, Ordering::Relaxed);
            std::thread::park_timeout(self.options.park_max);
        }
        bells.shard_sleeping.store(false, Ordering::SeqCst);
    }
}

/// Pushes one output, waiting for room if the net core is behind. Outputs are never
/// dropped: an execution report is owed to someone.
fn push(outputs: &mut rtrb::Producer<Output>, mut output: Output, bells: &Bells) {
    loop {
        match outputs.push(output) {
            Ok(()) => return,
            Err(rtrb::PushError::Full(back)) => {
                output = back;
                if outputs.is_abandoned() {
                    return;
                }
                bells.ring_net();
                std::thread::yield_now();
            }
        }
    }
}

pub fn answer(engine: &Exchange, query: Query) -> Reply {
    match query {
        Query::Balances { account } => Reply::Balances(engine.balances(account)),
        Query::OpenOrders { account, market, orders_max } => {
            let mut orders = engine.open_orders(account);
            orders.retain(|o| market.is_none_or(|m| o.market == m));
            let truncated = orders.len() > orders_max;
            orders.truncate(orders_max);
            Reply::OpenOrders { orders, truncated }
        }
        Query::Depth { market, levels_max } => {
            Reply::Depth { market, depth: engine.depth(market, levels_max) }
        }
        Query::Status => {
            Reply::Status { last_index: engine.last_index(), state_hash: engine.state_hash() }
        }
        Query::Reference => Reply::Reference { assets: engine.assets(), markets: engine.markets() },
    }
}
