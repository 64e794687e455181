//! The real `bourse` daemon as a child process, for crash and recovery tests.
//!
//! - [`TestDir`]: a directory of the test's own under cargo's `CARGO_TARGET_TMPDIR`,
//!   removed when the test passes and kept (its path printed) when it fails.
//! - [`write_config`]: the demo exchange (`bourse_net::config::DEMO_TOML`) with the
//!   listener on a port the kernel picks, threads unpinned and storage in the test's
//!   directory, written as a TOML file for `bourse --config`.
//! - [`Daemon`]: the binary cargo built for this package, its stderr captured line by
//!   line (the listening address is read from it), `kill -9`, SIGTERM, SIGUSR1, and a
//!   kill in `Drop` so that no test leaves a process behind.
//! - [`replay_log`]: the whole log of a data directory replayed from index 1 through a
//!   fresh engine with the library, read-only (a torn tail is reported, not cut), to
//!   compare with what the daemon recovered.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bourse_engine::{Command as EngineCommand, Event, Exchange, LogIndex};
use bourse_net::client::{demo_secret, BlockingClient, Incoming, LogonOptions};
use bourse_net::config::{Config, DEMO_TOML};
use bourse_net::protocol::{ClientRequest, ServerMessage, StatusReport};
use bourse_replication::format::{decode_entry, SEGMENT_HEADER_BYTES};
use bourse_replication::scan::{list_segments, scan_log, ScanOptions};
use bourse_replication::snapshot::read_snapshot_file;
use bourse_replication::{
    decode_command_payload_origin, CommandPayload, EntryOrigin, LogError, TornTail,
};

/// How long a test waits for the daemon or for an answer. Generous: the daemon is a
/// debug build and the machine's two cores are shared with the whole team.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The demo's admin key.
pub const ADMIN: u64 = 1;
/// What the daemon prints once its listener is bound (followed by the address).
const LISTENING: &str = "bourse: listening on ";

/// Daemons started by tests of one test binary run one at a time: the machine has two
/// cores, and two debug daemons at once make every timing in these tests meaningless.
static ONE_DAEMON_TEST: Mutex<()> = Mutex::new(());

/// A stderr line without its journald priority prefix (`<6>`, see `bourse_net::log`).
pub fn without_priority(line: &str) -> &str {
    match line.strip_prefix('<').and_then(|rest| rest.split_once('>')) {
        Some((level, rest)) if level.len() == 1 && level.as_bytes()[0].is_ascii_digit() => rest,
        _ => line,
    }
}

/// Serialises the daemon tests of one binary; hold the guard for the whole test.
pub fn exclusive() -> MutexGuard<'static, ()> {
    ONE_DAEMON_TEST.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A directory of the test's own, removed when the test passes.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create the test directory");
        TestDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test directory kept for inspection: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The storage settings a test runs the daemon with (everything else is the demo's).
#[derive(Clone, Debug)]
pub struct Settings {
    pub durability: &'static str,
    pub snapshot_every_entries: u64,
    pub snapshot_every_secs: u64,
    pub snapshots_keep: usize,
    /// Extra trader keys `(key id, account)`, with the demo secret of their id.
    pub extra_keys: Vec<(u64, u64)>,
}

impl Settings {
    /// `disk` durability, no snapshots but the one a clean shutdown writes.
    pub fn disk() -> Settings {
        Settings {
            durability: "disk",
            snapshot_every_entries: 0,
            snapshot_every_secs: 0,
            snapshots_keep: 3,
            extra_keys: Vec::new(),
        }
    }

    pub fn memory() -> Settings {
        Settings { durability: "memory", ..Settings::disk() }
    }
}

/// Writes `<dir>/<name>.toml`: the demo exchange with `settings`, data in `data_dir`.
pub fn write_config(dir: &TestDir, name: &str, data_dir: &Path, settings: &Settings) -> PathBuf {
    let mut file: toml::Table = DEMO_TOML.parse().expect("the demo config parses");
    let table = |file: &mut toml::Table, name: &str| -> toml::Table {
        file.get(name).and_then(|v| v.as_table()).cloned().unwrap_or_default()
    };
    let mut server = table(&mut file, "server");
    server.insert("listen".into(), "127.0.0.1:0".into());
    server.insert("pin".into(), false.into());
    server.insert("ring_entries".into(), 4096.into());
    file.insert("server".into(), server.into());
    let mut storage = table(&mut file, "storage");
    let data_dir = data_dir.to_str().expect("the test directory is UTF-8");
    storage.insert("data_dir".into(), data_dir.into());
    storage.insert("durability".into(), settings.durability.into());
    let every = |n: u64| toml::Value::Integer(i64::try_from(n).expect("fits"));
    storage.insert("snapshot_every_entries".into(), every(settings.snapshot_every_entries));
    storage.insert("snapshot_every_secs".into(), every(settings.snapshot_every_secs));
    storage.insert("snapshots_keep".into(), every(settings.snapshots_keep as u64));
    file.insert("storage".into(), storage.into());
    // Metrics on a free port too: tests run daemons in parallel (`Daemon::metrics_addr`).
    let mut metrics = table(&mut file, "metrics");
    metrics.insert("listen".into(), "127.0.0.1:0".into());
    file.insert("metrics".into(), metrics.into());
    if !settings.extra_keys.is_empty() {
        let keys = file.get_mut("keys").and_then(|v| v.as_array_mut()).expect("demo keys");
        for &(id, account) in &settings.extra_keys {
            let mut key = toml::Table::new();
            key.insert("id".into(), every(id));
            key.insert("role".into(), "trader".into());
            key.insert("account".into(), every(account));
            key.insert("secret".into(), hex::encode(demo_secret(id)).into());
            keys.push(key.into());
        }
    }
    let text = toml::to_string(&file).expect("the config serialises");
    let config = Config::from_toml(&text).expect("the test config is valid");
    assert_eq!(config.storage.data_dir.as_deref(), Some(Path::new(data_dir)));
    let path = dir.join(&format!("{name}.toml"));
    std::fs::write(&path, text).expect("write the config");
    path
}

/// The engine configuration of a config file (to replay its log the same way).
pub fn engine_config(config: &Path) -> bourse_engine::Config {
    Config::load(config).expect("the test config loads").engine
}

pub fn log_dir(data_dir: &Path) -> PathBuf {
    bourse_net::durable::log_dir(data_dir)
}

pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    bourse_net::durable::snapshot_dir(data_dir)
}

