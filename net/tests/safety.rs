//! Operational safety of the real `bourse` daemon (issue 7, points 1 and 2):
//!
//! - one daemon per data directory: a second `bourse` on a data directory in use exits
//!   non-zero at once, naming the holder's pid, and the first keeps serving;
//! - one daemon per port, with or without a data directory (no SO_REUSEPORT);
//! - a command log that fails (a small tmpfs that fills up under load) stops the
//!   process with a non-zero exit within a bounded time, after logging the clients out,
//!   and every command acknowledged is in the log it left (nothing was acknowledged
//!   after the failure);
//! - a snapshot writer that fails (its directory remounted read-only) stops the process
//!   the same way; a read-only data directory is refused at start;
//! - files the daemon creates are 0640 or tighter, directories 0750 or tighter.
//!
//! The file-system tests mount tmpfs, so they need root (as CI runs); they unmount in a
//! guard's `Drop`, whatever happens.

mod daemon;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bourse_engine::{LogIndex, Side};
use bourse_net::client::{BlockingClient, ClientError, Incoming};
use bourse_net::protocol::*;
use daemon::*;

/// A trader key of the demo (account 1001, funded for millions of orders).
const TRADER: u64 = 1001;
const BTC_USDT: u32 = 1;
/// Sells far above any bid: every order rests, none trades.
const ASK_PRICE: u64 = 90_000_000_000;
const LOT: u64 = 10_000;
/// Orders sent before waiting for their acknowledgements.
const PIPELINE: usize = 64;
/// How long a daemon may take to exit once it has failed (it waits at most 2 s for
/// clients to flush and 10 s for the shard core; the rest is a noisy debug build).
const EXIT_MAX: Duration = Duration::from_secs(25);
/// Orders sent at most while waiting for the file system to fill.
const FILL_ORDERS_MAX: u64 = 9_000;
/// The next client order id (each order rests, so none may repeat).
static NEXT_CLIENT_ORDER_ID: AtomicU64 = AtomicU64::new(1);

