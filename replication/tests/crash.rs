//! kill -9 of a process that appends as fast as it can: recovery finds a contiguous,
//! verified log holding at least everything the child saw durable, with the right bytes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bourse_replication::{AppendError, Wal};
use common::*;

const CHILD_ENV: &str = "BOURSE_CRASH_CHILD_DIR";

/// The child: append forever (from wherever the log ends), reporting durable indexes.
fn child(dir: &str) {
    let (mut wal, recovered) =
        Wal::open(std::path::Path::new(dir), small_segment_options()).expect("child open");
    let mut index = recovered.next_index();
    let mut out = std::io::stdout();
    loop {
        let len = if index % 97 == 0 { 100_000 } else { 1 + (index % 200) as usize };
        match wal.append(1, index, &payload(index, len)) {
            Ok(()) => index += 1,
            Err(AppendError::Full { .. }) => std::thread::yield_now(),
            Err(e) => panic!("child append: {e}"),
        }
        if index % 500 == 0 {
            let _ = writeln!(out, "durable {}", wal.durable_index());
            let _ = out.flush();
        }
    }
}

#[test]
fn kill_9_loses_nothing_that_was_durable() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = Rng::new(seed("kill_9_loses_nothing_that_was_durable"));
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args([
                "kill_9_loses_nothing_that_was_durable",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let lines = BufReader::new(child.stdout.take().expect("stdout"));
        let run_for = Duration::from_millis(100 + rng.below(300));
        let started = Instant::now();
        let mut durable_seen = 0u64;
        for line in lines.lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("durable ").and_then(|n| n.parse::<u64>().ok()) {
                durable_seen = durable_seen.max(n);
            }
            if started.elapsed() >= run_for && durable_seen > 0 {
                break;
            }
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        let (entries, _) =
            read_all(dir.path()).expect("the log verifies after kill -9 (torn tail allowed)");
        let (wal, recovered) = Wal::open(dir.path(), quiet_options()).expect("recovery");
        drop(wal);
        let last = recovered.report.last_index().unwrap_or(0);
        assert!(
            last >= durable_seen,
            "round {round}: durable {durable_seen} reported, log ends at {last}"
        );
        for (k, (index, _, bytes)) in entries.iter().enumerate().filter(|(_, e)| e.0 <= last) {
            assert_eq!(*index, k as u64 + 1);
            let len = if index % 97 == 0 { 100_000 } else { 1 + (index % 200) as usize };
            assert_eq!(bytes, &payload(*index, len), "round {round}: entry {index}");
        }
        eprintln!("round {round}: killed after durable {durable_seen}, recovered to {last}, torn tail: {:?}", recovered.report.torn_tail.map(|t| t.offset));
    }
}
