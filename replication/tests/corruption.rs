//! Torn and corrupted files: a torn tail is cut, damage anywhere else stops recovery
//! with a message naming the file, the byte offset and the entry index.

mod common;

use std::fs::{self, OpenOptions};
use std::path::Path;

use bourse_replication::format::SEGMENT_HEADER_BYTES;
use bourse_replication::scan::{scan_log, ScanOptions};
use bourse_replication::snapshot::{SnapshotError, SnapshotStore};
use bourse_replication::{CorruptionKind, LogError, Membership, Wal};
use common::*;

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at as usize] ^= 0x40;
    fs::write(path, bytes).expect("write");
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).expect("open").set_len(len).expect("truncate");
}

#[test]
fn torn_tail_at_every_offset_of_the_last_entry_is_cut() {
    let original = tempfile::tempdir().expect("tempdir");
    write_log(original.path(), quiet_options(), 20, short_payload);
    let segment = segment_paths(original.path()).pop().expect("one segment");
    let offsets = entry_offsets(&segment);
    let (last_index, last_at) = *offsets.last().expect("entries");
    assert_eq!(last_index, 20);
    let full_len = fs::metadata(&segment).expect("stat").len();
    for cut in last_at as u64 + 1..full_len {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(original.path(), dir.path());
        let path = dir.path().join(segment.file_name().expect("name"));
        set_len(&path, cut);
        let (mut wal, recovered) =
            Wal::open(dir.path(), quiet_options()).expect("a torn tail recovers");
        let torn = recovered.report.torn_tail.clone().expect("torn tail reported");
        assert_eq!((torn.offset, torn.index), (last_at as u64, 20), "cut at {cut}");
        assert_eq!(torn.bytes_cut, cut - last_at as u64);
        assert_eq!(torn.path, path);
        assert!(!torn.file_removed);
        assert!(torn.to_string().contains(&format!("byte offset {last_at}")), "{torn}");
        assert_eq!(recovered.report.last, Some((19, 1)));
        assert_eq!(fs::metadata(&path).expect("stat").len(), last_at as u64, "file cut on disk");
        if cut % 7 == 0 {
            // The log continues where it was cut.
            wal.append(1, 20, b"rewritten").expect("append");
            assert!(wal.wait_durable(20, WAIT).expect("io ok"));
            wal.close().expect("close");
            let (entries, report) = read_all(dir.path()).expect("scan");
            assert_eq!(entries.len(), 20);
            assert_eq!(entries[19].2, b"rewritten");
            assert!(report.torn_tail.is_none());
        }
    }
}

#[test]
fn garbage_or_zeros_after_the_last_entry_are_a_torn_tail() {
    for fill in [0x00u8, 0xa5] {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), quiet_options(), 10, short_payload);
        let segment = segment_paths(dir.path()).pop().expect("segment");
        let len = fs::metadata(&segment).expect("stat").len();
        let mut bytes = fs::read(&segment).expect("read");
        bytes.extend(std::iter::repeat_n(fill, 4096));
        fs::write(&segment, bytes).expect("write");
        let (_wal, recovered) = Wal::open(dir.path(), quiet_options()).expect("recovers");
        let torn = recovered.report.torn_tail.expect("torn");
        assert_eq!((torn.offset, torn.index, torn.bytes_cut), (len, 11, 4096));
        assert_eq!(recovered.report.last, Some((10, 1)));
    }
}

#[test]
fn a_bad_checksum_in_the_last_entry_is_cut_as_a_torn_write() {
    // Documented: it cannot be told apart from a torn write.
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), quiet_options(), 10, short_payload);
    let segment = segment_paths(dir.path()).pop().expect("segment");
    let (_, last_at) = *entry_offsets(&segment).last().expect("entries");
    flip(&segment, last_at as u64 + 33);
    let (_wal, recovered) = Wal::open(dir.path(), quiet_options()).expect("recovers");
    let torn = recovered.report.torn_tail.expect("torn");
    assert!(torn.fault.contains("crc32c"), "{}", torn.fault);
    assert_eq!(recovered.report.last, Some((9, 1)));
}

