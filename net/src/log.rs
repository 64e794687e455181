//! The daemon's log: one line per message on stderr, prefixed with the priority in the
//! form systemd's stream logging understands (`SyslogLevelPrefix=`, on by default), so
//! journald files each line at its priority and `journalctl -u bourse -p warning` finds
//! exactly the failures.
//!
//! ```text
//! bourse_net::log_error!("the command log failed, stopping: {why}");   // <3>bourse: ...
//! bourse_net::log_warn!("logon refused from {peer}: {reason}");       // <4>bourse: ...
//! bourse_net::log_notice!("logon key {key} from {peer}");             // <5>bourse: ...
//! bourse_net::log_info!("listening on {addr}");                       // <6>bourse: ...
//! ```
//!
//! Anything an outsider can trigger at will (refused connections, failed logons, accept
//! errors under fd exhaustion) goes through a [`RateLimitedLog`]: the first line of a
//! storm is printed, the rest are counted, and one summary line ("N more suppressed in
//! the last Xs") follows when the window ends, so a flood cannot flood the journal too.
//!
//! Logging is for the edges (connections, operators, failures), never the order path:
//! each line formats into a fresh `String` and takes the stderr lock once, so lines from
//! different threads never interleave.

use std::fmt;
use std::io::Write;

/// Syslog priorities, as journald reads them from a `<N>` line prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `<3>`: the process cannot go on as promised (log failure, fatal storage error).
    Error = 3,
    /// `<4>`: something failed or was refused (logon refused, limit hit, bad peer).
    Warning = 4,
    /// `<5>`: normal but significant (logon, logout, every admin action).
    Notice = 5,
    /// `<6>`: routine (listening, recovered, snapshot written).
    Info = 6,
}

impl Level {
    /// The journald line prefix, `<3>` to `<6>`.
    pub fn prefix(self) -> &'static str {
        match self {
            Level::Error => "<3>",
            Level::Warning => "<4>",
            Level::Notice => "<5>",
            Level::Info => "<6>",
        }
    }
}

/// The whole line for `message` at `level`, newline included.
pub fn format_line(level: Level, message: fmt::Arguments<'_>) -> String {
    format!("{}bourse: {}\n", level.prefix(), message)
}

/// Writes one line to stderr. A failed write (stderr closed) is ignored: there is
/// nowhere left to report it.
pub fn write(level: Level, message: fmt::Arguments<'_>) {
    let line = format_line(level, message);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `<3>` error line on stderr: `log_error!("format {}", args)`.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}

/// `<4>` warning line on stderr.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($arg)*)) };
}

/// `<5>` notice line on stderr.
#[macro_export]
macro_rules! log_notice {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Notice, format_args!($($arg)*)) };
}

/// `<6>` info line on stderr.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// What a [`Throttle`] says about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Print it. `suppressed` events were dropped in the `window_ns` before it: say so
    /// first (when non-zero).
    Print { suppressed: u64, window_ns: u64 },
    /// Count it and print nothing.
    Suppress,
}

/// At most one printed event per `interval_ns`; the rest are counted. Time is passed in
/// (nanoseconds, any monotonic origin), so it is deterministic to test.
#[derive(Clone, Copy, Debug)]
pub struct Throttle {
    interval_ns: u64,
    /// When the last printed event was, while a window is open.
    printed_ns: Option<u64>,
    suppressed: u64,
}

impl Throttle {
    pub const fn new(interval_ns: u64) -> Throttle {
        assert!(interval_ns > 0);
        Throttle { interval_ns, printed_ns: None, suppressed: 0 }
    }

    /// One event at `now_ns`.
    pub fn admit(&mut self, now_ns: u64) -> Admit {
        match self.printed_ns {
            Some(printed) if now_ns.saturating_sub(printed) < self.interval_ns => {
                self.suppressed += 1;
                Admit::Suppress
            }
            printed => {
                let window_ns = printed.map_or(0, |p| now_ns.saturating_sub(p));
                let suppressed = std::mem::take(&mut self.suppressed);
                self.printed_ns = Some(now_ns);
                Admit::Print { suppressed, window_ns }
            }
        }
    }

    /// Call it now and then (a timer): once the window of the last printed event is
    /// over, returns what was suppressed in it (if anything) and closes the window, so
    /// the next event prints at once.
    pub fn flush(&mut self, now_ns: u64) -> Option<(u64, u64)> {
        let printed = self.printed_ns?;
        let window_ns = now_ns.saturating_sub(printed);
        if window_ns < self.interval_ns {
            return None;
        }
        self.printed_ns = None;
        let suppressed = std::mem::take(&mut self.suppressed);
        (suppressed > 0).then_some((suppressed, window_ns))
    }
}

