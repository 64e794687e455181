//! The snapshot store: atomic writes, retention, listing, the helper thread.

mod common;

use std::fs;
use std::time::Duration;

use bourse_replication::snapshot::{
    read_snapshot_file, SnapshotError, SnapshotJob, SnapshotStore, SnapshotWriter,
};
use bourse_replication::Membership;
use common::payload;

fn members() -> Membership {
    Membership { voters: vec![1, 2, 3], learners: vec![4], ..Membership::default() }
}

#[test]
fn write_load_and_keep_the_last_k() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(dir.path(), 2).expect("open");
    assert!(store.load_for_recovery().expect("empty").is_none());
    for (k, index) in [100u64, 200, 300].iter().enumerate() {
        let info = store
            .write(*index, k as u64 + 1, &[k as u8; 32], &members(), &payload(*index, 5_000))
            .expect("write");
        assert_eq!(info.index, *index);
    }
    let listed: Vec<u64> = store.list().expect("list").iter().map(|s| s.index).collect();
    assert_eq!(listed, vec![200, 300], "the oldest beyond K=2 was deleted");
    assert_eq!(store.oldest_index().expect("oldest"), Some(200));
    assert_eq!(store.compact_keep_from().expect("keep"), Some(201));
    let newest = store.load_for_recovery().expect("load").expect("some");
    assert_eq!((newest.info.index, newest.info.term, newest.info.state_hash), (300, 3, [2; 32]));
    assert_eq!(newest.info.membership, members());
    assert_eq!(newest.payload, payload(300, 5_000));
    assert!(matches!(store.load(100), Err(SnapshotError::NotFound { index: 100, .. })));
    let again = read_snapshot_file(&newest.info.path).expect("read by path");
    assert_eq!(again, newest);
}

#[test]
fn a_leftover_temp_file_is_ignored_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(dir.path(), 3).expect("open");
    store.write(10, 1, &[1; 32], &members(), b"ten").expect("write");
    // A crash during the next write left its temp file behind.
    let temp = dir.path().join("00000000000000000020.snap.tmp");
    fs::write(&temp, b"partial").expect("write temp");
    assert_eq!(store.load_for_recovery().expect("load").expect("some").info.index, 10);
    let store = SnapshotStore::open(dir.path(), 3).expect("reopen");
    assert!(!temp.exists());
    assert_eq!(store.list().expect("list").len(), 1);
}

#[test]
fn a_truncated_snapshot_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(dir.path(), 3).expect("open");
    let info = store.write(10, 1, &[1; 32], &members(), &payload(1, 1_000)).expect("write");
    let len = fs::metadata(&info.path).expect("stat").len();
    for cut in [0, 10, 87, 88, 100, len - 1] {
        let bytes = fs::read(&info.path).expect("read");
        fs::write(&info.path, &bytes[..cut as usize]).expect("cut");
        let err = store.load(10).expect_err("truncated");
        assert!(matches!(err, SnapshotError::Corrupt { .. }), "cut {cut}: {err}");
        fs::write(&info.path, &bytes).expect("restore");
    }
    let bytes = fs::read(&info.path).expect("read");
    let mut longer = bytes.clone();
    longer.push(0);
    fs::write(&info.path, &longer).expect("extend");
    assert!(matches!(store.load(10), Err(SnapshotError::Corrupt { .. })), "trailing bytes");
}

#[test]
fn the_helper_thread_writes_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(dir.path(), 3).expect("open");
    let mut writer = SnapshotWriter::spawn(store.clone()).expect("spawn");
    let job = |index: u64| SnapshotJob {
        index,
        term: 1,
        state_hash: [index as u8; 32],
        membership: members(),
        payload: payload(index, 2 << 20),
    };
    writer.submit(job(1)).expect("first job accepted");
    let refused = writer.submit(job(2)).expect_err("one in flight");
    assert_eq!(refused.index, 2, "the job is handed back");
    let info = writer.wait_result(Duration::from_secs(30)).expect("finished").expect("written");
    assert_eq!(info.index, 1);
    assert!(!writer.in_flight());
    writer.submit(job(2)).expect("accepted after the first finished");
    let info = writer.wait_result(Duration::from_secs(30)).expect("finished").expect("written");
    assert_eq!(info.index, 2);
    assert_eq!(store.load(2).expect("load").payload, payload(2, 2 << 20));
}
