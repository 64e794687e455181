//! systemd's service notification protocol (`Type=notify`), for the daemon: READY=1 once
//! connections are accepted, STATUS= lines (recovering, listening, stopping),
//! EXTEND_TIMEOUT_USEC= and WATCHDOG=1 while a long recovery makes progress, and
//! WATCHDOG=1 from the net core's tick task, so a hung net core stops feeding the watchdog
//! and systemd restarts the service.
//!
//! Without `NOTIFY_SOCKET` in the environment (not started by systemd, tests, `make run`)
//! every function here does nothing. A failed send is ignored: the notification socket is
//! a courtesy to the service manager, and the exchange must not stop because of it.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How much more start-up time each EXTEND_TIMEOUT_USEC asks for.
pub const RECOVERY_EXTEND: Duration = Duration::from_secs(30);
/// How often recovery asks for more (well inside [`RECOVERY_EXTEND`]).
pub const RECOVERY_EXTEND_EVERY: Duration = Duration::from_secs(5);
/// Log entries replayed between two looks at the clock during recovery.
const RECOVERY_CHECK_ENTRIES: u64 = 4096;

fn send(states: &[NotifyState]) {
    let _ = sd_notify::notify(false, states);
}

/// A STATUS= line, shown by `systemctl status`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// READY=1: recovery is done and connections are accepted.
pub fn ready(listening: std::net::SocketAddr) {
    let text = format!("ready: accepting connections on {listening}");
    send(&[NotifyState::Ready, NotifyState::Status(&text)]);
}

/// STOPPING=1: a clean shutdown has begun.
pub fn stopping(why: &str) {
    let text = format!("stopping: {why}");
    send(&[NotifyState::Stopping, NotifyState::Status(&text)]);
}

/// Keeps systemd's start timeout from firing while recovery replays a long log, as long
/// as it makes progress: [`RecoveryProgress::on_entry`] runs once per replayed entry.
#[derive(Debug)]
pub struct RecoveryProgress {
    last_extend: Instant,
    /// At most one notification per this long ([`RECOVERY_EXTEND_EVERY`]).
    every: Duration,
    entries: u64,
}

impl Default for RecoveryProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl RecoveryProgress {
    pub fn new() -> RecoveryProgress {
        status("recovering: reading the newest snapshot and the command log");
        RecoveryProgress { last_extend: Instant::now(), every: RECOVERY_EXTEND_EVERY, entries: 0 }
    }

    /// Counts one replayed entry; says whether it asked systemd for more time.
    pub fn on_entry(&mut self) -> bool {
        self.entries += 1;
        if self.entries % RECOVERY_CHECK_ENTRIES != 0 || self.last_extend.elapsed() < self.every {
            return false;
        }
        self.last_extend = Instant::now();
        let text = format!("recovering: {} log entries replayed", self.entries);
        let usec = RECOVERY_EXTEND.as_micros() as u32;
        // Progress is also proof of life: systemd may start the watchdog clock before
        // READY=1, and a replay can outlast `WatchdogSec=`.
        let states = [
            NotifyState::ExtendTimeoutUsec(usec),
            NotifyState::Watchdog,
            NotifyState::Status(&text),
        ];
        send(&states);
        true
    }
}

/// WATCHDOG=1 at half the interval systemd asked for (`WatchdogSec=`); disabled when the
/// service has no watchdog.
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// Reads `WATCHDOG_USEC` from the environment; if `WATCHDOG_PID` is set too, the
    /// watchdog is this process's only if it names it (as `sd_watchdog_enabled(3)` says).
    pub fn from_env() -> Watchdog {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let ours = std::env::var_os("WATCHDOG_PID").is_none()
            || var("WATCHDOG_PID") == Some(u64::from(std::process::id()));
        let every = var("WATCHDOG_USEC")
            .filter(|_| ours)
            .map(|usec| Duration::from_micros(usec / 2))
            .filter(|every| !every.is_zero());
        Watchdog { every, last: Instant::now() }
    }

    pub fn enabled(&self) -> bool {
        self.every.is_some()
    }

    /// Feeds the watchdog if half its interval has passed. Called from the net core's
    /// tick task: if that task stops running, the watchdog starves.
    pub fn tick(&mut self) {
        let Some(every) = self.every else { return };
        if self.last.elapsed() >= every {
            self.last = Instant::now();
            send(&[NotifyState::Watchdog]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_notify_socket_everything_is_a_no_op() {
        // Whether or not the test runner has a notify socket, nothing here may fail or
        // block (`net/tests/install.rs` checks what a real socket receives).
        status("test");
        ready("127.0.0.1:1".parse().unwrap());
        stopping("test");
        // Once the interval has passed, every RECOVERY_CHECK_ENTRIES-th entry asks for more
        // time, and no other does.
        let mut progress = RecoveryProgress { every: Duration::ZERO, ..RecoveryProgress::new() };
        let asked: Vec<u64> =
            (1..=3 * RECOVERY_CHECK_ENTRIES).filter(|_| progress.on_entry()).collect();
        let expected: Vec<u64> = (1..=3).map(|k| k * RECOVERY_CHECK_ENTRIES).collect();
        assert_eq!(asked, expected);
        let mut watchdog = Watchdog::from_env();
        assert_eq!(watchdog.enabled(), std::env::var_os("WATCHDOG_USEC").is_some());
        watchdog.tick();
    }
}
