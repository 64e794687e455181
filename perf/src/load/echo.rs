//! The TCP echo baseline: the same runtime, pacer and clock as the order phase, sending
//! fixed-size messages to an echo server (`tcp-echo server`) instead of orders, so that
//! "order round trip / bare TCP round trip" compares like with like on one machine.
//!
//! Each message is `size` bytes: its due time (u64 LE, ns of `CLOCK_MONOTONIC`), its
//! number on the connection (u64 LE), then padding. The echo comes back in order on the
//! same connection, so the reader needs no table: latency = receive time - the due time
//! inside the message (coordinated omission corrected exactly as for orders), and the
//! number proves nothing was lost or reordered.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::TcpStream;

use super::clock::{self, now_ns, DeadlineTimer, LocalNotify, PacerReport, Schedule};
use super::stats::Window;
use crate::alloc::{self, AllocCounts};
use crate::report::{latency_histogram, record_ns};
use crate::sched::{self, SchedCounts};

/// Smallest message: the due time and the sequence number.
pub const SIZE_MIN: usize = 16;
/// Largest message.
pub const SIZE_MAX: usize = 4096;
/// Connections one echo phase may open.
pub const CONNECTIONS_MAX: usize = 64;
/// Bytes one socket read takes at most.
const READ_BYTES: usize = 64 * 1024;
/// How long to wait for the last echoes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const PAD: u8 = 0x5a;

const _: () = assert!(CONNECTIONS_MAX <= 64, "the dirty set is a u64 bitmask");

#[derive(Clone, Copy, Debug)]
pub struct EchoPlan {
    pub addr: SocketAddr,
    pub connections: usize,
    pub size: usize,
    pub rate_per_s: u64,
    pub warmup: Duration,
    pub duration: Duration,
}

pub struct EchoOutcome {
    /// Round trips of the messages due in the measurement window.
    pub rtt: Histogram<u64>,
    /// Messages due in the window.
    pub sent: u64,
    pub pacer: PacerReport,
    pub allocs: AllocCounts,
    pub sched: Option<SchedCounts>,
    pub span: Duration,
    /// Messages never echoed (after the drain timeout).
    pub unanswered: u64,
    pub failure: Option<String>,
}

struct Conn {
    id: usize,
    out: RefCell<Vec<u8>>,
    wake: LocalNotify,
    stopping: Cell<bool>,
    sent: Cell<u64>,
    received: Cell<u64>,
}

struct Shared {
    conns: Vec<Rc<Conn>>,
    size: usize,
    window: Window,
    rtt: RefCell<Histogram<u64>>,
    measured_received: Cell<u64>,
    failure: RefCell<Option<String>>,
}

impl Shared {
    fn fail(&self, why: String) {
        let mut failure = self.failure.borrow_mut();
        if failure.is_none() {
            *failure = Some(why);
        }
    }
}