/// What the stderr reader has collected.
#[derive(Default)]
struct Stderr {
    lines: Vec<String>,
    /// The pipe closed: the daemon has exited (or closed stderr).
    closed: bool,
}

/// One run of the daemon binary.
pub struct Daemon {
    child: Child,
    pid: u32,
    /// The trading address (known once the listener is up).
    pub addr: Option<SocketAddr>,
    stderr: Arc<(Mutex<Stderr>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `bourse --config <config>` and returns without waiting for anything.
    pub fn launch(config: &Path) -> Daemon {
        Daemon::launch_env(config, &[])
    }

    /// Like `launch`, with extra environment variables (e.g. systemd's NOTIFY_SOCKET).
    pub fn launch_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bourse"))
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the bourse daemon");
        let pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new((Mutex::new(Stderr::default()), Condvar::new()));
        let shared = stderr.clone();
        let reader = std::thread::Builder::new()
            .name("daemon-stderr".into())
            .spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let (lock, ready) = &*shared;
                    lock.lock().expect("stderr lock").lines.push(line);
                    ready.notify_all();
                }
                let (lock, ready) = &*shared;
                lock.lock().expect("stderr lock").closed = true;
                ready.notify_all();
            })
            .expect("spawn the stderr reader");
        let pid = child.id();
        Daemon { child, pid, addr: None, stderr, reader: Some(reader), exit: None }
    }

    /// Starts the daemon and waits until it listens; panics (with its stderr) if it
    /// does not.
    pub fn start(config: &Path) -> Daemon {
        let mut daemon = Daemon::launch(config);
        let line = daemon.wait_for_line(TIMEOUT, |l| without_priority(l).starts_with(LISTENING));
        let Some(line) = line else {
            let status = daemon.wait_exit(Duration::from_secs(5));
            panic!(
                "the daemon did not start listening (exit: {status:?}); its stderr:\n{}",
                daemon.stderr_text()
            );
        };
        let addr =
            without_priority(&line)[LISTENING.len()..].trim().parse().expect("a socket address");
        daemon.addr = Some(addr);
        daemon
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the daemon listens")
    }

    /// Where the daemon serves `/metrics` (read from its stderr; waits for it).
    pub fn metrics_addr(&self) -> SocketAddr {
        const METRICS: &str = "bourse: metrics on http://";
        let line = self.wait_for_line(TIMEOUT, |l| l.starts_with(METRICS));
        let line =
            line.unwrap_or_else(|| panic!("no metrics address; stderr:\n{}", self.stderr_text()));
        let addr = line[METRICS.len()..].trim().trim_end_matches("/metrics");
        addr.parse().expect("a socket address")
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every stderr line so far, joined.
    pub fn stderr_text(&self) -> String {
        self.stderr.0.lock().expect("stderr lock").lines.join("\n")
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.0.lock().expect("stderr lock").lines.clone()
    }

    /// Waits for a stderr line (already printed or to come) that `accept` takes; `None`
    /// if stderr closes first or the time runs out.
    pub fn wait_for_line(
        &self,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Option<String> {
        self.wait_for_line_after(0, timeout, accept)
    }

    /// Like `wait_for_line`, looking only at lines from number `first` on.
    pub fn wait_for_line_after(
        &self,
        first: usize,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.stderr;
        let mut stderr = lock.lock().expect("stderr lock");
        let mut looked = first;
        loop {
            while looked < stderr.lines.len() {
                if accept(&stderr.lines[looked]) {
                    return Some(stderr.lines[looked].clone());
                }
                looked += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if stderr.closed || left.is_zero() {
                return None;
            }
            stderr = ready.wait_timeout(stderr, left).expect("stderr lock").0;
        }
    }

    /// Number of stderr lines so far (a mark for `wait_for_line_after`).
    pub fn stderr_len(&self) -> usize {
        self.stderr.0.lock().expect("stderr lock").lines.len()
    }

    /// Sends a signal by name ("TERM", "USR1") with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed: {status}", self.pid);
    }

    /// `kill -9`: the daemon gets no chance to flush, snapshot or say goodbye.
    pub fn kill9(&mut self) {
        // `Child::kill` sends SIGKILL.
        self.child.kill().expect("SIGKILL the daemon");
        let status = self.child.wait().expect("reap the daemon");
        assert_eq!(status.signal(), Some(9), "the daemon died of SIGKILL: {status:?}");
        self.exit = Some(status);
        self.join_reader();
    }

    /// SIGTERM, then waits for a clean exit (status 0); returns stderr.
    pub fn terminate(&mut self) -> String {
        self.signal("TERM");
        let status = self.wait_exit(TIMEOUT);
        let stderr = self.stderr_text();
        assert!(
            status.is_some_and(|s| s.success()),
            "the daemon did not stop cleanly on SIGTERM ({status:?}); its stderr:\n{stderr}"
        );
        stderr
    }

    /// Waits up to `timeout` for the daemon to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the daemon") {
                self.exit = Some(status);
                self.join_reader();
                return self.exit;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_reader();
    }
}

