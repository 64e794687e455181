//! Every `bourse-log` command on data directories the real `bourse` daemon wrote: the
//! daemon trades over TCP, snapshots on SIGUSR1 or at SIGTERM, or is killed; then
//! `verify`, `dump` (origin keys shown), `snapshot` (node snapshots), `rebuild` (with and
//! without `--snapshot-dir`, the state hash the daemon reported) and `salvage` (a damaged
//! middle segment, and damage after the newest snapshot: the daemon starts on the new
//! directory at the state hash the kept entries imply).
//!
//! The `bourse-log` binary is the one cargo built next to `bourse` (`cargo test
//! --workspace` builds both; alone, run `cargo build -p bourse-tools --bin bourse-log`
//! first: the test fails, naming it, if it is missing).

mod daemon;
#[allow(unused)]
mod live;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use bourse_engine::Side;
use bourse_net::client::BlockingClient;
use daemon::*;
use live::{limit_order, place};

const BTC_USDT: u32 = 1;
const ALICE: u64 = 200;
const BOB: u64 = 300;
const PRICE: u64 = 10_000_000_000;
const QTY: u64 = 100_000;

fn bourse_log_exe() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_bourse")).with_file_name("bourse-log");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build -p bourse-tools --bin bourse-log` (cargo test \
         --workspace builds it)",
        exe.display()
    );
    exe
}

/// One run of `bourse-log`: exit code and stdout + stderr.
struct Run {
    code: i32,
    out: String,
}

fn bourse_log(args: &[&Path]) -> Run {
    let output = Command::new(bourse_log_exe()).args(args).output().expect("run bourse-log");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Run { code: output.status.code().unwrap_or(-1), out }
}

fn bourse_log_ok(args: &[&Path]) -> String {
    let run = bourse_log(args);
    assert_eq!(run.code, 0, "bourse-log {args:?} failed:\n{}", run.out);
    run.out
}

fn p(text: &str) -> &Path {
    Path::new(text)
}

/// The value after `label` on its line (`state_hash   abcd...`).
fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

/// `pairs` crossing orders (Alice buys, Bob sells at the same price): 2 entries each.
fn trade(alice: &mut BlockingClient, bob: &mut BlockingClient, pairs: u64, cl: &mut u64) -> u64 {
    let mut last = 0;
    for _ in 0..pairs {
        *cl += 1;
        place(alice, &limit_order(BTC_USDT, Side::Buy, PRICE, QTY, *cl));
        last = place(bob, &limit_order(BTC_USDT, Side::Sell, PRICE, QTY, *cl)).index;
    }
    last
}

fn trade_on(daemon: &Daemon, pairs: u64, cl: &mut u64) -> u64 {
    let mut alice = connect(daemon.addr(), ALICE);
    let mut bob = connect(daemon.addr(), BOB);
    trade(&mut alice, &mut bob, pairs, cl)
}

/// SIGTERM; returns the (index, state hash) the daemon printed as it stopped.
fn stop(daemon: &mut Daemon) -> (u64, String) {
    let stderr = daemon.terminate();
    let line = stderr
        .lines()
        .find(|l| l.contains("stopped cleanly at log index "))
        .unwrap_or_else(|| panic!("no clean-stop line in:\n{stderr}"));
    let rest = line.split("stopped cleanly at log index ").nth(1).expect("index");
    let index = rest.split(' ').next().expect("index").parse().expect("an index");
    let hash = rest.split("state hash ").nth(1).expect("hash")[..64].to_string();
    (index, hash)
}

fn snapshot_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(snapshot_dir(data))
        .expect("list snapshots")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    files
}

fn rebuild(data: &Path, with_snapshots: bool, to: Option<u64>) -> (u64, String, String) {
    let log = log_dir(data);
    let snaps = snapshot_dir(data);
    let to_text = to.map(|t| t.to_string());
    let mut args: Vec<&Path> = vec![p("rebuild"), &log];
    if with_snapshots {
        args.extend([p("--snapshot-dir"), &snaps]);
    }
    if let Some(t) = &to_text {
        args.extend([p("--to"), p(t)]);
    }
    let out = bourse_log_ok(&args);
    (field(&out, "index").parse().expect("index"), field(&out, "state_hash"), out)
}

