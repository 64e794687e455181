//! An engine as the benches drive it: an `Exchange`, the next log index, and one reused
//! event buffer, plus counters of what the events said.
//!
//! The benches keep two of these: a *shadow* that the workload generator applies each
//! command to (so it can see order ids, fills and rejects and choose the next command), and
//! a *timed* engine, restored from the shadow's snapshot before the workload starts, that
//! replays the recorded commands under the driver's clock. The engine is deterministic, so
//! both produce the same events; the benches check that both end with the same state hash.

use bourse_engine::{
    ApplyError, Command, Config, DoneReason, Event, EventKind, Exchange, LogIndex, RejectReason,
};

use hdrhistogram::Histogram;

use crate::driver::{Pacing, Recorder};

/// Capacity of the reused event buffer. The generators keep every command well below it
/// (they assert so), so the buffer never grows inside a measured segment: any allocation
/// counted there is the engine's.
pub const EVENTS_CAPACITY: usize = 4096;

/// The synthetic sequencer clock: command `index` is stamped `index` µs. Time only matters
/// to the engine as data, so any deterministic stamp will do.
#[inline]
pub fn time_ns_for(index: LogIndex) -> u64 {
    index.saturating_mul(1_000)
}

/// An exchange with its log position and event buffer. Lives on the bench thread.
pub struct Harness {
    pub exchange: Exchange,
    next_index: LogIndex,
    events: Vec<Event>,
}

impl Harness {
    pub fn new(config: Config) -> Result<Harness, String> {
        let exchange = Exchange::new(config).map_err(|e| format!("engine config: {e:?}"))?;
        Ok(Harness::from_exchange(exchange))
    }

    pub fn from_exchange(exchange: Exchange) -> Harness {
        let next_index = exchange.last_index() + 1;
        Harness { exchange, next_index, events: Vec::with_capacity(EVENTS_CAPACITY) }
    }

    /// The index the next command will get.
    pub fn next_index(&self) -> LogIndex {
        self.next_index
    }

    /// Applies one command at the next index and returns its events.
    pub fn apply(&mut self, command: &Command) -> Result<&[Event], ApplyError> {
        let index = self.next_index;
        self.events.clear();
        self.exchange.apply(index, time_ns_for(index), command, &mut self.events)?;
        self.next_index += 1;
        Ok(&self.events)
    }

    /// Applies a setup command that must not be rejected.
    pub fn apply_ok(&mut self, command: &Command) -> Result<&[Event], String> {
        let events = self.apply(command).map_err(|e| format!("apply {command:?}: {e:?}"))?;
        if let Some(Event { kind: EventKind::Rejected(r), .. }) =
            events.iter().find(|e| matches!(e.kind, EventKind::Rejected(_)))
        {
            return Err(format!("setup command {command:?} was rejected: {:?}", r.reason));
        }
        Ok(events)
    }

    /// A second engine in exactly this state, through `encode_snapshot` and
    /// `decode_snapshot` (so the copy's memory layout is fresh, as after a restart).
    pub fn restore_copy(&self) -> Result<Harness, String> {
        let mut bytes = Vec::new();
        self.exchange.encode_snapshot(&mut bytes);
        let exchange =
            Exchange::decode_snapshot(&bytes).map_err(|e| format!("decode snapshot: {e:?}"))?;
        if exchange.state_hash() != self.exchange.state_hash() {
            return Err("restored engine's state hash differs from the original's".into());
        }
        Ok(Harness::from_exchange(exchange))
    }

    /// Replays `commands` (recorded by a shadow starting at `first_index`) under the
    /// driver. The only work per operation besides `apply` is clearing the event buffer.
    pub fn run_timed(
        &mut self,
        recorder: &mut Recorder,
        pacing: Pacing,
        first_index: LogIndex,
        commands: &[Command],
    ) -> Result<(), String> {
        self.check_start(first_index)?;
        let exchange = &mut self.exchange;
        let events = &mut self.events;
        let mut failed: u64 = 0;
        recorder.run(pacing, commands.len(), |i| {
            let index = first_index + i as u64;
            events.clear();
            // Err only for an index at or below the last one, which `check_start` rules
            // out; counted rather than asserted so the hot loop has no panic path.
            if exchange.apply(index, time_ns_for(index), &commands[i], events).is_err() {
                failed += 1;
            }
        });
        self.finish(commands.len(), failed)
    }

    /// As [`Harness::run_timed`] in max mode with every command timed, each latency also
    /// recorded into `by_class[classes[i]]` (a diagnostic breakdown by command kind).
    pub fn run_timed_by_class(
        &mut self,
        recorder: &mut Recorder,
        first_index: LogIndex,
        commands: &[Command],
        classes: &[u8],
        by_class: &mut [Histogram<u64>],
    ) -> Result<(), String> {
        self.check_start(first_index)?;
        if classes.len() != commands.len() {
            return Err(format!("{} classes for {} commands", classes.len(), commands.len()));
        }
        let exchange = &mut self.exchange;
        let events = &mut self.events;
        let mut failed: u64 = 0;
        let class = |i: usize| usize::from(classes[i]);
        recorder.run_by_class(commands.len(), class, by_class, |i| {
            let index = first_index + i as u64;
            events.clear();
            if exchange.apply(index, time_ns_for(index), &commands[i], events).is_err() {
                failed += 1;
            }
        });
        self.finish(commands.len(), failed)
    }

