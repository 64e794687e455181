//! hgrm-plot: draws one SVG percentile plot from several `.hgrm` files.
//!
//! `hgrm-plot --out plot.svg --title "engine vs echo" "order round trip=a.us.hgrm" "tcp echo=b.us.hgrm"`
//!
//! Each series is `NAME=PATH` (or just `PATH`, named after the file). The values are
//! plotted in the files' unit, which for bourse files is µs.

use std::path::PathBuf;
use std::process::ExitCode;

use bourse_perf::hgrm;
use bourse_perf::plot::{self, Series, SERIES_MAX};
use bourse_perf::report::wrote;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    version = bourse_net::VERSION,
    name = "hgrm-plot",
    about = "SVG percentile plot of .hgrm files"
)]
struct Cli {
    /// Where to write the SVG.
    #[arg(long)]
    out: PathBuf,
    /// Plot title.
    #[arg(long, default_value = "latency by percentile")]
    title: String,
    /// Series as NAME=PATH or PATH.
    #[arg(required = true, num_args = 1..)]
    series: Vec<String>,
}

fn run(cli: &Cli) -> Result<(), String> {
    if cli.series.len() > SERIES_MAX {
        return Err(format!("at most {SERIES_MAX} series"));
    }
    let mut series = Vec::new();
    for spec in &cli.series {
        let (name, path) = match spec.split_once('=') {
            Some((name, path)) => (name.to_string(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(spec);
                let name =
                    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (name, path)
            }
        };
        let parsed = hgrm::parse_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        series.push(Series::from_hgrm(&name, &parsed));
    }
    wrote(&cli.out, plot::write_svg(&cli.out, &cli.title, &series))
}

fn main() -> ExitCode {
    bourse_perf::cli::exit_code("hgrm-plot", run(&Cli::parse()))
}
