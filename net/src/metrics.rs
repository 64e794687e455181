//! Metrics of the running daemon: counters, gauges and per-hop latency histograms.
//!
//! Who writes what, and how the metrics thread reads it without a lock:
//! - Counters and gauges are atomics in [`Metrics`], each written by ONE thread (the net
//!   core, the shard core, or the WAL's io thread through [`WalMonitor`]). Single-writer
//!   counters are bumped with a plain load + store ([`bump`]), no locked instruction.
//!   The net core copies the gateway's own counters (`GatewayStats`) into them on every
//!   timer tick (50 ms).
//! - Latency histograms are recorded per thread into that thread's own
//!   [`HopRecorder`] (plain `hdrhistogram::Histogram`s, no sharing). About every
//!   [`PUBLISH_INTERVAL_NS`] the owner swaps its set for an empty spare and hands the full
//!   one over a bounded SPSC ring; the metrics thread adds it into the totals, resets it
//!   and sends it back as the next spare. No lock, no allocation after start-up; if no
//!   spare is back yet the owner keeps recording into the set it has (nothing is lost).
//!
//! Hops of an order (every time is the wall clock, `now_ns()`, so the sequencer's own
//! stamp is reused and no extra clock is read on the shard core for it):
//! - `read_to_ring`: net core, socket read returned -> request pushed into the request
//!   ring (decode, auth checks, rate limit, and any wait in the backlog).
//! - `ring_to_sequenced`: request pushed -> stamped by the sequencer (ring wait).
//! - `sequenced_to_committed`: stamped -> the shard sees its log entry committed
//!   (memory: at once; disk: the group fsync).
//! - `apply`: `Exchange::apply` of that command.
//! - `apply_to_write`: applied -> the socket write that carries its first report
//!   completed (output ring, gateway encoding, write queue).
//! - `wal_sync`: one WAL batch's write + fdatasync (WAL io thread).
//! - `snapshot_stall`: the shard core's copy of the engine for a snapshot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bourse_engine::{CommandKind, EventKind};
use bourse_replication::WalMonitor;
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// A hop of an order through the daemon (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    ReadToRing = 0,
    RingToSequenced = 1,
    SequencedToCommitted = 2,
    Apply = 3,
    ApplyToWrite = 4,
    WalSync = 5,
    SnapshotStall = 6,
}

/// Number of hops.
pub const HOPS_COUNT: usize = 7;

pub const HOPS: [Hop; HOPS_COUNT] = [
    Hop::ReadToRing,
    Hop::RingToSequenced,
    Hop::SequencedToCommitted,
    Hop::Apply,
    Hop::ApplyToWrite,
    Hop::WalSync,
    Hop::SnapshotStall,
];

impl Hop {
    /// Its name in metric labels, `/histograms` tags and `.hgrm` file names.
    pub fn name(self) -> &'static str {
        match self {
            Hop::ReadToRing => "read_to_ring",
            Hop::RingToSequenced => "ring_to_sequenced",
            Hop::SequencedToCommitted => "sequenced_to_committed",
            Hop::Apply => "apply",
            Hop::ApplyToWrite => "apply_to_write",
            Hop::WalSync => "wal_sync",
            Hop::SnapshotStall => "snapshot_stall",
        }
    }

    pub fn from_name(name: &str) -> Option<Hop> {
        HOPS.into_iter().find(|h| h.name() == name)
    }
}

/// Largest latency a histogram holds; longer ones are recorded as this (60 s).
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// Significant figures of every latency histogram.
pub const LATENCY_SIGFIG: u8 = 3;
/// How often a recorder hands its histograms to the metrics thread (100 ms).
pub const PUBLISH_INTERVAL_NS: u64 = 100_000_000;
/// Empty sets a recorder may have waiting; with the one it records into and one in
/// flight this bounds each recorder's memory to four sets.
const SPARES: usize = 2;
/// Engine reject reasons are `u8` codes below this.
pub const REJECT_REASONS_MAX: usize = 64;
/// Command kinds are codes below this.
pub const COMMAND_KINDS_MAX: usize = 16;

/// An empty latency histogram (nanoseconds).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGFIG).expect("valid bounds")
}

/// One histogram per hop a recorder records (`None` for the others).
pub struct HopSet {
    hists: [Option<Histogram<u64>>; HOPS_COUNT],
}

