//! Latency histograms and what a bench reports about them: the percentile table printed to
//! the terminal and the `--json` summary record.
//!
//! Latencies are recorded in nanoseconds into an `hdrhistogram::Histogram<u64>` with 3
//! significant digits (a recorded value is exact to within 0.1%).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant decimal digits the latency histograms keep.
pub const HISTOGRAM_SIGFIG: u8 = 3;

/// Largest latency a histogram can hold, in ns (100 s). Larger values are clamped to it
/// (`saturating_record`), so a stalled run still reports rather than failing; a max equal
/// to this bound means "at least this".
pub const LATENCY_NS_MAX: u64 = 100_000_000_000;

/// A histogram for latencies in ns, allocated up front so recording never allocates (auto
/// resize stays off).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the constructor's rules (low >= 1, high >=
    // 2 * low, sigfig <= 5), so this cannot fail.
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, HISTOGRAM_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Records one latency, clamped into the histogram's range.
#[inline]
pub fn record_ns(hist: &mut Histogram<u64>, latency_ns: u64) {
    hist.saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
}

/// The percentiles every bourse perf tool prints, in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
}

impl Percentiles {
    /// Reads the percentiles off a histogram (all zero when it is empty).
    pub fn of(hist: &Histogram<u64>) -> Percentiles {
        if hist.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: hist.len(),
            mean_ns: hist.mean(),
            p50_ns: hist.value_at_quantile(0.5),
            p90_ns: hist.value_at_quantile(0.9),
            p99_ns: hist.value_at_quantile(0.99),
            p999_ns: hist.value_at_quantile(0.999),
            p9999_ns: hist.value_at_quantile(0.9999),
            max_ns: hist.max(),
        }
    }
}

/// Formats a latency for people: ns below 10 µs, µs below 10 ms, ms above.
pub fn format_ns(ns: u64) -> String {
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.2} us", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

/// Lower-case hex of `bytes`, as reports print state hashes.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Writes the percentile table (count, mean, p50, p90, p99, p99.9, p99.99, max).
pub fn write_table<W: Write>(out: &mut W, title: &str, p: &Percentiles) -> io::Result<()> {
    writeln!(out, "{title}")?;
    writeln!(out, "  {:<8} {:>14}", "count", p.count)?;
    writeln!(out, "  {:<8} {:>14}", "mean", format_ns(p.mean_ns.round() as u64))?;
    let rows = [
        ("p50", p.p50_ns),
        ("p90", p.p90_ns),
        ("p99", p.p99_ns),
        ("p99.9", p.p999_ns),
        ("p99.99", p.p9999_ns),
        ("max", p.max_ns),
    ];
    for (label, value) in rows {
        writeln!(out, "  {label:<8} {:>14}", format_ns(value))?;
    }
    Ok(())
}

/// The machine-readable record of one bench run (`--json PATH`). The field set is fixed
/// by the perf issue so runs of different tools can be compared by one script.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Tool and variant, e.g. `engine-bench/max` or `ledger-bench/hot`.
    pub name: String,
    /// Operations in the measured phase (warm-up excluded).
    pub ops: u64,
    /// Measured operations per second of measured wall time.
    pub throughput_per_s: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    /// Heap allocations in the measured phase divided by `ops`.
    pub allocs_per_op: f64,
}

impl Summary {
    pub fn new(
        name: &str,
        ops: u64,
        throughput_per_s: f64,
        p: &Percentiles,
        allocs_per_op: f64,
    ) -> Summary {
        Summary {
            name: name.to_string(),
            ops,
            throughput_per_s,
            p50_ns: p.p50_ns,
            p99_ns: p.p99_ns,
            p999_ns: p.p999_ns,
            p9999_ns: p.p9999_ns,
            max_ns: p.max_ns,
            allocs_per_op,
        }
    }
}

