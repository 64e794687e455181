//! The `.hgrm` percentile-distribution text format: what HdrHistogram's Java
//! `outputPercentileDistribution(out, 5, 1000.0)` prints and what the HdrHistogram plotter
//! (and wrk2-style plotting scripts) read.
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.101 0.000000000000          1           1.00
//!        ...
//!       13.887 1.000000000000     100000
//! #[Mean    =        0.174, StdDeviation   =        0.260]
//! #[Max     =       13.887, Total count    =       100000]
//! #[Buckets =           23, SubBuckets     =         2048]
//! ```
//!
//! Rows step through the percentiles with 5 ticks per half distance to 100% (0%, 10%, ...,
//! 50%, 55%, ... 75%, 77.5%, ...). bourse records latencies in **nanoseconds** and writes
//! them divided by an output value unit scaling ratio of 1000, so the file's values are
//! **microseconds**; the first line of every file bourse writes says so in a `#[...]`
//! comment, which plotters skip (they only read 4-column numeric rows).
//!
//! The hdrhistogram crate has no printer for this format, so it is written here, following
//! the Java implementation's format strings; [`parse`] reads it back (for tests and for
//! `hgrm-plot`), and never panics on a malformed file.

use std::io::{self, Write};
use std::path::Path;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance to 100%, as the Java tools default to.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Recorded values (ns) are divided by this in the file, which is therefore in µs.
pub const OUTPUT_VALUE_UNIT_SCALING_RATIO: f64 = 1000.0;

/// Largest `.hgrm` file [`parse_file`] reads. A 3-digit histogram spanning 1 ns..100 s
/// prints well under 1,000 rows of ~60 bytes; 16 MiB leaves room for any sane file.
pub const HGRM_BYTES_MAX: u64 = 16 << 20;

/// Largest number of percentile rows [`parse`] accepts.
pub const HGRM_ROWS_MAX: usize = 100_000;

/// Sub-bucket count of an HdrHistogram with `sigfig` significant digits: the power of two
/// at or above `2 * 10^sigfig` (the Java and Rust implementations agree; the Rust crate
/// keeps the field private).
pub fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig.min(5)));
    largest.next_power_of_two()
}

/// Writes `hist`'s percentile distribution in the `.hgrm` format, values divided by
/// `scaling_ratio`, with `ticks_per_half_distance` rows per half distance to 100%.
pub fn write_percentile_distribution<W: Write>(
    out: &mut W,
    hist: &Histogram<u64>,
    ticks_per_half_distance: u32,
    scaling_ratio: f64,
) -> io::Result<()> {
    assert!(ticks_per_half_distance > 0 && scaling_ratio > 0.0);
    let digits = usize::from(hist.sigfig());
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !hist.is_empty() {
        let mut total_count: u64 = 0;
        for step in hist.iter_quantiles(ticks_per_half_distance) {
            total_count += step.count_since_last_iteration();
            let value = step.value_iterated_to() as f64 / scaling_ratio;
            let quantile = step.quantile_iterated_to();
            if quantile < 1.0 {
                let inverse = 1.0 / (1.0 - quantile);
                writeln!(
                    out,
                    "{value:12.digits$} {quantile:2.12} {total_count:10} {inverse:14.2}"
                )?;
            } else {
                // Java leaves the last row's fourth column out (it would be infinite).
                writeln!(out, "{value:12.digits$} {quantile:2.12} {total_count:10}")?;
            }
        }
        debug_assert_eq!(total_count, hist.len());
    }
    let (mean, stdev, max) = if hist.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            hist.mean() / scaling_ratio,
            hist.stdev() / scaling_ratio,
            hist.max() as f64 / scaling_ratio,
        )
    };
    writeln!(out, "#[Mean    = {mean:12.digits$}, StdDeviation   = {stdev:12.digits$}]")?;
    writeln!(out, "#[Max     = {max:12.digits$}, Total count    = {:12}]", hist.len())?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        sub_bucket_count(hist.sigfig())
    )?;
    Ok(())
}