impl HopSet {
    fn new(hops: &[Hop]) -> Box<HopSet> {
        let mut hists: [Option<Histogram<u64>>; HOPS_COUNT] = Default::default();
        for hop in hops {
            hists[*hop as usize] = Some(latency_histogram());
        }
        Box::new(HopSet { hists })
    }
}

/// Bumps a counter that only the calling thread writes: a plain load and store, which
/// costs no more than an ordinary increment (no locked instruction).
#[inline]
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// Sets a gauge (any thread may read it at any time).
#[inline]
pub fn set(gauge: &AtomicU64, value: u64) {
    gauge.store(value, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// One thread's latency recording. Owned by that thread; `Send`, never shared.
pub struct HopRecorder {
    enabled: bool,
    local: Box<HopSet>,
    full: rtrb::Producer<Box<HopSet>>,
    spares: rtrb::Consumer<Box<HopSet>>,
    published_at_ns: u64,
}

impl std::fmt::Debug for HopRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopRecorder").field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

impl HopRecorder {
    /// False when `metrics.histograms = false`: callers skip their clock reads too.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records one latency of `hop` (nanoseconds). A hop this recorder was not made
    /// for is ignored (asserted in debug builds).
    #[inline]
    pub fn record(&mut self, hop: Hop, ns: u64) {
        if !self.enabled {
            return;
        }
        let slot = self.local.hists[hop as usize].as_mut();
        debug_assert!(slot.is_some(), "{} is not recorded on this thread", hop.name());
        if let Some(hist) = slot {
            hist.saturating_record(ns);
        }
    }

    /// Hands the recorded set to the metrics thread if `PUBLISH_INTERVAL_NS` has passed
    /// and a spare is back. Cheap when not due: one comparison.
    #[inline]
    pub fn maybe_publish(&mut self, now_ns: u64) {
        if !self.enabled || now_ns.wrapping_sub(self.published_at_ns) < PUBLISH_INTERVAL_NS {
            return;
        }
        self.publish(now_ns);
    }

    #[cold]
    fn publish(&mut self, now_ns: u64) {
        self.published_at_ns = now_ns;
        let Ok(spare) = self.spares.pop() else { return };
        let full = std::mem::replace(&mut self.local, spare);
        // The ring holds every set this recorder has but the one it records into.
        let pushed = self.full.push(full);
        assert!(pushed.is_ok(), "the full ring holds every set");
    }
}

/// The metrics thread's end of one recorder.
struct RecorderLink {
    full: rtrb::Consumer<Box<HopSet>>,
    spares: rtrb::Producer<Box<HopSet>>,
}

/// Counters and gauges written by the net core (copied from the gateway each tick, or
/// counted as outputs pass through it).
#[derive(Debug)]
pub struct NetCounters {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub sessions_logged_on: AtomicU64,
    pub logons: AtomicU64,
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub session_rejects: AtomicU64,
    pub session_rejects_by_reason: [AtomicU64; crate::session::SESSION_REASON_SLOTS],
    pub closes: AtomicU64,
    pub request_ring_depth: AtomicU64,
    pub output_ring_depth: AtomicU64,
    pub backlog_depth: AtomicU64,
    pub trades: AtomicU64,
    pub commands: [AtomicU64; COMMAND_KINDS_MAX],
    pub engine_rejects: [AtomicU64; REJECT_REASONS_MAX],
}

impl Default for NetCounters {
    fn default() -> NetCounters {
        NetCounters {
            connections_accepted: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            sessions_logged_on: AtomicU64::new(0),
            logons: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            session_rejects: AtomicU64::new(0),
            session_rejects_by_reason: std::array::from_fn(|_| AtomicU64::new(0)),
            closes: AtomicU64::new(0),
            request_ring_depth: AtomicU64::new(0),
            output_ring_depth: AtomicU64::new(0),
            backlog_depth: AtomicU64::new(0),
            trades: AtomicU64::new(0),
            commands: std::array::from_fn(|_| AtomicU64::new(0)),
            engine_rejects: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl NetCounters {
    /// Counts one engine event passing through the net core.
    #[inline]
    pub fn on_event(&self, kind: &EventKind) {
        match kind {
            EventKind::Trade(_) => bump(&self.trades, 1),
            EventKind::Rejected(r) => {
                let code = (r.reason as usize).min(REJECT_REASONS_MAX - 1);
                bump(&self.engine_rejects[code], 1);
            }
            _ => {}
        }
    }

    /// Counts one applied command.
    #[inline]
    pub fn on_applied(&self, kind: CommandKind) {
        bump(&self.commands[(kind as usize).min(COMMAND_KINDS_MAX - 1)], 1);
    }
}

/// Gauges written by the shard core after each batch it applies.
#[derive(Default, Debug)]
pub struct ShardGauges {
    pub sequenced_index: AtomicU64,
    pub committed_index: AtomicU64,
    pub applied_index: AtomicU64,
    pub open_orders: AtomicU64,
    pub accounts: AtomicU64,
    pub snapshots_taken: AtomicU64,
}

/// Everything the metrics thread exports. Shared (`Arc`) by every thread that writes.
pub struct Metrics {
    started: Instant,
    histograms: bool,
    /// Recovered and accepting connections (`/ready`).
    pub ready: AtomicBool,
    pub net: NetCounters,
    pub shard: ShardGauges,
    wal: Mutex<Option<WalMonitor>>,
    /// Where the metrics thread listens, once it does.
    http_addr: OnceLock<SocketAddr>,
    /// Recorders made but not yet taken by the metrics thread (registration only, never
    /// on a hot path).
    links: Mutex<Vec<RecorderLink>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("histograms", &self.histograms).finish_non_exhaustive()
    }
}

impl Metrics {
    /// `histograms`: record per-hop latencies (`metrics.histograms`).
    pub fn new(histograms: bool) -> Arc<Metrics> {
        Arc::new(Metrics {
            started: Instant::now(),
            histograms,
            ready: AtomicBool::new(false),
            net: NetCounters::default(),
            shard: ShardGauges::default(),
            wal: Mutex::new(None),
            http_addr: OnceLock::new(),
            links: Mutex::new(Vec::new()),
        })
    }

    pub fn histograms(&self) -> bool {
        self.histograms
    }

    /// A recorder for a thread that records `hops` (allocated here, at start-up).
    pub fn recorder(&self, hops: &[Hop]) -> HopRecorder {
        let (full_tx, full_rx) = rtrb::RingBuffer::new(SPARES + 1);
        let (mut spares_tx, spares_rx) = rtrb::RingBuffer::new(SPARES + 1);
        if self.histograms {
            for _ in 0..SPARES {
                let pushed = spares_tx.push(HopSet::new(hops));
                assert!(pushed.is_ok(), "the spare ring has room for every spare");
            }
        }
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RecorderLink { full: full_rx, spares: spares_tx });
        HopRecorder {
            enabled: self.histograms,
            local: HopSet::new(if self.histograms { hops } else { &[] }),
            full: full_tx,
            spares: spares_rx,
            published_at_ns: 0,
        }
    }

    /// The WAL whose counters and durable index are exported.
    pub fn watch_wal(&self, wal: WalMonitor) {
        *self.wal.lock().unwrap_or_else(|e| e.into_inner()) = Some(wal);
    }

    /// Where `/metrics` is served (`None`: metrics off, or not started yet).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr.get().copied()
    }

    pub(crate) fn set_http_addr(&self, addr: SocketAddr) {
        let _ = self.http_addr.set(addr);
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// The metrics thread's side: merges what recorders publish into running totals.
pub struct HopTotals {
    metrics: Arc<Metrics>,
    links: Vec<RecorderLink>,
    /// Since start.
    pub totals: [Histogram<u64>; HOPS_COUNT],
    /// Since the last `take_interval` (interval logs).
    interval: [Histogram<u64>; HOPS_COUNT],
}

impl std::fmt::Debug for HopTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopTotals").field("recorders", &self.links.len()).finish_non_exhaustive()
    }
}

impl HopTotals {
    pub fn new(metrics: Arc<Metrics>) -> HopTotals {
        HopTotals {
            metrics,
            links: Vec::new(),
            totals: std::array::from_fn(|_| latency_histogram()),
            interval: std::array::from_fn(|_| latency_histogram()),
        }
    }

    /// Takes what every recorder has published since the last call.
    pub fn collect(&mut self) {
        self.links.append(&mut self.metrics.links.lock().unwrap_or_else(|e| e.into_inner()));
        for link in &mut self.links {
            while let Ok(mut set) = link.full.pop() {
                for (i, hist) in set.hists.iter_mut().enumerate() {
                    if let Some(hist) = hist {
                        // Same bounds on both sides: adding cannot fail.
                        let _ = self.totals[i].add(&*hist);
                        let _ = self.interval[i].add(&*hist);
                        hist.reset();
                    }
                }
                let returned = link.spares.push(set);
                debug_assert!(returned.is_ok(), "the spare ring has room for every spare");
            }
        }
    }

    /// The latencies recorded since the last call, per hop (then reset).
    pub fn take_interval(&mut self) -> [Histogram<u64>; HOPS_COUNT] {
        let fresh = std::array::from_fn(|_| latency_histogram());
        std::mem::replace(&mut self.interval, fresh)
    }
}

/// Percentiles exported per hop on `/metrics`.
pub const QUANTILES: [f64; 6] = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];

/// Command kind names, by code (metric labels).
fn command_name(code: usize) -> &'static str {
    const NAMES: [&str; 12] = [
        "create_asset",
        "create_market",
        "set_market_status",
        "deposit",
        "withdraw_request",
        "withdraw_complete",
        "withdraw_cancel",
        "transfer",
        "place",
        "cancel",
        "amend",
        "mass_cancel",
    ];
    NAMES.get(code).copied().unwrap_or("other")
}