    fn check_start(&self, first_index: LogIndex) -> Result<(), String> {
        if first_index != self.next_index {
            return Err(format!(
                "commands start at index {first_index}, engine is at {}",
                self.next_index
            ));
        }
        Ok(())
    }

    fn finish(&mut self, applied: usize, failed: u64) -> Result<(), String> {
        self.next_index += applied as u64;
        if failed > 0 {
            return Err(format!("{failed} commands failed to apply"));
        }
        if self.events.capacity() != EVENTS_CAPACITY {
            return Err(format!(
                "event buffer grew to {} (> {EVENTS_CAPACITY}): the harness allocated",
                self.events.capacity()
            ));
        }
        Ok(())
    }
}

/// Reject reason codes are below this (checked by a test against `RejectReason::ALL`).
const REJECT_CODES: usize = 64;

/// Counts of what a stream of events said, per command.
#[derive(Clone, Debug)]
pub struct EventStats {
    pub commands: u64,
    pub events: u64,
    pub events_per_command_max: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejects by `RejectReason::code()` (codes are small; index 0 unused).
    pub rejected_by_code: [u64; REJECT_CODES],
    pub amended: u64,
    pub trades: u64,
    /// Done events by `DoneReason as usize`: filled, cancelled, expired, self-trade.
    pub done: [u64; 4],
    pub ledger_applied: u64,
}

impl Default for EventStats {
    fn default() -> Self {
        EventStats {
            commands: 0,
            events: 0,
            events_per_command_max: 0,
            accepted: 0,
            rejected: 0,
            rejected_by_code: [0; REJECT_CODES],
            amended: 0,
            trades: 0,
            done: [0; 4],
            ledger_applied: 0,
        }
    }
}

impl EventStats {
    pub fn add(&mut self, events: &[Event]) {
        self.commands += 1;
        self.events += events.len() as u64;
        self.events_per_command_max = self.events_per_command_max.max(events.len() as u64);
        for event in events {
            match event.kind {
                EventKind::Accepted(_) => self.accepted += 1,
                EventKind::Rejected(r) => {
                    self.rejected += 1;
                    let code = usize::from(r.reason.code()).min(REJECT_CODES - 1);
                    self.rejected_by_code[code] += 1;
                }
                EventKind::Amended(_) => self.amended += 1,
                EventKind::Trade(_) => self.trades += 1,
                EventKind::Done(d) => self.done[d.reason as usize] += 1,
                EventKind::Ledger(_) => self.ledger_applied += 1,
                _ => {}
            }
        }
    }

    /// Rejected commands / commands.
    pub fn reject_rate(&self) -> f64 {
        if self.commands == 0 {
            return 0.0;
        }
        self.rejected as f64 / self.commands as f64
    }

    /// `reason: count` for every reason seen, most frequent first.
    pub fn reject_reasons(&self) -> Vec<(RejectReason, u64)> {
        let mut out: Vec<(RejectReason, u64)> = RejectReason::ALL
            .iter()
            .map(|r| (*r, self.rejected_by_code[usize::from(r.code()).min(REJECT_CODES - 1)]))
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.1));
        out
    }

    pub fn done_count(&self, reason: DoneReason) -> u64 {
        self.done[reason as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bourse_engine::{AssetId, Symbol};

    #[test]
    fn reject_codes_fit() {
        assert!(RejectReason::ALL.iter().all(|r| usize::from(r.code()) < REJECT_CODES));
    }

    #[test]
    fn harness_applies_in_order_and_counts_events() {
        let mut h = Harness::new(Config::default()).unwrap();
        assert_eq!(h.next_index(), 1);
        let symbol = Symbol::new("USDT").unwrap();
        let asset: AssetId = 1;
        h.apply_ok(&Command::CreateAsset { asset, scale: 6, symbol }).unwrap();
        h.apply_ok(&Command::Deposit { tx: 1, account: 7, asset, amount: 100 }).unwrap();
        // A transfer of more than the balance is rejected: apply_ok says so.
        let too_much =
            Command::Transfer { tx: 2, from: 7, to: 8, asset, amount: 101, create_account: true };
        assert!(h.apply_ok(&too_much).is_err());
        let mut stats = EventStats::default();
        let events = h
            .apply(&Command::Transfer {
                tx: 3,
                from: 7,
                to: 8,
                asset,
                amount: 0,
                create_account: true,
            })
            .unwrap();
        stats.add(events);
        assert_eq!(stats.rejected, 1);
        assert_eq!(stats.reject_reasons(), vec![(RejectReason::InvalidAmount, 1)]);
        assert_eq!(h.next_index(), 5);

        let copy = h.restore_copy().unwrap();
        assert_eq!(copy.next_index(), 5);
        assert_eq!(copy.exchange.state_hash(), h.exchange.state_hash());
    }
}
