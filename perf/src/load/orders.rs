//! The order phase: `sessions` market makers on the calling thread's monoio runtime.
//!
//! Each session is one TCP connection (demo key `first_key + i`, acting for the account of
//! the same number) with a writer task and a reader task around a shared [`Maker`] and
//! [`RequestBatch`]:
//!
//! ```text
//! pacer (main task) --emit--> batch of session i --wake--> writer i: one write per batch
//!                                                             |
//! reader i: one read, clock read, decode, match replies <----- server
//! ```
//!
//! - **Open loop** (`Pace::Open`): request `j` is due at `start + j / rate` and goes to
//!   session `j % sessions`. The pacer (`clock::run_open_loop`) encodes everything that is
//!   due into the sessions' batches and wakes their writers, then sleeps on a timerfd
//!   until the next due time. Latency = receive time - due time, so when anything stalls
//!   (server, network, this process) every request due during the stall is charged for it:
//!   coordinated omission corrected.
//! - **Max** (`Pace::Max`): each session keeps `window` requests in flight and sends a new
//!   one for each answer, as fast as answers return (pipelined), within the rate limit the
//!   server announced at logon (a client-side token bucket, so the run measures the
//!   server, not its rate limiter). Latency = receive time - send time.
//!
//! Receive time is read once per socket read, right after the read completes and before
//! decoding, so this process's decoding is not charged to the server.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bourse_net::client::{ClientError, Incoming, LogonOptions};
use bourse_net::client_async::{AsyncClient, FrameWriter, MessageReader, RequestBatch};
use bourse_net::protocol::{ClientRequest, ServerMessage};

use super::clock::{self, now_ns, DeadlineTimer, LocalNotify, PacerReport, Schedule};
use super::maker::{Maker, MakerConfig};
use super::stats::{Stats, Window};
use crate::alloc::{self, AllocCounts};
use crate::sched::{self, SchedCounts};

/// Demo keys (and accounts) of the load generator: 1001..=1016.
pub const FIRST_KEY: u64 = 1001;
pub const SESSIONS_MAX: usize = 16;
/// Requests a max-mode session may keep in flight.
pub const WINDOW_MAX: usize = 4096;
/// How long connecting and logging on may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the last answers after the last request went out.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Share of the announced per-session rate limit the load may use (the server's bucket
/// and ours run on different clocks).
pub const RATE_LIMIT_USE_PCT: u64 = 90;

/// Failures a run keeps for its report.
const FAILURES_KEPT: usize = 8;

const _: () = assert!(SESSIONS_MAX <= 32, "the dirty set is a u32 bitmask");

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    Open { rate_per_s: u64 },
    Max { window: usize },
}

/// What to run.
#[derive(Clone, Debug)]
pub struct OrderPlan {
    pub addr: SocketAddr,
    pub sessions: usize,
    pub maker: MakerConfig,
    pub seed: u64,
    pub pace: Pace,
    pub warmup: Duration,
    pub duration: Duration,
    /// `Some`: the sessions speak TLS.
    pub tls: Option<bourse_net::tls::ClientTls>,
}

/// What the phase measured.
pub struct OrderOutcome {
    pub stats: Stats,
    /// Open loop: the pacer's punctuality.
    pub pacer: Option<PacerReport>,
    /// Heap allocations in this process from the start of the measurement window to the
    /// last answer.
    pub allocs: AllocCounts,
    /// Scheduler counters of this thread over the same span.
    pub sched: Option<SchedCounts>,
    /// Length of that span.
    pub span: Duration,
    /// Requests never answered (after the drain timeout).
    pub unanswered: u64,
    /// The per-session rate limit and burst the server announced.
    pub rate_limit: (u32, u32),
    /// The first fatal error, if the phase stopped early.
    pub failure: Option<String>,
}

/// The per-session token bucket of max mode, in nanoseconds of credit.
struct Bucket {
    cost_ns: u64,
    credit_ns: u64,
    cap_ns: u64,
    last_ns: u64,
}

impl Bucket {
    fn new(rate_per_s: u32, burst: u32, now: u64) -> Bucket {
        let rate = (u64::from(rate_per_s) * RATE_LIMIT_USE_PCT / 100).max(1);
        let cost_ns = 1_000_000_000 / rate;
        // Half the server's burst: room for jitter between the two clocks.
        let cap_ns = cost_ns * (u64::from(burst) / 2).max(1);
        Bucket { cost_ns, credit_ns: cap_ns, cap_ns, last_ns: now }
    }