/// Label pairs of one sample.
type Labels = Vec<(String, String)>;
/// One sample: metric name, help, labels, value.
type Sample<V> = (&'static str, &'static str, Labels, V);

/// A copy of every value `/metrics` shows, taken at scrape time.
#[derive(Debug)]
struct Scrape {
    counters: Vec<Sample<u64>>,
    gauges: Vec<Sample<f64>>,
}

/// Renders the Prometheus text exposition of `metrics` and the hop totals.
pub fn render(metrics: &Metrics, hops: &HopTotals) -> String {
    let scrape = scrape(metrics, hops);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

fn scrape(m: &Metrics, hops: &HopTotals) -> Scrape {
    let no = Vec::new;
    let label = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let n = &m.net;
    let mut counters = vec![
        (
            "bourse_connections_accepted",
            "TCP connections accepted",
            no(),
            get(&n.connections_accepted),
        ),
        ("bourse_logons", "successful logons", no(), get(&n.logons)),
        ("bourse_frames_in", "frames received from clients", no(), get(&n.frames_in)),
        ("bourse_bytes_in", "bytes read from client sockets", no(), get(&n.bytes_in)),
        ("bourse_bytes_out", "bytes written to client sockets", no(), get(&n.bytes_out)),
        (
            "bourse_session_rejects",
            "requests the gateway refused before the engine",
            no(),
            get(&n.session_rejects),
        ),
        ("bourse_connection_closes", "connections the gateway closed", no(), get(&n.closes)),
        ("bourse_trades", "trades", no(), get(&n.trades)),
        (
            "bourse_snapshots",
            "engine copies handed to the snapshot writer",
            no(),
            get(&m.shard.snapshots_taken),
        ),
    ];
    for (code, c) in n.commands.iter().enumerate() {
        let v = get(c);
        if v > 0 {
            counters.push((
                "bourse_commands",
                "commands applied, by kind",
                label("kind", command_name(code)),
                v,
            ));
        }
    }
    for (code, c) in n.session_rejects_by_reason.iter().enumerate() {
        let v = get(c);
        if v > 0 {
            let reason = crate::protocol::SessionReason::from_code(code as u16)
                .map_or_else(|| format!("code_{code}"), |r| format!("{r:?}"));
            counters.push((
                "bourse_session_rejects_by_reason",
                "requests the gateway refused, by reason",
                vec![("reason".to_string(), reason)],
                v,
            ));
        }
    }
    for (code, c) in n.engine_rejects.iter().enumerate() {
        let v = get(c);
        if v > 0 {
            let reason = bourse_engine::RejectReason::from_code(code as u16)
                .map_or_else(|| format!("code_{code}"), |r| format!("{r:?}"));
            counters.push((
                "bourse_engine_rejects",
                "commands the engine refused, by reason",
                vec![("reason".to_string(), reason)],
                v,
            ));
        }
    }
    let s = &m.shard;
    let mut gauges = vec![
        ("bourse_up", "1 while the process runs", no(), 1.0),
        (
            "bourse_ready",
            "1 once recovered and accepting connections",
            no(),
            if m.ready.load(Ordering::Relaxed) { 1.0 } else { 0.0 },
        ),
        (
            "bourse_uptime_seconds",
            "seconds since the process started",
            no(),
            m.uptime_secs() as f64,
        ),
        ("bourse_connections_open", "connections open now", no(), get(&n.connections_open) as f64),
        (
            "bourse_sessions_logged_on",
            "connections logged on now",
            no(),
            get(&n.sessions_logged_on) as f64,
        ),
        (
            "bourse_request_ring_depth",
            "requests in the net -> shard ring",
            no(),
            get(&n.request_ring_depth) as f64,
        ),
        (
            "bourse_output_ring_depth",
            "outputs in the shard -> net ring",
            no(),
            get(&n.output_ring_depth) as f64,
        ),
        (
            "bourse_backlog_depth",
            "requests held by the net core while the request ring is full",
            no(),
            get(&n.backlog_depth) as f64,
        ),
        ("bourse_last_index", "last log index sequenced", no(), get(&s.sequenced_index) as f64),
        (
            "bourse_committed_index",
            "last log index committed",
            no(),
            get(&s.committed_index) as f64,
        ),
        (
            "bourse_applied_index",
            "last log index applied by the engine",
            no(),
            get(&s.applied_index) as f64,
        ),
        ("bourse_open_orders", "orders resting on the books", no(), get(&s.open_orders) as f64),
        ("bourse_accounts", "accounts", no(), get(&s.accounts) as f64),
    ];
    if let Some(wal) = m.wal.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let w = wal.stats();
        counters.push(("bourse_wal_appends", "entries appended to the WAL", no(), w.appends));
        counters.push((
            "bourse_wal_batches",
            "WAL batches written (each one data fsync)",
            no(),
            w.batches,
        ));
        counters.push(("bourse_wal_fsyncs", "fsync/fdatasync calls of the WAL", no(), w.fsyncs));
        counters.push(("bourse_wal_bytes", "bytes written to WAL segments", no(), w.bytes_written));
        gauges.push((
            "bourse_durable_index",
            "last log index fsynced",
            no(),
            wal.durable_index() as f64,
        ));
        gauges.push((
            "bourse_wal_failed",
            "1 once the WAL io thread stopped on an error",
            no(),
            if wal.failed() { 1.0 } else { 0.0 },
        ));
    }
    for hop in HOPS {
        let hist = &hops.totals[hop as usize];
        counters.push((
            "bourse_hop_latency_count",
            "latencies recorded per hop",
            label("hop", hop.name()),
            hist.len(),
        ));
        for q in QUANTILES {
            let labels = vec![
                ("hop".to_string(), hop.name().to_string()),
                ("quantile".to_string(), format!("{q}")),
            ];
            let value = if hist.is_empty() { 0.0 } else { hist.value_at_quantile(q) as f64 };
            gauges.push((
                "bourse_hop_latency_nanoseconds",
                "per-hop latency percentiles since start (ns)",
                labels,
                value,
            ));
        }
    }
    Scrape { counters, gauges }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_samples(&mut encoder, &self.counters, MetricType::Counter, |v, e| {
            ConstCounter::new(*v).encode(e)
        })?;
        encode_samples(&mut encoder, &self.gauges, MetricType::Gauge, |v, e| {
            ConstGauge::new(*v).encode(e)
        })
    }
}