/// Writes a bourse `.hgrm` file: a `#[...]` comment naming the run and the unit, then the
/// distribution with 5 ticks per half distance, in µs (ns / 1000).
pub fn write_file(path: &Path, title: &str, hist: &Histogram<u64>) -> io::Result<()> {
    create_parent_dir(path)?;
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    // A title with brackets or newlines would break the comment line; replace them.
    let title: String = title
        .chars()
        .map(|c| if c.is_control() || c == '[' || c == ']' { ' ' } else { c })
        .collect();
    writeln!(
        out,
        "#[{title}: values in microseconds (recorded in ns, output value unit scaling ratio 1000)]"
    )?;
    write_percentile_distribution(
        &mut out,
        hist,
        TICKS_PER_HALF_DISTANCE,
        OUTPUT_VALUE_UNIT_SCALING_RATIO,
    )?;
    out.flush()
}

/// One percentile row of a `.hgrm` file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// In the file's unit (µs for bourse files).
    pub value: f64,
    /// The percentile level as a fraction in 0..=1 (the file's "Percentile" column).
    pub quantile: f64,
    pub total_count: u64,
}

/// A parsed `.hgrm` file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hgrm {
    pub rows: Vec<Row>,
    pub mean: f64,
    pub std_deviation: f64,
    pub max: f64,
    pub total_count: u64,
    pub buckets: u64,
    pub sub_buckets: u64,
}

#[derive(Debug, PartialEq)]
pub enum ParseError {
    TooLarge(u64),
    TooManyRows,
    /// A line that is neither a comment, the column header, nor a well-formed row.
    BadLine {
        line: usize,
        text: String,
    },
    /// The Mean/Max/Buckets footer is missing or incomplete.
    MissingFooter,
    /// Rows out of order, or a count that disagrees with the footer.
    Inconsistent(String),
    Io(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::TooLarge(n) => write!(f, "file has {n} bytes, more than {HGRM_BYTES_MAX}"),
            ParseError::TooManyRows => write!(f, "more than {HGRM_ROWS_MAX} percentile rows"),
            ParseError::BadLine { line, text } => write!(f, "line {line}: cannot parse {text:?}"),
            ParseError::MissingFooter => write!(f, "missing #[Mean/#[Max/#[Buckets footer"),
            ParseError::Inconsistent(why) => write!(f, "inconsistent file: {why}"),
            ParseError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads and parses a `.hgrm` file of at most [`HGRM_BYTES_MAX`] bytes.
pub fn parse_file(path: &Path) -> Result<Hgrm, ParseError> {
    let len = std::fs::metadata(path)
        .map_err(|e| ParseError::Io(format!("{}: {e}", path.display())))?
        .len();
    if len > HGRM_BYTES_MAX {
        return Err(ParseError::TooLarge(len));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ParseError::Io(format!("{}: {e}", path.display())))?;
    parse(&text)
}

/// Parses `.hgrm` text. Accepts any `#` comment lines and blank lines; requires the
/// percentile rows to be non-decreasing and the footer's total count to match the last row.
pub fn parse(text: &str) -> Result<Hgrm, ParseError> {
    if text.len() as u64 > HGRM_BYTES_MAX {
        return Err(ParseError::TooLarge(text.len() as u64));
    }
    let mut hgrm = Hgrm::default();
    let mut footer = [false; 3];
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        let bad =
            || ParseError::BadLine { line: number + 1, text: line.chars().take(80).collect() };
        if trimmed.is_empty() || trimmed.starts_with("Value") {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            parse_footer(comment, &mut hgrm, &mut footer).ok_or_else(bad)?;
            continue;
        }
        if hgrm.rows.len() == HGRM_ROWS_MAX {
            return Err(ParseError::TooManyRows);
        }
        hgrm.rows.push(parse_row(trimmed).ok_or_else(bad)?);
    }
    if footer != [true; 3] {
        return Err(ParseError::MissingFooter);
    }
    check_rows(&hgrm)?;
    Ok(hgrm)
}

fn parse_row(line: &str) -> Option<Row> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 3 && fields.len() != 4 {
        return None;
    }
    let value: f64 = fields[0].parse().ok()?;
    let quantile: f64 = fields[1].parse().ok()?;
    let total_count: u64 = fields[2].parse().ok()?;
    if !value.is_finite() || value < 0.0 || !(0.0..=1.0).contains(&quantile) {
        return None;
    }
    if let Some(inverse) = fields.get(3) {
        let inverse: f64 = inverse.parse().ok()?;
        // The fourth column is derived from the second (printed with 2 decimals).
        let expected = 1.0 / (1.0 - quantile);
        // The tolerance covers the 2-decimal rounding and, deep in the tail, the 12-decimal
        // rounding of the percentile the reader recomputes it from.
        if !inverse.is_finite() || (inverse - expected).abs() > 0.006 + expected * 1e-2 {
            return None;
        }
    }
    Some(Row { value, quantile, total_count })
}

