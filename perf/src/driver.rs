//! The bench driver: runs `n` operations either open-loop at a fixed offered rate
//! (coordinated omission corrected) or back to back at maximum throughput, recording
//! latencies (ns) into an HDR histogram and counting heap allocations.
//!
//! The operation is a closure `FnMut(usize)` called with the index of the operation in the
//! segment; the caller pre-generates whatever the operation needs so that generation is
//! not measured. A [`Recorder`] accumulates over several segments (benches generate their
//! input in chunks to bound memory), so the figures are for all measured segments together
//! and the gaps between them, where the next chunk is generated, are not counted.
//!
//! # Open loop ([`Pacing::Open`])
//!
//! Operation `i` of a segment is *intended* to start at `t0 + i / rate`. The driver spins
//! until then if it is early and starts at once if it is late. Its latency is `completion -
//! intended start`, not `completion - actual start`: when the system stalls, the operations
//! that should have started during the stall queue up behind it, and each one's latency
//! includes the time it waited. That is the coordinated-omission correction (as in wrk2 and
//! HdrHistogram's `recordValueWithExpectedInterval`, but exact rather than synthesised).
//! Each operation costs one clock read at completion (which doubles as the "is it time
//! yet?" read for the next one when the system is behind) plus the spin reads when early.
//!
//! # Maximum throughput ([`Pacing::Max`])
//!
//! No pacing. Throughput is operations / wall time of the segment. Timing every operation
//! with `Instant` would add two clock reads (~20-25 ns each on these VMs) to operations of
//! ~100-200 ns, so only every `sample_every`-th operation is timed individually (from a
//! clock read just before it to one just after it); the rest run untimed. The latency
//! histogram in this mode is therefore the *service time* of a systematic 1-in-N sample,
//! and each sample includes about one clock read of overhead ([`clock_overhead_ns`]
//! estimates it). With the default N = 16 the timing costs under 1% of throughput.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::alloc::{self, AllocCounts};
use crate::report::{latency_histogram, record_ns, Percentiles, Summary};
use crate::sched::{self, SchedCounts};

/// Highest open-loop rate the driver accepts (operations per second).
pub const RATE_PER_S_MAX: u64 = 100_000_000;

/// Largest `sample_every` accepted in max-throughput mode.
pub const SAMPLE_EVERY_MAX: u32 = 1 << 20;

/// How operations are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Back to back; time every `sample_every`-th operation.
    Max { sample_every: u32 },
    /// Open loop at `rate_per_s` intended starts per second.
    Open { rate_per_s: u64 },
}

impl Pacing {
    /// Checks the bounds; the driver asserts them too.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Pacing::Max { sample_every }
                if sample_every == 0 || sample_every > SAMPLE_EVERY_MAX =>
            {
                Err(format!("sample_every must be in 1..={SAMPLE_EVERY_MAX}"))
            }
            Pacing::Open { rate_per_s } if rate_per_s == 0 || rate_per_s > RATE_PER_S_MAX => {
                Err(format!("rate must be in 1..={RATE_PER_S_MAX} per second"))
            }
            _ => Ok(()),
        }
    }
}

/// Offset of operation `i`'s intended start from the segment start, in ns. Computed from
/// `i` each time (not by adding a rounded period), so rounding never accumulates.
#[inline]
pub fn intended_offset_ns(i: u64, rate_per_s: u64) -> u64 {
    debug_assert!(rate_per_s > 0);
    (u128::from(i) * 1_000_000_000 / u128::from(rate_per_s)) as u64
}

#[inline]
fn ns_since(t0: Instant) -> u64 {
    // A run would need 584 years to overflow u64 ns.
    t0.elapsed().as_nanos() as u64
}

/// Accumulated results of one or more measured segments.
pub struct Recorder {
    hist: Histogram<u64>,
    ops: u64,
    elapsed: Duration,
    allocs: AllocCounts,
    /// Open loop: the most any operation started behind its intended time, in ns.
    start_lag_ns_max: u64,
    /// Time the scheduler gave to other threads during the segments; `None` if unknown.
    sched: Option<SchedCounts>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// Allocates the histogram now, so recording never allocates in a measured segment.
    pub fn new() -> Recorder {
        Recorder {
            hist: latency_histogram(),
            ops: 0,
            elapsed: Duration::ZERO,
            allocs: AllocCounts::default(),
            start_lag_ns_max: 0,
            sched: Some(SchedCounts::default()),
        }
    }

