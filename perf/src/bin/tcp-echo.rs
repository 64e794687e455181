//! tcp-echo: the bare TCP round-trip baseline for `bourse-load`.
//!
//! `tcp-echo server --listen ADDR [--cpu N]` echoes every byte it receives, on the same
//! runtime as the bourse net core (one monoio io_uring thread, optionally pinned,
//! `TCP_NODELAY`). The client side is in `bourse-load` (`--echo ADDR`, or
//! `--spawn-echo PATH` to start this binary on a free port), which paces echo messages
//! exactly as it paces orders, so the two round trips compare like with like. It prints
//! `tcp-echo: listening on ADDR` on stderr once it accepts connections, and runs until it
//! is killed (SIGTERM or SIGINT end it; it holds no state).

use std::net::SocketAddr;
use std::process::ExitCode;

use bourse_perf::load::echo_server;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "tcp-echo",
    about = "TCP echo server: the round-trip baseline for bourse-load"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Echo every connection's bytes back to it.
    Server {
        /// Where to listen (port 0: any free port; the chosen one is printed).
        #[arg(long, default_value = "127.0.0.1:7401")]
        listen: SocketAddr,
        /// Pin the server's thread to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
    },
}

fn main() -> ExitCode {
    let Command::Server { listen, cpu } = Cli::parse().command;
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tcp-echo: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("tcp-echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pinned = cpu.map_or("not pinned".to_string(), |c| format!("pinned to cpu {c}"));
    // Said before the runtime starts; connections wait in the listen backlog until then.
    eprintln!("tcp-echo: listening on {local} ({pinned})");
    match echo_server::serve(listener, cpu) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp-echo: {e}");
            ExitCode::FAILURE
        }
    }
}
