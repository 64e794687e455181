//! bourse-perf: the benchmark tools and the machinery they share.
//!
//! - [`alloc`]: a counting global allocator (allocations per operation).
//! - [`driver`]: open-loop (coordinated-omission corrected) and max-throughput drivers
//!   recording into HDR histograms.
//! - [`report`]: the percentile table and the `--json` summary record.
//! - [`hgrm`]: the `.hgrm` percentile-distribution format (writer and reader).
//! - [`plot`]: SVG percentile plots of one or more named series.
//! - [`cli`]: the flags every tool shares.
//! - [`rng`]: the workload generators' seeded random numbers.
//! - [`sched`]: how much the OS scheduler took the CPU from the bench thread.
//! - [`harness`]: an engine with its log index and event buffer, for the engine benches.
//! - [`workload`]: exchange-core's order mix, generated from a seed against a shadow
//!   engine (`engine-bench`, `recovery-bench`, `wal-bench`).
//! - [`durability`]: WAL appends, scratch directories and entry payloads for the
//!   durability benches.
//! - [`load`]: the network load generator of `bourse-load` (and the `tcp-echo` server).
//!
//! The tools live in `src/bin/`; `README.md` says how to run them and what each number
//! means. Every tool runs on one thread, the thread that calls it.

pub mod alloc;
pub mod cli;
pub mod driver;
pub mod durability;
pub mod harness;
pub use bourse_net::hgrm;
pub mod load;
pub mod plot;
pub mod report;
pub mod rng;
pub mod sched;
pub mod workload;

pub use bourse_net::hgrm::create_parent_dir;

/// A fresh scratch directory for one test.
#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bourse-perf-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}
