//! bourse-cli: place, cancel, amend and mass-cancel orders, read balances, open orders
//! and the book, stream execution reports and market data, and run admin commands
//! against a running `bourse` server. See `tools/src/cli/mod.rs` and `--help`.
//!
//! ```text
//! bourse-cli book BTC-USDT
//! bourse-cli place BTC-USDT buy 0.5 --price 50000
//! bourse-cli --key 300 place BTC-USDT sell 0.5 --price 49900 --ioc
//! bourse-cli balances
//! bourse-cli tail
//! bourse-cli admin deposit 200 USDT 1000 --tx 77
//! ```

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