fn assert_corrupt_message(err: &LogError, path: &Path, offset: u64, index: u64) {
    let corruption = err.corruption().unwrap_or_else(|| panic!("not a corruption: {err}"));
    assert_eq!(corruption.path, path);
    assert_eq!(corruption.offset, offset);
    assert_eq!(corruption.index, Some(index));
    let message = err.to_string();
    for needle in [
        path.display().to_string(),
        format!("byte offset {offset}"),
        format!("entry index {index}"),
        "bourse-log verify".to_string(),
        "refuses to start".to_string(),
    ] {
        assert!(message.contains(&needle), "message lacks {needle:?}: {message}");
    }
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_last_segment_stops_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), quiet_options(), 100, short_payload);
    let segment = segment_paths(dir.path()).pop().expect("segment");
    let offsets = entry_offsets(&segment);
    let (index, at) = offsets[49];
    let before = fs::read(&segment).expect("read");
    // Every byte of the entry: header fields, checksum and payload.
    let entry_len = offsets[50].1 - at;
    for delta in 0..entry_len {
        flip(&segment, (at + delta) as u64);
        let err =
            Wal::open(dir.path(), quiet_options()).expect_err("corruption must stop recovery");
        assert_corrupt_message(&err, &segment, at as u64, index);
        assert!(err.corruption().unwrap().valid_entry_after.is_some());
        fs::write(&segment, &before).expect("restore");
    }
    assert_eq!(
        fs::read(&segment).expect("read"),
        before,
        "recovery did not modify the damaged file"
    );
}

#[test]
fn damage_in_an_earlier_segment_stops_recovery_even_at_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), small_segment_options(), 7, |i| payload(i, 300 << 10));
    let segments = segment_paths(dir.path());
    assert!(segments.len() >= 2);
    let first = &segments[0];
    let (index, at) = *entry_offsets(first).last().expect("entries");
    flip(first, at as u64 + 40);
    let err = Wal::open(dir.path(), quiet_options()).expect_err("corrupt");
    assert_corrupt_message(&err, first, at as u64, index);
    assert!(err.to_string().contains("not the tail of the last segment"), "{err}");

    // A cut (not flipped) earlier segment is corruption too.
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), small_segment_options(), 7, |i| payload(i, 300 << 10));
    let first = &segment_paths(dir.path())[0];
    let len = fs::metadata(first).expect("stat").len();
    set_len(first, len - 10);
    let err = Wal::open(dir.path(), quiet_options()).expect_err("corrupt");
    assert!(matches!(err.corruption().map(|c| &c.kind), Some(CorruptionKind::Entry(_))), "{err}");
}

#[test]
fn a_damaged_segment_header_stops_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), quiet_options(), 5, short_payload);
    let segment = segment_paths(dir.path()).pop().expect("segment");
    flip(&segment, 17);
    let err = Wal::open(dir.path(), quiet_options()).expect_err("corrupt");
    assert!(
        matches!(err.corruption().map(|c| &c.kind), Some(CorruptionKind::SegmentHeader(_))),
        "{err}"
    );
    assert!(err.to_string().contains("byte offset 0"), "{err}");
}

#[test]
fn a_missing_segment_is_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), small_segment_options(), 10, |i| payload(i, 300 << 10));
    let segments = segment_paths(dir.path());
    fs::remove_file(&segments[1]).expect("remove");
    let err = Wal::open(dir.path(), quiet_options()).expect_err("gap");
    assert!(
        matches!(
            err.corruption().map(|c| &c.kind),
            Some(CorruptionKind::Gap { expected: 4, found: 7 })
        ),
        "{err}"
    );
}

#[test]
fn a_torn_new_segment_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), small_segment_options(), 4, |i| payload(i, 300 << 10));
    let segments = segment_paths(dir.path());
    assert_eq!(segments.len(), 2);
    let last = &segments[1];
    // The new segment's header reached the disk, its first entry only in part.
    set_len(last, SEGMENT_HEADER_BYTES as u64 + 100);
    let (_wal, recovered) = Wal::open(dir.path(), quiet_options()).expect("recovers");
    let torn = recovered.report.torn_tail.clone().expect("torn");
    assert!(torn.file_removed && torn.index == 4, "{torn}");
    assert_eq!(recovered.report.last, Some((3, 1)));
    assert_eq!(recovered.next_index(), 4);
    assert!(!last.exists());
    drop(_wal);

    // A header cut short (the file was created, the header write torn).
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), small_segment_options(), 4, |i| payload(i, 300 << 10));
    let last = segment_paths(dir.path())[1].clone();
    set_len(&last, 10);
    let (_wal, recovered) = Wal::open(dir.path(), quiet_options()).expect("recovers");
    assert!(recovered.report.torn_tail.as_ref().expect("torn").file_removed);
    assert_eq!(recovered.next_index(), 4);
}