#[test]
fn every_read_command_works_on_a_data_dir_the_daemon_wrote() {
    let _one = exclusive();
    let dir = TestDir::new("bourse-log-read");
    let data = dir.join("data");
    let config = write_config(&dir, "bourse", &data, &Settings::disk());
    let mut cl = 0;

    // Trade, snapshot on SIGUSR1, trade on, then read the log while the daemon runs.
    let mut daemon = Daemon::start(&config);
    trade_on(&daemon, 5, &mut cl);
    let mark = daemon.stderr_len();
    daemon.signal("USR1");
    let written = daemon.wait_for_line_after(mark, TIMEOUT, |l| l.contains("written ("));
    assert!(written.is_some(), "no snapshot on SIGUSR1:\n{}", daemon.stderr_text());
    let acked = trade_on(&daemon, 5, &mut cl);
    let status = status(daemon.addr());
    assert!(status.last_index >= acked);
    let log = log_dir(&data);
    let verify = bourse_log_ok(&[p("verify"), &log]);
    assert!(verify.contains("no damage found"), "{verify}");
    let dump = bourse_log_ok(&[p("dump"), &log]);
    assert!(dump.contains(&format!("key={ALICE} request=")), "Alice's orders:\n{dump}");
    assert!(dump.contains(&format!("key={BOB} request=")), "Bob's orders:\n{dump}");
    assert!(dump.contains("key=server"), "the bootstrap's commands:\n{dump}");
    daemon.kill9();

    // Disk durability: the log holds every acknowledged entry; both rebuilds reach the
    // state the daemon reported, one from index 1, one from the SIGUSR1 snapshot.
    let expected_hash = hex(&status.state_hash);
    let (index, hash, out) = rebuild(&data, false, None);
    assert_eq!((index, &hash), (status.last_index, &expected_hash), "{out}");
    let (index, hash, out) = rebuild(&data, true, None);
    assert_eq!((index, &hash), (status.last_index, &expected_hash), "{out}");
    assert!(out.contains("state hash verified"), "the snapshot was used:\n{out}");

    // A clean stop prints its state hash and writes a final snapshot.
    let mut daemon = Daemon::start(&config);
    trade_on(&daemon, 3, &mut cl);
    let (stop_index, stop_hash) = stop(&mut daemon);
    let (index, hash, out) = rebuild(&data, false, None);
    assert_eq!((index, &hash), (stop_index, &stop_hash), "{out}");
    let (index, hash, out) = rebuild(&data, true, None);
    assert_eq!((index, &hash), (stop_index, &stop_hash), "{out}");
    let (_, hash, out) = rebuild(&data, true, Some(status.last_index));
    assert_eq!(hash, expected_hash, "rebuild --to the killed run's end:\n{out}");

    let snapshots = snapshot_files(&data);
    assert!(snapshots.len() >= 2, "the SIGUSR1 and the final snapshot: {snapshots:?}");
    for file in &snapshots {
        let out = bourse_log_ok(&[p("snapshot"), file]);
        assert!(out.contains("node snapshot (engine + "), "{out}");
        assert!(out.contains("(matches)"), "{out}");
    }
    let last = bourse_log_ok(&[p("snapshot"), snapshots.last().expect("one")]);
    assert_eq!(field(&last, "index").parse::<u64>().expect("index"), stop_index, "{last}");
    assert_eq!(field(&last, "state_hash"), stop_hash, "{last}");
}

/// A data dir whose log has three segments, each written by the daemon: each run starts
/// with its log directory set aside, so the daemon restarts the log after its snapshot
/// in a new segment, and the earlier segments are put back afterwards. Returns (index,
/// state hash) of the last run, which is killed (no final snapshot), and the index of
/// the newest snapshot.
fn three_segments(dir: &TestDir, data: &Path, config: &Path) -> ((u64, String), u64) {
    let mut cl = 0;
    let mut aside = Vec::new();
    for run in 0..2 {
        let mut daemon = Daemon::start(config);
        trade_on(&daemon, 4, &mut cl);
        stop(&mut daemon);
        let moved = dir.join(&format!("log-run-{run}"));
        std::fs::rename(log_dir(data), &moved).expect("set the log aside");
        aside.push(moved);
    }
    let newest_snapshot = rebuild_snapshot_index(data);
    let mut daemon = Daemon::start(config);
    trade_on(&daemon, 4, &mut cl);
    let status = status(daemon.addr());
    daemon.kill9();
    for moved in aside {
        for entry in std::fs::read_dir(&moved).expect("list") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "log") {
                let name = path.file_name().expect("name");
                std::fs::rename(&path, log_dir(data).join(name)).expect("put back");
            }
        }
    }
    assert_eq!(segments(data).len(), 3, "three segments: {:?}", segments(data));
    let verify = bourse_log_ok(&[p("verify"), &log_dir(data)]);
    assert!(verify.contains("no damage found"), "{verify}");
    ((status.last_index, hex(&status.state_hash)), newest_snapshot)
}

