//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bourse_replication::format::{ENTRY_BYTES_MAX, SEGMENT_HEADER_BYTES};
use bourse_replication::scan::{scan_log, ScanOptions, ScanReport};
use bourse_replication::wal::log_none;
use bourse_replication::{EntryRef, LogError, Wal, WalHandle, WalOptions};

/// Smallest segment size the options accept: a few big entries roll it over.
pub const SMALL_SEGMENT_BYTES: u64 = (SEGMENT_HEADER_BYTES + ENTRY_BYTES_MAX) as u64;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn quiet_options() -> WalOptions {
    WalOptions { log: log_none, ..WalOptions::default() }
}

pub fn small_segment_options() -> WalOptions {
    WalOptions { segment_bytes_max: SMALL_SEGMENT_BYTES, ..quiet_options() }
}

/// Deterministic payload for entry `index`, `len` bytes.
pub fn payload(index: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (index as usize * 31 + k * 7) as u8).collect()
}

/// Short payloads of varying length (1..=40 bytes).
pub fn short_payload(index: u64) -> Vec<u8> {
    payload(index, 1 + (index % 40) as usize)
}

/// Appends entries `from..=to` with `term` and short payloads.
pub fn append_range(wal: &mut WalHandle, term: u64, from: u64, to: u64) {
    for index in from..=to {
        wal.append(term, index, &short_payload(index)).expect("append");
    }
}

/// Opens, appends `1..=count` in term 1, waits until durable, closes.
pub fn write_log(dir: &Path, options: WalOptions, count: u64, len: impl Fn(u64) -> Vec<u8>) {
    let (mut wal, _) = Wal::open(dir, options).expect("open");
    for index in 1..=count {
        wal.append(1, index, &len(index)).expect("append");
    }
    assert!(wal.wait_durable(count, WAIT).expect("io ok"), "not durable in time");
    wal.close().expect("close");
}

/// (index, term, payload) of one entry.
pub type Owned = (u64, u64, Vec<u8>);

/// Every entry of the log.
pub fn read_all(dir: &Path) -> Result<(Vec<Owned>, ScanReport), LogError> {
    let mut out = Vec::new();
    let options = ScanOptions { from_index: 0, read_all: true, repair: false };
    let report = scan_log(
        dir,
        &options,
        &mut |e: EntryRef<'_>| {
            out.push((e.index, e.term, e.payload.to_vec()));
            Ok(())
        },
        &mut |_| {},
    )?;
    Ok((out, report))
}

/// Segment files of `dir`, sorted.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    paths
}

/// Byte offsets of every entry in a segment file (walks the headers).
pub fn entry_offsets(path: &Path) -> Vec<(u64, usize)> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut at = SEGMENT_HEADER_BYTES;
    let mut out = Vec::new();
    while at < bytes.len() {
        let (entry, used) =
            bourse_replication::format::decode_entry(&bytes[at..]).expect("valid entry");
        out.push((entry.index, at));
        at += used;
    }
    out
}

/// A seed from `BOURSE_SEED` or the clock, printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed =
        std::env::var("BOURSE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: seed {seed} (rerun with BOURSE_SEED={seed})");
    seed
}

/// xorshift64*: small deterministic generator for randomised tests.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
