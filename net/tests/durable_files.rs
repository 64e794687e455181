//! The real `bourse` daemon on data directories damaged on purpose, and snapshot +
//! log recovery against a replay of the whole log.
//!
//! - A torn last entry (the file cut in the middle of it) is cut at start-up, with a
//!   message naming the file and the offset; the state is every entry before it.
//! - A byte flipped in the middle of a segment, with valid entries after it, or in the
//!   newest snapshot: the daemon refuses to start (exit 1), names the file (and the
//!   offset), says what to do, and changes nothing on disk.
//! - Snapshots taken while commands flow (by count and on SIGUSR1), then recovery from
//!   the newest snapshot plus the log after it, give the state hash of replaying the
//!   whole log from index 1 with no snapshot; so does every kept snapshot at its index.

mod daemon;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bourse_engine::{DoneReason, LogIndex, OrderRef, OrderType, Side, StpMode, TimeInForce};
use bourse_net::client::{BlockingClient, Incoming};
use bourse_net::protocol::*;
use daemon::*;

const BTC_USDT: u32 = 1;
const USDT: u32 = 2;
const PRICE: u64 = 50_000_000_000;
const TICK: u64 = 10_000;
const LOT: u64 = 10_000;
/// The two traders of the workload: the first buys, the second sells.
const BUYER: u64 = 1001;
const SELLER: u64 = 1002;

/// A deterministic workload: two traders crossing around one price, some cancels, and
/// admin deposits; each command waits for its outcome.
struct Driver {
    rng: Rng,
    next_tx: u64,
    next_cl: u64,
}

impl Driver {
    /// Tx ids start at `seed << 32`: drivers with different seeds never repeat one.
    fn new(seed: u64) -> Driver {
        Driver { rng: Rng::new(seed), next_tx: seed << 32, next_cl: 0 }
    }

    /// Sends `commands` commands and waits for each outcome; returns the highest log
    /// index acknowledged.
    fn drive(&mut self, addr: SocketAddr, commands: usize) -> LogIndex {
        let mut buyer = connect(addr, BUYER);
        let mut seller = connect(addr, SELLER);
        let mut admin = connect(addr, ADMIN);
        let mut last_order = [None, None];
        let mut acked = 0;
        for n in 0..commands {
            let index = if n % 10 == 9 {
                self.deposit(&mut admin)
            } else {
                let k = n % 2;
                let client = if k == 0 { &mut buyer } else { &mut seller };
                match last_order[k] {
                    Some(order_id) if self.rng.chance(20) => {
                        last_order[k] = None;
                        cancel(client, order_id)
                    }
                    _ => {
                        let side = if k == 0 { Side::Buy } else { Side::Sell };
                        let (order_id, index) = self.place(client, side);
                        last_order[k] = order_id.or(last_order[k]);
                        index
                    }
                }
            };
            acked = acked.max(index);
        }
        acked
    }

    fn place(&mut self, client: &mut BlockingClient, side: Side) -> (Option<u64>, LogIndex) {
        self.next_cl += 1;
        let order = NewOrder {
            market: BTC_USDT,
            client_order_id: self.next_cl,
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            post_only: false,
            price: PRICE + self.rng.range(0, 9) * TICK - 4 * TICK,
            qty: LOT * self.rng.range(1, 5),
            quote_budget: 0,
            stp: StpMode::CancelTaker,
        };
        let request_id = client.send(&ClientRequest::NewOrder(order)).expect("send an order");
        wait(client, "the order's outcome", |m| match m {
            ServerMessage::Accepted(a) if a.request_id == request_id => {
                Some((Some(a.order_id), a.index))
            }
            ServerMessage::Rejected(r) if r.request_id == request_id => Some((None, r.index)),
            _ => None,
        })
    }

    fn deposit(&mut self, admin: &mut BlockingClient) -> LogIndex {
        self.next_tx += 1;
        let deposit = AdminRequest::Deposit {
            tx: self.next_tx,
            account: [BUYER, SELLER][self.rng.range(0, 2) as usize],
            asset: USDT,
            amount: self.rng.range(1, 100) * 1_000_000,
        };
        let request_id = admin.send(&ClientRequest::Admin(deposit)).expect("send a deposit");
        wait(admin, "the deposit's outcome", |m| match m {
            ServerMessage::AdminAck(a) if a.request_id == request_id => {
                assert!(!a.duplicate, "tx {} is new", a.tx);
                Some(a.index)
            }
            ServerMessage::Rejected(r) if r.request_id == request_id => {
                panic!("deposit rejected: {r:?}")
            }
            _ => None,
        })
    }
}