fn rebuild_snapshot_index(data: &Path) -> u64 {
    let newest = snapshot_files(data).pop().expect("a snapshot");
    field(&bourse_log_ok(&[p("snapshot"), &newest]), "index").parse().expect("index")
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read the file to damage");
    bytes[offset as usize] ^= 0x5A;
    std::fs::write(path, bytes).expect("write the damaged file");
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

#[test]
fn salvage_writes_a_startable_data_dir_from_a_damaged_one() {
    let _one = exclusive();
    let dir = TestDir::new("bourse-log-salvage");
    let data = dir.join("data");
    let config = write_config(&dir, "bourse", &data, &Settings::disk());
    let ((last_index, last_hash), snapshot_index) = three_segments(&dir, &data, &config);
    let pristine = dir.join("pristine");
    copy_dir(&data, &pristine);

    // A damaged header in the middle segment: the daemon refuses the directory.
    let middle = segments(&data)[1].clone();
    flip_byte(&middle, 2);
    let verify = bourse_log(&[p("verify"), &log_dir(&data)]);
    assert_eq!(verify.code, 1, "{}", verify.out);
    assert!(verify.out.contains(&middle.display().to_string()), "{}", verify.out);
    let (status_code, stderr) = expect_refusal(&config);
    assert!(!status_code.success(), "{stderr}");
    // Its message names the commands below, which exist and work.
    let verify_hint = format!("`bourse-log verify {}`", log_dir(&data).display());
    assert!(stderr.contains(&verify_hint), "{stderr}");
    let salvage_hint = format!("`bourse-log salvage {} --out <new data dir>`", data.display());
    assert!(stderr.contains(&salvage_hint), "{stderr}");

    // Salvage refuses while the directory's LOCK is held (as a running daemon holds it).
    let out = dir.join("salvaged");
    let lock = File::create(data.join("LOCK")).expect("create LOCK");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .expect("hold LOCK");
    let refused = bourse_log(&[p("salvage"), &data, p("--out"), &out]);
    assert_eq!(refused.code, 1, "{}", refused.out);
    assert!(refused.out.contains("is locked"), "{}", refused.out);
    drop(lock);

    let run = bourse_log(&[p("salvage"), &data, p("--out"), &out]);
    eprintln!("{}", run.out);
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.out.contains("dropped      nothing after the snapshot"), "{}", run.out);
    assert!(run.out.contains(&format!("not copied   {}", middle.display())), "{}", run.out);
    assert_eq!(field(&run.out, "index").parse::<u64>().expect("index"), last_index);
    assert_eq!(field(&run.out, "state_hash"), last_hash, "{}", run.out);
    let note = std::fs::read_dir(&out)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("SALVAGE-"))
        .expect("an audit note in the new data dir");
    let note = std::fs::read_to_string(out.join(note)).expect("read the note");
    assert!(note.contains(&format!("snapshot     {}", snapshot_dir(&data).display())), "{note}");
    let verify = bourse_log_ok(&[p("verify"), &log_dir(&out)]);
    assert!(verify.contains("no damage found"), "{verify}");
    assert_eq!(start_and_position(&dir, "salvaged", &out), (last_index, last_hash.clone()));

    // Damage after the newest snapshot: entries from there on are dropped, and said so.
    let data2 = dir.join("data2");
    copy_dir(&pristine, &data2);
    let last = segments(&data2).pop().expect("a segment");
    let entries = entry_offsets(&last);
    assert!(entries.len() >= 4, "{entries:?}");
    let (damaged_index, offset, len) = entries[entries.len() / 2];
    assert!(damaged_index > snapshot_index);
    flip_byte(&last, offset + len as u64 / 2);
    let out2 = dir.join("salvaged2");
    let run = bourse_log(&[p("salvage"), &data2, p("--out"), &out2]);
    eprintln!("{}", run.out);
    assert_eq!(run.code, 0, "{}", run.out);
    let dropped = format!("DROPPED      entries {damaged_index}..={last_index} (every entry from");
    assert!(run.out.contains(&dropped), "{}", run.out);
    assert!(run.out.contains(&format!("dropped from {}", last.display())), "{}", run.out);
    let kept_to = damaged_index - 1;
    let (index, expected, out) = rebuild(&pristine, true, Some(kept_to));
    assert_eq!(index, kept_to, "{out}");
    assert_eq!(field(&run.out, "state_hash"), expected, "{}", run.out);
    assert_eq!(start_and_position(&dir, "salvaged2", &out2), (kept_to, expected));
    assert!(kept_to < last_index);
}

/// Starts the daemon on `data`, returns its (last index, state hash), stops it.
fn start_and_position(dir: &TestDir, name: &str, data: &Path) -> (u64, String) {
    let config = write_config(dir, name, data, &Settings::disk());
    let mut daemon = Daemon::start(&config);
    let status = status(daemon.addr());
    daemon.terminate();
    (status.last_index, hex(&status.state_hash))
}