    /// Runs operations `0..n` with the given pacing, accumulating into this recorder.
    pub fn run<F: FnMut(usize)>(&mut self, pacing: Pacing, n: usize, op: F) {
        assert!(pacing.validate().is_ok(), "invalid pacing {pacing:?}");
        // Read before the allocation window opens: reading /proc allocates.
        let sched_before = sched::counts();
        let allocs_before = alloc::counts();
        let elapsed = match pacing {
            Pacing::Max { sample_every } => self.run_max(n, sample_every, op),
            Pacing::Open { rate_per_s } => self.run_open(n, rate_per_s, op),
        };
        self.allocs = self.allocs.plus(&alloc::counts().since(&allocs_before));
        self.sched = match (self.sched, sched_before, sched::counts()) {
            (Some(total), Some(before), Some(after)) => Some(total.plus(&after.since(&before))),
            _ => None,
        };
        self.elapsed += elapsed;
        self.ops += n as u64;
    }

    fn run_max<F: FnMut(usize)>(&mut self, n: usize, sample_every: u32, mut op: F) -> Duration {
        let hist = &mut self.hist;
        let t0 = Instant::now();
        // A countdown rather than `i % sample_every`: no division per operation.
        let mut countdown = sample_every;
        for i in 0..n {
            countdown -= 1;
            if countdown == 0 {
                countdown = sample_every;
                let start = Instant::now();
                op(i);
                record_ns(hist, start.elapsed().as_nanos() as u64);
            } else {
                op(i);
            }
        }
        t0.elapsed()
    }

    fn run_open<F: FnMut(usize)>(&mut self, n: usize, rate_per_s: u64, mut op: F) -> Duration {
        let hist = &mut self.hist;
        let mut lag_ns_max = self.start_lag_ns_max;
        let t0 = Instant::now();
        let mut now_ns = 0;
        for i in 0..n {
            let intended_ns = intended_offset_ns(i as u64, rate_per_s);
            while now_ns < intended_ns {
                std::hint::spin_loop();
                now_ns = ns_since(t0);
            }
            lag_ns_max = lag_ns_max.max(now_ns - intended_ns);
            op(i);
            now_ns = ns_since(t0);
            debug_assert!(now_ns >= intended_ns);
            record_ns(hist, now_ns - intended_ns);
        }
        self.start_lag_ns_max = lag_ns_max;
        t0.elapsed()
    }

    /// Max mode with every operation timed, each latency also recorded into
    /// `by_class[class(i)]`: a diagnostic breakdown (say, per command kind) of where the
    /// service time goes. Throughput suffers by two clock reads per operation.
    pub fn run_by_class<F: FnMut(usize), C: Fn(usize) -> usize>(
        &mut self,
        n: usize,
        class: C,
        by_class: &mut [Histogram<u64>],
        mut op: F,
    ) {
        assert!(!by_class.is_empty());
        let sched_before = sched::counts();
        let allocs_before = alloc::counts();
        let hist = &mut self.hist;
        let t0 = Instant::now();
        for i in 0..n {
            let start = Instant::now();
            op(i);
            let ns = start.elapsed().as_nanos() as u64;
            record_ns(hist, ns);
            let c = class(i).min(by_class.len() - 1);
            record_ns(&mut by_class[c], ns);
        }
        self.elapsed += t0.elapsed();
        self.allocs = self.allocs.plus(&alloc::counts().since(&allocs_before));
        self.sched = match (self.sched, sched_before, sched::counts()) {
            (Some(total), Some(before), Some(after)) => Some(total.plus(&after.since(&before))),
            _ => None,
        };
        self.ops += n as u64;
    }

    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Wall time of the measured segments (generation between them excluded).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.hist)
    }

    /// Heap activity during the measured segments (needs [`alloc::CountingAlloc`]
    /// installed; check [`alloc::installed`]).
    pub fn allocs(&self) -> AllocCounts {
        self.allocs
    }

    /// How long the bench thread waited for a CPU, and how often it was preempted, during
    /// the segments (`None` where the OS does not say). Non-zero values mean other
    /// processes took the CPU and the latency tail includes their time.
    pub fn sched(&self) -> Option<SchedCounts> {
        self.sched
    }

    pub fn allocs_per_op(&self) -> f64 {
        if self.ops == 0 {
            return 0.0;
        }
        self.allocs.allocs as f64 / self.ops as f64
    }

    /// Operations per second of measured wall time.
    pub fn throughput_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.ops as f64 / secs
    }

    /// Open loop: the most any operation started behind schedule, in ns (0 in max mode).
    /// Large values mean the system did not keep up with the offered rate.
    pub fn start_lag_ns_max(&self) -> u64 {
        self.start_lag_ns_max
    }

    pub fn summary(&self, name: &str) -> Summary {
        Summary::new(
            name,
            self.ops,
            self.throughput_per_s(),
            &self.percentiles(),
            self.allocs_per_op(),
        )
    }
}

