//! `bourse-cli`: trade on and administer a running bourse exchange from a shell.
//!
//! Every command logs on (`--key`, default 200 = the demo's alice; admin commands default
//! to key 1; the secret from `--secret`, `--secret-file` or `BOURSE_SECRET`, else the
//! demo secret of the key), fetches the exchange's reference data (assets and markets, so that prices
//! and quantities are read and shown as exact decimals), sends its request and waits for
//! the outcome, which it prints in words. Requests are followed by a `ReferenceQuery` in
//! the same write: the exchange answers queries in order with the commands, so when that
//! reply arrives every execution report the command caused has arrived before it, and
//! the CLI never guesses with a timer whether more fills are coming.
//!
//! Exit status: 0 done, 1 the exchange refused the request (the reason and its code are
//! printed), 2 bad input caught before anything was sent, 3 the exchange could not be
//! reached, refused the logon, or went away.
//!
//! Modules: `args` (the command line), `catalog` (reference data, decimals), `conn`
//! (connect, log on, request/outcome), `render` (words and tables), `commands` (one
//! function per subcommand), `stats` (latency histograms from the metrics port).

pub mod args;
pub mod catalog;
pub mod commands;
pub mod conn;
pub mod render;
pub mod stats;

use std::process::ExitCode;

use clap::Parser;

/// Why a command failed; each kind has its own exit status.
#[derive(Debug, PartialEq, Eq)]
pub enum CliError {
    /// Bad input, caught before anything was sent (exit 2).
    Input(String),
    /// The exchange refused the request, or what was asked for does not exist (exit 1).
    Refused(String),
    /// The exchange could not be reached, refused the logon, or went away (exit 3).
    Connection(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused(_) => 1,
            CliError::Input(_) => 2,
            CliError::Connection(_) => 3,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Input(m) | CliError::Connection(m) => write!(f, "error: {m}"),
            CliError::Refused(m) => write!(f, "rejected: {m}"),
        }
    }
}

/// Parses the command line, runs the command, prints the outcome; the process's exit
/// status says how it went.
pub fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