    fn take(&mut self, now: u64) -> bool {
        self.credit_ns = (self.credit_ns + now.saturating_sub(self.last_ns)).min(self.cap_ns);
        self.last_ns = self.last_ns.max(now);
        if self.credit_ns >= self.cost_ns {
            self.credit_ns -= self.cost_ns;
            true
        } else {
            false
        }
    }
}

struct Session {
    key: u64,
    maker: RefCell<Maker>,
    batch: RefCell<RequestBatch>,
    wake: LocalNotify,
    /// Logging out: a `Logout` or the end of the stream is expected now.
    stopping: Cell<bool>,
    bucket: RefCell<Bucket>,
    /// Max mode: the bucket ran dry with room in the window.
    starved: Cell<bool>,
}

struct Shared {
    sessions: Vec<Rc<Session>>,
    stats: RefCell<Stats>,
    /// What went wrong, in order (the first few: later ones are usually consequences).
    failures: RefCell<Vec<String>>,
    /// Max mode: requests in flight per session, and when to stop sending.
    window: usize,
    until_ns: u64,
}

impl Shared {
    fn fail(&self, why: String) {
        let mut failures = self.failures.borrow_mut();
        if failures.len() < FAILURES_KEPT {
            failures.push(why);
        }
    }

    fn failed(&self) -> bool {
        !self.failures.borrow().is_empty()
    }

    /// Max mode: tops session `s` up to its window; the requests go out now.
    fn refill(&self, s: &Session, now: u64) {
        if now >= self.until_ns || self.failed() {
            return;
        }
        let mut maker = s.maker.borrow_mut();
        let mut batch = s.batch.borrow_mut();
        let mut stats = self.stats.borrow_mut();
        let mut bucket = s.bucket.borrow_mut();
        let mut sent = false;
        while maker.outstanding() < self.window {
            if !bucket.take(now) {
                s.starved.set(true);
                break;
            }
            if let Err(e) = maker.emit(now, &mut stats, |r| batch.push(r)) {
                drop((maker, batch, stats, bucket));
                self.fail(format!("session {}: {e}", s.key));
                return;
            }
            sent = true;
        }
        if sent {
            s.wake.notify();
        }
    }
}