/// Estimates the cost of one `Instant::now()` in ns: the median gap between back-to-back
/// reads. Benches print it so readers can tell how much of a small latency is the clock.
pub fn clock_overhead_ns() -> u64 {
    const READS: usize = 10_001;
    let mut gaps = Vec::with_capacity(READS);
    let mut last = Instant::now();
    for _ in 0..READS {
        let now = Instant::now();
        gaps.push(now.duration_since(last).as_nanos() as u64);
        last = now;
    }
    gaps.sort_unstable();
    gaps[READS / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_offsets_do_not_drift() {
        assert_eq!(intended_offset_ns(0, 3), 0);
        assert_eq!(intended_offset_ns(1, 3), 333_333_333);
        assert_eq!(intended_offset_ns(3, 3), 1_000_000_000);
        assert_eq!(intended_offset_ns(3_000_000_000, 3), 1_000_000_000_000_000_000);
        assert_eq!(intended_offset_ns(1_000_000, 1_000_000), 1_000_000_000);
    }

    #[test]
    fn pacing_bounds() {
        assert!(Pacing::Max { sample_every: 0 }.validate().is_err());
        assert!(Pacing::Max { sample_every: 1 }.validate().is_ok());
        assert!(Pacing::Open { rate_per_s: 0 }.validate().is_err());
        assert!(Pacing::Open { rate_per_s: RATE_PER_S_MAX + 1 }.validate().is_err());
        assert!(Pacing::Open { rate_per_s: 1_000 }.validate().is_ok());
    }

    #[test]
    fn max_mode_samples_every_nth_op() {
        let mut rec = Recorder::new();
        let mut seen = Vec::new();
        rec.run(Pacing::Max { sample_every: 4 }, 100, |i| seen.push(i));
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(rec.ops(), 100);
        assert_eq!(rec.histogram().len(), 25);
        rec.run(Pacing::Max { sample_every: 1 }, 10, |_| {});
        assert_eq!(rec.ops(), 110);
        assert_eq!(rec.histogram().len(), 35);
    }

    #[test]
    fn open_loop_paces_at_the_offered_rate() {
        // 2,000 ops at 20,000/s take at least 99.95 ms (the last starts at 1999/20000 s).
        let mut rec = Recorder::new();
        let start = Instant::now();
        rec.run(Pacing::Open { rate_per_s: 20_000 }, 2_000, |_| {});
        let wall = start.elapsed();
        assert!(wall >= Duration::from_micros(99_950), "{wall:?}");
        assert_eq!(rec.histogram().len(), 2_000);
        // Throughput is close to the offered rate (the machine is shared, so allow slack
        // above only: it cannot be faster than the schedule).
        assert!(rec.throughput_per_s() <= 20_100.0, "{}", rec.throughput_per_s());
    }

    #[test]
    fn open_loop_charges_a_stall_to_the_ops_queued_behind_it() {
        // At 10,000/s (100 µs apart) op 10 stalls for 20 ms: about 200 ops were due during
        // the stall, and each must report the time it waited. Without the correction only
        // op 10 would be slow.
        let mut rec = Recorder::new();
        rec.run(Pacing::Open { rate_per_s: 10_000 }, 1_000, |i| {
            if i == 10 {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let hist = rec.histogram();
        let slow = hist.count_between(1_000_000, u64::MAX); // >= 1 ms
        assert!(slow >= 150, "only {slow} ops saw the stall");
        assert!(hist.max() >= 20_000_000, "max {}", hist.max());
        // The op right after the stall waited about 20 ms - 100 µs.
        assert!(rec.start_lag_ns_max() >= 19_000_000, "{}", rec.start_lag_ns_max());
    }

    #[test]
    fn max_mode_latency_is_service_time() {
        // Each op sleeps ~1 ms; sampled latencies must be at least that.
        let mut rec = Recorder::new();
        rec.run(Pacing::Max { sample_every: 1 }, 5, |_| {
            std::thread::sleep(Duration::from_millis(1))
        });
        assert!(rec.histogram().min() >= 1_000_000);
        assert!(rec.throughput_per_s() <= 1_000.0);
    }

    #[test]
    fn by_class_splits_the_samples() {
        let mut rec = Recorder::new();
        let mut classes = [latency_histogram(), latency_histogram()];
        rec.run_by_class(
            10,
            |i| i % 2,
            &mut classes,
            |i| {
                if i % 2 == 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            },
        );
        assert_eq!(rec.ops(), 10);
        assert_eq!(rec.histogram().len(), 10);
        assert_eq!(classes[0].len(), 5);
        assert_eq!(classes[1].len(), 5);
        assert!(classes[1].min() >= 1_000_000);
        // Out-of-range classes land in the last histogram.
        rec.run_by_class(3, |_| 99, &mut classes, |_| {});
        assert_eq!(classes[1].len(), 8);
    }

    #[test]
    fn clock_overhead_is_plausible() {
        let ns = clock_overhead_ns();
        assert!(ns < 10_000, "{ns}");
    }
}
