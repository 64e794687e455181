//! The metrics thread: a small HTTP/1.0 server on its own port (`metrics.listen`) that
//! also merges the per-thread latency histograms and appends the interval log.
//!
//! - `GET /health`: 200 while the process runs. `GET /ready`: 200 once recovered and
//!   accepting connections, 503 before (and while stopping). Neither needs a secret.
//! - `GET /metrics`: the Prometheus text exposition ([`crate::metrics::render`]).
//! - `GET /histograms`: every hop's histogram since start, one line per hop:
//!   `<hop> <hex of the V2-deflate serialized histogram>` (what `bourse-cli stats` reads).
//!
//! Bounds: one connection at a time, one request per connection, a request of at most
//! `REQUEST_BYTES_MAX` bytes that must arrive within `REQUEST_TIMEOUT`; the reply is
//! written with the same timeout and the connection closed. The thread runs on every CPU
//! but the shard core's (its affinity excludes it), so a scrape never steals the core
//! that spins on the order path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

use crate::metrics::{HopTotals, Metrics, HOPS};

/// Largest request head read; a longer one is answered 431 and closed.
pub const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long a client may take to send its request, and to take the reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the thread looks for a connection and merges histograms.
const POLL: Duration = Duration::from_millis(20);
/// How often histograms are merged (also on every request).
const COLLECT_EVERY: Duration = Duration::from_millis(100);
/// One interval per this in the `.hlog` file.
const HLOG_INTERVAL: Duration = Duration::from_secs(1);

/// The running metrics thread; stopped (and joined) on drop.
pub struct MetricsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `listen` and starts the thread. `avoid_cpu`: the shard core, kept out of
    /// the thread's affinity. `hlog`: append one interval per second per hop there.
    pub fn start(
        listen: SocketAddr,
        metrics: Arc<Metrics>,
        avoid_cpu: Option<usize>,
        hlog: Option<PathBuf>,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread =
            std::thread::Builder::new().name("bourse-metrics".into()).spawn(move || {
                if let Some(cpu) = avoid_cpu {
                    avoid(cpu);
                }
                serve(listener, metrics, thread_stop, hlog.as_deref());
            })?;
        Ok(MetricsServer { addr, stop, thread: Some(thread) })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Takes `cpu` out of the calling thread's affinity (keeps every other allowed CPU).
fn avoid(cpu: usize) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let Ok(mut set) = sched_getaffinity(Pid::from_raw(0)) else { return };
    let others = (0..CpuSet::count()).any(|c| c != cpu && set.is_set(c).unwrap_or(false));
    if !others || !set.is_set(cpu).unwrap_or(false) {
        return;
    }
    let _ = set.unset(cpu);
    if let Err(e) = sched_setaffinity(Pid::from_raw(0), &set) {
        eprintln!("bourse: metrics thread: cannot leave cpu {cpu}: {e}");
    }
}

fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: Arc<AtomicBool>, hlog: Option<&Path>) {
    let mut hops = HopTotals::new(metrics.clone());
    let mut collected_at = Instant::now();
    let mut hlog_file = hlog.and_then(|path| match open_hlog(path) {
        Ok(file) => Some(file),
        Err(e) => {
            eprintln!("bourse: metrics.hlog_file {}: {e}; no interval log", path.display());
            None
        }
    });
    let mut serializer = V2DeflateSerializer::new();
    // Interval start times are relative to this (the log's BaseTime).
    let (started, zero) = (SystemTime::now(), Instant::now());
    let mut builder = IntervalLogWriterBuilder::new();
    builder.with_start_time(started).with_base_time(started);
    builder.add_comment("bourse per-hop latency intervals, nanoseconds; tag = hop");
    let mut writer = match hlog_file.as_mut() {
        Some(file) => builder.begin_log_with(file, &mut serializer).ok(),
        None => None,
    };
    let mut interval_started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if collected_at.elapsed() >= COLLECT_EVERY {
            hops.collect();
            collected_at = Instant::now();
        }
        if interval_started.elapsed() >= HLOG_INTERVAL {
            let interval = hops.take_interval();
            if let Some(w) = writer.as_mut() {
                let start = interval_started.duration_since(zero);
                let len = interval_started.elapsed();
                for hop in HOPS {
                    let hist = &interval[hop as usize];
                    if !hist.is_empty() {
                        let _ = w.write_histogram(hist, start, len, Tag::new(hop.name()));
                    }
                }
            }
            interval_started = Instant::now();
        }
        match listener.accept() {
            Ok((stream, _)) => {
                hops.collect();
                collected_at = Instant::now();
                let _ = handle(stream, &metrics, &hops);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn open_hlog(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

/// Reads one request, answers it, closes.
fn handle(mut stream: TcpStream, metrics: &Metrics, hops: &HopTotals) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return respond(&mut stream, "408 Request Timeout", "text/plain", b"timeout\n");
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if head.len() > REQUEST_BYTES_MAX {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", b"");
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"GET only\n");
    }
    match path {
        "/health" => respond(&mut stream, "200 OK", "text/plain", b"ok\n"),
        "/ready" if metrics.ready.load(Ordering::Relaxed) => {
            respond(&mut stream, "200 OK", "text/plain", b"ready\n")
        }
        "/ready" => respond(&mut stream, "503 Service Unavailable", "text/plain", b"not ready\n"),
        "/metrics" => {
            let text = crate::metrics::render(metrics, hops);
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", text.as_bytes())
        }
        "/histograms" => {
            let text = histograms_text(hops);
            respond(&mut stream, "200 OK", "text/plain", text.as_bytes())
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n"),
    }
}

/// `/histograms`: one `<hop> <hex>` line per hop.
pub fn histograms_text(hops: &HopTotals) -> String {
    let mut serializer = V2DeflateSerializer::new();
    let mut text = String::new();
    let mut bytes = Vec::new();
    for hop in HOPS {
        bytes.clear();
        if serializer.serialize(&hops.totals[hop as usize], &mut bytes).is_ok() {
            text.push_str(hop.name());
            text.push(' ');
            text.push_str(&hex::encode(&bytes));
            text.push('\n');
        }
    }
    text
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }

    #[test]
    fn ready_is_503_until_set_and_requests_are_bounded() {
        let metrics = Metrics::new(true);
        let listen = "127.0.0.1:0".parse().unwrap();
        let server = MetricsServer::start(listen, metrics.clone(), None, None).unwrap();
        let addr = server.addr;
        assert!(get(addr, "GET /ready HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 503"));
        assert!(get(addr, "GET /health HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200"));
        metrics.ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "GET /ready HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200"));
        assert!(get(addr, "POST /ready HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
        // Over the bound and no end of head, all of it read by the server (no reset).
        let huge = format!("GET /metrics HTTP/1.0\r\nX: {}", "a".repeat(REQUEST_BYTES_MAX + 500));
        assert!(get(addr, &huge).starts_with("HTTP/1.0 431"));
        let metrics_text = get(addr, "GET /metrics HTTP/1.0\r\n\r\n");
        assert!(metrics_text.contains("bourse_ready 1"), "{metrics_text}");
        drop(server);
        assert!(TcpStream::connect(addr).is_err(), "the port is closed once stopped");
    }
}
