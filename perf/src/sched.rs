//! How much the scheduler took the CPU away from the bench thread.
//!
//! On a shared machine other processes preempt the bench, and an open-loop run charges
//! every such pause to the operations queued behind it: a 4 ms preemption at 1M ops/s
//! puts 4,000 operations above 1 ms. These counters, read from Linux's per-thread
//! `/proc/thread-self/schedstat` (second field: ns spent runnable but waiting for a CPU)
//! and `/proc/thread-self/status` (`nonvoluntary_ctxt_switches`), let a report say how
//! much of its tail is the machine rather than the code. They are read outside the timed
//! loops (reading a file allocates) and are absent on systems without them.

use std::path::Path;

/// Largest /proc file read here; both files are a few hundred bytes to a few KiB.
const PROC_FILE_BYTES_MAX: usize = 64 << 10;

/// Scheduler counters of the calling thread at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedCounts {
    /// Time runnable but waiting on a run queue, ns.
    pub run_delay_ns: u64,
    /// Times the thread was switched out while it still wanted to run.
    pub involuntary_switches: u64,
}

impl SchedCounts {
    pub fn since(&self, earlier: &SchedCounts) -> SchedCounts {
        SchedCounts {
            run_delay_ns: self.run_delay_ns.saturating_sub(earlier.run_delay_ns),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(earlier.involuntary_switches),
        }
    }

    pub fn plus(&self, other: &SchedCounts) -> SchedCounts {
        SchedCounts {
            run_delay_ns: self.run_delay_ns.saturating_add(other.run_delay_ns),
            involuntary_switches: self
                .involuntary_switches
                .saturating_add(other.involuntary_switches),
        }
    }
}

fn read_small(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    (text.len() <= PROC_FILE_BYTES_MAX).then_some(text)
}

/// The second number of a `schedstat` line (`on_cpu_ns run_delay_ns timeslices`).
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `nonvoluntary_ctxt_switches:` from a `status` file.
fn parse_status(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("nonvoluntary_ctxt_switches:"))?;
    line.split_once(':')?.1.trim().parse().ok()
}

/// The calling thread's counters, or `None` where /proc does not provide them.
pub fn counts() -> Option<SchedCounts> {
    let run_delay_ns = parse_schedstat(&read_small(Path::new("/proc/thread-self/schedstat"))?)?;
    let involuntary_switches = parse_status(&read_small(Path::new("/proc/thread-self/status"))?)?;
    Some(SchedCounts { run_delay_ns, involuntary_switches })
}

/// One line for a report: how much CPU the scheduler took away during `measured`.
pub fn describe(counts: Option<SchedCounts>, measured: std::time::Duration) -> String {
    let Some(c) = counts else {
        return "scheduler: no per-thread counters on this OS".to_string();
    };
    let share =
        if measured.is_zero() { 0.0 } else { c.run_delay_ns as f64 / measured.as_nanos() as f64 };
    format!(
        "scheduler: the bench thread waited {:.3} ms for a CPU ({:.2}% of measured time) and was preempted {} times{}",
        c.run_delay_ns as f64 / 1e6,
        100.0 * share,
        c.involuntary_switches,
        if c.involuntary_switches > 0 { " (other processes' time is in the latency tail)" } else { "" }
    )
}

/// The 1-minute load average and the CPU count, for the report header.
pub fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = read_small(Path::new("/proc/loadavg"))
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string());
    format!("machine: {cpus} CPUs, 1-minute load average {load} before the run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        assert_eq!(parse_schedstat("69910 3084050 2\n"), Some(3_084_050));
        assert_eq!(parse_schedstat("69910\n"), None);
        assert_eq!(parse_schedstat("a b c"), None);
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t3\nnonvoluntary_ctxt_switches:\t17\n";
        assert_eq!(parse_status(status), Some(17));
        assert_eq!(parse_status("Name: x\n"), None);
        assert_eq!(parse_status("nonvoluntary_ctxt_switches: lots\n"), None);
    }

    #[test]
    fn describes() {
        let c = SchedCounts { run_delay_ns: 5_000_000, involuntary_switches: 3 };
        let line = describe(Some(c), std::time::Duration::from_millis(100));
        assert!(
            line.contains("5.000 ms") && line.contains("5.00%") && line.contains("3 times"),
            "{line}"
        );
        assert!(describe(None, std::time::Duration::ZERO).contains("no per-thread counters"));
        assert!(machine_line().starts_with("machine: "));
    }

    #[test]
    fn deltas() {
        let a = SchedCounts { run_delay_ns: 10, involuntary_switches: 2 };
        let b = SchedCounts { run_delay_ns: 25, involuntary_switches: 3 };
        assert_eq!(b.since(&a), SchedCounts { run_delay_ns: 15, involuntary_switches: 1 });
        assert_eq!(a.since(&b), SchedCounts::default());
        assert_eq!(a.plus(&b), SchedCounts { run_delay_ns: 35, involuntary_switches: 5 });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_thread_on_linux() {
        let first = counts().expect("/proc/thread-self is readable on Linux");
        let later = counts().unwrap();
        assert!(later.run_delay_ns >= first.run_delay_ns);
    }
}
