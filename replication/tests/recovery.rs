//! Recovery end to end with the real engine: snapshot + log replay reaches the same state
//! hash as replaying the whole log, and as the live state that wrote them.

mod common;

use bourse_engine::{
    Command, Config, Exchange, MarketSpec, OrderRef, OrderType, PlaceOrder, Side, StpMode, Symbol,
    TimeInForce,
};
use bourse_replication::snapshot::SnapshotStore;
use bourse_replication::{
    decode_command_payload, encode_command_payload, CommandPayload, LogError, Membership, Wal,
};
use common::*;

const TRADERS: u64 = 8;

fn setup() -> Vec<Command> {
    let symbol = |s: &str| Symbol::new(s).expect("valid symbol");
    let mut commands = vec![
        Command::CreateAsset { asset: 1, scale: 8, symbol: symbol("BTC") },
        Command::CreateAsset { asset: 2, scale: 6, symbol: symbol("USDT") },
        Command::CreateMarket(MarketSpec {
            market: 1,
            symbol: symbol("BTC-USDT"),
            base: 1,
            quote: 2,
            tick_size: 10_000,
            lot_size: 10_000,
            min_notional: 1_000_000,
            maker_fee_bps: 2,
            taker_fee_bps: 5,
        }),
    ];
    for trader in 1..=TRADERS {
        commands.push(Command::Deposit {
            tx: trader * 2,
            account: trader,
            asset: 1,
            amount: 50 * 100_000_000,
        });
        commands.push(Command::Deposit {
            tx: trader * 2 + 1,
            account: trader,
            asset: 2,
            amount: 5_000_000 * 1_000_000,
        });
    }
    commands
}

/// A random order flow: limit orders around a mid price, cancels, IOCs.
fn random_command(rng: &mut Rng) -> Command {
    let account = 1 + rng.below(TRADERS);
    match rng.below(10) {
        0 => Command::Cancel { account, order: OrderRef::Id(1 + rng.below(200)) },
        1 => Command::MassCancel { account, market: None },
        k => Command::Place(PlaceOrder {
            account,
            market: 1,
            client_order_id: 0,
            side: if rng.below(2) == 0 { Side::Buy } else { Side::Sell },
            order_type: OrderType::Limit,
            tif: if k == 2 { TimeInForce::Ioc } else { TimeInForce::Gtc },
            post_only: false,
            price: (50_000 - 20 + rng.below(40)) * 1_000_000,
            qty: (1 + rng.below(20)) * 10_000,
            quote_budget: 0,
            stp: StpMode::CancelTaker,
        }),
    }
}

fn apply_payload(
    exchange: &mut Exchange,
    index: u64,
    payload: &[u8],
    events: &mut Vec<bourse_engine::Event>,
) -> Result<(), String> {
    match decode_command_payload(payload).map_err(|e| e.to_string())? {
        CommandPayload::NoOp => Ok(()),
        CommandPayload::Command { time_ns, command_bytes } => {
            let command = Command::decode(command_bytes).map_err(|e| e.to_string())?;
            events.clear();
            exchange.apply(index, time_ns, &command, events).map_err(|e| format!("{e:?}"))
        }
    }
}