/// Runs the order phase on the current monoio runtime. Errors before any load (connect,
/// logon, a rate the server's limits cannot take) are `Err`; failures during the run are
/// in `OrderOutcome::failure`.
pub async fn run(plan: &OrderPlan) -> Result<OrderOutcome, String> {
    assert!((1..=SESSIONS_MAX).contains(&plan.sessions));
    let mut clients = Vec::with_capacity(plan.sessions);
    for i in 0..plan.sessions {
        let key = FIRST_KEY + i as u64;
        let options = LogonOptions::demo(key);
        let client =
            AsyncClient::connect_with(plan.addr, options, CONNECT_TIMEOUT, plan.tls.as_ref())
                .await
                .map_err(|e| format!("session {key}: logon to {}: {e}", plan.addr))?;
        if client.established.ack.account != key {
            return Err(format!("key {key} acts for account {}", client.established.ack.account));
        }
        clients.push((key, client));
    }
    let ack = clients[0].1.established.ack;
    let rate_limit = (ack.rate_per_sec, ack.rate_burst);
    if let Pace::Open { rate_per_s } = plan.pace {
        let per_session = rate_per_s.div_ceil(plan.sessions as u64);
        let allowed = u64::from(ack.rate_per_sec) * RATE_LIMIT_USE_PCT / 100;
        if per_session > allowed {
            return Err(format!(
                "{per_session} requests/s per session is above {RATE_LIMIT_USE_PCT}% of the server's \
                 per-session limit of {}/s: use more --sessions",
                ack.rate_per_sec
            ));
        }
    }

    let start_ns = now_ns() + 5_000_000;
    let from_ns = start_ns + plan.warmup.as_nanos() as u64;
    let until_ns = from_ns + plan.duration.as_nanos() as u64;
    let window = match plan.pace {
        Pace::Max { window } => window,
        Pace::Open { .. } => 0,
    };
    let mut sessions = Vec::with_capacity(plan.sessions);
    let mut halves = Vec::with_capacity(plan.sessions);
    for (i, (key, client)) in clients.into_iter().enumerate() {
        let (writer, reader) = client.into_split();
        let (batch, frames) = writer.into_parts();
        let seed = plan.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64);
        sessions.push(Rc::new(Session {
            key,
            maker: RefCell::new(Maker::new(plan.maker.clone(), seed)),
            batch: RefCell::new(batch),
            wake: LocalNotify::default(),
            stopping: Cell::new(false),
            bucket: RefCell::new(Bucket::new(rate_limit.0, rate_limit.1, start_ns)),
            starved: Cell::new(false),
        }));
        halves.push((frames, reader));
    }
    let shared = Rc::new(Shared {
        sessions,
        stats: RefCell::new(Stats {
            realtime_offset_ns: clock::realtime_offset_ns(),
            ..Stats::new(Window { from_ns, until_ns })
        }),
        failures: RefCell::new(Vec::new()),
        window,
        until_ns,
    });
    let mut tasks = Vec::with_capacity(2 * plan.sessions);
    for (s, (frames, reader)) in shared.sessions.iter().zip(halves) {
        tasks.push(monoio::spawn(writer_task(shared.clone(), s.clone(), frames)));
        let max_mode = matches!(plan.pace, Pace::Max { .. });
        tasks.push(monoio::spawn(reader_task(shared.clone(), s.clone(), reader, max_mode)));
    }

    let mut timer = DeadlineTimer::new().map_err(|e| format!("timerfd: {e}"))?;
    let mut window_start: Option<(Option<SchedCounts>, AllocCounts)> = None;
    let pacer = match plan.pace {
        Pace::Open { rate_per_s } => {
            let total_ns = until_ns - start_ns;
            let count = (u128::from(rate_per_s) * u128::from(total_ns) / 1_000_000_000) as u64;
            let schedule = Schedule { start_ns, rate_per_s, count };
            let dirty = Cell::new(0u32);
            let n = plan.sessions as u64;
            let report = clock::run_open_loop(
                schedule,
                &mut timer,
                |i, due| {
                    if due >= from_ns && window_start.is_none() {
                        // /proc first: reading it allocates.
                        let sched = sched::counts();
                        window_start = Some((sched, alloc::counts()));
                    }
                    let s = &shared.sessions[(i % n) as usize];
                    let emitted =
                        s.maker.borrow_mut().emit(due, &mut shared.stats.borrow_mut(), |r| {
                            s.batch.borrow_mut().push(r)
                        });
                    if let Err(e) = emitted {
                        shared.fail(format!("session {}: {e}", s.key));
                    }
                    dirty.set(dirty.get() | 1 << (i % n));
                },
                || {
                    let mut bits = dirty.replace(0);
                    while bits != 0 {
                        shared.sessions[bits.trailing_zeros() as usize].wake.notify();
                        bits &= bits - 1;
                    }
                },
                || shared.failed(),
            )
            .await
            .map_err(|e| format!("pacer timer: {e}"))?;
            Some(report)
        }
        Pace::Max { .. } => {
            timer.sleep_until(start_ns).await.map_err(|e| format!("timer: {e}"))?;
            for s in &shared.sessions {
                shared.refill(s, now_ns());
            }
            // Readers top their windows up as answers arrive; this loop only serves
            // sessions the token bucket held back, and opens the measurement window.
            loop {
                let now = now_ns();
                if now >= until_ns || shared.failed() {
                    break;
                }
                if now >= from_ns && window_start.is_none() {
                    let sched = sched::counts();
                    window_start = Some((sched, alloc::counts()));
                }
                for s in &shared.sessions {
                    if s.starved.replace(false) {
                        shared.refill(s, now);
                    }
                }
                let next = (now + 200_000).min(until_ns);
                let next = if window_start.is_none() { next.min(from_ns) } else { next };
                timer.sleep_until(next).await.map_err(|e| format!("timer: {e}"))?;
            }
            None
        }
    };
    let (sched_before, allocs_before) =
        window_start.unwrap_or_else(|| (sched::counts(), alloc::counts()));

    // Drain: wait for every answer, or give up after DRAIN_TIMEOUT.
    let deadline = now_ns() + DRAIN_TIMEOUT.as_nanos() as u64;
    let outstanding = |shared: &Shared| -> u64 {
        shared.sessions.iter().map(|s| s.maker.borrow().outstanding() as u64).sum()
    };
    // Drain even after a failure: whether the answers still come tells a slow server
    // from a stuck one.
    while outstanding(&shared) > 0 && now_ns() < deadline {
        timer.sleep_until(now_ns() + 200_000).await.map_err(|e| format!("timer: {e}"))?;
    }
    let allocs = alloc::counts().since(&allocs_before);
    let sched_after = sched::counts();
    let span_ns = now_ns().saturating_sub(from_ns);
    let unanswered = outstanding(&shared);

    // Log out: each reader ends at the server's Logout, each writer after sending it.
    for s in &shared.sessions {
        s.stopping.set(true);
        if let Err(e) = s.batch.borrow_mut().push(&ClientRequest::Logout) {
            shared.fail(format!("session {}: logout: {e}", s.key));
        }
        s.wake.notify();
    }
    for task in tasks {
        if monoio::time::timeout(Duration::from_secs(5), task).await.is_err() {
            shared.fail("a session did not finish after logging out".to_string());
            break;
        }
    }
    let sched = match (sched_before, sched_after) {
        (Some(before), Some(after)) => Some(after.since(&before)),
        _ => None,
    };
    let failures = shared.failures.borrow();
    let failure = (!failures.is_empty()).then(|| failures.join("; then "));
    let stats = std::mem::take(&mut *shared.stats.borrow_mut());
    Ok(OrderOutcome {
        stats,
        pacer,
        allocs,
        sched,
        span: Duration::from_nanos(span_ns),
        unanswered,
        rate_limit,
        failure,
    })
}

