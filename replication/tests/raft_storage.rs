//! raft-rs `Storage` fit: a single-node `RawNode` campaigns, proposes, persists through
//! `RaftLogStorage`, applies, restarts from disk and goes on.

mod common;

use std::path::Path;

use bourse_replication::snapshot::SnapshotStore;
use bourse_replication::storage::{RaftLogStorage, RaftStorageOptions};
use bourse_replication::{Membership, WalOptions};
use common::*;
use raft::prelude::{ConfState, Entry, EntryType};
use raft::{Config, RawNode, StateRole, Storage};

fn options() -> RaftStorageOptions {
    RaftStorageOptions {
        wal: WalOptions { log: bourse_replication::wal::log_none, ..WalOptions::default() },
        ..RaftStorageOptions::default()
    }
}

fn config(applied: u64) -> Config {
    let config =
        Config { id: 1, election_tick: 10, heartbeat_tick: 3, applied, ..Config::default() };
    config.validate().expect("valid config");
    config
}

/// Handles every pending Ready the way a sync-mode driver does: persist entries and
/// hard state, wait for the WAL, advance, apply committed entries.
fn drive(node: &mut RawNode<RaftLogStorage>, applied: &mut Vec<(u64, Vec<u8>)>) {
    for _ in 0..100 {
        if !node.has_ready() {
            return;
        }
        let mut ready = node.ready();
        assert!(ready.snapshot().is_empty(), "single node never receives a snapshot");
        assert!(ready.messages().is_empty() && ready.persisted_messages().is_empty(), "no peers");
        apply(ready.take_committed_entries(), applied);
        let store = node.mut_store();
        store.append_blocking(ready.entries(), WAIT).expect("append");
        if let Some(hs) = ready.hs() {
            store.set_hard_state(hs);
        }
        assert!(store.wait_persisted(WAIT).expect("io ok"), "WAL did not sync");
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            node.mut_store().set_commit(commit);
        }
        apply(light.take_committed_entries(), applied);
        node.advance_apply();
    }
    panic!("ready loop did not settle");
}

fn apply(entries: Vec<Entry>, applied: &mut Vec<(u64, Vec<u8>)>) {
    for entry in entries {
        assert_eq!(entry.get_entry_type(), EntryType::EntryNormal);
        if !entry.data.is_empty() {
            applied.push((entry.index, entry.data.to_vec()));
        }
    }
}

fn elect(node: &mut RawNode<RaftLogStorage>, applied: &mut Vec<(u64, Vec<u8>)>) {
    node.campaign().expect("campaign");
    drive(node, applied);
    assert_eq!(node.raft.state, StateRole::Leader);
}

fn open(log: &Path, snaps: &Path) -> RaftLogStorage {
    RaftLogStorage::open(log, snaps, options()).expect("open storage").0
}

#[test]
fn single_node_raw_node_round_trip_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
    let mut storage = open(&log_dir, &snap_dir);
    assert!(!storage.initial_state().expect("state").initialized());
    storage.set_conf_state(ConfState::from((vec![1], vec![])));
    assert!(storage.wait_persisted(WAIT).expect("io ok"));
    let mut node = RawNode::with_default_logger(&config(0), storage).expect("raw node");
    let mut applied = Vec::new();
    elect(&mut node, &mut applied);
    let term = node.raft.term;
    for k in 0..50u64 {
        node.propose(vec![], format!("command {k}").into_bytes()).expect("propose");
        drive(&mut node, &mut applied);
    }
    assert_eq!(applied.len(), 50);
    assert_eq!(applied[49].1, b"command 49");
    let last = node.store().last_index().expect("last");
    assert_eq!(last, applied[49].0);
    let hs = node.store().hard_state().clone();
    assert_eq!((hs.term, hs.vote, hs.commit), (term, 1, last));
    drop(node); // closes the WAL: queued writes finish

    // Restart: everything comes back from disk, and is applied again from index 1.
    let storage = open(&log_dir, &snap_dir);
    let state = storage.initial_state().expect("state");
    assert!(state.initialized());
    assert_eq!(state.conf_state.voters, vec![1]);
    assert_eq!((state.hard_state.term, state.hard_state.vote), (term, 1));
    assert_eq!(storage.last_index().expect("last"), last);
    let entries =
        storage.entries(1, last + 1, None, raft::GetEntriesContext::empty(false)).expect("entries");
    assert_eq!(entries.len() as u64, last);
    assert_eq!(storage.term(last).expect("term"), term);
    let mut node =
        RawNode::with_default_logger(&config(0), storage).expect("raw node after restart");
    let mut replayed = Vec::new();
    elect(&mut node, &mut replayed);
    assert!(node.raft.term > term, "a new election bumps the term");
    node.propose(vec![], b"after restart".to_vec()).expect("propose");
    drive(&mut node, &mut replayed);
    assert_eq!(&replayed[..50], &applied[..], "committed entries replay identically");
    assert_eq!(replayed.last().map(|e| e.1.as_slice()), Some(&b"after restart"[..]));
}