#[test]
fn verify_without_repair_reports_but_does_not_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), quiet_options(), 10, short_payload);
    let segment = segment_paths(dir.path()).pop().expect("segment");
    let len = fs::metadata(&segment).expect("stat").len();
    set_len(&segment, len - 3);
    let options = ScanOptions { from_index: 0, read_all: true, repair: false };
    let report = scan_log(dir.path(), &options, &mut |_| Ok(()), &mut |_| {}).expect("scan");
    assert!(report.torn_tail.is_some());
    assert_eq!(fs::metadata(&segment).expect("stat").len(), len - 3, "file untouched");
}

#[test]
fn a_flipped_byte_in_a_snapshot_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(dir.path(), 3).expect("store");
    let payload = payload(1, 10_000);
    let members = Membership { voters: vec![1], ..Membership::default() };
    store.write(10, 1, &[1; 32], &members, &payload).expect("write 10");
    let info = store.write(20, 2, &[2; 32], &members, &payload).expect("write 20");
    for at in [5u64, 40, 100, 5_000, 10_050] {
        let original = fs::read(&info.path).expect("read");
        flip(&info.path, at);
        let err = store.load(20).expect_err("damage detected");
        assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&info.path.display().to_string()), "{err}");
        // Recovery refuses, naming the file and the fallback.
        let err = store.load_for_recovery().expect_err("newest is damaged");
        let message = err.to_string();
        assert!(
            message.contains(&info.path.display().to_string()) && message.contains("index 10"),
            "{message}"
        );
        assert!(message.contains("bourse-log snapshot"), "{message}");
        // Tools skip it and report it.
        let (newest, skipped) = store.load_newest_valid().expect("list");
        assert_eq!(newest.map(|s| s.info.index), Some(10));
        assert_eq!(skipped.len(), 1);
        fs::write(&info.path, original).expect("restore");
    }
    assert_eq!(store.load(20).expect("restored").payload, payload);
}

#[test]
fn verify_lists_every_damaged_place_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), small_segment_options(), 9, |i| payload(i, 300 << 10));
    let segments = segment_paths(dir.path());
    assert_eq!(segments.len(), 3);
    let (index_a, at_a) = entry_offsets(&segments[0])[1];
    let (index_b, at_b) = entry_offsets(&segments[2])[0];
    flip(&segments[0], at_a as u64 + 100);
    flip(&segments[2], at_b as u64 + 100);
    let last_len = fs::metadata(&segments[2]).expect("stat").len();
    set_len(&segments[2], last_len - 5);
    let before: Vec<Vec<u8>> = segments.iter().map(|p| fs::read(p).expect("read")).collect();

    let report = bourse_replication::verify_log(dir.path(), &mut |_| {}).expect("verify");
    let places: Vec<(std::path::PathBuf, u64, Option<u64>)> =
        report.damage.iter().map(|d| (d.path.clone(), d.offset, d.index)).collect();
    assert_eq!(
        places,
        vec![
            (segments[0].clone(), at_a as u64, Some(index_a)),
            (segments[2].clone(), at_b as u64, Some(index_b))
        ]
    );
    let torn = report.torn_tail.expect("torn tail of the last segment");
    assert_eq!(torn.index, 9);
    assert_eq!(report.entries, 9 - 3, "two damaged entries and the torn one are not counted");
    let after: Vec<Vec<u8>> = segments.iter().map(|p| fs::read(p).expect("read")).collect();
    assert_eq!(before, after);

    let healthy = tempfile::tempdir().expect("tempdir");
    write_log(healthy.path(), quiet_options(), 50, short_payload);
    let report = bourse_replication::verify_log(healthy.path(), &mut |_| {}).expect("verify");
    assert!(report.damage.is_empty() && report.torn_tail.is_none());
    assert_eq!((report.entries, report.last), (50, Some((50, 1))));
}
