//! The WAL writer: round trip, roll-over, group commit, durable index, truncation,
//! compaction, back-pressure, hard state.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bourse_replication::format::ENTRY_PAYLOAD_BYTES_MAX;
use bourse_replication::{
    load_hard_state, AppendError, DurabilityMode, HardStateRecord, LogError, Membership, Wal,
    WalOptions,
};
use common::*;

#[test]
fn appended_entries_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), quiet_options(), 500, short_payload);
    let (entries, report) = read_all(dir.path()).expect("scan");
    assert_eq!(entries.len(), 500);
    for (k, (index, term, payload)) in entries.iter().enumerate() {
        assert_eq!((*index, *term), (k as u64 + 1, 1));
        assert_eq!(payload, &short_payload(*index));
    }
    assert_eq!(report.last, Some((500, 1)));
    assert!(report.torn_tail.is_none());

    let (mut wal, recovered) = Wal::open(dir.path(), quiet_options()).expect("reopen");
    assert_eq!(recovered.next_index(), 501);
    assert_eq!(wal.durable_index(), 500, "what recovery found is durable");
    assert_eq!(
        wal.append(1, 500, b"x"),
        Err(AppendError::NotContiguous { expected: 501, found: 500 })
    );
    assert_eq!(
        wal.append(0, 501, b"x"),
        Err(AppendError::TermRegressed { last_term: 1, found: 0 })
    );
    wal.append(2, 501, b"next").expect("append after reopen");
    assert!(wal.wait_durable(501, WAIT).expect("io ok"));
    wal.close().expect("close");
    assert_eq!(read_all(dir.path()).expect("scan").1.last, Some((501, 2)));
}

#[test]
fn oversized_payload_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = Wal::open(dir.path(), quiet_options()).expect("open");
    let big = vec![0u8; ENTRY_PAYLOAD_BYTES_MAX + 1];
    assert_eq!(wal.append(1, 1, &big), Err(AppendError::TooLarge { payload_len: big.len() }));
    let max = vec![7u8; ENTRY_PAYLOAD_BYTES_MAX];
    wal.append(1, 1, &max).expect("largest payload fits");
    assert!(wal.wait_durable(1, WAIT).expect("io ok"));
}

#[test]
fn options_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny_segments = WalOptions { segment_bytes_max: 4096, ..quiet_options() };
    assert!(matches!(
        Wal::open(dir.path(), tiny_segments),
        Err(LogError::Options { name: "segment_bytes_max", .. })
    ));
    let tiny_queue = WalOptions { queue_bytes_max: 100, ..quiet_options() };
    assert!(matches!(
        Wal::open(dir.path(), tiny_queue),
        Err(LogError::Options { name: "queue_bytes_max", .. })
    ));
}

#[test]
fn segments_roll_over_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 300 KiB entries in ~1 MiB segments: three per segment.
    let len = |i: u64| payload(i, 300 << 10);
    write_log(dir.path(), small_segment_options(), 10, len);
    let paths = segment_paths(dir.path());
    assert_eq!(paths.len(), 4, "10 entries at 3 per segment: {paths:?}");
    let names: Vec<String> =
        paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names[0], "00000000000000000001.log");
    assert_eq!(names[1], "00000000000000000004.log");
    assert_eq!(names[3], "00000000000000000010.log");
    for path in &paths {
        assert!(std::fs::metadata(path).expect("stat").len() <= SMALL_SEGMENT_BYTES);
    }
    let (entries, report) = read_all(dir.path()).expect("scan");
    assert_eq!(entries.len(), 10);
    assert!(entries.iter().all(|(i, _, p)| *p == len(*i)));
    assert_eq!(report.segments.len(), 4);

    // Random access through the reader, across segment boundaries.
    let reader = bourse_replication::LogReader::from_report(&report);
    let mut seen = Vec::new();
    reader
        .read(3, 8, &mut |e| {
            seen.push((e.index, e.payload == len(e.index).as_slice()));
            true
        })
        .expect("read");
    assert_eq!(seen, (3..8).map(|i| (i, true)).collect::<Vec<_>>());
}

