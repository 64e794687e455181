//! `bourse-cli stats`: the daemon's per-hop latency histograms, read from its metrics
//! port (`GET /histograms`, see net/README.md "Metrics"): percentiles per hop, `.hgrm`
//! files (one per hop), and with `--watch` the latencies of each interval, optionally
//! appended to an HdrHistogram interval log (`.hlog`). Needs no key: the metrics port
//! has no secret (keep it on loopback).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use bourse_net::hgrm;
use bourse_net::metrics::{Hop, HOPS, HOPS_COUNT};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::args::StatsArgs;
use super::CliError;

/// Largest `/histograms` reply read (seven compressed histograms are a few KiB).
const REPLY_BYTES_MAX: u64 = 16 * 1024 * 1024;

type Hists = Vec<(Hop, Histogram<u64>)>;

pub fn run(args: &StatsArgs, timeout: Duration) -> Result<(), CliError> {
    let addr = resolve(&args.metrics)?;
    let first = fetch(addr, timeout)?;
    print!("{}", table("since start", &first));
    if let Some(dir) = &args.hgrm_dir {
        for (hop, hist) in &first {
            let path = dir.join(format!("{}.hgrm", hop.name()));
            hgrm::write_file(&path, &format!("bourse {}", hop.name()), hist)
                .map_err(|e| CliError::Input(format!("cannot write {}: {e}", path.display())))?;
        }
        println!("wrote {} .hgrm files (values in microseconds) to {}", first.len(), dir.display());
    }
    match args.watch {
        Some(secs) => watch(addr, timeout, first, secs, args.count, args.hlog.as_deref()),
        None => Ok(()),
    }
}

/// Every `secs` seconds: what was recorded in that interval, per hop.
fn watch(
    addr: SocketAddr,
    timeout: Duration,
    mut previous: Hists,
    secs: u64,
    count: Option<u64>,
    hlog: Option<&Path>,
) -> Result<(), CliError> {
    let mut file = match hlog {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| CliError::Input(format!("cannot open {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let mut serializer = V2DeflateSerializer::new();
    let (started, zero) = (SystemTime::now(), Instant::now());
    let mut builder = IntervalLogWriterBuilder::new();
    builder.with_start_time(started).with_base_time(started);
    builder.add_comment("bourse-cli stats --watch: per-hop latency intervals, ns; tag = hop");
    let mut writer = match file.as_mut() {
        Some(f) => Some(
            builder
                .begin_log_with(f, &mut serializer)
                .map_err(|e| CliError::Input(format!("cannot write the interval log: {e}")))?,
        ),
        None => None,
    };
    let mut intervals = 0;
    while count.is_none_or(|c| intervals < c) {
        let from = zero.elapsed();
        std::thread::sleep(Duration::from_secs(secs));
        let current = fetch(addr, timeout)?;
        let mut delta = Vec::with_capacity(HOPS_COUNT);
        for ((hop, now), (_, before)) in current.iter().zip(&previous) {
            let mut d = now.clone();
            // A daemon restarted in between has smaller totals: show them whole.
            if d.subtract(before).is_err() {
                d = now.clone();
            }
            delta.push((*hop, d));
        }
        print!("{}", table(&format!("interval {}", intervals + 1), &delta));
        if let Some(w) = writer.as_mut() {
            let len = zero.elapsed() - from;
            for (hop, hist) in &delta {
                w.write_histogram(hist, from, len, Tag::new(hop.name())).map_err(|e| {
                    CliError::Input(format!("cannot write the interval log: {e:?}"))
                })?;
            }
        }
        previous = current;
        intervals += 1;
    }
    Ok(())
}

fn resolve(text: &str) -> Result<SocketAddr, CliError> {
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| CliError::Input(format!("--metrics {text:?} is not host:port")))
}

/// `GET /histograms`: every hop's histogram since the daemon started.
pub fn fetch(addr: SocketAddr, timeout: Duration) -> Result<Hists, CliError> {
    let unreachable = |e: std::io::Error| {
        CliError::Connection(format!("metrics at {addr}: {e} (is metrics.listen this address?)"))
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    stream.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    stream.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    stream.write_all(b"GET /histograms HTTP/1.0\r\n\r\n").map_err(unreachable)?;
    let mut reply = Vec::new();
    stream.take(REPLY_BYTES_MAX).read_to_end(&mut reply).map_err(unreachable)?;
    let text = String::from_utf8_lossy(&reply);
    let bad = |why: &str| CliError::Connection(format!("metrics at {addr}: {why}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("not an HTTP reply"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(bad(&format!("GET /histograms answered {status:?}")));
    }
    let mut deserializer = Deserializer::new();
    let mut hists = Vec::with_capacity(HOPS_COUNT);
    for line in body.lines() {
        let (name, hex) = line.split_once(' ').ok_or_else(|| bad("a line is not <hop> <hex>"))?;
        let Some(hop) = Hop::from_name(name) else { continue };
        let bytes = hex::decode(hex).map_err(|_| bad("a histogram is not hex"))?;
        let hist: Histogram<u64> = deserializer
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| bad(&format!("histogram {name}: {e:?}")))?;
        hists.push((hop, hist));
    }
    hists.sort_by_key(|(hop, _)| HOPS.iter().position(|h| h == hop));
    Ok(hists)
}

/// Percentiles per hop, in microseconds.
fn table(title: &str, hists: &Hists) -> String {
    let mut out = format!(
        "{title} (microseconds)\n{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "hop", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    for (hop, h) in hists {
        let us = |q: f64| {
            if h.is_empty() {
                "-".to_string()
            } else {
                format!("{:.3}", h.value_at_quantile(q) as f64 / 1000.0)
            }
        };
        out.push_str(&format!(
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            hop.name(),
            h.len(),
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            us(0.9999),
            us(1.0)
        ));
    }
    out
}
