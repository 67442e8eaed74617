//! The command line, the top layer and the only one that uses `anyhow`:
//! `main.rs` only calls [`main`]; tests call [`run`]. One file per
//! subcommand.

mod cluster;
mod demo;
mod extent;
mod polygons;
mod prompt;
mod series;
mod sql;
mod synth;
mod zonal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use datafusion::error::DataFusionError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::context::{Cancel, QueryProgress};

/// The floodsql command line.
#[derive(Debug, Parser)]
#[command(
    name = "floodsql",
    version = crate::version::version_tag(),
    about = "SQL over flood data: STAC → Arrow → DataFusion → COG / Parquet / PNG",
    long_about = None
)]
pub struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// An HTTP header for the STAC API, e.g. 'Authorization: Bearer …'
    /// (repeatable; also FLOODSQL_STAC_HEADERS, one 'Name: value' per line).
    /// Sent only to the catalogue's own origin, never printed.
    #[arg(long = "header", global = true, value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Maximum flood extent of a STAC search (runs sql/max_flood_extent.sql).
    Extent(extent::ExtentArgs),
    /// Daily flood series of a STAC search: flooded/observed km² per day (runs sql/daily_series.sql).
    Series(series::SeriesArgs),
    /// Flood statistics per region of a vector file: flooded/observed km², first/last day flooded (runs sql/zonal_stats.sql).
    Zonal(zonal::ZonalArgs),
    /// Flood polygons of a class raster (e.g. an extent): GeoParquet 1.1 and GeoJSON, merged across block edges.
    Polygons(polygons::PolygonsArgs),
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
fn progress_bar(quiet: bool, template: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb
}

/// A query's progress bars: a search spinner, and scanned (slice, chunk)
/// rows locally or tasks on a cluster.
/// `--dry-run`: searches and plans `sql`, prints every scan's estimate.
async fn print_plan(
    ctx: &datafusion::execution::context::SessionContext,
    sql: &str,
    progress: &QueryProgress,
) -> anyhow::Result<()> {
    let scans = crate::pipeline::plan_only(ctx, sql, progress).await;
    progress.search.finish_and_clear();
    let scans = scans?;
    if scans.is_empty() {
        println!("no flood_chunks scan: nothing to read");
    }
    for (i, s) in scans.iter().enumerate() {
        println!(
            "scan {} of {} (dry run: nothing read)\n{}",
            i + 1,
            scans.len(),
            s.estimate()
        );
    }
    Ok(())
}

fn query_progress(quiet: bool, on_cluster: bool, cancel: &Cancel) -> QueryProgress {
    QueryProgress {
        search: progress_bar(quiet, "{spinner} searching STAC: {pos} items"),
        scan: progress_bar(
            quiet,
            if on_cluster {
                "{bar:40} {pos}/{len} tasks {msg} {elapsed}"
            } else {
                "{bar:40} {pos}/{len} (slice, chunk) rows {elapsed}"
            },
        ),
        cancel: cancel.clone(),
        // like the summary, the plan's one line is printed even with --quiet
        notes: Some(std::sync::Arc::new(|l: &str| eprintln!("{l}"))),
    }
}

/// A run stopped by a signal; the process exits with `code` (128 + the
/// signal's number, as shells report it).
#[derive(Debug)]
pub(crate) struct Interrupted {
    signal: &'static str,
    code: u8,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted by {}: the query was cancelled (no partial output is left)",
            self.signal
        )
    }
}

impl std::error::Error for Interrupted {}

/// What a raster run wrote, then its summary: results, so on stdout
/// (diagnostics — the plan line, progress, notes — go to stderr).
pub(crate) fn print_written(
    outputs: &crate::pipeline::Outputs,
    summary: &crate::pipeline::Summary,
) {
    let all = outputs.clone().with_lineage();
    for p in all.paths() {
        if Some(p) == all.lineage.as_ref() {
            println!("wrote {} (lineage: a STAC item)", p.display());
        } else {
            println!("wrote {}", p.display());
        }
    }
    println!("{}", summary.describe());
}

/// Runs `job` until it ends or SIGINT/SIGTERM arrives. On a signal: `cancel`
/// is set (writers in their last steps take back what they renamed), `job`
/// is dropped (the query stops; its writers remove their temp files — the
/// runtime waits for them when it is dropped), the query's cluster job is
/// cancelled on the scheduler, and the error is [`Interrupted`].
pub(crate) async fn until_signal<T>(
    cancel: &Cancel,
    job: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::pin!(job);
    let stopped = tokio::select! {
        r = &mut job => return r,
        _ = int.recv() => Interrupted { signal: "SIGINT", code: 130 },
        _ = term.recv() => Interrupted { signal: "SIGTERM", code: 143 },
    };
    if !cancel.cancel() {
        // too late: the outputs were committed before the signal, and the
        // run is finishing
        return job.await;
    }
    match crate::pipeline::cancel(cancel).await {
        Ok(Some(id)) => eprintln!("cancelled cluster job {id}"),
        Ok(None) => {}
        Err(e) => eprintln!("warning: {e}"),
    }
    Err(stopped.into())
}

