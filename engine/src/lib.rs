//! bourse-engine: the deterministic matching and ledger state machine of one shard.
//!
//! `Exchange::apply` is the only way state changes. See this crate's `README.md` for the
//! full semantics (units, rounding, validation order, matching, STP, holds).
//!
//! The engine is pure: no I/O, no clock, no randomness, no hash-map iteration
//! (`clippy.toml` in this crate forbids them). Time and log index arrive with each
//! command. An `Exchange` lives on exactly one core, the shard core, and is reached only
//! through the commands the sequencer hands it.

#![forbid(unsafe_code)]

pub mod balance_log;
pub mod command;
pub mod decimal;
pub mod event;
mod exchange;
mod index;
mod invariants;
mod ledger;
pub mod limits;
mod matching;
pub mod money;
mod price_index;
mod snapshot;
pub mod types;

pub use balance_log::BalanceLog;
pub use command::{Command, CommandKind, DecodeError, MarketSpec, PlaceOrder};
pub use event::*;
pub use exchange::{
    ApplyError, AssetView, Config, ConfigError, Depth, DepthLevel, Exchange, MarketView, OrderView,
};
pub use limits::Limits;
pub use snapshot::SnapshotError;
pub use types::*;