#[test]
fn group_commit_covers_many_appends_with_one_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = Wal::open(dir.path(), quiet_options()).expect("open");
    let count = 50_000;
    append_range(&mut wal, 1, 1, count);
    assert!(wal.wait_durable(count, WAIT).expect("io ok"));
    let stats = wal.close().expect("close");
    eprintln!("group commit: {stats:?}");
    assert_eq!(stats.appends, count);
    assert!(stats.batches * 10 < count, "{} batches for {count} appends", stats.batches);
    assert!(
        stats.fsyncs < stats.appends / 10,
        "{} fsyncs for {} appends",
        stats.fsyncs,
        stats.appends
    );
    assert!(stats.batch_entries_max > 1);
    assert!(stats.uring_enters >= stats.batches, "writes go through io_uring");
}

#[test]
fn batch_interval_spaces_out_batches() {
    // 60 appends spread over ~60 ms. With a 25 ms interval the io thread cannot take
    // batches more often than every 25 ms, so however the scheduler interleaves, there
    // are at most a handful of batches (without the interval, up to one per append);
    // and everything still becomes durable.
    let dir = tempfile::tempdir().expect("tempdir");
    let interval = Duration::from_millis(25);
    let options = WalOptions { batch_interval: interval, ..quiet_options() };
    let (mut wal, _) = Wal::open(dir.path(), options).expect("open");
    let started = std::time::Instant::now();
    for index in 1..=60u64 {
        wal.append(1, index, &short_payload(index)).expect("append");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(wal.wait_durable(60, WAIT).expect("io ok"));
    let elapsed = started.elapsed();
    let stats = wal.close().expect("close");
    let spaced_max = elapsed.as_millis() as u64 / interval.as_millis() as u64 + 2;
    assert!(
        stats.batches <= spaced_max,
        "{} batches in {elapsed:?} with a {interval:?} interval",
        stats.batches
    );
    let too_long = WalOptions { batch_interval: Duration::from_secs(1), ..quiet_options() };
    assert!(Wal::open(tempfile::tempdir().unwrap().path(), too_long).is_err());
}

#[test]
fn durable_index_is_monotonic_and_bounded_by_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let published = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&published);
    let options = WalOptions {
        on_durable: Some(Arc::new(move |index| sink.lock().unwrap().push(index))),
        ..quiet_options()
    };
    let (mut wal, _) = Wal::open(dir.path(), options).expect("open");
    let mut observed = Vec::new();
    for index in 1..=20_000u64 {
        wal.append(1, index, &short_payload(index)).expect("append");
        let durable = wal.durable_index();
        assert!(durable <= index, "durable {durable} ahead of appended {index}");
        observed.push(durable);
    }
    assert!(wal.wait_durable(20_000, WAIT).expect("io ok"));
    assert_eq!(wal.durable_index(), 20_000);
    wal.close().expect("close");
    assert!(observed.windows(2).all(|w| w[0] <= w[1]), "durable_index went backwards");
    let published = published.lock().unwrap();
    assert!(published.windows(2).all(|w| w[0] <= w[1]), "published values went backwards");
    assert_eq!(published.last(), Some(&20_000));
}

#[test]
fn ack_policy_per_durability_mode() {
    assert_eq!(DurabilityMode::Memory.ack_index(10, 4), 10);
    assert_eq!(DurabilityMode::Disk.ack_index(10, 4), 4);
    assert_eq!(DurabilityMode::Disk.ack_index(3, 4), 3);
    assert!(DurabilityMode::Disk.may_ack(4, 10, 4) && !DurabilityMode::Disk.may_ack(5, 10, 4));
    assert_eq!(DurabilityMode::parse("disk"), Some(DurabilityMode::Disk));
    assert_eq!(DurabilityMode::parse("memory").map(|m| m.as_str()), Some("memory"));
    assert_eq!(DurabilityMode::parse("fast"), None);
}

#[test]
fn truncation_replaces_a_suffix_and_lowers_durable_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = Wal::open(dir.path(), quiet_options()).expect("open");
    append_range(&mut wal, 1, 1, 100);
    assert!(wal.wait_durable(100, WAIT).expect("io ok"));
    wal.truncate(60, 1).expect("truncate");
    assert_eq!(wal.durable_index(), 59, "entries from 60 on are gone at once");
    assert_eq!(wal.next_index(), 60);
    append_range(&mut wal, 2, 60, 80);
    assert!(wal.durable_index() <= 80);
    assert!(wal.wait_durable(80, WAIT).expect("io ok"));
    let stats = wal.close().expect("close");
    assert_eq!(stats.truncations, 1);
    let (entries, _) = read_all(dir.path()).expect("scan");
    assert_eq!(entries.len(), 80);
    assert!(entries[..59].iter().all(|e| e.1 == 1) && entries[59..].iter().all(|e| e.1 == 2));
}