/// Writes message `seq` of a connection, due at `due_ns`, into `out`.
pub fn encode_message(out: &mut Vec<u8>, size: usize, due_ns: u64, seq: u64) {
    debug_assert!((SIZE_MIN..=SIZE_MAX).contains(&size));
    out.extend_from_slice(&due_ns.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.resize(out.len() + size - SIZE_MIN, PAD);
}

/// Reads one message back: (due time, sequence number).
pub fn decode_message(message: &[u8]) -> (u64, u64) {
    let due = u64::from_le_bytes(message[0..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(message[8..16].try_into().expect("8 bytes"));
    (due, seq)
}

/// Runs the echo phase on the current monoio runtime.
pub async fn run(plan: &EchoPlan) -> Result<EchoOutcome, String> {
    assert!((1..=CONNECTIONS_MAX).contains(&plan.connections));
    assert!((SIZE_MIN..=SIZE_MAX).contains(&plan.size));
    let mut halves = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let stream = match monoio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect_addr(plan.addr),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(format!("echo server {}: {e}", plan.addr)),
            Err(_) => return Err(format!("echo server {}: connect timed out", plan.addr)),
        };
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        halves.push(stream.into_split());
    }
    let start_ns = now_ns() + 5_000_000;
    let from_ns = start_ns + plan.warmup.as_nanos() as u64;
    let until_ns = from_ns + plan.duration.as_nanos() as u64;
    let shared = Rc::new(Shared {
        conns: (0..plan.connections)
            .map(|id| {
                Rc::new(Conn {
                    id,
                    out: RefCell::new(Vec::with_capacity(READ_BYTES)),
                    wake: LocalNotify::default(),
                    stopping: Cell::new(false),
                    sent: Cell::new(0),
                    received: Cell::new(0),
                })
            })
            .collect(),
        size: plan.size,
        window: Window { from_ns, until_ns },
        rtt: RefCell::new(latency_histogram()),
        measured_received: Cell::new(0),
        failure: RefCell::new(None),
    });
    let mut tasks = Vec::with_capacity(2 * plan.connections);
    for (conn, (reader, writer)) in shared.conns.iter().zip(halves) {
        tasks.push(monoio::spawn(writer_task(shared.clone(), conn.clone(), writer)));
        tasks.push(monoio::spawn(reader_task(shared.clone(), conn.clone(), reader)));
    }

    let mut timer = DeadlineTimer::new().map_err(|e| format!("timerfd: {e}"))?;
    let count =
        (u128::from(plan.rate_per_s) * u128::from(until_ns - start_ns) / 1_000_000_000) as u64;
    let schedule = Schedule { start_ns, rate_per_s: plan.rate_per_s, count };
    let n = plan.connections as u64;
    let dirty = Cell::new(0u64);
    let mut window_start: Option<(Option<SchedCounts>, AllocCounts)> = None;
    let mut measured_sent = 0;
    let pacer = clock::run_open_loop(
        schedule,
        &mut timer,
        |i, due| {
            if due >= from_ns && window_start.is_none() {
                let sched = sched::counts();
                window_start = Some((sched, alloc::counts()));
            }
            if due >= from_ns && due < until_ns {
                measured_sent += 1;
            }
            let conn = &shared.conns[(i % n) as usize];
            let seq = conn.sent.get();
            encode_message(&mut conn.out.borrow_mut(), plan.size, due, seq);
            conn.sent.set(seq + 1);
            dirty.set(dirty.get() | 1 << (i % n));
        },
        || {
            let mut bits = dirty.replace(0);
            while bits != 0 {
                shared.conns[bits.trailing_zeros() as usize].wake.notify();
                bits &= bits - 1;
            }
        },
        || shared.failure.borrow().is_some(),
    )
    .await
    .map_err(|e| format!("pacer timer: {e}"))?;
    let (sched_before, allocs_before) =
        window_start.unwrap_or_else(|| (sched::counts(), alloc::counts()));

    let missing = |shared: &Shared| -> u64 {
        shared.conns.iter().map(|c| c.sent.get() - c.received.get()).sum()
    };
    let deadline = now_ns() + DRAIN_TIMEOUT.as_nanos() as u64;
    while missing(&shared) > 0 && shared.failure.borrow().is_none() && now_ns() < deadline {
        timer.sleep_until(now_ns() + 200_000).await.map_err(|e| format!("timer: {e}"))?;
    }
    let allocs = alloc::counts().since(&allocs_before);
    let sched = match (sched_before, sched::counts()) {
        (Some(before), Some(after)) => Some(after.since(&before)),
        _ => None,
    };
    let span = Duration::from_nanos(now_ns().saturating_sub(from_ns));
    let unanswered = missing(&shared);
    // Half-close: the server echoes what is left, then closes, which ends each reader.
    for conn in &shared.conns {
        conn.stopping.set(true);
        conn.wake.notify();
    }
    for task in tasks {
        if monoio::time::timeout(Duration::from_secs(5), task).await.is_err() {
            shared.fail("an echo connection did not close".to_string());
            break;
        }
    }
    let failure = shared.failure.borrow().clone();
    let rtt = std::mem::replace(&mut *shared.rtt.borrow_mut(), latency_histogram());
    debug_assert_eq!(rtt.len(), shared.measured_received.get());
    Ok(EchoOutcome { rtt, sent: measured_sent, pacer, allocs, sched, span, unanswered, failure })
}

async fn writer_task(shared: Rc<Shared>, conn: Rc<Conn>, mut writer: TcpOwnedWriteHalf) {
    let mut spare = Vec::with_capacity(READ_BYTES);
    loop {
        conn.wake.wait().await;
        loop {
            {
                let mut out = conn.out.borrow_mut();
                if out.is_empty() {
                    break;
                }
                std::mem::swap(&mut *out, &mut spare);
            }
            let (result, mut buf) = writer.write_all(spare).await;
            buf.clear();
            spare = buf;
            if let Err(e) = result {
                shared.fail(format!("echo connection {}: write: {e}", conn.id));
                return;
            }
        }
        if conn.stopping.get() {
            let _ = writer.shutdown().await;
            return;
        }
    }
}

async fn reader_task(shared: Rc<Shared>, conn: Rc<Conn>, mut reader: TcpOwnedReadHalf) {
    let size = shared.size;
    let mut buf = Vec::with_capacity(READ_BYTES);
    // Bytes of a message split across reads.
    let mut pending: Vec<u8> = Vec::with_capacity(READ_BYTES + SIZE_MAX);
    loop {
        buf.clear();
        let (result, returned) = reader.read(buf).await;
        buf = returned;
        let now = now_ns();
        let n = match result {
            Ok(0) => {
                if !conn.stopping.get() {
                    shared.fail(format!("echo connection {}: closed by the server", conn.id));
                }
                return;
            }
            Ok(n) => n,
            Err(e) => {
                shared.fail(format!("echo connection {}: read: {e}", conn.id));
                return;
            }
        };
        pending.extend_from_slice(&buf[..n]);
        let whole = pending.len() / size * size;
        let mut rtt = shared.rtt.borrow_mut();
        for message in pending[..whole].chunks_exact(size) {
            let (due, seq) = decode_message(message);
            let expected = conn.received.get();
            if seq != expected {
                shared.fail(format!(
                    "echo connection {}: got message {seq}, expected {expected}",
                    conn.id
                ));
                return;
            }
            conn.received.set(expected + 1);
            if shared.window.contains(due) {
                record_ns(&mut rtt, now.saturating_sub(due));
                shared.measured_received.set(shared.measured_received.get() + 1);
            }
        }
        pending.copy_within(whole.., 0);
        pending.truncate(pending.len() - whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_due_time_and_number() {
        let mut out = Vec::new();
        encode_message(&mut out, 64, 123_456_789, 7);
        encode_message(&mut out, 64, 5, 8);
        assert_eq!(out.len(), 128);
        assert_eq!(decode_message(&out[..64]), (123_456_789, 7));
        assert_eq!(decode_message(&out[64..]), (5, 8));
        assert!(out[16..64].iter().all(|&b| b == PAD));
        let mut small = Vec::new();
        encode_message(&mut small, SIZE_MIN, 1, 2);
        assert_eq!(small.len(), SIZE_MIN);
    }

    #[test]
    fn measures_round_trips_against_an_echo_server() {
        let addr = super::super::echo_server::spawn_thread().expect("echo server");
        let outcome = clock::runtime(None).unwrap().block_on(async move {
            let plan = EchoPlan {
                addr,
                connections: 3,
                size: 100,
                rate_per_s: 20_000,
                warmup: Duration::from_millis(50),
                duration: Duration::from_millis(200),
            };
            run(&plan).await.expect("echo phase")
        });
        assert_eq!(outcome.failure, None);
        assert_eq!(outcome.unanswered, 0);
        // 200 ms at 20,000/s.
        assert!((3_999..=4_001).contains(&outcome.sent), "{}", outcome.sent);
        assert_eq!(outcome.rtt.len(), outcome.sent);
        assert!(outcome.rtt.min() > 1_000, "a loopback round trip takes microseconds");
        assert!(outcome.pacer.started >= 4_999);
    }
}
