//! What `bourse-load` prints and writes: percentile tables, the ratios against the TCP echo
//! baseline, the mix and rejects, and the `.hgrm` / JSON / SVG files, all through the
//! shared `report`, `hgrm` and `plot` modules so the files match the engine benches'.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::clock::PacerReport;
use super::echo::EchoOutcome;
use super::orders::OrderOutcome;
use super::stats::{Kind, Stats};
use crate::hgrm;
use crate::plot::{self, Series};
use crate::report::{format_ns, write_table, Percentiles, Summary};
use crate::sched::{self, SchedCounts};

/// Targets of the issue, as ratios of order-to-ack to the TCP echo round trip.
pub const TARGET_P50_RATIO: f64 = 1.2;
pub const TARGET_P99_RATIO: f64 = 1.5;

/// `order / echo`, when the echo is known.
pub fn ratio(order_ns: u64, echo_ns: u64) -> Option<f64> {
    (echo_ns > 0 && order_ns > 0).then(|| order_ns as f64 / echo_ns as f64)
}

/// The percentile table of one histogram, as text.
pub fn table(title: &str, hist: &Histogram<u64>) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_table(&mut out, title, &Percentiles::of(hist));
    String::from_utf8_lossy(&out).into_owned()
}

/// Requests per second answered: measured answers over the time from the start of the
/// window to the last of them.
pub fn achieved_per_s(stats: &Stats) -> f64 {
    let span_ns = stats.last_ack_ns.saturating_sub(stats.window.from_ns);
    if span_ns == 0 {
        return 0.0;
    }
    stats.acked as f64 * 1e9 / span_ns as f64
}

/// Where order-to-ack time goes: before and after the sequencer stamped the request.
pub fn split_text(stats: &Stats) -> String {
    if stats.inbound.is_empty() {
        return String::new();
    }
    let mut out = String::from("order-to-ack split at the sequencer's timestamp:\n");
    for (name, hist) in [
        ("due -> sequenced (client send, loopback, net core read, request ring)", &stats.inbound),
        (
            "sequenced -> received (apply, output ring, net core write, loopback, client read)",
            &stats.outbound,
        ),
    ] {
        let p = Percentiles::of(hist);
        let _ = writeln!(
            out,
            "  {name}: p50 {}, p99 {}, p99.9 {}, max {}",
            format_ns(p.p50_ns),
            format_ns(p.p99_ns),
            format_ns(p.p999_ns),
            format_ns(p.max_ns)
        );
    }
    out
}

/// One line per request kind: count, share, p50, p99, p99.9, max of its ack latency.
pub fn kinds_table(stats: &Stats) -> String {
    let total = stats.sent_measured().max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<10} {:>10} {:>7} {:>11} {:>11} {:>11} {:>11}",
        "kind", "sent", "share", "ack p50", "ack p99", "ack p99.9", "ack max"
    );
    for kind in Kind::ALL {
        let sent = stats.sent[kind.index()];
        let p = Percentiles::of(&stats.ack_by_kind[kind.index()]);
        let _ = writeln!(
            out,
            "  {:<10} {:>10} {:>6.1}% {:>11} {:>11} {:>11} {:>11}",
            kind.name(),
            sent,
            100.0 * sent as f64 / total as f64,
            format_ns(p.p50_ns),
            format_ns(p.p99_ns),
            format_ns(p.p999_ns),
            format_ns(p.max_ns)
        );
    }
    out
}

