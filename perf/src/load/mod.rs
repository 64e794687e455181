//! The network load generator behind `bourse-load`: market-maker sessions and a TCP echo
//! baseline, open loop (coordinated omission corrected) or pipelined at maximum rate, on
//! one monoio io_uring runtime thread.
//!
//! - [`clock`]: monotonic ns, the timerfd deadline timer, the open-loop pacer.
//! - [`maker`]: one market-maker session, sans-IO: what to send, what replies mean.
//! - [`stats`]: latency histograms and counters of the measurement window.
//! - [`orders`]: the order phase (sessions, reader and writer tasks, pacing, drain).
//! - [`echo`]: the TCP echo phase on the same pacer; [`echo_server`] is its server (also
//!   the whole of the `tcp-echo` binary).
//! - [`spawn`]: starting and stopping the `bourse` and `tcp-echo` child processes.
//! - [`report`]: tables, ratios, `.hgrm`, JSON and SVG output.
//!
//! A library module (`bourse_perf::load`), used by the `bourse-load` binary and, for
//! [`echo_server`] only, by `tcp-echo`; its unit tests run once, with the library's.
//! perf/README.md ("bourse-load / tcp-echo") says how to run it and what it measures.

pub mod clock;
pub mod echo;
pub mod echo_server;
pub mod maker;
pub mod orders;
pub mod report;
pub mod spawn;
pub mod stats;
