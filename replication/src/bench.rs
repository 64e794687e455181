//! Measurement helpers shared by the WAL benchmark and tests: the raw fsync rate of a
//! disk, measured with the same io_uring path the WAL uses (one write of `write_bytes`
//! appended to a file, linked to one fdatasync), so WAL numbers can be put next to it.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::LogError;
use crate::uring::{Ring, SyncKind, WriteOp, RING_ENTRIES_DEFAULT};

/// Most samples a raw fsync measurement keeps (bounds its memory).
pub const RAW_FSYNC_SAMPLES_MAX: usize = 1 << 20;

/// Result of `raw_fsync_rate`.
#[derive(Clone, Debug, PartialEq)]
pub struct RawFsyncStats {
    pub syncs: u64,
    pub elapsed: Duration,
    /// Latencies of single write+fdatasync chains, sorted ascending.
    pub latencies: Vec<Duration>,
}

impl RawFsyncStats {
    pub fn per_second(&self) -> f64 {
        self.syncs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q` in 0.0..=1.0 (benchmark reporting only).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        self.latencies[at]
    }
}

/// Appends `write_bytes` then fdatasyncs, repeatedly, for `duration` (at most
/// `RAW_FSYNC_SAMPLES_MAX` times), in a scratch file in `dir` that is removed after.
/// `interval` zero runs them back to back (the disk's fsync rate); otherwise one starts
/// every `interval`, sleeping in between, which is how paced WAL appends see the disk
/// (wake-ups included), for a like-for-like latency comparison.
pub fn raw_fsync_rate(
    dir: &Path,
    write_bytes: usize,
    duration: Duration,
    interval: Duration,
) -> Result<RawFsyncStats, LogError> {
    let path = dir.join("raw-fsync-probe.tmp");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io("create", &path, e))?;
    let mut ring = Ring::new(RING_ENTRIES_DEFAULT)?;
    let block = vec![0x5au8; write_bytes];
    let fd = file.as_raw_fd();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut offset = 0u64;
    while started.elapsed() < duration && latencies.len() < RAW_FSYNC_SAMPLES_MAX {
        let due = started + interval * latencies.len() as u32;
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        let t0 = Instant::now();
        let write = WriteOp { fd, offset, bytes: &block };
        ring.write_and_sync(&[write], &[(fd, SyncKind::Data)])
            .map_err(|e| LogError::io("write and fsync", &path, e))?;
        latencies.push(t0.elapsed());
        offset += write_bytes as u64;
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
    latencies.sort_unstable();
    Ok(RawFsyncStats { syncs: latencies.len() as u64, elapsed, latencies })
}