/// Everything about the order phase after the tables: throughput, mix outcome, rejects.
pub fn orders_text(outcome: &OrderOutcome, offered_per_s: Option<u64>) -> String {
    let s = &outcome.stats;
    let mut out = String::new();
    let achieved = achieved_per_s(s);
    match offered_per_s {
        Some(rate) => {
            let _ = writeln!(
                out,
                "throughput: offered {rate} requests/s, achieved {achieved:.0}/s ({:.1}%)",
                100.0 * achieved / rate as f64
            );
        }
        None => {
            let _ = writeln!(out, "throughput: {achieved:.0} requests/s answered (max mode)");
        }
    }
    let _ = writeln!(
        out,
        "requests: {} measured ({} with warm-up), {} answered, {} rejected ({:.3}%), {} unanswered",
        s.sent_measured(),
        s.sent_all,
        s.acked,
        s.rejected,
        reject_pct(s),
        outcome.unanswered
    );
    let crosses = s.crosses_measured();
    let _ = writeln!(
        out,
        "crossing orders: {crosses} measured, {} filled ({:.1}%); trades seen {} as taker, {} as maker",
        s.crosses_filled,
        100.0 * s.crosses_filled as f64 / crosses.max(1) as f64,
        s.trades_taker,
        s.trades_maker
    );
    let _ = writeln!(
        out,
        "done reports: {} filled, {} cancelled, {} expired, {} self-trade prevented; {} server messages, {:.2} per request",
        s.done[0],
        s.done[1],
        s.done[2],
        s.done[3],
        s.messages,
        s.messages as f64 / s.sent_all.max(1) as f64
    );
    let reasons = s.rejects_by_reason();
    if reasons.is_empty() {
        let _ = writeln!(out, "rejects by reason: none");
    } else {
        let _ = writeln!(out, "rejects by reason:");
        for (reason, n) in reasons {
            let _ = writeln!(out, "  {reason:<32} {n:>10}");
        }
    }
    if s.unmatched > 0 || s.overwritten > 0 {
        let _ = writeln!(
            out,
            "unmatched answers: {}; requests forgotten (in-flight ring wrapped): {}",
            s.unmatched, s.overwritten
        );
    }
    out
}

/// Rejected share of the measured answers, in percent.
pub fn reject_pct(stats: &Stats) -> f64 {
    100.0 * stats.rejected as f64 / stats.acked.max(1) as f64
}

/// The load generator's own punctuality and the scheduler line.
pub fn pacer_text(
    pacer: Option<&PacerReport>,
    sched: Option<SchedCounts>,
    span: Duration,
) -> String {
    let mut out = String::new();
    if let Some(pacer) = pacer.filter(|p| !p.lateness.is_empty()) {
        let p = Percentiles::of(&pacer.lateness);
        let _ = writeln!(
            out,
            "pacer: {} requests handed to their connection after their due time by p50 {}, p99 {}, p99.9 {}, max {}; {} timer waits",
            pacer.started,
            format_ns(p.p50_ns),
            format_ns(p.p99_ns),
            format_ns(p.p999_ns),
            format_ns(p.max_ns),
            pacer.timer_waits
        );
    }
    let _ = writeln!(out, "{}", sched::describe(sched, span));
    out
}

/// The ratio lines and whether both targets are met (`None` without an echo baseline).
pub fn ratios_text(ack: &Histogram<u64>, echo: &Histogram<u64>) -> (String, Option<bool>) {
    let (a, e) = (Percentiles::of(ack), Percentiles::of(echo));
    let (Some(p50), Some(p99)) = (ratio(a.p50_ns, e.p50_ns), ratio(a.p99_ns, e.p99_ns)) else {
        return ("ratios: no echo baseline\n".to_string(), None);
    };
    let verdict = |r: f64, target: f64| if r <= target { "met" } else { "MISSED" };
    let text = format!(
        "order-to-ack / tcp echo: p50 {} / {} = {p50:.2}x (target <= {TARGET_P50_RATIO}x: {}), p99 {} / {} = {p99:.2}x (target <= {TARGET_P99_RATIO}x: {})\n",
        format_ns(a.p50_ns),
        format_ns(e.p50_ns),
        verdict(p50, TARGET_P50_RATIO),
        format_ns(a.p99_ns),
        format_ns(e.p99_ns),
        verdict(p99, TARGET_P99_RATIO),
    );
    (text, Some(p50 <= TARGET_P50_RATIO && p99 <= TARGET_P99_RATIO))
}

