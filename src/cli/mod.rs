//! The command line: `main.rs` only calls [`main`]; tests call [`run`].

pub mod cluster;
pub mod demo;
pub mod extent;
pub mod sql;
pub mod synth;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Parser)]
#[command(
    name = "floodsql",
    version = crate::version::version_tag(),
    about = "SQL over flood data: STAC → Arrow → DataFusion → COG / Parquet / PNG"
)]
pub struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Maximum flood extent of a STAC search (runs sql/max_flood_extent.sql).
    Extent(extent::ExtentArgs),
    /// Run SQL (a file, -c, or an interactive prompt) with floodsql's functions.
    Sql(sql::SqlArgs),
    /// Generate a deterministic synthetic GFM catalogue (COGs + STAC items).
    Synth(synth::SynthArgs),
    /// Generate a small scene and compute its maximum flood extent locally.
    Demo(demo::DemoArgs),
    /// Run a Ballista scheduler with floodsql's functions (cluster role).
    Scheduler(cluster::SchedulerArgs),
    /// Run a Ballista executor with floodsql's functions and raster scan (cluster role).
    Executor(cluster::ExecutorArgs),
}

/// Progress bars draw on stderr only when it is a terminal and not --quiet.
pub fn progress_bar(quiet: bool, template: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    crate::raster::read::configure_gdal();
    match cli.command {
        Command::Extent(a) => extent::run(a, cli.quiet),
        Command::Sql(a) => sql::run(a, cli.quiet),
        Command::Synth(a) => synth::run(a, cli.quiet),
        Command::Demo(a) => demo::run(a, cli.quiet),
        Command::Scheduler(a) => cluster::run_scheduler(a),
        Command::Executor(a) => cluster::run_executor(a),
    }
}

/// One line per error: the chain of causes, each said once (DataFusion's
/// `External error:` wrapper and causes already quoted by their parent are
/// dropped).
pub fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        let msg = msg
            .strip_prefix("External error: ")
            .unwrap_or(&msg)
            .to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

/// Parses the process arguments and runs; errors print as `error: …` with exit 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}