#[test]
fn snapshot_plus_log_matches_log_only_replay() {
    let seed = seed("snapshot_plus_log_matches_log_only_replay");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
    let snapshots = SnapshotStore::open(&snap_dir, 2).expect("snapshots");
    let (mut wal, _) = Wal::open(&log_dir, small_segment_options()).expect("open");
    let mut live = Exchange::new(Config::default()).expect("exchange");
    let mut events = Vec::new();
    let mut commands = setup();
    commands.extend((0..40_000).map(|_| random_command(&mut rng)));
    let snapshot_at = [20_000u64, 33_000];
    let mut payload = Vec::new();
    let mut command_bytes = Vec::new();
    let mut index = 0;
    for (k, command) in commands.iter().enumerate() {
        if k % 700 == 699 {
            // A no-op entry (raft's leader writes one at each term start): replay skips it.
            index += 1;
            wal.append(1, index, &[]).expect("append no-op");
        }
        index += 1;
        let time_ns = 1_700_000_000_000_000_000 + index * 1_000;
        command_bytes.clear();
        command.encode(&mut command_bytes);
        payload.clear();
        encode_command_payload(&mut payload, time_ns, &command_bytes);
        wal.append(1, index, &payload).expect("append");
        events.clear();
        live.apply(index, time_ns, command, &mut events).expect("apply");
        if snapshot_at.contains(&index) {
            let mut state = Vec::new();
            live.encode_snapshot(&mut state);
            snapshots
                .write(index, 1, &live.state_hash(), &Membership::default(), &state)
                .expect("snapshot");
        }
    }
    let last = index;
    assert!(wal.wait_durable(last, WAIT).expect("io ok"));
    wal.close().expect("close");
    let live_hash = live.state_hash();
    live.check_invariants().expect("live invariants");

    // Log only.
    let mut from_log = Exchange::new(Config::default()).expect("exchange");
    let (wal, recovered) = Wal::open_replaying(&log_dir, quiet_options(), 1, &mut |e| {
        apply_payload(&mut from_log, e.index, e.payload, &mut events)
    })
    .expect("log-only replay");
    drop(wal);
    assert_eq!(recovered.report.entries_read, last);
    assert_eq!(from_log.last_index(), last);
    assert_eq!(from_log.state_hash(), live_hash, "log-only replay, seed {seed}");

    // Newest snapshot, then the log after it.
    let snapshot = snapshots.load_for_recovery().expect("load").expect("a snapshot");
    assert_eq!(snapshot.info.index, 33_000);
    let mut restored = Exchange::decode_snapshot(&snapshot.payload).expect("decode");
    assert_eq!(restored.state_hash(), snapshot.info.state_hash, "header hash matches the state");
    let (mut wal, recovered) =
        Wal::open_replaying(&log_dir, quiet_options(), snapshot.info.index + 1, &mut |e| {
            apply_payload(&mut restored, e.index, e.payload, &mut events)
        })
        .expect("snapshot + log replay");
    assert_eq!(restored.state_hash(), live_hash, "snapshot + log, seed {seed}");
    restored.check_invariants().expect("restored invariants");
    assert!(
        recovered.report.segments.iter().any(|s| !s.verified),
        "segments before the snapshot were skipped"
    );

    // Compact below the oldest kept snapshot (20000): recovery from either snapshot still
    // works, log-only replay from 1 no longer can.
    let keep_from = snapshots.compact_keep_from().expect("list").expect("snapshots exist");
    assert_eq!(keep_from, 20_001);
    wal.compact(keep_from);
    assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
    let first = wal.first_index().expect("segments");
    assert!(first > 1 && first <= keep_from, "first index {first}");
    wal.close().expect("close");
    let older = snapshots.load(20_000).expect("older snapshot");
    let mut from_older = Exchange::decode_snapshot(&older.payload).expect("decode");
    let (wal, _) = Wal::open_replaying(&log_dir, quiet_options(), 20_001, &mut |e| {
        apply_payload(&mut from_older, e.index, e.payload, &mut events)
    })
    .expect("older snapshot + log");
    drop(wal);
    assert_eq!(from_older.state_hash(), live_hash);
    let err =
        Wal::open_replaying(&log_dir, quiet_options(), 1, &mut |_| Ok(())).expect_err("compacted");
    assert!(matches!(err, LogError::Missing { .. }), "{err}");
}

#[test]
fn a_replay_error_names_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = Wal::open(dir.path(), quiet_options()).expect("open");
    wal.append(1, 1, b"not a command payload").expect("append");
    assert!(wal.wait_durable(1, WAIT).expect("io ok"));
    wal.close().expect("close");
    let mut exchange = Exchange::new(Config::default()).expect("exchange");
    let mut events = Vec::new();
    let err = Wal::open_replaying(dir.path(), quiet_options(), 1, &mut |e| {
        apply_payload(&mut exchange, e.index, e.payload, &mut events)
    })
    .expect_err("garbage payload");
    assert!(matches!(err, LogError::Replay { index: 1, .. }), "{err}");
}

/// Writes `count` real commands (indexes 1..=count) and returns the live exchange.
fn write_commands(log_dir: &std::path::Path, count: usize, seed: u64) -> Exchange {
    let mut rng = Rng::new(seed);
    let (mut wal, _) = Wal::open(log_dir, quiet_options()).expect("open");
    let mut live = Exchange::new(Config::default()).expect("exchange");
    let mut events = Vec::new();
    let mut commands = setup();
    commands.extend((0..count.saturating_sub(commands.len())).map(|_| random_command(&mut rng)));
    let (mut payload, mut bytes) = (Vec::new(), Vec::new());
    for (k, command) in commands.iter().enumerate() {
        let index = k as u64 + 1;
        bytes.clear();
        command.encode(&mut bytes);
        payload.clear();
        encode_command_payload(&mut payload, index * 10, &bytes);
        wal.append(1, index, &payload).expect("append");
        events.clear();
        live.apply(index, index * 10, command, &mut events).expect("apply");
    }
    assert!(wal.wait_durable(commands.len() as u64, WAIT).expect("io ok"));
    wal.close().expect("close");
    live
}

