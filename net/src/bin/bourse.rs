//! `bourse`: the exchange daemon. With no arguments it runs the demo exchange
//! (`net/config/demo.toml`): two markets, funded demo accounts, demo API keys.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bourse_net::auth::Role;
use bourse_net::config::{Config, DEMO_TOML};
use bourse_net::preflight::{self, NewKey};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "bourse",
    about = "bourse exchange daemon (matching engine + ledger)"
)]
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
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Print a new API key (random id and secret) as the [[keys]] block to paste into the
    /// configuration.
    Keygen {
        /// "admin" (deposits, markets, halts) or "trader" (needs --account).
        #[arg(long, default_value = "admin", value_parser = ["admin", "trader"])]
        role: String,
        /// The account a trader key acts for.
        #[arg(long)]
        account: Option<u64>,
        /// The key id [default: a random one].
        #[arg(long)]
        id: Option<u64>,
    },
}

fn keygen(role: &str, account: Option<u64>, id: Option<u64>) -> ! {
    let role = match (role, account) {
        ("admin", None) => Role::Admin,
        ("trader", Some(account)) => Role::Trader { account },
        ("admin", Some(_)) => fail(2, "keygen: an admin key has no --account"),
        _ => fail(2, "keygen: a trader key needs --account <id>"),
    };
    let key = NewKey::generate(id, role).unwrap_or_else(|e| fail(1, &format!("keygen: {e}")));
    eprintln!(
        "bourse: new key {}: paste the block below into the configuration \
         (/etc/bourse/bourse.toml), then restart the daemon; give the secret to bourse-cli \
         with --secret-file or BOURSE_SECRET, never on the command line",
        key.id
    );
    print!("{}", key.toml());
    std::process::exit(0)
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("bourse: {message}");
    std::process::exit(code)
}

fn main() {
    let args = Args::parse();
    if let Some(Sub::Keygen { role, account, id }) = &args.command {
        keygen(role, *account, *id);
    }
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
    if let Err(e) = preflight::check_operable(&config) {
        fail(2, &e.to_string());
    }
    if args.check_config {
        // A warning only: run from a shell (`sudo -u bourse`), the check lacks what the
        // unit grants (CAP_IPC_LOCK, LimitMEMLOCK); the daemon itself refuses to start.
        if config.server.lock_memory {
            if let Err(e) = preflight::can_lock_memory() {
                eprintln!("bourse: warning: the daemon would not start like this: {e}");
            }
        }
        println!(
            "bourse: configuration ok ({} keys, {} bootstrap commands)",
            config.keys.len(),
            config.bootstrap.len()
        );
        return;
    }
    if config.server.lock_memory {
        if let Err(e) = preflight::lock_memory() {
            fail(2, &e);
        }
        eprintln!("bourse: memory locked (mlockall, on fault)");
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
