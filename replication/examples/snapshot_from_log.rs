//! Development helper: replays a command log up to an index with the engine and writes a
//! snapshot of that state, so `bourse-log rebuild --snapshot-dir` and `bourse-log
//! snapshot` can be tried on real files.
//!
//! ```text
//! cargo run --release -p bourse-replication --example snapshot_from_log -- <log dir> <snapshot dir> <index>
//! ```

use std::path::PathBuf;

use bourse_engine::{Command, Config, Exchange};
use bourse_replication::scan::{scan_log, ScanOptions};
use bourse_replication::snapshot::SnapshotStore;
use bourse_replication::{decode_command_payload, CommandPayload, Membership};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [log_dir, snapshot_dir, index] = args.as_slice() else {
        eprintln!("usage: snapshot_from_log <log dir> <snapshot dir> <index>");
        std::process::exit(2);
    };
    let Ok(target) = index.parse::<u64>() else {
        eprintln!("snapshot_from_log: index must be a number");
        std::process::exit(2);
    };
    let mut exchange = Exchange::new(Config::default()).expect("default config is valid");
    let mut events = Vec::new();
    let mut term = 0;
    let result = scan_log(
        &PathBuf::from(log_dir),
        &ScanOptions::default(),
        &mut |e| {
            if e.index > target {
                return Ok(());
            }
            term = e.term;
            match decode_command_payload(e.payload).map_err(|err| err.to_string())? {
                CommandPayload::NoOp => Ok(()),
                CommandPayload::Command { time_ns, command_bytes } => {
                    let command = Command::decode(command_bytes).map_err(|err| err.to_string())?;
                    events.clear();
                    exchange
                        .apply(e.index, time_ns, &command, &mut events)
                        .map_err(|err| err.to_string())
                }
            }
        },
        &mut |_| {},
    );
    if let Err(e) = result {
        eprintln!("snapshot_from_log: {e}");
        std::process::exit(1);
    }
    let store = SnapshotStore::open(&PathBuf::from(snapshot_dir), 3).expect("snapshot dir");
    let mut payload = Vec::new();
    // This is the only part a shard core pays when it snapshots; the write happens on
    // the SnapshotWriter thread.
    let encode_started = std::time::Instant::now();
    exchange.encode_snapshot(&mut payload);
    let encode = encode_started.elapsed();
    let orders: usize = exchange.accounts().iter().map(|&a| exchange.open_orders(a).len()).sum();
    println!(
        "encode_snapshot: {} bytes, {orders} open orders, {:.3} ms",
        payload.len(),
        encode.as_secs_f64() * 1e3
    );
    let info = store
        .write(
            exchange.last_index(),
            term,
            &exchange.state_hash(),
            &Membership::default(),
            &payload,
        )
        .expect("write snapshot");
    println!("wrote {} (index {}, {} bytes)", info.path.display(), info.index, payload.len());
}