/// What a tool does after writing one output file: an error naming the path, or
/// `wrote PATH` on stdout.
pub fn wrote(path: &Path, result: io::Result<()>) -> Result<(), String> {
    result.map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Writes one summary as a JSON object (followed by a newline).
pub fn write_json(path: &Path, summary: &Summary) -> io::Result<()> {
    write_json_value(path, summary)
}

/// Writes several summaries as one JSON array (a tool that measures more than one variant
/// per run, like `ledger-bench`, says so in its help).
pub fn write_json_array(path: &Path, summaries: &[Summary]) -> io::Result<()> {
    write_json_value(path, summaries)
}

fn write_json_value<T: Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<()> {
    crate::create_parent_dir(path)?;
    let mut text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    text.push('\n');
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_uniform_distribution() {
        // 1..=100_000 ns, each once: the q-quantile is q * 100_000 within the histogram's
        // 0.1% resolution.
        let mut hist = latency_histogram();
        for v in 1..=100_000u64 {
            record_ns(&mut hist, v);
        }
        let p = Percentiles::of(&hist);
        let close = |got: u64, want: u64| {
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err <= 0.001, "got {got}, want {want}");
        };
        assert_eq!(p.count, 100_000);
        close(p.p50_ns, 50_000);
        close(p.p90_ns, 90_000);
        close(p.p99_ns, 99_000);
        close(p.p999_ns, 99_900);
        close(p.p9999_ns, 99_990);
        close(p.max_ns, 100_000);
        assert!((p.mean_ns - 50_000.5).abs() / 50_000.5 < 0.001, "mean {}", p.mean_ns);
    }

    #[test]
    fn tail_percentiles_see_rare_outliers() {
        // 9_990 fast values and 10 slow ones (0.1%): p99 is fast, p99.99 and max are slow.
        let mut hist = latency_histogram();
        for _ in 0..9_990 {
            record_ns(&mut hist, 100);
        }
        for _ in 0..10 {
            record_ns(&mut hist, 1_000_000);
        }
        let p = Percentiles::of(&hist);
        assert_eq!(p.p50_ns, 100);
        assert_eq!(p.p99_ns, 100);
        assert_eq!(p.p999_ns, 100);
        assert!(p.p9999_ns >= 999_000, "{p:?}");
        assert!(p.max_ns >= 999_000, "{p:?}");
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mut hist = latency_histogram();
        record_ns(&mut hist, 0);
        record_ns(&mut hist, u64::MAX);
        assert_eq!(hist.len(), 2);
        assert_eq!(hist.min(), 1);
        assert!(hist.max() >= LATENCY_NS_MAX);
    }

    #[test]
    fn hex_is_two_lower_case_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        assert_eq!(Percentiles::of(&latency_histogram()), Percentiles::default());
    }

    #[test]
    fn table_lists_every_percentile() {
        let mut hist = latency_histogram();
        for v in [10u64, 20, 30, 40_000] {
            record_ns(&mut hist, v);
        }
        let mut out = Vec::new();
        write_table(&mut out, "demo", &Percentiles::of(&hist)).unwrap();
        let text = String::from_utf8(out).unwrap();
        for label in ["count", "mean", "p50", "p90", "p99 ", "p99.9 ", "p99.99", "max"] {
            assert!(text.contains(label), "{label} missing in\n{text}");
        }
        // 40,000 ns reads back as its histogram bucket's top, within 0.1%.
        assert!(text.contains("40.0"), "{text}");
    }

    #[test]
    fn json_has_exactly_the_issue_fields() {
        let p = Percentiles {
            p50_ns: 1,
            p99_ns: 2,
            p999_ns: 3,
            p9999_ns: 4,
            max_ns: 5,
            ..Default::default()
        };
        let s = Summary::new("x/y", 7, 1.5e6, &p, 0.0);
        let value = serde_json::to_value(&s).unwrap();
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        let mut want = [
            "name",
            "ops",
            "throughput_per_s",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "p9999_ns",
            "max_ns",
            "allocs_per_op",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(value["p9999_ns"], 4);
        assert_eq!(value["throughput_per_s"], 1.5e6);
    }

    #[test]
    fn json_files_round_trip() {
        let dir = crate::test_dir("json");
        let p = Percentiles { p50_ns: 11, max_ns: 99, ..Default::default() };
        let one = Summary::new("a", 3, 10.0, &p, 0.25);
        let path = dir.join("one.json");
        write_json(&path, &one).unwrap();
        let back: Summary = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, one);

        // A failed write names the path.
        let blocked = path.join("below-a-file.json");
        let err = wrote(&blocked, write_json(&blocked, &one)).unwrap_err();
        assert!(err.starts_with(&format!("{}: ", blocked.display())), "{err}");
        assert_eq!(wrote(&path, Ok(())), Ok(()));

        let two = [one.clone(), Summary::new("b", 4, 20.0, &p, 0.0)];
        let path = dir.join("nested/two.json");
        write_json_array(&path, &two).unwrap();
        let back: Vec<Summary> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, two);
    }
}
