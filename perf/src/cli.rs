//! Command-line flags every bourse perf tool shares (`#[command(flatten)]` them into the
//! tool's own `clap::Parser`), and the run plan they describe.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::driver::{Pacing, Recorder, RATE_PER_S_MAX, SAMPLE_EVERY_MAX};
use crate::report::wrote;
use crate::{hgrm, plot, report};

/// Measured operations when neither `--ops` nor `--duration-s` is given.
pub const OPS_DEFAULT: u64 = 5_000_000;
/// Warm-up operations (run, not measured) by default.
pub const WARMUP_DEFAULT: u64 = 500_000;
/// Largest `--ops` and `--warmup`.
pub const OPS_MAX: u64 = 1_000_000_000;
/// Largest `--duration-s`.
pub const DURATION_S_MAX: f64 = 3_600.0;
/// Default 1-in-N latency sampling in max-throughput mode (see `driver`).
pub const SAMPLE_EVERY_DEFAULT: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Back to back, no pacing: throughput, and sampled service times.
    Max,
    /// Open loop at `--rate` per second: latency from intended start (coordinated
    /// omission corrected).
    Open,
}

#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// `max`: maximum throughput; `open`: open loop at --rate.
    #[arg(long, value_enum, default_value_t = Mode::Max)]
    pub mode: Mode,
    /// Offered rate for --mode open, operations per second.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Measured operations (default 5,000,000 unless --duration-s is given).
    #[arg(long, conflicts_with = "duration_s")]
    pub ops: Option<u64>,
    /// Measure for this many seconds instead of a fixed count (open mode: rate x duration
    /// operations).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Operations run before measuring starts (not counted anywhere).
    #[arg(long, default_value_t = WARMUP_DEFAULT)]
    pub warmup: u64,
    /// Seed of the generated workload; the same seed gives the same commands.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the summary record(s) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency distribution (.hgrm, values in µs) here [default: a file in
    /// perf/results/].
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Also write an SVG percentile plot here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Max mode: time every N-th operation individually (1 = all; each timing costs about
    /// two clock reads).
    #[arg(long, default_value_t = SAMPLE_EVERY_DEFAULT)]
    pub sample_every: u32,
}

/// When the measured phase ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    Ops(u64),
    /// Max mode with --duration-s: keep going until this much measured time has passed.
    Time(Duration),
}

impl Budget {
    /// Size of the next chunk of operations to generate and run, at most `chunk_max`; 0
    /// when the budget is spent. A time budget is checked between chunks, so it may run
    /// over by up to one chunk.
    pub fn next_chunk(&self, done_ops: u64, measured: Duration, chunk_max: usize) -> usize {
        match *self {
            Budget::Ops(total) => total.saturating_sub(done_ops).min(chunk_max as u64) as usize,
            Budget::Time(limit) if measured < limit && done_ops < OPS_MAX => chunk_max,
            Budget::Time(_) => 0,
        }
    }
}

/// What the flags ask for, checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    pub pacing: Pacing,
    pub budget: Budget,
    pub warmup_ops: u64,
}

impl CommonArgs {
    /// Checks every flag against its bound and returns the run plan.
    pub fn plan(&self) -> Result<Plan, String> {
        let pacing = match (self.mode, self.rate) {
            (Mode::Open, Some(rate_per_s)) => Pacing::Open { rate_per_s },
            (Mode::Open, None) => return Err("--mode open needs --rate".into()),
            (Mode::Max, Some(_)) => {
                return Err("--rate applies only to --mode open (max mode runs unpaced)".into())
            }
            (Mode::Max, None) => Pacing::Max { sample_every: self.sample_every },
        };
        pacing.validate().map_err(|e| format!("--rate/--sample-every: {e} (rate <= {RATE_PER_S_MAX}, sample-every <= {SAMPLE_EVERY_MAX})"))?;
        if self.warmup > OPS_MAX {
            return Err(format!("--warmup must be at most {OPS_MAX}"));
        }
        let budget = match (self.ops, self.duration_s) {
            (Some(_), Some(_)) => return Err("give --ops or --duration-s, not both".into()),
            (Some(ops), None) if ops == 0 || ops > OPS_MAX => {
                return Err(format!("--ops must be in 1..={OPS_MAX}"))
            }
            (Some(ops), None) => Budget::Ops(ops),
            (None, None) => Budget::Ops(OPS_DEFAULT),
            (None, Some(secs)) => {
                if !(secs > 0.0 && secs <= DURATION_S_MAX) {
                    return Err(format!("--duration-s must be in (0, {DURATION_S_MAX}]"));
                }
                match pacing {
                    // Open loop: the schedule fixes the count.
                    Pacing::Open { rate_per_s } => {
                        let ops = (rate_per_s as f64 * secs).ceil() as u64;
                        if ops > OPS_MAX {
                            return Err(format!(
                                "--rate x --duration-s exceeds {OPS_MAX} operations"
                            ));
                        }
                        Budget::Ops(ops.max(1))
                    }
                    Pacing::Max { .. } => Budget::Time(Duration::from_secs_f64(secs)),
                }
            }
        };
        Ok(Plan { pacing, budget, warmup_ops: self.warmup })
    }

