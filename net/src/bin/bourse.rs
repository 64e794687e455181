//! `bourse`: the exchange daemon. With no arguments it runs the demo exchange
//! (`net/config/demo.toml`): two markets, funded demo accounts, demo API keys.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bourse_net::config::{Config, DEMO_TOML};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "bourse", about = "bourse exchange daemon (matching engine + ledger)")]
struct Args {
    /// TOML configuration file (default: the built-in demo exchange).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override `server.listen`, e.g. 127.0.0.1:7400.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Print the built-in demo configuration and exit.
    #[arg(long)]
    print_demo_config: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() {
    let args = Args::parse();
    if args.print_demo_config {
        print!("{DEMO_TOML}");
        return;
    }
    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Ok(Config::demo()),
    };
    let mut config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bourse: {e}");
            std::process::exit(2);
        }
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if args.check_config {
        println!(
            "bourse: configuration ok ({} keys, {} bootstrap commands)",
            config.keys.len(),
            config.bootstrap.len()
        );
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("bourse: cannot handle signal {signal}: {e}");
            std::process::exit(1);
        }
    }
    match bourse_net::server::run(&config, stop) {
        Ok(report) if report.failure.is_some() => {
            eprintln!("bourse: stopped: {}", report.failure.unwrap_or_default());
            std::process::exit(1);
        }
        Ok(report) => {
            let hash: String =
                report.engine.state_hash().iter().map(|b| format!("{b:02x}")).collect();
            eprintln!(
                "bourse: stopped cleanly at log index {} (state hash {hash}, {} connections served)",
                report.engine.last_index(),
                report.connections_served
            );
        }
        Err(e) => {
            eprintln!("bourse: {e}");
            std::process::exit(1);
        }
    }
}
