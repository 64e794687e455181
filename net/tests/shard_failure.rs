//! The shard core after its command log fails: it applies (so acknowledges) nothing
//! that was not committed before the failure, says so once (`Output::Fatal`), drops
//! the requests that keep coming, and still stops on the shutdown request. Before this
//! was fixed it stopped reading requests at the failure and spun for ever, so the
//! daemon never exited (issue 7).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bourse_engine::{Command, Config, Exchange, LogIndex};
use bourse_net::shard::{
    Bells, Clock, CommandLog, Entry, LogBusy, Output, Query, Request, Shard, ShardOptions,
    SnapshotPolicy,
};

/// Generous bound on the shard's stop: it has nothing slow to do.
const STOP_MAX: Duration = Duration::from_secs(20);

/// A log that makes entries durable up to `durable` and then fails at entry `fail_at`
/// (disk durability: committed = durable).
struct FailingLog {
    appended: LogIndex,
    durable: LogIndex,
    fail_at: LogIndex,
}

impl CommandLog for FailingLog {
    fn append(&mut self, entry: &Entry<'_>) -> Result<(), LogBusy> {
        if entry.index >= self.fail_at {
            return Err(LogBusy);
        }
        self.appended = entry.index;
        Ok(())
    }

    fn committed_index(&self) -> LogIndex {
        self.appended.min(self.durable)
    }

    fn failure(&self) -> Option<String> {
        (self.appended + 1 >= self.fail_at).then(|| "No space left on device".to_string())
    }
}

struct FixedClock;

impl Clock for FixedClock {
    fn now_ns(&mut self) -> u64 {
        1
    }
}

fn deposit(tx: u64) -> Request {
    Request::Command {
        origin: None,
        command: Command::Deposit { tx, account: 7, asset: 1, amount: 100 },
        ring_ns: 0,
    }
}

#[test]
fn a_failed_log_applies_nothing_more_and_still_stops_on_shutdown() {
    const DURABLE: LogIndex = 5;
    const FAIL_AT: LogIndex = 9;
    let engine = Exchange::new(Config::default()).expect("engine");
    let log = FailingLog { appended: 0, durable: DURABLE, fail_at: FAIL_AT };
    let options = ShardOptions { batch_max: 4, ..ShardOptions::default() };
    let shard = Shard::new(engine, log, FixedClock, 0, 0, options, SnapshotPolicy::never());
    let (mut requests, requests_rx) = rtrb::RingBuffer::<Request>::new(64);
    let (outputs_tx, mut outputs) = rtrb::RingBuffer::<Output>::new(1024);
    let bells = Arc::new(Bells::default());
    let shard_bells = bells.clone();
    let thread = std::thread::spawn(move || shard.run(requests_rx, outputs_tx, shard_bells));

    for tx in 1..=20 {
        requests.push(deposit(tx)).expect("room");
    }
    requests.push(Request::Query { origin: None, query: Query::Status }).expect("room");
    requests.push(Request::Shutdown).expect("room");
    bells.ring_shard();

    let started = Instant::now();
    while !thread.is_finished() {
        assert!(started.elapsed() < STOP_MAX, "the shard did not stop after its log failed");
        bells.ring_shard();
        std::thread::sleep(Duration::from_millis(1));
    }
    let (engine, log) = thread.join().expect("the shard does not panic");

    let mut applied = Vec::new();
    let mut fatal = 0;
    while let Ok(output) = outputs.pop() {
        match output {
            Output::Applied { index, .. } => {
                assert_eq!(fatal, 0, "index {index} applied after the failure was reported");
                applied.push(index);
            }
            Output::Fatal(why) => {
                assert!(why.contains("No space"), "{why}");
                fatal += 1;
            }
            Output::Reply { .. } => panic!("a query behind the failure was answered"),
            Output::Event(_) | Output::Snapshot { .. } => {}
        }
    }
    assert_eq!(fatal, 1, "the failure is reported once");
    assert!(applied.iter().all(|&i| i <= DURABLE), "only committed entries: {applied:?}");
    assert!(engine.last_index() <= DURABLE, "engine at {}", engine.last_index());
    assert!(log.appended < FAIL_AT);
}