/// Reads the three footer lines (`[Mean = a, StdDeviation = b]`, `[Max = c, Total count =
/// d]`, `[Buckets = e, SubBuckets = f]`); other comments are ignored. `None` if a footer
/// line is malformed.
fn parse_footer(comment: &str, hgrm: &mut Hgrm, seen: &mut [bool; 3]) -> Option<()> {
    let Some(body) = comment.strip_prefix('[').and_then(|b| b.strip_suffix(']')) else {
        return Some(());
    };
    let pairs: Vec<(&str, &str)> = body
        .split(',')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    match keys.as_slice() {
        ["Mean", "StdDeviation"] => {
            hgrm.mean = pairs[0].1.parse().ok()?;
            hgrm.std_deviation = pairs[1].1.parse().ok()?;
            seen[0] = true;
        }
        ["Max", "Total count"] => {
            hgrm.max = pairs[0].1.parse().ok()?;
            hgrm.total_count = pairs[1].1.parse().ok()?;
            seen[1] = true;
        }
        ["Buckets", "SubBuckets"] => {
            hgrm.buckets = pairs[0].1.parse().ok()?;
            hgrm.sub_buckets = pairs[1].1.parse().ok()?;
            seen[2] = true;
        }
        // A comment in brackets that is not part of the footer (such as bourse's title).
        _ if keys.first().is_some_and(|k| ["Mean", "Max", "Buckets"].contains(k)) => return None,
        _ => {}
    }
    Some(())
}

fn check_rows(hgrm: &Hgrm) -> Result<(), ParseError> {
    for pair in hgrm.rows.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.value < a.value || b.quantile < a.quantile || b.total_count < a.total_count {
            return Err(ParseError::Inconsistent(format!("row {b:?} goes backwards after {a:?}")));
        }
    }
    match hgrm.rows.last() {
        None if hgrm.total_count == 0 => Ok(()),
        Some(last) if last.total_count == hgrm.total_count => Ok(()),
        _ => Err(ParseError::Inconsistent(format!(
            "last row's total count differs from the footer's {}",
            hgrm.total_count
        ))),
    }
}