/// Starts the daemon on a data directory that must be refused: waits for it to exit,
/// panics if it starts listening instead. Returns the exit status and stderr.
pub fn expect_refusal(config: &Path) -> (ExitStatus, String) {
    let mut daemon = Daemon::launch(config);
    let status = daemon.wait_exit(TIMEOUT);
    let stderr = daemon.stderr_text();
    let Some(status) = status else {
        panic!("the daemon neither started nor exited in {TIMEOUT:?}; its stderr:\n{stderr}");
    };
    assert!(
        !stderr.contains(LISTENING),
        "the daemon started on a damaged data directory; its stderr:\n{stderr}"
    );
    (status, stderr)
}

/// Logs on with a demo key (a new connection to the key's stream, from now on).
pub fn connect(addr: SocketAddr, key: u64) -> BlockingClient {
    connect_with(addr, LogonOptions::demo(key)).unwrap_or_else(|e| panic!("logon {key}: {e}"))
}

pub fn connect_with(
    addr: SocketAddr,
    options: LogonOptions,
) -> Result<BlockingClient, bourse_net::client::ClientError> {
    BlockingClient::connect(addr, options, TIMEOUT)
}

/// The daemon's engine position: an admin `StatusQuery` (last index, state hash).
pub fn status(addr: SocketAddr) -> StatusReport {
    let mut admin = connect(addr, ADMIN);
    let request_id = admin.send(&ClientRequest::StatusQuery).expect("send a status query");
    admin
        .recv_until(TIMEOUT, |m| match m {
            Incoming::Msg(ServerMessage::Status(s)) if s.request_id == request_id => Some(*s),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("waiting for the status: {e}"))
}

/// One command entry of the log, decoded.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub index: LogIndex,
    pub time_ns: u64,
    /// The key (stream) and request id it came from; `None` for the server's own.
    pub origin: Option<EntryOrigin>,
    pub command: EngineCommand,
}

/// The outcome of replaying a log from index 1 with no snapshot.
pub struct Replay {
    pub engine: Exchange,
    /// Index of the last entry replayed (0: none).
    pub last_index: LogIndex,
    pub entries: u64,
    /// The log's first index (`None`: no segments); 1 unless compaction removed some.
    pub first_index: Option<LogIndex>,
    /// A torn tail the scan found (reported only: nothing is cut).
    pub torn_tail: Option<TornTail>,
}

impl Replay {
    pub fn state_hash(&self) -> [u8; 32] {
        self.engine.state_hash()
    }
}

/// The visitor's way to end a bounded replay; not an error.
const STOP: &str = "replay: reached the requested index";