    /// A short label for file names and JSON names: `max` or `open-<rate>`.
    pub fn mode_label(&self) -> String {
        match (self.mode, self.rate) {
            (Mode::Open, Some(rate)) => format!("open-{rate}"),
            (Mode::Open, None) => "open".to_string(),
            (Mode::Max, _) => "max".to_string(),
        }
    }

    /// The `.hgrm` path: `--hgrm` if given, else `perf/results/<stem>.us.hgrm` (the `.us`
    /// says the values are microseconds).
    pub fn hgrm_path(&self, stem: &str) -> PathBuf {
        self.hgrm.clone().unwrap_or_else(|| results_dir().join(format!("{stem}.us.hgrm")))
    }

    /// Writes the outputs of a tool that measures one distribution: the `.hgrm` (default
    /// `perf/results/<tool>-<mode>.us.hgrm`), and with `--json` / `--svg` the summary
    /// record and a one-series plot titled `<name>: <what>`. Says `wrote PATH` for each.
    pub fn write_outputs(
        &self,
        tool: &str,
        name: &str,
        recorder: &Recorder,
        what: &str,
    ) -> Result<(), String> {
        let hgrm_path = self.hgrm_path(&format!("{tool}-{}", self.mode_label()));
        wrote(&hgrm_path, hgrm::write_file(&hgrm_path, name, recorder.histogram()))?;
        if let Some(path) = &self.json {
            wrote(path, report::write_json(path, &recorder.summary(name)))?;
        }
        if let Some(path) = &self.svg {
            let series = [plot::Series::from_histogram(name, recorder.histogram())];
            wrote(path, plot::write_svg(path, &format!("{name}: {what}"), &series))?;
        }
        Ok(())
    }
}