async fn writer_task(shared: Rc<Shared>, s: Rc<Session>, mut frames: FrameWriter) {
    let mut spare = Vec::with_capacity(bourse_net::client_async::BATCH_BYTES_INITIAL);
    loop {
        s.wake.wait().await;
        loop {
            {
                let mut batch = s.batch.borrow_mut();
                if batch.is_empty() {
                    break;
                }
                batch.swap_out(&mut spare);
            }
            let (result, buf) = frames.write_all(spare).await;
            spare = buf;
            if let Err(e) = result {
                if !s.stopping.get() {
                    shared.fail(format!("session {}: write: {e}", s.key));
                }
                return;
            }
        }
        if s.stopping.get() {
            return;
        }
    }
}

async fn reader_task(
    shared: Rc<Shared>,
    s: Rc<Session>,
    mut reader: MessageReader,
    max_mode: bool,
) {
    let mut messages = Vec::with_capacity(4096);
    loop {
        let read = reader.read_bytes().await;
        let now = now_ns();
        if let Err(e) = read {
            if !(s.stopping.get() && matches!(e, ClientError::Closed)) {
                shared.fail(format!("session {}: read: {e}", s.key));
            }
            return;
        }
        if let Err(e) = reader.decode_into(&mut messages) {
            shared.fail(format!("session {}: {e}", s.key));
            return;
        }
        let mut logout = None;
        {
            let mut maker = s.maker.borrow_mut();
            let mut stats = shared.stats.borrow_mut();
            for (_, message) in messages.drain(..) {
                match message {
                    Incoming::Msg(ServerMessage::Logout { reason }) => logout = Some(reason),
                    Incoming::Msg(message) => maker.on_message(&message, now, &mut stats),
                    // Lists come only with queries and market data, which sessions do not
                    // ask for.
                    _ => stats.unmatched += 1,
                }
            }
        }
        if let Some(reason) = logout {
            if !s.stopping.get() {
                shared.fail(format!("session {}: the server logged it out: {reason}", s.key));
            }
            return;
        }
        if max_mode {
            shared.refill(&s, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_spends_at_the_allowed_rate() {
        // 1,000/s announced: 900/s used, 4 requests of burst (half of 8).
        let mut bucket = Bucket::new(1_000, 8, 0);
        let taken = (0..100).filter(|_| bucket.take(0)).count();
        assert_eq!(taken, 4, "the burst");
        // One more every 1/900 s.
        assert!(!bucket.take(1_000_000));
        assert!(bucket.take(1_111_112));
        assert!(!bucket.take(1_111_113));
        // A long pause refills only up to the cap.
        let taken = (0..100).filter(|_| bucket.take(10_000_000_000)).count();
        assert_eq!(taken, 4);
    }
}