/// One descriptor per name, then its samples: an unlabelled one as is, labelled ones as
/// a family. Samples of one name are adjacent in `samples`.
fn encode_samples<V>(
    encoder: &mut DescriptorEncoder,
    samples: &[Sample<V>],
    kind: MetricType,
    encode: impl Fn(&V, MetricEncoder) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let mut i = 0;
    while i < samples.len() {
        let (name, help, labels, value) = &samples[i];
        let mut family = encoder.encode_descriptor(name, help, None, kind)?;
        if labels.is_empty() {
            encode(value, family)?;
            i += 1;
            continue;
        }
        while i < samples.len() && samples[i].0 == *name {
            let (_, _, labels, value) = &samples[i];
            encode(value, family.encode_family(labels)?)?;
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_latencies_reach_the_totals_and_spares_come_back() {
        let metrics = Metrics::new(true);
        let mut recorder = metrics.recorder(&[Hop::Apply, Hop::ReadToRing]);
        let mut totals = HopTotals::new(metrics.clone());
        let mut now = PUBLISH_INTERVAL_NS;
        // More rounds than there are spares: sets must be recycled.
        for round in 1..=10u64 {
            recorder.record(Hop::Apply, 1_000 * round);
            recorder.record(Hop::ReadToRing, 5);
            now += PUBLISH_INTERVAL_NS;
            recorder.maybe_publish(now);
            totals.collect();
            assert_eq!(totals.totals[Hop::Apply as usize].len(), round);
        }
        assert_eq!(totals.totals[Hop::ReadToRing as usize].len(), 10);
        assert_eq!(totals.totals[Hop::WalSync as usize].len(), 0);
        let max = totals.totals[Hop::Apply as usize].max();
        assert!((9_990..=10_010).contains(&max), "{max}");
        assert_eq!(totals.take_interval()[Hop::Apply as usize].len(), 10);
        assert_eq!(totals.take_interval()[Hop::Apply as usize].len(), 0);
    }

    #[test]
    fn nothing_is_published_before_the_interval() {
        let metrics = Metrics::new(true);
        let mut recorder = metrics.recorder(&[Hop::Apply]);
        let mut totals = HopTotals::new(metrics.clone());
        recorder.maybe_publish(PUBLISH_INTERVAL_NS);
        recorder.record(Hop::Apply, 7);
        recorder.maybe_publish(PUBLISH_INTERVAL_NS + 1);
        totals.collect();
        assert_eq!(totals.totals[Hop::Apply as usize].len(), 0);
        recorder.maybe_publish(2 * PUBLISH_INTERVAL_NS);
        totals.collect();
        assert_eq!(totals.totals[Hop::Apply as usize].len(), 1);
    }

    #[test]
    fn a_disabled_recorder_records_nothing() {
        let metrics = Metrics::new(false);
        let mut recorder = metrics.recorder(&[Hop::Apply]);
        assert!(!recorder.enabled());
        recorder.record(Hop::Apply, 7);
        recorder.maybe_publish(10 * PUBLISH_INTERVAL_NS);
        let mut totals = HopTotals::new(metrics);
        totals.collect();
        assert_eq!(totals.totals[Hop::Apply as usize].len(), 0);
    }

    #[test]
    fn exposition_has_counters_gauges_labels_and_hop_percentiles() {
        let metrics = Metrics::new(true);
        bump(&metrics.net.trades, 3);
        metrics.net.on_applied(CommandKind::Place);
        metrics.net.on_applied(CommandKind::Place);
        metrics.net.on_applied(CommandKind::Cancel);
        bump(
            &metrics.net.engine_rejects[bourse_engine::RejectReason::InsufficientFunds as usize],
            4,
        );
        set(&metrics.shard.open_orders, 12);
        let rate_limited = crate::protocol::SessionReason::RateLimited as usize;
        bump(&metrics.net.session_rejects_by_reason[rate_limited], 2);
        metrics.ready.store(true, Ordering::Relaxed);
        let mut recorder = metrics.recorder(&[Hop::Apply]);
        for v in 1..=100 {
            recorder.record(Hop::Apply, v * 1000);
        }
        recorder.maybe_publish(PUBLISH_INTERVAL_NS);
        let mut totals = HopTotals::new(metrics.clone());
        totals.collect();
        let text = render(&metrics, &totals);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("# TYPE bourse_trades counter"), "{text}");
        assert!(has("bourse_trades_total 3"), "{text}");
        assert!(has("bourse_commands_total{kind=\"place\"} 2"), "{text}");
        assert!(has("bourse_commands_total{kind=\"cancel\"} 1"), "{text}");
        assert!(has("bourse_engine_rejects_total{reason=\"InsufficientFunds\"} 4"), "{text}");
        assert!(has("bourse_open_orders 12.0"), "{text}");
        assert!(has("bourse_session_rejects_by_reason_total{reason=\"RateLimited\"} 2"), "{text}");
        assert!(has("bourse_ready 1.0"), "{text}");
        assert!(has("bourse_hop_latency_count_total{hop=\"apply\"} 100"), "{text}");
        let p50 = text
            .lines()
            .find(|l| {
                l.starts_with("bourse_hop_latency_nanoseconds{hop=\"apply\",quantile=\"0.5\"}")
            })
            .expect("apply p50");
        let value: f64 = p50.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((49_000.0..=51_000.0).contains(&value), "{p50}");
        // Every descriptor appears once (a family's samples follow their one header).
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let n = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), n, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