/// Creates the directory `path` will be written into, if it has one.
pub fn create_parent_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::latency_histogram;

    fn record_ns(hist: &mut Histogram<u64>, ns: u64) {
        hist.saturating_record(ns);
    }

    fn write_to_string(hist: &Histogram<u64>) -> String {
        let mut out = Vec::new();
        write_percentile_distribution(
            &mut out,
            hist,
            TICKS_PER_HALF_DISTANCE,
            OUTPUT_VALUE_UNIT_SCALING_RATIO,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn uniform_1_to_100k() -> Histogram<u64> {
        let mut hist = latency_histogram();
        for v in 1..=100_000u64 {
            record_ns(&mut hist, v);
        }
        hist
    }

    #[test]
    fn output_parses_back_with_the_same_numbers() {
        let hist = uniform_1_to_100k();
        let text = write_to_string(&hist);
        let hgrm = parse(&text).unwrap();
        assert_eq!(hgrm.total_count, 100_000);
        assert_eq!(hgrm.rows.last().unwrap().total_count, 100_000);
        assert_eq!(hgrm.rows.last().unwrap().quantile, 1.0);
        assert_eq!(hgrm.rows[0].quantile, 0.0);
        assert_eq!(hgrm.buckets, u64::from(hist.buckets()));
        assert_eq!(hgrm.sub_buckets, 2048);
        // Values are in µs: the max is 100_000 ns = 100 µs, mean ~50 µs.
        assert!((hgrm.max - 100.0).abs() <= 0.1, "max {}", hgrm.max);
        assert!((hgrm.mean - 50.0).abs() <= 0.1, "mean {}", hgrm.mean);
        // Std deviation of a uniform distribution on [0, 100] µs is 100 / sqrt(12).
        assert!((hgrm.std_deviation - 28.868).abs() < 0.1, "sd {}", hgrm.std_deviation);
        // Each row's value is the q-quantile of a uniform distribution: value ~ 100 * q µs.
        for row in &hgrm.rows[1..] {
            let want = 100.0 * row.quantile;
            assert!((row.value - want).abs() <= want * 0.002 + 0.002, "{row:?}");
        }
    }

    #[test]
    fn rows_step_five_ticks_per_half_distance() {
        // One outlier alone in the top bucket makes the rows run deep into the tail.
        let mut hist = uniform_1_to_100k();
        record_ns(&mut hist, 10_000_000);
        let text = write_to_string(&hist);
        let hgrm = parse(&text).unwrap();
        let quantiles: Vec<f64> = hgrm.rows.iter().map(|r| r.quantile).collect();
        // 0, 0.1, ..., 0.5 (5 ticks in the first half), then 0.55, ..., 0.75 (5 ticks in
        // the next half distance), then 0.775 ...
        let want = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.775, 0.8];
        for (got, want) in quantiles.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{quantiles:?}");
        }
        // Near the tail the steps keep halving, so the rows reach past 99.99%, and the
        // last row is 100% at the outlier.
        assert!(quantiles.iter().any(|&q| q > 0.9999 && q < 1.0), "{quantiles:?}");
        assert_eq!(quantiles.last(), Some(&1.0));
        let last = hgrm.rows.last().unwrap();
        assert!((last.value - 10_000.0).abs() < 10.0, "{last:?}");
    }

    #[test]
    fn format_matches_java_layout() {
        let mut hist = latency_histogram();
        // Values below 2048 ns are exact in a 3-digit histogram, so the text is predictable.
        for v in [100u64, 200, 300, 400] {
            record_ns(&mut hist, v);
        }
        let text = write_to_string(&hist);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "       0.100 0.000000000000          1           1.00");
        let last_row = lines[lines.len() - 4];
        assert_eq!(last_row, "       0.400 1.000000000000          4");
        assert_eq!(
            lines[lines.len() - 3],
            "#[Mean    =        0.250, StdDeviation   =        0.112]"
        );
        assert_eq!(
            lines[lines.len() - 2],
            "#[Max     =        0.400, Total count    =            4]"
        );
        assert!(lines[lines.len() - 1].starts_with("#[Buckets = "), "{text}");
        assert!(lines[lines.len() - 1].ends_with(", SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn empty_histogram_writes_header_and_footer() {
        let text = write_to_string(&latency_histogram());
        let hgrm = parse(&text).unwrap();
        assert!(hgrm.rows.is_empty());
        assert_eq!(hgrm.total_count, 0);
    }

    #[test]
    fn file_has_unit_comment_and_parses() {
        let dir = std::env::temp_dir().join(format!("bourse-net-hgrm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/run.hgrm");
        write_file(&path, "engine-bench/max [x]", &uniform_1_to_100k()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("#[engine-bench/max  x : values in microseconds"), "{first}");
        assert_eq!(parse_file(&path).unwrap().total_count, 100_000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = write_to_string(&uniform_1_to_100k());
        assert!(matches!(parse(""), Err(ParseError::MissingFooter)));
        assert!(matches!(parse("garbage\n"), Err(ParseError::BadLine { line: 1, .. })));
        assert!(matches!(parse("1.0 2.0 3 4\n"), Err(ParseError::BadLine { .. })));
        assert!(matches!(
            parse("#[Mean = x, StdDeviation = 1]\n"),
            Err(ParseError::BadLine { .. })
        ));
        // A footer total that disagrees with the rows.
        let wrong_total =
            good.replace("Total count    =       100000", "Total count    =        99999");
        assert_ne!(wrong_total, good);
        assert!(matches!(parse(&wrong_total), Err(ParseError::Inconsistent(_))));
        // Every prefix of a good file either parses or fails cleanly.
        for cut in (0..good.len()).step_by(97) {
            let _ = parse(&good[..cut]);
        }
        // Swapped rows go backwards.
        let mut lines: Vec<&str> = good.lines().collect();
        lines.swap(3, 4);
        assert!(matches!(parse(&lines.join("\n")), Err(ParseError::Inconsistent(_))));
    }

    #[test]
    fn sub_bucket_counts() {
        assert_eq!(sub_bucket_count(1), 32);
        assert_eq!(sub_bucket_count(2), 256);
        assert_eq!(sub_bucket_count(3), 2048);
        assert_eq!(sub_bucket_count(5), 262_144);
    }
}