/// A tool's exit: success, or its error on stderr after the tool's name.
pub fn exit_code(tool: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `perf/results` of the source tree this tool was built from (git-ignored).
pub fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// `path` with `-<suffix>` inserted before its extension: `a/b.us.hgrm` + `hot` ->
/// `a/b-hot.us.hgrm`. Tools that write one file per variant use it.
pub fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (stem, ext) = match name.find('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name.as_str(), ""),
    };
    path.with_file_name(format!("{stem}-{suffix}{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.common.plan()
    }

    #[test]
    fn defaults_are_max_mode_with_default_ops() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.pacing, Pacing::Max { sample_every: SAMPLE_EVERY_DEFAULT });
        assert_eq!(p.budget, Budget::Ops(OPS_DEFAULT));
        assert_eq!(p.warmup_ops, WARMUP_DEFAULT);
    }

    #[test]
    fn open_mode_needs_a_rate_and_max_mode_refuses_one() {
        assert!(plan(&["--mode", "open"]).is_err());
        assert!(plan(&["--rate", "1000"]).is_err());
        let p = plan(&["--mode", "open", "--rate", "1000000", "--ops", "42"]).unwrap();
        assert_eq!(p.pacing, Pacing::Open { rate_per_s: 1_000_000 });
        assert_eq!(p.budget, Budget::Ops(42));
    }

    #[test]
    fn duration_becomes_a_count_in_open_mode_and_a_time_in_max_mode() {
        let p = plan(&["--mode", "open", "--rate", "1000", "--duration-s", "2.5"]).unwrap();
        assert_eq!(p.budget, Budget::Ops(2_500));
        let p = plan(&["--duration-s", "1.5"]).unwrap();
        assert_eq!(p.budget, Budget::Time(Duration::from_millis(1_500)));
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(plan(&["--ops", "0"]).is_err());
        assert!(plan(&["--ops", "1000000001"]).is_err());
        assert!(plan(&["--ops", "5", "--duration-s", "1"]).is_err());
        assert!(plan(&["--duration-s", "0"]).is_err());
        assert!(plan(&["--duration-s", "NaN"]).is_err());
        assert!(plan(&["--duration-s", "7200"]).is_err());
        assert!(plan(&["--mode", "open", "--rate", "0"]).is_err());
        assert!(plan(&["--mode", "open", "--rate", "100000000", "--duration-s", "3600"]).is_err());
        assert!(plan(&["--sample-every", "0"]).is_err());
        assert!(plan(&["--warmup", "2000000000"]).is_err());
        assert!(plan(&["--ops", "-3"]).is_err());
    }

    #[test]
    fn budgets_hand_out_chunks() {
        let ops = Budget::Ops(10);
        assert_eq!(ops.next_chunk(0, Duration::ZERO, 4), 4);
        assert_eq!(ops.next_chunk(8, Duration::ZERO, 4), 2);
        assert_eq!(ops.next_chunk(10, Duration::ZERO, 4), 0);
        let time = Budget::Time(Duration::from_secs(1));
        assert_eq!(time.next_chunk(100, Duration::from_millis(999), 7), 7);
        assert_eq!(time.next_chunk(100, Duration::from_secs(1), 7), 0);
    }

    #[test]
    fn write_outputs_writes_hgrm_json_and_svg() {
        let dir = crate::test_dir("cli-outputs");
        let (h, j, s) = (dir.join("a.us.hgrm"), dir.join("a.json"), dir.join("a.svg"));
        let parse = |json: &std::path::Path| {
            let args = ["--hgrm", h.to_str().unwrap(), "--json", json.to_str().unwrap()];
            let svg = ["--svg", s.to_str().unwrap()];
            Cli::try_parse_from(std::iter::once("t").chain(args).chain(svg)).unwrap()
        };
        let mut recorder = Recorder::new();
        recorder.run(Pacing::Max { sample_every: 1 }, 100, |i| {
            std::hint::black_box(i);
        });
        parse(&j).common.write_outputs("tool", "tool/max", &recorder, "some work").unwrap();
        assert_eq!(crate::hgrm::parse_file(&h).unwrap().total_count, 100);
        let summary: report::Summary = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
        assert_eq!((summary.name.as_str(), summary.ops), ("tool/max", 100));
        assert!(std::fs::read_to_string(&s).unwrap().contains("tool/max: some work"));
        // A path that cannot be written (below a file) is an error naming it.
        let blocked = j.join("x.json");
        let err = parse(&blocked).common.write_outputs("tool", "t", &recorder, "w").unwrap_err();
        assert!(err.starts_with(&blocked.display().to_string()), "{err}");
    }

    #[test]
    fn exit_code_says_failure_on_error() {
        assert_eq!(exit_code("t", Ok(())), ExitCode::SUCCESS);
        assert_eq!(exit_code("t", Err("why".into())), ExitCode::FAILURE);
    }

    #[test]
    fn paths() {
        let cli = Cli::try_parse_from(["t", "--mode", "open", "--rate", "5"]).unwrap();
        assert_eq!(cli.common.mode_label(), "open-5");
        let path = cli.common.hgrm_path("engine-bench-open-5");
        assert_eq!(
            path,
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/engine-bench-open-5.us.hgrm")
        );
        assert_eq!(
            with_suffix(&path, "hot").file_name().unwrap(),
            "engine-bench-open-5-hot.us.hgrm"
        );
        assert_eq!(with_suffix(std::path::Path::new("x/plain"), "u"), PathBuf::from("x/plain-u"));
        assert_eq!(with_suffix(std::path::Path::new(".hidden"), "u"), PathBuf::from(".hidden-u"));
    }
}