/// The JSON records: order-to-ack, order-to-fill, tcp echo, then ack latency per kind.
pub fn summaries(
    label: &str,
    orders: Option<&OrderOutcome>,
    echo: Option<&EchoOutcome>,
) -> Vec<Summary> {
    let mut out = Vec::new();
    let name = |what: &str| format!("bourse-load/{what}/{label}");
    if let Some(o) = orders {
        let s = &o.stats;
        let ops = s.ack.len();
        let allocs_per_op = o.allocs.allocs as f64 / ops.max(1) as f64;
        let achieved = achieved_per_s(s);
        out.push(Summary::new(
            &name("order-to-ack"),
            ops,
            achieved,
            &Percentiles::of(&s.ack),
            allocs_per_op,
        ));
        let fills_per_s = s.fill.len() as f64 / o.span.as_secs_f64().max(1e-9);
        out.push(Summary::new(
            &name("order-to-fill"),
            s.fill.len(),
            fills_per_s,
            &Percentiles::of(&s.fill),
            allocs_per_op,
        ));
        if let Some(e) = echo {
            push_echo(&mut out, &name("tcp-echo"), e);
        }
        for (what, hist) in [("ack-inbound", &s.inbound), ("ack-outbound", &s.outbound)] {
            let per_s = hist.len() as f64 / o.span.as_secs_f64().max(1e-9);
            out.push(Summary::new(
                &name(what),
                hist.len(),
                per_s,
                &Percentiles::of(hist),
                allocs_per_op,
            ));
        }
        for kind in Kind::ALL {
            let hist = &s.ack_by_kind[kind.index()];
            let per_s = hist.len() as f64 / o.span.as_secs_f64().max(1e-9);
            out.push(Summary::new(
                &name(&format!("ack-{}", kind.name())),
                hist.len(),
                per_s,
                &Percentiles::of(hist),
                allocs_per_op,
            ));
        }
    } else if let Some(e) = echo {
        push_echo(&mut out, &name("tcp-echo"), e);
    }
    out
}

fn push_echo(out: &mut Vec<Summary>, name: &str, e: &EchoOutcome) {
    let ops = e.rtt.len();
    let per_s = ops as f64 / e.span.as_secs_f64().max(1e-9);
    let allocs_per_op = e.allocs.allocs as f64 / ops.max(1) as f64;
    out.push(Summary::new(name, ops, per_s, &Percentiles::of(&e.rtt), allocs_per_op));
}

/// Writes one `.hgrm` per histogram and the SVG plot; returns the paths written.
pub fn write_files(
    dir: &Path,
    stem: &str,
    svg: Option<&Path>,
    title: &str,
    orders: Option<&OrderOutcome>,
    echo: Option<&EchoOutcome>,
) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut series = Vec::new();
    let mut curves: Vec<(&str, &Histogram<u64>)> = Vec::new();
    if let Some(o) = orders {
        curves.push(("order-to-ack", &o.stats.ack));
        curves.push(("order-to-fill", &o.stats.fill));
    }
    if let Some(e) = echo {
        curves.push(("tcp-echo", &e.rtt));
    }
    for (name, hist) in curves {
        let path = dir.join(format!("{stem}-{name}.us.hgrm"));
        hgrm::write_file(&path, &format!("{title} {name}"), hist)?;
        written.push(path);
        if !hist.is_empty() {
            series.push(Series::from_histogram(name, hist));
        }
    }
    let svg_path = svg.map_or_else(|| dir.join(format!("{stem}.svg")), Path::to_path_buf);
    plot::write_svg(&svg_path, title, &series)?;
    written.push(svg_path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{latency_histogram, record_ns};

    #[test]
    fn ratios_compare_like_percentiles_and_judge_the_targets() {
        let mut ack = latency_histogram();
        let mut echo = latency_histogram();
        for i in 0..1000u64 {
            record_ns(&mut ack, 90_000 + i);
            record_ns(&mut echo, 80_000 + i);
        }
        let (text, met) = ratios_text(&ack, &echo);
        assert_eq!(met, Some(true), "{text}");
        assert!(text.contains("1.12x"), "{text}");
        record_ns(&mut ack, 10_000_000);
        for _ in 0..100 {
            record_ns(&mut ack, 500_000);
        }
        let (text, met) = ratios_text(&ack, &echo);
        assert_eq!(met, Some(false), "{text}");
        assert!(text.contains("MISSED"));
        assert_eq!(ratios_text(&ack, &latency_histogram()).1, None);
        assert_eq!(ratio(0, 5), None);
    }

    #[test]
    fn achieved_throughput_is_answers_over_their_span() {
        let mut stats = Stats::new(super::super::stats::Window {
            from_ns: 1_000_000_000,
            until_ns: 2_000_000_000,
        });
        for i in 0..1000 {
            stats.on_ack(
                Kind::Quote,
                1_000_000_000 + i * 1_000_000,
                1_000_100_000 + i * 1_000_000,
                None,
            );
        }
        // 1,000 answers, the last 999.1 ms after the window opened.
        let got = achieved_per_s(&stats);
        assert!((got - 1000.0 / 0.9991).abs() < 0.01, "{got}");
        assert_eq!(achieved_per_s(&Stats::default()), 0.0);
    }
}
