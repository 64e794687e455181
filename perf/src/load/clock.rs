//! Time for the load generator: a monotonic nanosecond clock, a microsecond-precise
//! deadline timer on the monoio runtime, the open-loop pacer, and two small task helpers.
//!
//! Why a timer of our own: monoio's timer wheel rounds every sleep up to the next whole
//! millisecond, and at 100k orders/s the next order is due 10 µs after the last. Spinning
//! instead would take a CPU that this 2-core machine needs for the server's net core. A
//! Linux `timerfd` armed with an absolute `CLOCK_MONOTONIC` deadline, read through
//! io_uring, wakes the runtime at the deadline (hrtimer precision) while the socket reads
//! and writes of every session go on around it. `std::time::Instant` reads the same
//! clock, but does not expose its nanoseconds, so this module reads `CLOCK_MONOTONIC`
//! itself (vDSO, no syscall).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::os::fd::OwnedFd;
use std::task::{Poll, Waker};

use hdrhistogram::Histogram;
use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};

use crate::driver::intended_offset_ns;
use crate::report::record_ns;

/// Operations the pacer starts in one wake-up when it is behind schedule, before it lets
/// the connection tasks run (so that replies keep being read while it catches up).
pub const EMIT_PER_WAKE_MAX: u64 = 4096;

/// Below this much time to the next deadline the pacer spins instead of arming the timer:
/// a timer wake-up costs more than that.
pub const SPIN_BELOW_NS: u64 = 2_000;

/// Nanoseconds of `CLOCK_MONOTONIC` (the clock of `Instant`).
#[inline]
pub fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    // The monotonic clock counts from boot: never negative.
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// `CLOCK_REALTIME - CLOCK_MONOTONIC` now, in ns: turns the server's wall-clock stamps
/// into this process's monotonic time (both clocks tick together between NTP steps).
pub fn realtime_offset_ns() -> u64 {
    let before = now_ns();
    let real = clock_gettime(ClockId::Realtime);
    let after = now_ns();
    let real_ns = real.tv_sec as u64 * 1_000_000_000 + real.tv_nsec as u64;
    real_ns.saturating_sub(before / 2 + after / 2)
}

/// A one-shot timer at an absolute monotonic time, awaited on the monoio runtime.
pub struct DeadlineTimer {
    /// The timer, for arming (`timerfd_settime`).
    fd: OwnedFd,
    /// A duplicate of the same timer, read through io_uring (8 bytes: expirations).
    file: monoio::fs::File,
    buf: Vec<u8>,
    /// Times the timer was armed and awaited.
    pub waits: u64,
}

impl DeadlineTimer {
    /// Needs a running monoio runtime (the read goes through its io_uring).
    pub fn new() -> io::Result<DeadlineTimer> {
        // Blocking mode on purpose: io_uring polls a timerfd that supports non-blocking
        // reads instead of failing with EAGAIN as it would for an O_NONBLOCK file.
        let fd = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC)?;
        let reader = fd.try_clone()?;
        let file = monoio::fs::File::from_std(std::fs::File::from(reader))?;
        Ok(DeadlineTimer { fd, file, buf: Vec::with_capacity(8), waits: 0 })
    }

    /// Returns at `deadline_ns` (monotonic) or at once if that has passed.
    pub async fn sleep_until(&mut self, deadline_ns: u64) -> io::Result<()> {
        if deadline_ns <= now_ns() {
            return Ok(());
        }
        // A zero `it_value` would disarm the timer; the deadline is in the future, so it
        // is not zero.
        debug_assert!(deadline_ns > 0);
        let spec = Itimerspec {
            it_interval: Timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: Timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as i64,
                tv_nsec: (deadline_ns % 1_000_000_000) as i64,
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &spec)?;
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() < 8 {
            buf.reserve(8);
        }
        buf.clear();
        let (result, buf) = self.file.read_at(buf, 0).await;
        self.buf = buf;
        self.waits += 1;
        match result {
            Ok(8) => Ok(()),
            Ok(n) => Err(io::Error::other(format!("timerfd read returned {n} bytes"))),
            Err(e) => Err(e),
        }
    }
}

