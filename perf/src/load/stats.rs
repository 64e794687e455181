//! What a load run measures: latency histograms (ns, coordinated-omission corrected:
//! receive time minus *intended* send time) and counters, for the requests whose intended
//! send time falls in the measurement window (warm-up and cool-down excluded).

use bourse_engine::{DoneReason, RejectReason};
use bourse_net::protocol::{RejectCause, SessionReason};
use hdrhistogram::Histogram;

use crate::report::{latency_histogram, record_ns};

/// Kinds of request a market-maker session sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A new post-only GTC quote.
    Quote = 0,
    /// An amend of a resting quote (price move or new size).
    Amend = 1,
    /// A cancel of a resting quote, or of a crossing order's resting remainder.
    Cancel = 2,
    /// A limit IOC priced through the opposite side.
    CrossIoc = 3,
    /// A limit GTC priced through the opposite side (its remainder rests until cancelled).
    CrossGtc = 4,
}

/// Number of [`Kind`]s.
pub const KINDS: usize = 5;

impl Kind {
    pub const ALL: [Kind; KINDS] =
        [Kind::Quote, Kind::Amend, Kind::Cancel, Kind::CrossIoc, Kind::CrossGtc];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Quote => "quote",
            Kind::Amend => "amend",
            Kind::Cancel => "cancel",
            Kind::CrossIoc => "cross-ioc",
            Kind::CrossGtc => "cross-gtc",
        }
    }

    pub fn is_crossing(self) -> bool {
        matches!(self, Kind::CrossIoc | Kind::CrossGtc)
    }
}

/// Slots for reject counts by reason code; a code at or above this lands in the last.
pub const REASON_SLOTS: usize = 64;

/// Intended send times counted in the results: `from_ns <= t < until_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from_ns: u64,
    pub until_ns: u64,
}

impl Window {
    #[inline]
    pub fn contains(&self, intended_ns: u64) -> bool {
        intended_ns >= self.from_ns && intended_ns < self.until_ns
    }
}