#[test]
fn recover_node_restores_snapshot_then_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
    let live = write_commands(&log_dir, 500, 7);
    // Snapshot at 300 from a log-only replay up to there.
    let mut at_300 = Exchange::new(Config::default()).expect("exchange");
    let mut events = Vec::new();
    let (wal, _) = Wal::open_replaying(&log_dir, quiet_options(), 1, &mut |e| {
        if e.index > 300 {
            return Ok(());
        }
        apply_payload(&mut at_300, e.index, e.payload, &mut events)
    })
    .expect("replay");
    drop(wal);
    let mut state = Vec::new();
    at_300.encode_snapshot(&mut state);
    SnapshotStore::open(&snap_dir, 3)
        .expect("store")
        .write(300, 1, &at_300.state_hash(), &Membership::default(), &state)
        .expect("snapshot");

    let mut exchange = None;
    let mut restore = |s: &bourse_replication::snapshot::LoadedSnapshot| {
        let restored = Exchange::decode_snapshot(&s.payload).map_err(|e| e.to_string())?;
        if restored.state_hash() != s.info.state_hash {
            return Err("state hash differs from the header".into());
        }
        exchange = Some(restored);
        Ok(())
    };
    let mut replayed = Vec::new();
    let mut replay = |e: bourse_replication::EntryRef<'_>| {
        replayed.push((e.index, e.payload.to_vec()));
        Ok(())
    };
    let node = bourse_replication::recover_node(
        &log_dir,
        &snap_dir,
        3,
        quiet_options(),
        &mut restore,
        &mut replay,
    )
    .expect("recover");
    assert_eq!((node.snapshot_index, node.snapshot_term), (300, 1));
    assert_eq!(node.wal.next_index(), 501);
    let mut exchange = exchange.expect("restored");
    for (index, payload) in &replayed {
        apply_payload(&mut exchange, *index, payload, &mut events).expect("apply");
    }
    assert_eq!(replayed.first().map(|e| e.0), Some(301));
    assert_eq!(exchange.state_hash(), live.state_hash());
}

#[test]
fn a_snapshot_newer_than_the_log_restarts_the_log_after_it() {
    // Memory mode: the snapshot at 400 reached the disk, the log's tail after 250 did not.
    let dir = tempfile::tempdir().expect("tempdir");
    let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
    let live = write_commands(&log_dir, 400, 11);
    let mut state = Vec::new();
    live.encode_snapshot(&mut state);
    SnapshotStore::open(&snap_dir, 3)
        .expect("store")
        .write(400, 1, &live.state_hash(), &Membership::default(), &state)
        .expect("snapshot");
    let (mut wal, _) = Wal::open(&log_dir, quiet_options()).expect("open");
    wal.truncate(251, 1).expect("simulate the lost tail");
    assert!(wal.wait_synced(wal.sync_point(), WAIT).expect("io ok"));
    wal.close().expect("close");

    let node = bourse_replication::recover_node(
        &log_dir,
        &snap_dir,
        3,
        quiet_options(),
        &mut |_| Ok(()),
        &mut |e| Err(format!("nothing after the snapshot should replay, got {}", e.index)),
    )
    .expect("recover");
    let mut wal = node.wal;
    assert_eq!(wal.next_index(), 401);
    wal.append(1, 401, b"").expect("appends continue after the snapshot");
    assert!(wal.wait_durable(401, WAIT).expect("io ok"));
    wal.close().expect("close");
    let (_, recovered) = Wal::open(&log_dir, quiet_options()).expect("reopen");
    assert_eq!(recovered.report.first_index(), Some(401));
    assert_eq!(recovered.next_index(), 402);
}

#[test]
fn a_damaged_newest_snapshot_stops_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
    write_commands(&log_dir, 50, 3);
    let store = SnapshotStore::open(&snap_dir, 3).expect("store");
    let info = store.write(50, 1, &[0; 32], &Membership::default(), &[1, 2, 3, 4]).expect("write");
    let mut bytes = std::fs::read(&info.path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&info.path, bytes).expect("damage");
    let err = bourse_replication::recover_node(
        &log_dir,
        &snap_dir,
        3,
        quiet_options(),
        &mut |_| Ok(()),
        &mut |_| Ok(()),
    )
    .expect_err("damaged snapshot");
    let message = err.to_string();
    assert!(
        message.contains(&info.path.display().to_string()) && message.contains("refuses to start"),
        "{message}"
    );
}
