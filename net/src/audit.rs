//! The net core's audit and connection log: turns the gateway's [`Audit`] records and
//! the accept loop's failures into log lines at journald priorities (`log.rs`).
//!
//! | what                                   | priority | rate-limited |
//! |----------------------------------------|----------|--------------|
//! | logon, logout (client's own or peer)   | notice   | no           |
//! | logout forced by the server (limits)   | warning  | no           |
//! | admin action, with its key             | notice   | no           |
//! | logon refused (bad key, signature, cap)| warning  | yes          |
//! | closed before logon, evicted           | warning  | yes          |
//! | connection refused by a limit          | warning  | yes          |
//! | accept failed (fd exhaustion)          | error    | yes          |
//!
//! What an outsider can trigger without a key is rate-limited (one line per kind per
//! `RATE_LIMITED_INTERVAL_NS`, then a summary), so a flood cannot flood the journal.
//! What a key holder does is always logged: it is the audit trail.

use std::net::SocketAddr;

use crate::log::{self, Level, RateLimitedLog};
use crate::protocol::SessionReason;
use crate::session::{Audit, ConnectError};

/// Lives on the net core.
#[derive(Debug)]
pub struct AuditLog {
    logon_refused: RateLimitedLog,
    closed_before_logon: RateLimitedLog,
    evicted: RateLimitedLog,
    connect_refused: RateLimitedLog,
    accept_failed: RateLimitedLog,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog {
            logon_refused: RateLimitedLog::new(Level::Warning, "refused logons"),
            closed_before_logon: RateLimitedLog::new(Level::Warning, "closed before logon"),
            evicted: RateLimitedLog::new(Level::Warning, "evicted before logon"),
            connect_refused: RateLimitedLog::new(Level::Warning, "refused connections"),
            accept_failed: RateLimitedLog::new(Level::Error, "failed accepts"),
        }
    }
}

impl AuditLog {
    /// Logs one record from `Gateway::take_audit`.
    pub fn record(&mut self, now_ns: u64, audit: &Audit) {
        match *audit {
            Audit::Logon { peer, key_id, admin, resumed } => {
                let role = if admin { "admin" } else { "trader" };
                let resumed = if resumed { ", resumed" } else { "" };
                crate::log_notice!("logon: key {key_id} ({role}) from {peer}{resumed}");
            }
            Audit::LogonRefused { peer, key_id, reason } => self
                .logon_refused
                .log(now_ns, format_args!("logon refused: key {key_id} from {peer}: {reason}")),
            Audit::Logout { peer, key_id, reason } => {
                let level = logout_level(reason);
                let why = reason.map_or("peer closed the connection", SessionReason::describe);
                log::write(level, format_args!("logout: key {key_id} from {peer}: {why}"));
            }
            Audit::ClosedBeforeLogon { peer, reason } => self
                .closed_before_logon
                .log(now_ns, format_args!("connection from {peer} closed before logon: {reason}")),
            Audit::Evicted { peer } => self.evicted.log(
                now_ns,
                format_args!(
                    "connection from {peer} evicted before logon \
                     (unauthenticated_max or connections_max reached)"
                ),
            ),
            Audit::Admin { peer, key_id, command } => {
                crate::log_notice!("admin: key {key_id} from {peer}: {command:?}");
            }
        }
    }

    /// A connection the gateway refused (`Gateway::on_connect`).
    pub fn connect_refused(&mut self, now_ns: u64, peer: SocketAddr, error: ConnectError) {
        self.connect_refused.log(now_ns, format_args!("connection from {peer} refused: {error}"));
    }

    /// `accept` itself failed (for instance EMFILE: out of file descriptors).
    pub fn accept_failed(&mut self, now_ns: u64, error: &std::io::Error) {
        self.accept_failed.log(now_ns, format_args!("accept failed: {error}"));
    }

    /// Prints the summaries of windows that are over; call it from a timer.
    pub fn flush(&mut self, now_ns: u64) {
        self.logon_refused.flush(now_ns);
        self.closed_before_logon.flush(now_ns);
        self.evicted.flush(now_ns);
        self.connect_refused.flush(now_ns);
        self.accept_failed.flush(now_ns);
    }
}

/// Notice for a logout the client chose (or a shutdown); warning when the server ended
/// the session for cause, so `journalctl -p warning` lists those.
pub fn logout_level(reason: Option<SessionReason>) -> Level {
    match reason {
        None
        | Some(SessionReason::LoggedOut)
        | Some(SessionReason::Replaced)
        | Some(SessionReason::Shutdown) => Level::Notice,
        Some(_) => Level::Warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_logouts_are_warnings() {
        assert_eq!(logout_level(None), Level::Notice);
        assert_eq!(logout_level(Some(SessionReason::LoggedOut)), Level::Notice);
        assert_eq!(logout_level(Some(SessionReason::SlowConsumer)), Level::Warning);
        assert_eq!(logout_level(Some(SessionReason::TooManyRejects)), Level::Warning);
        assert_eq!(logout_level(Some(SessionReason::IdleTimeout)), Level::Warning);
    }
}