/// The results of the order phase. One per run, shared by every session's reader.
pub struct Stats {
    pub window: Window,
    /// Request to its first Accepted / Rejected / Amended (or, for a cancel, the
    /// `Done(Cancelled)` it caused), every kind together.
    pub ack: Histogram<u64>,
    /// Crossing order to its first own `Trade` (taker side).
    pub fill: Histogram<u64>,
    pub ack_by_kind: [Histogram<u64>; KINDS],
    /// Order-to-ack split at the sequencer's timestamp (the `time_ns` every engine report
    /// carries): due time to sequencing (client pacing and send, loopback, the net core's
    /// read and decode, the request ring) ...
    pub inbound: Histogram<u64>,
    /// ... and sequencing to receipt (apply, the output ring, the net core's response
    /// task and write, loopback, this process's read).
    pub outbound: Histogram<u64>,
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC` (the sequencer stamps wall-clock time; this
    /// process measures monotonic time); 0: unknown, no split is recorded.
    pub realtime_offset_ns: u64,
    /// Measured requests sent, by kind.
    pub sent: [u64; KINDS],
    /// Every request sent, warm-up included.
    pub sent_all: u64,
    /// Measured requests answered (accepted, amended, cancelled or rejected).
    pub acked: u64,
    /// Measured requests rejected, any cause.
    pub rejected: u64,
    pub engine_rejects: [u64; REASON_SLOTS],
    pub session_rejects: [u64; REASON_SLOTS],
    /// Measured crossing orders that got at least one fill.
    pub crosses_filled: u64,
    /// Done reports by reason (every order of the run).
    pub done: [u64; 4],
    pub trades_maker: u64,
    pub trades_taker: u64,
    /// Server messages received (all kinds, the whole run).
    pub messages: u64,
    /// Latest receive time of a measured request's answer.
    pub last_ack_ns: u64,
    /// Requests forgotten because their in-flight slot was needed again before any answer
    /// came (the server fell that far behind): each is a measurement lost.
    pub overwritten: u64,
    /// Answers naming a request or order this run did not have in flight.
    pub unmatched: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(Window { from_ns: 0, until_ns: u64::MAX })
    }
}

impl Stats {
    /// Allocates every histogram now: recording never allocates.
    pub fn new(window: Window) -> Stats {
        Stats {
            window,
            ack: latency_histogram(),
            fill: latency_histogram(),
            ack_by_kind: std::array::from_fn(|_| latency_histogram()),
            inbound: latency_histogram(),
            outbound: latency_histogram(),
            realtime_offset_ns: 0,
            sent: [0; KINDS],
            sent_all: 0,
            acked: 0,
            rejected: 0,
            engine_rejects: [0; REASON_SLOTS],
            session_rejects: [0; REASON_SLOTS],
            crosses_filled: 0,
            done: [0; 4],
            trades_maker: 0,
            trades_taker: 0,
            messages: 0,
            last_ack_ns: 0,
            overwritten: 0,
            unmatched: 0,
        }
    }

    pub fn on_sent(&mut self, kind: Kind, intended_ns: u64) {
        self.sent_all += 1;
        if self.window.contains(intended_ns) {
            self.sent[kind.index()] += 1;
        }
    }

    /// The first answer to a request sent for `intended_ns` arrived at `recv_ns`.
    pub fn on_ack(
        &mut self,
        kind: Kind,
        intended_ns: u64,
        recv_ns: u64,
        reject: Option<RejectCause>,
    ) {
        if !self.window.contains(intended_ns) {
            return;
        }
        let latency_ns = recv_ns.saturating_sub(intended_ns);
        record_ns(&mut self.ack, latency_ns);
        record_ns(&mut self.ack_by_kind[kind.index()], latency_ns);
        self.acked += 1;
        self.last_ack_ns = self.last_ack_ns.max(recv_ns);
        if let Some(cause) = reject {
            self.rejected += 1;
            match cause {
                RejectCause::Engine { reason, .. } => {
                    self.engine_rejects[slot(reason.code())] += 1;
                }
                RejectCause::Session(reason) => self.session_rejects[slot(reason.code())] += 1,
            }
        }
    }

    /// Splits an answer's latency at `server_time_ns`, the sequencer's wall-clock stamp
    /// in the report (0 for session-level rejects, which never reach the sequencer).
    pub fn on_split(&mut self, intended_ns: u64, server_time_ns: u64, recv_ns: u64) {
        if self.realtime_offset_ns == 0 || server_time_ns == 0 || !self.window.contains(intended_ns)
        {
            return;
        }
        let Some(sequenced_ns) = server_time_ns.checked_sub(self.realtime_offset_ns) else {
            return;
        };
        record_ns(&mut self.inbound, sequenced_ns.saturating_sub(intended_ns));
        record_ns(&mut self.outbound, recv_ns.saturating_sub(sequenced_ns));
    }

    /// A crossing order sent for `intended_ns` got its first fill at `recv_ns`.
    pub fn on_fill(&mut self, intended_ns: u64, recv_ns: u64) {
        if !self.window.contains(intended_ns) {
            return;
        }
        record_ns(&mut self.fill, recv_ns.saturating_sub(intended_ns));
        self.crosses_filled += 1;
    }

    pub fn on_done(&mut self, reason: DoneReason) {
        self.done[(reason as usize).min(3)] += 1;
    }

    /// Measured requests sent, all kinds.
    pub fn sent_measured(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// Measured crossing orders sent.
    pub fn crosses_measured(&self) -> u64 {
        self.sent[Kind::CrossIoc.index()] + self.sent[Kind::CrossGtc.index()]
    }

    /// Rejects by reason, most frequent first, as (description, count).
    pub fn rejects_by_reason(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (code, &n) in self.engine_rejects.iter().enumerate() {
            if n > 0 {
                let name = RejectReason::from_code(code as u16)
                    .map_or_else(|| format!("engine code {code}"), |r| format!("engine {r:?}"));
                out.push((name, n));
            }
        }
        for (code, &n) in self.session_rejects.iter().enumerate() {
            if n > 0 {
                let name = SessionReason::from_code(code as u16)
                    .map_or_else(|| format!("session code {code}"), |r| format!("session {r:?}"));
                out.push((name, n));
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

fn slot(code: u16) -> usize {
    usize::from(code).min(REASON_SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use bourse_engine::CommandKind;

    use super::*;

    #[test]
    fn only_the_window_is_recorded_and_latency_is_from_the_intended_time() {
        let mut stats = Stats::new(Window { from_ns: 1_000, until_ns: 2_000 });
        stats.on_sent(Kind::Quote, 999);
        stats.on_sent(Kind::Quote, 1_000);
        stats.on_sent(Kind::Amend, 1_999);
        stats.on_sent(Kind::Amend, 2_000);
        assert_eq!(stats.sent_all, 4);
        assert_eq!(stats.sent_measured(), 2);
        stats.on_ack(Kind::Quote, 999, 5_000, None);
        stats.on_ack(Kind::Quote, 1_000, 51_000, None);
        stats.on_ack(Kind::Amend, 1_999, 3_000, None);
        stats.on_ack(Kind::Amend, 2_000, 3_000, None);
        assert_eq!(stats.acked, 2);
        assert_eq!(stats.ack.len(), 2);
        assert_eq!(stats.ack_by_kind[Kind::Quote.index()].len(), 1);
        assert!(stats.ack_by_kind[Kind::Quote.index()].max() >= 49_950);
        assert_eq!(stats.last_ack_ns, 51_000);
        stats.on_fill(500, 900);
        stats.on_fill(1_500, 9_500);
        assert_eq!(stats.crosses_filled, 1);
        assert!(stats.fill.min() >= 7_990);
    }

    #[test]
    fn answers_split_at_the_sequencer_stamp() {
        let mut stats = Stats::new(Window { from_ns: 1_000, until_ns: 1_000_000 });
        stats.on_split(2_000, 50_000_000 + 7_000, 10_000);
        assert!(stats.inbound.is_empty(), "no clock offset yet");
        stats.realtime_offset_ns = 50_000_000;
        // Due at 2 us, sequenced at 7 us (monotonic), received at 10 us.
        stats.on_split(2_000, 50_000_000 + 7_000, 10_000);
        stats.on_split(2_000, 0, 10_000);
        stats.on_split(500, 50_000_000 + 7_000, 10_000);
        assert_eq!(stats.inbound.len(), 1);
        assert!((4_995..=5_005).contains(&stats.inbound.max()));
        assert!((2_995..=3_005).contains(&stats.outbound.max()));
    }

    #[test]
    fn rejects_are_counted_by_reason() {
        let mut stats = Stats::default();
        let post_only = RejectCause::Engine {
            command: CommandKind::Place,
            reason: RejectReason::PostOnlyWouldTake,
        };
        stats.on_ack(Kind::Quote, 1, 2, Some(post_only));
        stats.on_ack(Kind::Quote, 1, 2, Some(post_only));
        stats.on_ack(Kind::Amend, 1, 2, Some(RejectCause::Session(SessionReason::RateLimited)));
        stats.on_ack(Kind::Amend, 1, 2, None);
        assert_eq!(stats.rejected, 3);
        assert_eq!(stats.acked, 4);
        let reasons = stats.rejects_by_reason();
        assert_eq!(reasons.len(), 2);
        assert_eq!(reasons[0], ("engine PostOnlyWouldTake".to_string(), 2));
        assert_eq!(reasons[1], ("session RateLimited".to_string(), 1));
    }
}