/// The CLI's runtime. Blocking threads are capped (object_store's local
/// reads each take one; tokio's default of 512 let a scan spawn dozens, each
/// a glibc allocator arena holding freed pixels): reads queue instead, and
/// the writer thread always finds room.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads((4 * cores).max(8))
        .enable_all()
        .build()?)
}

/// Tunes glibc's malloc for a process that moves megabyte pixel buffers,
/// unless the environment sets the parameter (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`):
/// - one arena per two cores (one on this 2-core machine): with one arena
///   per thread (up to 8 per core) freed pixel buffers stay spread over
///   arenas and peak RSS runs well above the live heap (2 arenas: ~10% less
///   RSS than glibc's default; 1 arena: ~10 MB less again on the
///   tutorial-sized scene, no slower; see BENCHMARKS.md);
/// - buffers under 32 MB come from the heap, and up to 64 MB of free heap
///   top is kept: with glibc's defaults every 1 MB chunk buffer was its own
///   `mmap`, zero-filled by page faults and unmapped again — a quarter of the
///   CPU in the kernel on the tutorial-sized scene; with these, system time
///   fell ~2.5x and wall time ~20%, peak RSS unchanged (BENCHMARKS.md).
///
/// mimalloc, datafusion-cli's choice, was measured too and raised RSS here.
fn tune_malloc() {
    let unset = |k: &str| std::env::var_os(k).is_none();
    // SAFETY: mallopt only sets allocator parameters; called once, before
    // the runtime's threads start.
    unsafe {
        if unset("MALLOC_ARENA_MAX") {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            libc::mallopt(libc::M_ARENA_MAX, (cores / 2).max(1) as i32);
        }
        if unset("MALLOC_MMAP_THRESHOLD_") && unset("MALLOC_TRIM_THRESHOLD_") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    tune_malloc();
    crate::raster::read::configure_gdal();
    let headers = cli
        .headers
        .iter()
        .map(|h| crate::store::parse_header(h, "--header"))
        .collect::<crate::error::Result<Vec<_>>>()?;
    crate::store::header_map(&headers, "--header")?;
    crate::stac::search::set_cli_headers(headers);
    match cli.command {
        Command::Extent(a) => extent::run(a, cli.quiet),
        Command::Series(a) => series::run(a, cli.quiet),
        Command::Zonal(a) => zonal::run(a, cli.quiet),
        Command::Polygons(a) => polygons::run(a, cli.quiet),
        Command::Sql(a) => sql::run(a, cli.quiet),
        Command::Synth(a) => synth::run(a, cli.quiet),
        Command::Demo(a) => demo::run(a, cli.quiet),
        Command::Scheduler(a) => cluster::run_scheduler(a),
        Command::Executor(a) => cluster::run_executor(a),
    }
}

/// One line per error: the messages along the chain, each said once; a
/// DataFusion error is replaced by its root cause (found by walking its
/// chain), without DataFusion's "Error during planning:"-style prefixes.
/// Credentials in any URL quoted are masked.
pub fn report(e: &anyhow::Error) -> String {
    crate::error::redact_urls(&chain_report(e))
}

fn chain_report(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let (msg, root) = match cause.downcast_ref::<DataFusionError>() {
            Some(df) => (crate::error::root_message(df), true),
            None => (cause.to_string(), false),
        };
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        if root {
            break;
        }
    }
    parts.join(": ")
}

/// Parses the process arguments and runs; errors print as `error: …` with
/// exit 1 (130 / 143 when SIGINT / SIGTERM stopped the run).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            match e.downcast_ref::<Interrupted>() {
                Some(i) => ExitCode::from(i.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// With `FLOODSQL_LOG` set to a level (`error`, `warn`, `info`, `debug`,
/// `trace`), floodsql's own log goes to stderr, stamped with the seconds
/// since start: where a run spends its time. Only floodsql's own events:
/// its messages mask credentials in URLs, while other crates' debug logs
/// print them as they are (hyper and reqwest log every connection's
/// `user:password@host`). The server roles log to stdout at `info`
/// instead (`RUST_LOG`).
fn init_logging() {
    let Ok(level) = std::env::var("FLOODSQL_LOG") else {
        return;
    };
    let Ok(level) = level.trim().parse::<tracing::Level>() else {
        eprintln!(
            "warning: FLOODSQL_LOG='{level}' is not a level (error, warn, info, debug, trace): \
             nothing is logged"
        );
        return;
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("floodsql", level)
        .with_target("floodsql_udfs", level);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_timer(tracing_subscriber::fmt::time::uptime())
                .with_ansi(false)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_root_cause_once_without_datafusion_prefixes() {
        let user: DataFusionError = crate::Error::invalid("chunk size", "3", "too small").into();
        let e = anyhow::Error::new(user.context("planning")).context("running the query");
        assert_eq!(
            report(&e),
            "running the query: invalid chunk size '3': too small"
        );
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let ext = DataFusionError::External(Box::new(crate::Error::Io {
            path: "/a".into(),
            source: io,
        }));
        assert_eq!(report(&anyhow::Error::new(ext)), "I/O error on /a: gone");
        let bug = anyhow::Error::new(DataFusionError::Internal("x".into()));
        assert_eq!(report(&bug), "internal error: x");
        let plain = anyhow::anyhow!("reading 'f.sql'").context("sql");
        assert_eq!(report(&plain), "sql: reading 'f.sql'");
    }
}