fn cancel(client: &mut BlockingClient, order_id: u64) -> LogIndex {
    let order = OrderRef::Id(order_id);
    let request_id = client.send(&ClientRequest::Cancel(order)).expect("send a cancel");
    wait(client, "the cancel's outcome", |m| match m {
        ServerMessage::Done(d) if d.order_id == order_id && d.reason == DoneReason::Cancelled => {
            Some(d.index)
        }
        ServerMessage::Rejected(r) if r.request_id == request_id => Some(r.index),
        _ => None,
    })
}

/// Reads (and drops) messages until `pick` accepts one.
fn wait<T>(
    client: &mut BlockingClient,
    what: &str,
    mut pick: impl FnMut(&ServerMessage<'static>) -> Option<T>,
) -> T {
    loop {
        match client.recv(TIMEOUT) {
            Ok((_, Incoming::Msg(message))) => {
                if let Some(found) = pick(&message) {
                    return found;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// A test's directory, config and data directory.
struct Setup {
    dir: TestDir,
    data: PathBuf,
    config: PathBuf,
    engine: bourse_engine::Config,
}

impl Setup {
    fn new(name: &str, settings: &Settings) -> Setup {
        let dir = TestDir::new(name);
        let data = dir.join("data");
        let config = write_config(&dir, "bourse", &data, settings);
        let engine = engine_config(&config);
        Setup { dir, data, config, engine }
    }

    /// Another config on the same data directory.
    fn config(&self, name: &str, settings: &Settings) -> PathBuf {
        write_config(&self.dir, name, &self.data, settings)
    }

    /// The whole log replayed from index 1 (no snapshot), up to `to`.
    fn replay(&self, to: LogIndex) -> Replay {
        replay_log(&self.data, self.engine, to, &mut |_, _| {})
    }

    /// A clean run: start, `commands` acknowledged commands, SIGTERM (which writes a
    /// final snapshot). Returns the last acknowledged index.
    fn clean_run(&self, commands: usize, seed: u64) -> LogIndex {
        let mut daemon = Daemon::start(&self.config);
        let acked = Driver::new(seed).drive(daemon.addr(), commands);
        daemon.terminate();
        acked
    }

    /// Moves every snapshot out of the data directory: the log alone must then carry
    /// the state (a clean stop's final snapshot would otherwise cover the whole log).
    fn set_snapshots_aside(&self) {
        let aside = self.dir.join("snapshots-aside");
        std::fs::rename(snapshot_dir(&self.data), aside).expect("move the snapshots aside");
    }
}

/// The daemon's (last index, state hash), hashes in hex for readable failures.
fn position(addr: SocketAddr) -> (LogIndex, String) {
    let status = status(addr);
    (status.last_index, hex(&status.state_hash))
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read the file to damage");
    bytes[offset as usize] ^= 0x5A;
    std::fs::write(path, bytes).expect("write the damaged file");
}

#[test]
fn torn_last_entry_is_cut_and_every_entry_before_it_recovers() {
    let _one = exclusive();
    let setup = Setup::new("torn-tail", &Settings::disk());
    let acked = setup.clean_run(200, 1);
    setup.set_snapshots_aside();
    let segments = segments(&setup.data);
    let last_segment = segments.last().expect("a segment").clone();
    let entries = entry_offsets(&last_segment);
    let &(last_index, offset, len) = entries.last().expect("entries");
    assert!(last_index >= acked, "every acknowledged command is in the log");
    // What the state must be: the intact log replayed up to the entry before the cut.
    let before_cut = setup.replay(last_index - 1);
    assert_eq!(before_cut.last_index, last_index - 1);
    // Cut the file in the middle of its last entry, as a crash during a write would.
    let file = std::fs::OpenOptions::new().write(true).open(&last_segment).expect("open");
    file.set_len(offset + len as u64 / 2).expect("truncate");
    drop(file);

    let mut daemon = Daemon::start(&setup.config);
    assert_eq!(
        position(daemon.addr()),
        (last_index - 1, hex(&before_cut.state_hash())),
        "recovery keeps every entry before the torn one"
    );
    let stderr = daemon.stderr_text();
    let expected = format!(
        "torn tail in {} at byte offset {offset} (entry index {last_index})",
        last_segment.display()
    );
    assert!(stderr.contains(&expected), "stderr names the cut: {expected:?}; got:\n{stderr}");
    let cut_len = std::fs::metadata(&last_segment).expect("stat").len();
    assert_eq!(cut_len, offset, "the torn entry is cut off the file");
    // The log goes on from the cut: the next command takes the torn entry's index.
    let next = Driver::new(2).drive(daemon.addr(), 1);
    assert_eq!(next, last_index, "the next command takes the index of the cut entry");
    let stderr = daemon.terminate();
    let replay = setup.replay(LogIndex::MAX);
    assert!(
        stderr.contains(&format!(
            "stopped cleanly at log index {} (state hash {}",
            replay.last_index,
            hex(&replay.state_hash())
        )),
        "the log after the cut replays to the daemon's final state:\n{stderr}"
    );
    replay.engine.check_invariants().expect("invariants after the cut");
}

#[test]
fn torn_log_tail_behind_the_newest_snapshot_keeps_the_snapshot_state() {
    let _one = exclusive();
    let setup = Setup::new("torn-behind-snapshot", &Settings::disk());
    setup.clean_run(150, 3);
    let full = setup.replay(LogIndex::MAX);
    let newest = snapshots(&setup.data).last().expect("the clean stop's snapshot").index;
    assert_eq!(newest, full.last_index, "a clean stop snapshots the last index");
    let segment = segments(&setup.data).last().expect("a segment").clone();
    let &(_, offset, len) = entry_offsets(&segment).last().expect("entries");
    let file = std::fs::OpenOptions::new().write(true).open(&segment).expect("open");
    file.set_len(offset + len as u64 / 2).expect("truncate");
    drop(file);

    // The snapshot holds the cut entry's effect: nothing acknowledged is lost.
    let mut daemon = Daemon::start(&setup.config);
    assert_eq!(position(daemon.addr()), (full.last_index, hex(&full.state_hash())));
    let next = Driver::new(4).drive(daemon.addr(), 5);
    assert!(next > full.last_index, "new commands follow the snapshot");
    let stopped = daemon.terminate();
    let mut again = Daemon::start(&setup.config);
    let (index, hash) = position(again.addr());
    assert_eq!(index, next, "a second restart finds every command");
    assert!(
        stopped.contains(&format!("stopped cleanly at log index {index} (state hash {hash}")),
        "the second restart recovers the state the first run stopped with:\n{stopped}"
    );
    again.terminate();
}

#[test]
fn flipped_byte_inside_a_segment_refuses_to_start_and_names_the_place() {
    let _one = exclusive();
    let setup = Setup::new("flip-segment", &Settings::disk());
    setup.clean_run(200, 5);
    let segment = segments(&setup.data).last().expect("a segment").clone();
    let entries = entry_offsets(&segment);
    let (index, offset, len) = entries[entries.len() / 2];
    assert!(entries.len() > 100, "valid entries follow the damaged one");
    let intact = std::fs::read(&segment).expect("read");
    flip_byte(&segment, offset + len as u64 / 2);
    let damaged = std::fs::read(&segment).expect("read");

    for case in ["with the clean stop's snapshot", "with the log alone"] {
        if case == "with the log alone" {
            setup.set_snapshots_aside();
        }
        let (status, stderr) = expect_refusal(&setup.config);
        eprintln!("{case}: the daemon refused to start ({status}):\n{stderr}");
        assert_eq!(status.code(), Some(1), "{case}: exit status 1; stderr:\n{stderr}");
        for needed in [
            format!("log corruption in {} at byte offset {offset}", segment.display()),
            format!("(entry index {index})"),
            "not a torn tail".to_string(),
            format!("bourse-log verify {}", log_dir(&setup.data).display()),
            "replication/README.md".to_string(),
        ] {
            assert!(stderr.contains(&needed), "{case}: stderr lacks {needed:?}:\n{stderr}");
        }
        assert_eq!(std::fs::read(&segment).expect("read"), damaged, "{case}: nothing changed");
    }
    // Put the byte back: the same directory starts, with the whole log.
    std::fs::write(&segment, intact).expect("repair");
    let mut daemon = Daemon::start(&setup.config);
    let full = setup.replay(LogIndex::MAX);
    assert_eq!(position(daemon.addr()), (full.last_index, hex(&full.state_hash())));
    daemon.terminate();
}

#[test]
fn flipped_byte_in_the_newest_snapshot_refuses_to_start_and_names_the_file() {
    let _one = exclusive();
    let settings = Settings { snapshot_every_entries: 50, ..Settings::disk() };
    let setup = Setup::new("flip-snapshot", &settings);
    setup.clean_run(300, 7);
    let kept = snapshots(&setup.data);
    assert_eq!(kept.len(), 3, "snapshots_keep = 3: {kept:?}");
    let newest = kept.last().expect("snapshots").clone();
    let fallback = kept[kept.len() - 2].clone();
    let bytes = std::fs::metadata(&newest.path).expect("stat").len();
    flip_byte(&newest.path, bytes / 2);

    let (status, stderr) = expect_refusal(&setup.config);
    eprintln!("the daemon refused to start ({status}):\n{stderr}");
    assert_eq!(status.code(), Some(1), "exit status 1; stderr:\n{stderr}");
    for needed in [newest.path.display().to_string(), fallback.path.display().to_string()] {
        assert!(stderr.contains(&needed), "stderr lacks {needed:?}:\n{stderr}");
    }
    assert!(newest.path.exists(), "the damaged snapshot is left for analysis");
    // The operator's way out (replication/README.md): move the damaged snapshot away;
    // recovery then uses the next one and replays the log after it.
    std::fs::rename(&newest.path, setup.dir.join("damaged.snap")).expect("move it away");
    let mut daemon = Daemon::start(&setup.config);
    let full = setup.replay(LogIndex::MAX);
    assert_eq!(position(daemon.addr()), (full.last_index, hex(&full.state_hash())));
    let recovered = daemon
        .wait_for_line(TIMEOUT, |l| l.starts_with("bourse: recovered to index"))
        .expect("a recovery line");
    assert!(
        recovered.contains(&format!("(snapshot at {}, ", fallback.index)),
        "recovery starts from the older snapshot: {recovered}"
    );
    daemon.terminate();
}

#[test]
fn half_written_snapshot_left_by_a_crash_is_ignored() {
    let _one = exclusive();
    let setup = Setup::new("snapshot-tmp", &Settings::disk());
    setup.clean_run(100, 17);
    let newest = snapshots(&setup.data).last().expect("the clean stop's snapshot").clone();
    // A crash while a snapshot is written leaves `<name>.tmp` (written, fsynced, then
    // renamed into place): here, the first half of a newer one.
    let bytes = std::fs::read(&newest.path).expect("read the snapshot");
    let name = format!("{:020}.snap.tmp", newest.index + 1000);
    let torn = snapshot_dir(&setup.data).join(name);
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).expect("plant a torn snapshot");
    let mut daemon = Daemon::start(&setup.config);
    let full = setup.replay(LogIndex::MAX);
    assert_eq!(full.last_index, newest.index);
    assert_eq!(position(daemon.addr()), (full.last_index, hex(&full.state_hash())));
    let recovered = daemon
        .wait_for_line(TIMEOUT, |l| l.starts_with("bourse: recovered to index"))
        .expect("a recovery line");
    assert!(
        recovered.contains(&format!("(snapshot at {}, 0 commands replayed)", newest.index)),
        "recovery uses the last complete snapshot: {recovered}"
    );
    daemon.terminate();
}

/// Every kept snapshot holds exactly the state of replaying the log up to its index.
fn check_snapshots_against_log(setup: &Setup) -> Vec<LogIndex> {
    let kept = snapshots(&setup.data);
    for snapshot in &kept {
        let replay = setup.replay(snapshot.index);
        assert_eq!(replay.last_index, snapshot.index);
        assert_eq!(
            (hex(&snapshot.header_hash), hex(&snapshot.engine_hash)),
            (hex(&replay.state_hash()), hex(&replay.state_hash())),
            "snapshot {} against the log replayed to its index",
            snapshot.path.display()
        );
    }
    kept.iter().map(|s| s.index).collect()
}

#[test]
fn snapshot_and_log_recover_the_state_of_the_whole_log_replayed() {
    let _one = exclusive();
    let every_50 = Settings { snapshot_every_entries: 50, ..Settings::disk() };
    let setup = Setup::new("snapshot-vs-log", &every_50);
    let on_request = setup.config("on-request", &Settings::disk());
    let mut driver = Driver::new(11);

    // 1. Snapshots by count while commands flow, one on SIGUSR1, a final one on SIGTERM.
    let mut daemon = Daemon::start(&setup.config);
    driver.drive(daemon.addr(), 200);
    let mark = daemon.stderr_len();
    daemon.signal("USR1");
    driver.drive(daemon.addr(), 200);
    assert!(
        daemon.wait_for_line_after(mark, TIMEOUT, |l| l.contains("snapshot at index")).is_some(),
        "snapshots are written while commands flow"
    );
    let stderr = daemon.terminate();
    let written = stderr.lines().filter(|l| l.contains("bourse: snapshot at index")).count();
    // About one per 50 commands (fewer if a write is still going when one is due).
    assert!(written >= 4, "several snapshots while commands flow:\n{stderr}");
    let full = setup.replay(LogIndex::MAX);
    assert_eq!(full.first_index, Some(1), "nothing was compacted: the whole log is there");
    let kept = check_snapshots_against_log(&setup);
    assert_eq!(kept.last(), Some(&full.last_index), "the final snapshot is at the end");

    // 2. From the final snapshot: the same state as the whole log replayed.
    let mut daemon = Daemon::start(&on_request);
    assert_eq!(position(daemon.addr()), (full.last_index, hex(&full.state_hash())));
    // 3. A snapshot on SIGUSR1 only, more commands after it, then kill -9: recovery must
    //    use that snapshot and replay the log after it. (The commands after the signal
    //    also make sure the snapshot is written: see `sigusr1_snapshots_an_idle_daemon`.)
    driver.drive(daemon.addr(), 100);
    let mark = daemon.stderr_len();
    daemon.signal("USR1");
    let acked = driver.drive(daemon.addr(), 100);
    let line = daemon
        .wait_for_line_after(mark, TIMEOUT, |l| l.starts_with("bourse: snapshot at index"))
        .expect("SIGUSR1 takes a snapshot");
    let requested = snapshot_index(&line);
    daemon.kill9();
    let full = setup.replay(LogIndex::MAX);
    assert!(full.last_index >= acked, "disk mode keeps every acknowledged command");
    assert!(requested < full.last_index, "commands follow the requested snapshot");

    let mut daemon = Daemon::start(&on_request);
    assert_eq!(
        position(daemon.addr()),
        (full.last_index, hex(&full.state_hash())),
        "snapshot {requested} + log tail = the whole log replayed from index 1"
    );
    let recovered = daemon
        .wait_for_line(TIMEOUT, |l| l.starts_with("bourse: recovered to index"))
        .expect("a recovery line");
    let replayed = full.last_index - requested;
    assert!(
        recovered.contains(&format!("(snapshot at {requested}, {replayed} commands replayed)")),
        "recovery starts from the SIGUSR1 snapshot: {recovered}"
    );
    daemon.terminate();
    let kept = check_snapshots_against_log(&setup);
    assert!(kept.contains(&requested), "the requested snapshot is kept: {kept:?}");
}

/// The index of a "bourse: snapshot at index N written ..." line.
fn snapshot_index(line: &str) -> LogIndex {
    line.trim_start_matches("bourse: snapshot at index ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a snapshot line: {line:?}"))
}

/// SIGUSR1 asks for a snapshot now (net/src/server.rs, `run`), also when no command is
/// flowing: an operator takes one before maintenance on a quiet exchange.
#[test]
fn sigusr1_snapshots_an_idle_daemon() {
    let _one = exclusive();
    let setup = Setup::new("sigusr1-idle", &Settings::disk());
    let mut daemon = Daemon::start(&setup.config);
    let acked = Driver::new(13).drive(daemon.addr(), 20);
    let mark = daemon.stderr_len();
    daemon.signal("USR1");
    let line = daemon.wait_for_line_after(mark, Duration::from_secs(10), |l| {
        l.starts_with("bourse: snapshot at index")
    });
    let stderr = daemon.terminate();
    let line = line.unwrap_or_else(|| {
        panic!("no snapshot within 10 s of SIGUSR1 on an idle daemon; its stderr:\n{stderr}")
    });
    assert_eq!(snapshot_index(&line), acked, "the snapshot is at the last applied index");
}
