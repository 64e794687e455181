//! A real server on loopback for integration tests: the daemon's `run_with` on an
//! ephemeral port (threads unpinned), stopped and joined at the end.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use bourse_net::client::{BlockingClient, Incoming, LogonOptions};
use bourse_net::config::Config;

use bourse_net::server::{self, ServerReport, Start};
use bourse_net::shard::MemoryLog;

pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const ADMIN: u64 = 1;
pub const MAKER: u64 = 100;
pub const ALICE: u64 = 200;
pub const BOB: u64 = 300;
pub const BTC: u32 = 1;
pub const USDT: u32 = 2;
pub const BTC_USDT: u32 = 1;

pub struct LiveServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<ServerReport>>,
}

/// The demo config on an ephemeral port, unpinned, with `edit` applied.
pub fn demo_config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::demo();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.pin = false;
    config.server.ring_entries = 4096;
    edit(&mut config);
    config
}

impl LiveServer {
    pub fn start(config: Config) -> LiveServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let engine = bourse_engine::Exchange::new(config.engine).unwrap();
            let start = Start {
                engine,
                last_time_ns: 0,
                log: MemoryLog::default(),
                bootstrap: config.bootstrap.clone(),
            };
            server::run_with(&config, start, thread_stop, |addr| tx.send(addr).unwrap())
                .expect("server runs")
        });
        let addr = rx.recv_timeout(TIMEOUT).expect("server starts");
        LiveServer { addr, stop, thread: Some(thread) }
    }

    pub fn demo() -> LiveServer {
        LiveServer::start(demo_config(|_| {}))
    }

    pub fn connect(&self, key_id: u64) -> BlockingClient {
        BlockingClient::connect(self.addr, LogonOptions::demo(key_id), TIMEOUT).expect("logon")
    }

    pub fn connect_with(
        &self,
        options: LogonOptions,
    ) -> Result<BlockingClient, bourse_net::client::ClientError> {
        BlockingClient::connect(self.addr, options, TIMEOUT)
    }

    /// Stops the server (SIGTERM's path) and returns what it reports.
    pub fn stop(mut self) -> ServerReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("server thread")
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits for the message `pick` accepts.
pub fn expect<T>(
    client: &mut BlockingClient,
    what: &str,
    pick: impl FnMut(&Incoming) -> Option<T>,
) -> T {
    client.recv_until(TIMEOUT, pick).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}