/// A tmpfs mounted by the test, unmounted on drop (lazily if still busy).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("create the mount point");
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"], path);
        Tmpfs { path: path.to_path_buf() }
    }

    fn remount(&self, options: &str) {
        run("mount", &["-o", &format!("remount,{options}")], &self.path);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Runs `program args... path`; panics (saying that root is needed) if it fails.
fn run(program: &str, args: &[&str], path: &Path) {
    let output = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} {} failed (these tests need root): {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A copy of the config at `path` with `edit` applied to its TOML.
fn edit_config(path: &Path, name: &str, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let mut file: toml::Table =
        std::fs::read_to_string(path).expect("read the config").parse().expect("TOML");
    edit(&mut file);
    let out = path.with_file_name(format!("{name}.toml"));
    std::fs::write(&out, toml::to_string(&file).expect("serialise")).expect("write the config");
    out
}

fn section<'a>(file: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    file.get_mut(name).and_then(|v| v.as_table_mut()).expect("the section exists")
}

fn sell(cl: u64) -> ClientRequest {
    ClientRequest::NewOrder(NewOrder {
        market: BTC_USDT,
        client_order_id: cl,
        side: Side::Sell,
        order_type: bourse_engine::OrderType::Limit,
        tif: bourse_engine::TimeInForce::Gtc,
        post_only: false,
        price: ASK_PRICE + (cl % 1000) * 10_000,
        qty: LOT,
        quote_budget: 0,
        stp: bourse_engine::StpMode::CancelTaker,
    })
}

/// What a trader saw of its orders.
#[derive(Default, Debug)]
struct Seen {
    /// Request id -> the log index its `Accepted` named.
    acked: HashMap<u64, LogIndex>,
    /// The server said `Logout` before closing.
    logout: Option<SessionReason>,
    /// The connection ended (logout or not).
    closed: bool,
}

/// Sends orders `PIPELINE` at a time and collects their acknowledgements until the
/// connection ends or `orders_max` orders were sent.
fn place_until_closed(client: &mut BlockingClient, orders_max: u64, seen: &mut Seen) {
    let mut sent = 0u64;
    while sent < orders_max && !seen.closed {
        let mut waiting = 0;
        // A refused write means the server is closing: read what it said before.
        let mut send_failed = false;
        for _ in 0..PIPELINE.min((orders_max - sent) as usize) {
            // Client order ids are unique over the test binary (open orders must not
            // repeat one).
            let cl = NEXT_CLIENT_ORDER_ID.fetch_add(1, Ordering::Relaxed);
            if client.send(&sell(cl)).is_err() {
                send_failed = true;
                break;
            }
            sent += 1;
            waiting += 1;
        }
        while (waiting > 0 || send_failed) && !seen.closed {
            match client.recv(TIMEOUT) {
                Ok((_, Incoming::Msg(ServerMessage::Accepted(a)))) => {
                    seen.acked.insert(a.request_id, a.index);
                    waiting -= 1;
                }
                Ok((_, Incoming::Msg(ServerMessage::Rejected(r)))) => {
                    panic!("an order was rejected: {r:?}")
                }
                Ok(_) => {}
                // The client library hands a server `Logout` over as this error.
                Err(ClientError::LoggedOut(reason)) => seen.logout = Some(reason),
                Err(ClientError::Timeout) => panic!("no answer in {TIMEOUT:?}"),
                Err(_) => seen.closed = true,
            }
        }
    }
}

/// Every acknowledged order is in the log the daemon left, at the index its
/// acknowledgement named, with its request id: nothing was acknowledged that the log
/// does not hold.
fn assert_acked_in_log(data_dir: &Path, config: &Path, seen: &Seen) {
    let mut logged: HashMap<LogIndex, u64> = HashMap::new();
    let replay = replay_log(data_dir, engine_config(config), LogIndex::MAX, &mut |entry, _| {
        if let Some(origin) = entry.origin {
            logged.insert(entry.index, origin.request_id);
        }
    });
    for (&request_id, &index) in &seen.acked {
        assert!(
            index <= replay.last_index,
            "request {request_id} was acknowledged at index {index}, after the log's end {}",
            replay.last_index
        );
        assert_eq!(logged.get(&index), Some(&request_id), "the log's entry at index {index}");
    }
}

#[test]
fn a_second_daemon_on_a_data_dir_in_use_exits_at_once_naming_the_holder() {
    let _one = exclusive();
    let dir = TestDir::new("lock-data-dir");
    let data = dir.join("data");
    let config = write_config(&dir, "first", &data, &Settings::disk());
    let mut first = Daemon::start(&config);
    let mut trader = connect(first.addr(), TRADER);
    let mut seen = Seen::default();
    place_until_closed(&mut trader, PIPELINE as u64, &mut seen);
    assert_eq!(seen.acked.len(), PIPELINE, "{seen:?}");

    // Same data directory, its own port (127.0.0.1:0): refused by the lock alone.
    let started = Instant::now();
    let (status, stderr) = expect_refusal(&config);
    assert!(!status.success(), "the second daemon exits non-zero: {status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.pid())) && stderr.contains("in use"),
        "the refusal names the holder's pid {}:\n{stderr}",
        first.pid()
    );
    assert!(started.elapsed() < TIMEOUT, "refused at once");
    assert!(!stderr.contains("recovered"), "refused before recovery:\n{stderr}");

    // The first still serves, and its log is its own.
    let mut more = Seen::default();
    place_until_closed(&mut trader, PIPELINE as u64, &mut more);
    assert_eq!(more.acked.len(), PIPELINE, "the first daemon still serves: {more:?}");
    drop(trader);
    first.terminate();
    let locked = std::fs::read_to_string(data.join("LOCK")).expect("the lock file");
    assert_eq!(locked.trim(), first.pid().to_string(), "the lock file names its holder");

    // Free once the holder has gone.
    let mut again = Daemon::start(&config);
    assert_eq!(status_of(&again).last_index, status_last_index(&data, &config));
    again.terminate();
}

fn status_of(daemon: &Daemon) -> StatusReport {
    status(daemon.addr())
}

fn status_last_index(data: &Path, config: &Path) -> LogIndex {
    replay_log(data, engine_config(config), LogIndex::MAX, &mut |_, _| {}).last_index
}

#[test]
fn a_second_daemon_on_a_busy_port_exits_non_zero_without_a_data_dir() {
    let _one = exclusive();
    let dir = TestDir::new("busy-port");
    let with_dir = write_config(&dir, "base", &dir.join("unused"), &Settings::memory());
    let memory = edit_config(&with_dir, "memory", |file| {
        section(file, "storage").remove("data_dir");
    });
    let mut first = Daemon::start(&memory);
    let addr = first.addr();
    let second = edit_config(&memory, "second", |file| {
        section(file, "server").insert("listen".into(), addr.to_string().into());
    });
    let (status, stderr) = expect_refusal(&second);
    assert!(!status.success(), "the second daemon exits non-zero: {status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("another process"),
        "the refusal names the busy address {addr}:\n{stderr}"
    );
    // Every new connection still reaches the first daemon (with SO_REUSEPORT some
    // would have gone to the second while it lived).
    for _ in 0..4 {
        let mut trader = connect(addr, TRADER);
        let mut seen = Seen::default();
        place_until_closed(&mut trader, 1, &mut seen);
        assert_eq!(seen.acked.len(), 1);
    }
    first.terminate();
}

#[test]
fn a_full_file_system_stops_the_daemon_after_logging_clients_out() {
    fill_the_disk(Settings::disk());
}

/// Memory durability acknowledges before the fsync, so acknowledged commands may be
/// missing from the log; the process must stop all the same.
#[test]
fn a_full_file_system_stops_the_daemon_in_memory_durability_too() {
    fill_the_disk(Settings::memory());
}

/// Orders from one trader until the tmpfs under the data directory is full; then the
/// daemon must exit 1, bounded, having logged the trader out.
fn fill_the_disk(settings: Settings) {
    let disk = settings.durability == "disk";
    let _one = exclusive();
    let dir = TestDir::new(&format!("full-tmpfs-{}", settings.durability));
    // About 2,500 entries of ~100 bytes: full long before the account's 10,000 open
    // orders.
    let mount = Tmpfs::mount(&dir.join("mnt"), "256k");
    let data = mount.path.join("data");
    let config = write_config(&dir, "full", &data, &settings);
    let mut daemon = Daemon::start(&config);
    let mut trader = connect(daemon.addr(), TRADER);
    let mut seen = Seen::default();
    place_until_closed(&mut trader, FILL_ORDERS_MAX, &mut seen);
    assert!(seen.closed, "the file system never filled: {} orders acknowledged", seen.acked.len());
    let closed_at = Instant::now();
    let status = daemon.wait_exit(EXIT_MAX);
    eprintln!(
        "{} orders acknowledged; the daemon exited {:?} after the trader's connection closed",
        seen.acked.len(),
        closed_at.elapsed()
    );
    let stderr = daemon.stderr_text();
    let Some(status) = status else {
        panic!("the daemon did not exit within {EXIT_MAX:?} of its log failing:\n{stderr}");
    };
    assert!(!status.success(), "a failed log exits non-zero: {status:?}\n{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the command log failed, stopping"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // The shard core stopped when asked (not cut short by the net core's time limit).
    assert!(!stderr.contains("did not stop"), "{stderr}");
    assert_eq!(seen.logout, Some(SessionReason::Shutdown), "the client was logged out");
    assert!(!seen.acked.is_empty(), "orders were acknowledged before the disk filled");
    if disk {
        assert_acked_in_log(&data, &config, &seen);
    }
    // The log it left is whole: room again, the daemon recovers and serves.
    mount.remount("size=64m");
    let mut again = Daemon::start(&config);
    let report = status_of(&again);
    if disk {
        assert!(report.last_index >= seen.acked.values().copied().max().unwrap_or(0));
    }
    again.terminate();
}

#[test]
fn a_read_only_snapshot_dir_stops_the_daemon() {
    let _one = exclusive();
    let dir = TestDir::new("ro-snapshots");
    let data = dir.join("data");
    let snapshots = Tmpfs::mount(&snapshot_dir(&data), "16m");
    let config = write_config(&dir, "ro", &data, &Settings::disk());
    let mut daemon = Daemon::start(&config);
    let mut trader = connect(daemon.addr(), TRADER);
    let mut seen = Seen::default();
    place_until_closed(&mut trader, PIPELINE as u64, &mut seen);
    assert_eq!(seen.acked.len(), PIPELINE);

    snapshots.remount("ro");
    daemon.signal("USR1");
    let status = daemon.wait_exit(EXIT_MAX);
    let stderr = daemon.stderr_text();
    let Some(status) = status else {
        panic!("the daemon did not exit within {EXIT_MAX:?} of a failed snapshot:\n{stderr}");
    };
    assert_eq!(status.code(), Some(1), "a failed snapshot exits 1:\n{stderr}");
    assert!(stderr.contains("the snapshot writer failed, stopping"), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!stderr.contains("did not stop"), "{stderr}");
    let mut after = Seen::default();
    place_until_closed(&mut trader, 1, &mut after);
    assert!(after.closed && after.acked.is_empty(), "{after:?}");
    assert_eq!(after.logout, Some(SessionReason::Shutdown), "the client was logged out");
    assert_acked_in_log(&data, &config, &seen);
}

#[test]
fn a_read_only_data_dir_is_refused_at_start() {
    let _one = exclusive();
    let dir = TestDir::new("ro-data");
    let mount = Tmpfs::mount(&dir.join("mnt"), "16m");
    let data = mount.path.join("data");
    let config = write_config(&dir, "ro", &data, &Settings::disk());
    let mut daemon = Daemon::start(&config);
    daemon.terminate();
    mount.remount("ro");
    let (status, stderr) = expect_refusal(&config);
    // Refused by the start-up check of the data directory (net/src/preflight.rs), before
    // the lock is tried: a configuration the daemon cannot run, exit 2.
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("storage.data_dir"), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
}

#[test]
fn files_in_the_data_dir_are_0640_and_directories_0750_or_tighter() {
    let _one = exclusive();
    let dir = TestDir::new("modes");
    let data = dir.join("data");
    let config = write_config(&dir, "modes", &data, &Settings::disk());
    let mut daemon = Daemon::start(&config);
    let mut trader = connect(daemon.addr(), TRADER);
    let mut seen = Seen::default();
    place_until_closed(&mut trader, PIPELINE as u64, &mut seen);
    let mark = daemon.stderr_len();
    daemon.signal("USR1");
    let written = daemon.wait_for_line_after(mark, TIMEOUT, |l| l.contains("written"));
    assert!(written.is_some(), "a snapshot was written:\n{}", daemon.stderr_text());
    drop(trader);
    daemon.terminate();
    let mut files = 0;
    let mut pending = vec![data.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode & !0o750, 0, "directory {} is {mode:o}", path.display());
            for item in std::fs::read_dir(&path).expect("list") {
                pending.push(item.expect("list").path());
            }
        } else {
            assert_eq!(mode & !0o640, 0, "file {} is {mode:o}", path.display());
            files += 1;
        }
    }
    // LOCK, a segment, a snapshot at least.
    assert!(files >= 3, "{files} files checked");
}

#[test]
fn a_busy_port_is_found_before_recovery() {
    let _one = exclusive();
    let dir = TestDir::new("busy-port-disk");
    let config = write_config(&dir, "first", &dir.join("first"), &Settings::disk());
    let mut first = Daemon::start(&config);
    let addr = first.addr();
    let other_data = dir.join("second");
    let second = write_config(&dir, "second", &other_data, &Settings::disk());
    let second = edit_config(&second, "second-busy", |file| {
        section(file, "server").insert("listen".into(), addr.to_string().into());
    });
    let (status, stderr) = expect_refusal(&second);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    // Its own data directory is locked, but no log was opened or created in it.
    assert!(!log_dir(&other_data).exists(), "the second daemon recovered before binding");
    first.terminate();
}