#[test]
fn snapshot_compaction_and_restart_from_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
    let mut storage = open(&log_dir, &snap_dir);
    storage.set_conf_state(ConfState::from((vec![1], vec![])));
    let mut node = RawNode::with_default_logger(&config(0), storage).expect("raw node");
    let mut applied = Vec::new();
    elect(&mut node, &mut applied);
    for k in 0..30u64 {
        node.propose(vec![], vec![k as u8; 10]).expect("propose");
        drive(&mut node, &mut applied);
    }
    // The application snapshots its state at the last applied index.
    let (index, _) = applied[19];
    let term = node.store().term(index).expect("term");
    let store = SnapshotStore::open(&snap_dir, 2).expect("snapshots");
    let members = Membership { voters: vec![1], ..Membership::default() };
    store.write(index, term, &[7; 32], &members, b"state at 20").expect("write snapshot");
    node.mut_store()
        .snapshot_written(index, term, ConfState::from((vec![1], vec![])))
        .expect("snapshot written");
    assert_eq!(node.store().first_index().expect("first"), index + 1);
    assert!(matches!(
        node.store().term(index - 1),
        Err(raft::Error::Store(raft::StorageError::Compacted))
    ));
    let snapshot = node.store().snapshot(index, 2).expect("snapshot for a follower");
    assert_eq!(snapshot.get_metadata().index, index);
    assert_eq!(snapshot.data.as_ref(), b"state at 20");
    assert!(matches!(
        node.store().snapshot(index + 5, 2),
        Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable))
    ));
    let last = node.store().last_index().expect("last");
    drop(node);

    let storage = open(&log_dir, &snap_dir);
    assert_eq!(storage.snapshot_position(), (index, term));
    assert_eq!(storage.first_index().expect("first"), index + 1);
    assert_eq!(storage.last_index().expect("last"), last);
    let mut node =
        RawNode::with_default_logger(&config(index), storage).expect("raw node from snapshot");
    let mut replayed = Vec::new();
    elect(&mut node, &mut replayed);
    assert_eq!(replayed.first().map(|e| e.0), Some(index + 1), "replay starts after the snapshot");
    assert_eq!(&replayed[..10], &applied[20..30]);
}

#[test]
fn conflicting_entries_replace_the_tail_and_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
    let mut storage = open(&log_dir, &snap_dir);
    let entry = |index: u64, term: u64| Entry {
        index,
        term,
        data: vec![index as u8, term as u8].into(),
        ..Default::default()
    };
    let first: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
    storage.append(&first).expect("append");
    // The same entries again: idempotent.
    storage.append(&first[3..7]).expect("re-append");
    assert_eq!(storage.wal().stats().truncations, 0);
    // A new leader overwrites from 6 with term 2.
    let second: Vec<Entry> = (6..=8).map(|i| entry(i, 2)).collect();
    storage.append(&second).expect("conflict");
    assert_eq!(storage.last_index().expect("last"), 8);
    assert_eq!(storage.term(5).expect("term"), 1);
    assert_eq!(storage.term(6).expect("term"), 2);
    assert!(storage.wait_persisted(WAIT).expect("io ok"));
    // A gap is refused.
    assert!(storage.append(&[entry(20, 2)]).is_err());
    storage.close().expect("close");
    let storage = open(&log_dir, &snap_dir);
    let entries =
        storage.entries(1, 9, None, raft::GetEntriesContext::empty(false)).expect("entries");
    let terms: Vec<u64> = entries.iter().map(|e| e.term).collect();
    assert_eq!(terms, vec![1, 1, 1, 1, 1, 2, 2, 2]);
    assert_eq!(entries[6].data.as_ref(), &[7, 2]);
    // max_size limits the answer but always returns at least one entry.
    let one =
        storage.entries(1, 9, Some(0), raft::GetEntriesContext::empty(false)).expect("entries");
    assert_eq!(one.len(), 1);
}

#[test]
fn entries_evicted_from_the_cache_are_read_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
    let options = RaftStorageOptions { cache_bytes_max: 4096, ..options() };
    let (mut storage, _) = RaftLogStorage::open(&log_dir, &snap_dir, options).expect("open");
    for batch in 0..40u64 {
        let entries: Vec<Entry> = (0..50u64)
            .map(|k| {
                let index = batch * 50 + k + 1;
                Entry { index, term: 1, data: short_payload(index).into(), ..Default::default() }
            })
            .collect();
        storage.append(&entries).expect("append");
        assert!(storage.wait_persisted(WAIT).expect("io ok"));
    }
    assert!(storage.cached_entries() < 200, "{} entries cached", storage.cached_entries());
    let all =
        storage.entries(1, 2001, None, raft::GetEntriesContext::empty(false)).expect("entries");
    assert_eq!(all.len(), 2000);
    assert!(all.iter().all(|e| e.data.as_ref() == short_payload(e.index).as_slice()));
    assert_eq!(storage.term(1).expect("term from disk"), 1);
}