/// A one-waiter wake-up between tasks of one runtime thread (a writer waits for bytes).
#[derive(Default)]
pub struct LocalNotify {
    notified: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LocalNotify {
    pub fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub async fn wait(&self) {
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

/// Lets the runtime's other tasks run once.
pub async fn yield_now() {
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

/// An open-loop schedule: operation `i` is due at `start_ns + i / rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub start_ns: u64,
    pub rate_per_s: u64,
    pub count: u64,
}

impl Schedule {
    #[inline]
    pub fn due_ns(&self, i: u64) -> u64 {
        self.start_ns + intended_offset_ns(i, self.rate_per_s)
    }
}

/// What the pacer saw of its own punctuality.
pub struct PacerReport {
    /// Operations started.
    pub started: u64,
    /// How late each operation was handed to its connection (now - due), ns: the load
    /// generator's own contribution to every latency it reports.
    pub lateness: Histogram<u64>,
    /// Timer waits (wake-ups that were not spins or catch-ups).
    pub timer_waits: u64,
}

/// Runs `schedule` open loop: `emit(i, due_ns)` hands operation `i` to its connection
/// (encodes it into a batch), `flush()` wakes the writers of the batches that got
/// something. Operations that fell due together go out in one batch per connection.
/// Stops early when `abort()` says so; returns what it started.
pub async fn run_open_loop(
    schedule: Schedule,
    timer: &mut DeadlineTimer,
    mut emit: impl FnMut(u64, u64),
    mut flush: impl FnMut(),
    abort: impl Fn() -> bool,
) -> io::Result<PacerReport> {
    assert!(schedule.rate_per_s > 0);
    let mut lateness = crate::report::latency_histogram();
    let waits_before = timer.waits;
    let mut i = 0;
    while i < schedule.count && !abort() {
        let now = now_ns();
        let mut started = 0;
        while i < schedule.count && started < EMIT_PER_WAKE_MAX {
            let due = schedule.due_ns(i);
            if due > now {
                break;
            }
            emit(i, due);
            record_ns(&mut lateness, now - due);
            i += 1;
            started += 1;
        }
        if started > 0 {
            flush();
        }
        if i == schedule.count {
            break;
        }
        if started == EMIT_PER_WAKE_MAX {
            // Behind: let the readers and writers run, then catch up.
            yield_now().await;
            continue;
        }
        let next = schedule.due_ns(i);
        if started > 0 {
            // Let the writers take the batch before sleeping: a short wait would
            // otherwise be spent before the bytes even leave.
            yield_now().await;
        }
        let left = next.saturating_sub(now_ns());
        if left == 0 {
            continue;
        }
        if left < SPIN_BELOW_NS {
            while now_ns() < next {
                std::hint::spin_loop();
            }
            continue;
        }
        timer.sleep_until(next).await?;
    }
    Ok(PacerReport { started: i, lateness, timer_waits: timer.waits - waits_before })
}

/// The runtime of the load generator's thread: io_uring with monoio's (coarse) timer.
pub type Runtime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// Builds the io_uring runtime every load-generator thread runs on (timer enabled for
/// connect and drain timeouts), pinned to `cpu` if given.
pub fn runtime(cpu: Option<usize>) -> io::Result<Runtime> {
    if let Some(cpu) = cpu {
        monoio::utils::bind_to_cpu_set(Some(cpu))
            .map_err(|e| io::Error::other(format!("cannot pin to cpu {cpu}: {e}")))?;
    }
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(4096).enable_timer().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        runtime(None).expect("io_uring runtime").block_on(future)
    }

    #[test]
    fn clock_is_monotonic_and_matches_instant() {
        let a = now_ns();
        let start = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = now_ns();
        let elapsed = start.elapsed().as_nanos() as u64;
        assert!(b > a);
        // Both read CLOCK_MONOTONIC: the gaps agree to well under a millisecond.
        assert!((b - a).abs_diff(elapsed) < 1_000_000, "{} vs {elapsed}", b - a);
    }

    #[test]
    fn timer_wakes_at_the_deadline_not_at_the_next_millisecond() {
        let lateness = block_on(async {
            let mut timer = DeadlineTimer::new().unwrap();
            let mut worst = 0;
            let mut late = Vec::new();
            for _ in 0..200 {
                let deadline = now_ns() + 50_000;
                timer.sleep_until(deadline).await.unwrap();
                let now = now_ns();
                assert!(now >= deadline, "woke {} ns early", deadline - now);
                worst = worst.max(now - deadline);
                late.push(now - deadline);
            }
            assert_eq!(timer.waits, 200);
            late.sort_unstable();
            late[late.len() / 2]
        });
        // monoio's own sleep would be ~1 ms late; the timerfd is microseconds late
        // (the median leaves room for a busy shared machine).
        assert!(lateness < 500_000, "median lateness {lateness} ns");
    }

    #[test]
    fn a_past_deadline_returns_at_once() {
        block_on(async {
            let mut timer = DeadlineTimer::new().unwrap();
            timer.sleep_until(1).await.unwrap();
            timer.sleep_until(now_ns()).await.unwrap();
            assert_eq!(timer.waits, 0);
        });
    }

    #[test]
    fn open_loop_starts_every_operation_at_or_after_its_due_time() {
        let (report, dues, starts) = block_on(async {
            let mut timer = DeadlineTimer::new().unwrap();
            let schedule =
                Schedule { start_ns: now_ns() + 1_000_000, rate_per_s: 20_000, count: 2_000 };
            let mut dues = Vec::new();
            let mut starts = Vec::new();
            let report = run_open_loop(
                schedule,
                &mut timer,
                |i, due| {
                    assert_eq!(due, schedule.due_ns(i));
                    dues.push(due);
                    starts.push(now_ns());
                },
                || {},
                || false,
            )
            .await
            .unwrap();
            (report, dues, starts)
        });
        assert_eq!(report.started, 2_000);
        assert_eq!(report.lateness.len(), 2_000);
        assert!(dues.windows(2).all(|w| w[1] - w[0] >= 49_999 && w[1] - w[0] <= 50_001));
        assert!(dues.iter().zip(&starts).all(|(d, s)| s >= d));
        // Most operations start within a millisecond of their due time: the pacer sleeps
        // on the timerfd, not on monoio's millisecond wheel (the bound leaves room for a
        // busy shared machine).
        let median_late = report.lateness.value_at_quantile(0.5);
        assert!(median_late < 1_000_000, "median lateness {median_late} ns");
    }

    #[test]
    fn open_loop_stops_when_aborted() {
        let started = block_on(async {
            let mut timer = DeadlineTimer::new().unwrap();
            let schedule = Schedule { start_ns: now_ns(), rate_per_s: 1_000_000, count: 1_000_000 };
            let count = Cell::new(0u64);
            let report = run_open_loop(
                schedule,
                &mut timer,
                |_, _| count.set(count.get() + 1),
                || {},
                || count.get() >= 10,
            )
            .await
            .unwrap();
            report.started
        });
        // The flag is checked between wake-ups, so at most one more round goes out.
        assert!((10..=10 + EMIT_PER_WAKE_MAX).contains(&started), "{started}");
    }

    #[test]
    fn notify_before_wait_is_not_lost() {
        block_on(async {
            let notify = LocalNotify::default();
            notify.notify();
            notify.wait().await;
            yield_now().await;
        });
    }
}