/// Replays the log of `data_dir` from index 1 (no snapshot) through a fresh engine,
/// up to `to_index`, reading only: a torn tail is reported, never cut. `visit` sees
/// every entry with the events it produced.
pub fn replay_log(
    data_dir: &Path,
    engine: bourse_engine::Config,
    to_index: LogIndex,
    visit: &mut dyn FnMut(&LogEntry, &[Event]),
) -> Replay {
    let mut exchange = Exchange::new(engine).expect("engine config");
    let mut events = Vec::with_capacity(256);
    let mut entries = 0u64;
    let mut last_index = 0;
    let options = ScanOptions { from_index: 1, read_all: true, repair: false };
    let mut apply = |entry: bourse_replication::EntryRef<'_>| -> Result<(), String> {
        if entry.index > to_index {
            return Err(STOP.to_string());
        }
        let (payload, origin) =
            decode_command_payload_origin(entry.payload).map_err(|e| e.to_string())?;
        let CommandPayload::Command { time_ns, command_bytes } = payload else {
            last_index = entry.index;
            return Ok(());
        };
        let command = EngineCommand::decode(command_bytes).map_err(|e| e.to_string())?;
        events.clear();
        exchange.apply(entry.index, time_ns, &command, &mut events).map_err(|e| e.to_string())?;
        let decoded = LogEntry { index: entry.index, time_ns, origin, command };
        visit(&decoded, &events);
        entries += 1;
        last_index = entry.index;
        Ok(())
    };
    let scanned = scan_log(&log_dir(data_dir), &options, &mut apply, &mut |_| {});
    let (first_index, torn_tail) = match scanned {
        Ok(report) => (report.first_index(), report.torn_tail),
        Err(LogError::Replay { reason, .. }) if reason == STOP => (None, None),
        Err(e) => panic!("replaying the log of {} from scratch: {e}", data_dir.display()),
    };
    Replay { engine: exchange, last_index, entries, first_index, torn_tail }
}

/// A kept snapshot: its index, the state hash in its header, and the hash of the
/// engine state decoded from its payload.
#[derive(Clone, Debug)]
pub struct SnapshotCheck {
    pub path: PathBuf,
    pub index: LogIndex,
    pub header_hash: [u8; 32],
    pub engine_hash: [u8; 32],
}

/// Reads and verifies every snapshot file of `data_dir`, oldest first.
pub fn snapshots(data_dir: &Path) -> Vec<SnapshotCheck> {
    let dir = snapshot_dir(data_dir);
    let mut found = Vec::new();
    let Ok(listing) = std::fs::read_dir(&dir) else { return found };
    for item in listing {
        let path = item.expect("list snapshots").path();
        if path.extension().and_then(|e| e.to_str()) != Some("snap") {
            continue;
        }
        let loaded = read_snapshot_file(&path)
            .unwrap_or_else(|e| panic!("snapshot {} does not verify: {e}", path.display()));
        let (engine, _streams) = bourse_net::durable::split_snapshot_payload(&loaded.payload)
            .unwrap_or_else(|e| panic!("snapshot {}: {e}", path.display()));
        let engine = Exchange::decode_snapshot(engine)
            .unwrap_or_else(|e| panic!("snapshot {}: engine state: {e}", path.display()));
        engine.check_invariants().unwrap_or_else(|e| panic!("snapshot {}: {e}", path.display()));
        found.push(SnapshotCheck {
            path,
            index: loaded.info.index,
            header_hash: loaded.info.state_hash,
            engine_hash: engine.state_hash(),
        });
    }
    found.sort_by_key(|s| s.index);
    found
}

/// Where each entry of a segment file starts: `(index, byte offset, encoded length)`.
pub fn entry_offsets(segment: &Path) -> Vec<(LogIndex, u64, usize)> {
    let bytes = std::fs::read(segment).expect("read the segment");
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut found = Vec::new();
    while offset < bytes.len() {
        let (entry, used) = decode_entry(&bytes[offset..])
            .unwrap_or_else(|e| panic!("{} at {offset}: {e}", segment.display()));
        found.push((entry.index, offset as u64, used));
        offset += used;
    }
    found
}

/// The segment files of a data directory's log, oldest first.
pub fn segments(data_dir: &Path) -> Vec<PathBuf> {
    list_segments(&log_dir(data_dir))
        .expect("list the log's segments")
        .into_iter()
        .map(|s| s.path)
        .collect()
}

pub fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small seeded generator (SplitMix64): the tests' command streams and kill moments
/// come from one printed seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..high` (`high > low`).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(high > low, "empty range {low}..{high}");
        low + self.next_u64() % (high - low)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }
}

/// A seed from `env` if set (to replay a failure), otherwise from the clock; printed
/// either way.
pub fn seed_from_env(env: &str) -> u64 {
    let seed = match std::env::var(env) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{env}={text:?} is not a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    eprintln!("seed: {seed} (replay with {env}={seed})");
    seed
}
