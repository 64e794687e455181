//! bourse-net: the binary protocol of the exchange, sans-IO.
//!
//! Market makers reach the exchange over TCP with length-prefixed FlatBuffers frames; the
//! schema `net/schema/bourse.fbs` is the contract. This crate owns everything between
//! the bytes and the engine's `Command`s and `Event`s, and does no I/O of its own: no
//! sockets, no clock, no randomness. Time and the logon nonce are passed in, so every
//! behaviour is testable and reproducible, and the server (monoio, io_uring, pinned net
//! cores) only moves bytes.
//!
//! - [`frame`]: incremental frame decoder, bounded FlatBuffers verification.
//! - [`wire`]: the generated FlatBuffers types.
//! - [`protocol`]: typed client requests and server messages.
//! - [`codec`]: frames <-> typed messages, both directions (the client library reuses it).
//! - [`view`]: which engine events each account, admin or market-data subscriber sees.
//! - [`auth`]: API keys and the HMAC-SHA256 logon challenge.
//! - [`ratelimit`]: token bucket with time passed in.
//! - [`journal`]: bounded per-session journal of sequenced messages for resume.
//! - [`session`]: the per-net-core state machine of all connections and sessions.
//! - [`shard`]: the shard core: sequencer, command-log seam, engine loop.
//! - [`server`]: the `bourse` daemon: pinned net core (monoio, io_uring) + shard core.
//! - [`config`]: the daemon's TOML configuration (defaults: the demo exchange).
//! - [`durable`]: the command log on disk, snapshots (engine + report streams), recovery.
//! - [`datalock`]: one daemon per data directory (`flock` on `data_dir/LOCK`).
//! - [`port`]: one daemon per port (no SO_REUSEPORT; bound before recovery).
//! - [`metrics`], [`metrics_http`]: counters, gauges and per-hop latency histograms of the
//!   running daemon, served over HTTP (Prometheus text, `/health`, `/ready`).
//! - [`hgrm`]: the `.hgrm` percentile-distribution text format.
//!
//! See net/README.md for the protocol rules (sessions, resume, limits, errors).

/// `--version` of every binary in the workspace: the crate version and the git commit it
/// was built from (`net/build.rs`; "unknown" when built without git).
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BOURSE_COMMIT"), ")");

pub mod affinity;
pub mod audit;
pub mod auth;
pub mod client;
pub mod client_async;
pub mod codec;
pub mod config;
pub mod datalock;
pub mod durable;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod hgrm;
pub mod journal;
pub mod log;
pub mod metrics;
pub mod metrics_http;
pub mod notify;
pub mod port;
pub mod preflight;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod session;
pub mod shard;
pub mod tls;
pub mod view;
pub mod wire;