/// Default window of a [`RateLimitedLog`]: one line per kind per 10 s.
pub const RATE_LIMITED_INTERVAL_NS: u64 = 10_000_000_000;

/// A kind of log line that outsiders can trigger: printed at most once per window,
/// followed by a summary of what was suppressed. Owned by the thread that logs it.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitedLog {
    level: Level,
    /// Names the kind in the summary line ("refused connections").
    what: &'static str,
    throttle: Throttle,
}

impl RateLimitedLog {
    pub const fn new(level: Level, what: &'static str) -> RateLimitedLog {
        RateLimitedLog::with_interval(level, what, RATE_LIMITED_INTERVAL_NS)
    }

    pub const fn with_interval(level: Level, what: &'static str, ns: u64) -> RateLimitedLog {
        RateLimitedLog { level, what, throttle: Throttle::new(ns) }
    }

    /// Logs `message` unless one of its kind was printed within the window.
    pub fn log(&mut self, now_ns: u64, message: fmt::Arguments<'_>) {
        if let Some(summary) = self.lines(now_ns, message) {
            for line in summary.iter().flatten() {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    /// Prints the summary of a window that is over (call it from a timer).
    pub fn flush(&mut self, now_ns: u64) {
        if let Some(line) = self.flush_line(now_ns) {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    /// The lines `log` prints (summary first, then the message), or `None` when the
    /// message is suppressed.
    pub fn lines(
        &mut self,
        now_ns: u64,
        message: fmt::Arguments<'_>,
    ) -> Option<[Option<String>; 2]> {
        match self.throttle.admit(now_ns) {
            Admit::Suppress => None,
            Admit::Print { suppressed, window_ns } => {
                let summary = (suppressed > 0).then(|| self.summary(suppressed, window_ns));
                Some([summary, Some(format_line(self.level, message))])
            }
        }
    }

    /// The line `flush` prints, if any.
    pub fn flush_line(&mut self, now_ns: u64) -> Option<String> {
        let (suppressed, window_ns) = self.throttle.flush(now_ns)?;
        Some(self.summary(suppressed, window_ns))
    }

    fn summary(&self, suppressed: u64, window_ns: u64) -> String {
        let secs = window_ns / 1_000_000_000;
        format_line(
            self.level,
            format_args!("{}: {suppressed} more suppressed in the last {secs}s", self.what),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn lines_carry_the_journald_priority() {
        assert_eq!(format_line(Level::Error, format_args!("x {}", 1)), "<3>bourse: x 1\n");
        assert_eq!(format_line(Level::Warning, format_args!("w")), "<4>bourse: w\n");
        assert_eq!(format_line(Level::Notice, format_args!("n")), "<5>bourse: n\n");
        assert_eq!(format_line(Level::Info, format_args!("i")), "<6>bourse: i\n");
    }

    #[test]
    fn a_storm_prints_one_line_then_a_summary() {
        let mut log = RateLimitedLog::with_interval(Level::Warning, "refused connections", 10 * S);
        // 45 a second for 5 s: only the first is printed.
        let printed: Vec<_> = (0..225u64)
            .filter_map(|i| log.lines(i * S / 45, format_args!("refused {i}")))
            .collect();
        assert_eq!(printed.len(), 1);
        assert_eq!(printed[0], [None, Some("<4>bourse: refused 0\n".to_string())]);
        // Nothing to flush while the window is open.
        assert_eq!(log.flush_line(9 * S), None);
        // Once it is over, one summary of the other 224.
        assert_eq!(
            log.flush_line(10 * S).as_deref(),
            Some("<4>bourse: refused connections: 224 more suppressed in the last 10s\n")
        );
        assert_eq!(log.flush_line(30 * S), None);
        // The next event prints at once, with nothing to summarise.
        let next = log.lines(31 * S, format_args!("again")).expect("printed");
        assert_eq!(next, [None, Some("<4>bourse: again\n".to_string())]);
    }

    #[test]
    fn an_event_after_the_window_brings_the_summary_with_it() {
        let mut throttle = Throttle::new(10 * S);
        assert_eq!(throttle.admit(0), Admit::Print { suppressed: 0, window_ns: 0 });
        assert_eq!(throttle.admit(S), Admit::Suppress);
        assert_eq!(throttle.admit(2 * S), Admit::Suppress);
        assert_eq!(throttle.admit(12 * S), Admit::Print { suppressed: 2, window_ns: 12 * S });
        assert_eq!(throttle.admit(13 * S), Admit::Suppress);
        // Time going backwards stays inside the window.
        assert_eq!(throttle.admit(0), Admit::Suppress);
    }
}