#[test]
fn truncation_beyond_the_end_restarts_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = Wal::open(dir.path(), quiet_options()).expect("open");
    append_range(&mut wal, 1, 1, 10);
    // A snapshot at 500 arrived: the log restarts at 501.
    wal.truncate(501, 3).expect("truncate");
    append_range(&mut wal, 3, 501, 510);
    assert!(wal.wait_durable(510, WAIT).expect("io ok"));
    wal.close().expect("close");
    let (entries, report) = read_all(dir.path()).expect("scan");
    assert_eq!(entries.first().map(|e| e.0), Some(501));
    assert_eq!(report.first_index(), Some(501));
    assert_eq!(report.last, Some((510, 3)));
}

/// Random appends, truncations (in the queue, on disk, across segments) and restarts,
/// checked against a model of the log.
#[test]
fn random_truncations_match_a_model() {
    let seed = seed("random_truncations_match_a_model");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model: Vec<(u64, u64, usize)> = Vec::new(); // (index, term, payload len)
    let mut start = 1u64;
    let mut term = 1u64;
    let (mut wal, _) = Wal::open(dir.path(), small_segment_options()).expect("open");
    for round in 0..60 {
        match rng.below(10) {
            0..=5 => {
                let count = 1 + rng.below(40);
                for _ in 0..count {
                    let index = start + model.len() as u64;
                    let len =
                        if rng.below(8) == 0 { 200 << 10 } else { 1 + rng.below(64) as usize };
                    let bytes = payload(index ^ term, len);
                    while let Err(e) = wal.append(term, index, &bytes) {
                        assert!(matches!(e, AppendError::Full { .. }), "{e}");
                        assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
                    }
                    model.push((index, term, len));
                }
            }
            6..=7 if !model.is_empty() => {
                let keep = rng.below(model.len() as u64 + 1) as usize;
                let prev_term = if keep == 0 { term } else { model[keep - 1].1 };
                model.truncate(keep);
                term += 1;
                wal.truncate(start + keep as u64, prev_term).expect("truncate");
                if keep == 0 {
                    term = term.max(prev_term);
                }
            }
            8 => {
                assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
                wal.close().expect("close");
                let (reopened, recovered) =
                    Wal::open(dir.path(), small_segment_options()).expect("reopen");
                assert_eq!(
                    recovered.next_index(),
                    start + model.len() as u64,
                    "round {round}, seed {seed}"
                );
                wal = reopened;
            }
            _ => {
                // Restart the log beyond its end, as a snapshot install does.
                let gap = 1 + rng.below(5);
                start += model.len() as u64 + gap;
                model.clear();
                wal.truncate(start, term).expect("reset");
            }
        }
    }
    assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
    wal.close().expect("close");
    let (entries, _) = read_all(dir.path()).expect("scan");
    // The log may still hold entries below `start` only if no reset happened; compare the
    // part at and after `start`.
    let tail: Vec<(u64, u64, usize)> =
        entries.iter().filter(|e| e.0 >= start).map(|e| (e.0, e.1, e.2.len())).collect();
    assert_eq!(tail, model, "seed {seed}");
    for (index, term, payload_bytes) in entries.iter().filter(|e| e.0 >= start) {
        assert_eq!(payload_bytes, &payload(index ^ term, payload_bytes.len()), "seed {seed}");
    }
}

