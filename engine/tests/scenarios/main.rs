//! Black-box scenario tests of `bourse_engine::Exchange`, through its public API only.
//!
//! Every expected number is worked out by hand in a comment next to the assertion, from
//! the rules in `engine/README.md` (the semantics contract). One test binary with modules
//! instead of one per file: each extra binary would link the engine again.
//!
//! Markets used throughout (see `support`):
//! - BTC/USDT (`BTC_USDT`): BTC scale 8, USDT scale 6, tick 10_000, lot 10_000, so
//!   qptl = 10_000 * 10_000 / 10^8 = 1 and `notional = ticks * lots` micro-USDT; no fees.
//! - ETH/USDT (`ETH_USDT`): ETH scale 8, tick 10_000, lot 1_000_000 (0.01 ETH), so
//!   qptl = 10^10 / 10^8 = 100 and `notional = ticks * lots * 100`; maker 10 bps, taker
//!   25 bps, min notional 10_000.

mod support;

/// The fuzz targets' checks, shared with `engine/fuzz` so the stable smoke test runs the
/// very code libFuzzer runs. Items only the fuzz crate uses would warn here.
#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_harness;

mod amend;
mod cancel;
mod codec;
mod fees;
mod fuzz_smoke;
mod ledger;
mod limits;
mod orders;
mod rejects;
mod state;
mod stp;