#[test]
fn compaction_deletes_whole_segments_below_the_mark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let len = |i: u64| payload(i, 300 << 10);
    let (mut wal, _) = Wal::open(dir.path(), small_segment_options()).expect("open");
    for index in 1..=12 {
        wal.append(1, index, &len(index)).expect("append");
    }
    assert!(wal.wait_durable(12, WAIT).expect("io ok"));
    assert_eq!(segment_paths(dir.path()).len(), 4); // 1-3, 4-6, 7-9, 10-12
                                                    // A snapshot at 8: entries up to 8 are covered; segments holding only entries <= 8
                                                    // (1-3, 4-6) go, 7-9 stays because it holds 9.
    wal.compact(9);
    assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
    assert_eq!(wal.first_index(), Some(7));
    let stats = wal.close().expect("close");
    assert_eq!(stats.segments_deleted, 2);
    let (entries, report) = read_all(dir.path()).expect("scan");
    assert_eq!(report.first_index(), Some(7));
    assert_eq!(entries.iter().map(|e| e.0).collect::<Vec<_>>(), (7..=12).collect::<Vec<_>>());
    // Recovery from index 9 works; recovery from 5 reports the missing entries.
    let (wal, _) =
        Wal::open_replaying(dir.path(), quiet_options(), 9, &mut |_| Ok(())).expect("from 9");
    drop(wal);
    let err = Wal::open_replaying(dir.path(), quiet_options(), 5, &mut |_| Ok(()))
        .expect_err("5 is gone");
    assert!(matches!(err, LogError::Missing { needed: 5, .. }), "{err}");
    // The last segment is never compacted, even when everything is below the mark.
    let (mut wal, _) = Wal::open(dir.path(), small_segment_options()).expect("open");
    wal.compact(1_000);
    assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
    assert_eq!(wal.first_index(), Some(10));
}

#[test]
fn full_queue_is_reported_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = WalOptions {
        queue_bytes_max: bourse_replication::format::ENTRY_BYTES_MAX,
        ..quiet_options()
    };
    let (mut wal, _) = Wal::open(dir.path(), options).expect("open");
    let block = vec![9u8; 256 << 10];
    let mut index = 1;
    let mut fulls = 0;
    while index <= 200 {
        match wal.append(1, index, &block) {
            Ok(()) => index += 1,
            Err(AppendError::Full { queued_bytes, queue_bytes_max }) => {
                assert!(queued_bytes + block.len() > queue_bytes_max);
                fulls += 1;
                // Back-pressure: wait for the io thread, then retry the same index.
                assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(fulls > 0, "a 1 MiB queue must fill up with 50 MiB appended back to back");
    assert!(wal.wait_durable(200, WAIT).expect("io ok"));
    wal.close().expect("close");
    let (entries, _) = read_all(dir.path()).expect("scan");
    assert_eq!(entries.len(), 200);
}

#[test]
fn hard_state_term_vote_now_commit_lazily() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options =
        WalOptions { hard_state_commit_interval: Duration::from_secs(3600), ..quiet_options() };
    let (mut wal, recovered) = Wal::open(dir.path(), options.clone()).expect("open");
    assert_eq!(recovered.hard_state, None);
    let membership = Membership { voters: vec![1, 2, 3], ..Membership::default() };
    let first = HardStateRecord { term: 3, vote: 2, commit: 5, membership: membership.clone() };
    wal.save_hard_state(first.clone());
    assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
    assert_eq!(
        load_hard_state(dir.path()).expect("load"),
        Some(first.clone()),
        "term/vote written before the sync point"
    );
    let commit_only = HardStateRecord { commit: 9, ..first.clone() };
    wal.save_hard_state(commit_only.clone());
    assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
    assert_eq!(
        load_hard_state(dir.path()).expect("load"),
        Some(first),
        "commit-only change is lazy"
    );
    let stats = wal.close().expect("close");
    assert_eq!(stats.hard_state_writes, 2);
    assert_eq!(
        load_hard_state(dir.path()).expect("load"),
        Some(commit_only.clone()),
        "written at close"
    );
    let (_wal, recovered) = Wal::open(dir.path(), options).expect("reopen");
    assert_eq!(recovered.hard_state, Some(commit_only));
}

#[test]
fn the_io_thread_can_be_pinned_and_a_bad_cpu_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) =
        Wal::open(dir.path(), WalOptions { io_cpu: Some(0), ..quiet_options() }).expect("cpu 0");
    wal.append(1, 1, b"pinned").expect("append");
    assert!(wal.wait_durable(1, WAIT).expect("io ok"));
    drop(wal);
    let err = Wal::open(dir.path(), WalOptions { io_cpu: Some(100_000), ..quiet_options() })
        .expect_err("no such cpu");
    assert!(matches!(err, LogError::Options { name: "io_cpu", .. }), "{err}");
}
