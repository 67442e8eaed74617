//! SQL in, raster files out: run a script's statements
//! ([`statement`]), then rasterise the last statement's result onto the grid
//! of its `flood_chunks` scan and write the outputs ([`run_to_outputs`]).
//! The scans are resolved (searched and planned) on the client before the
//! plan runs, locally or on a cluster: the rasteriser needs the full grid,
//! including chunks no item touches.

pub(crate) mod array;
pub(crate) mod statement;
pub(crate) mod summary;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use futures::StreamExt;

pub use array::{run_to_array, RasterArray};
pub use statement::{plan_only, run_statement, split_statements, StatementOutput};
pub use summary::Summary;

pub use crate::output::{Outputs, Provenance};
pub use crate::raster::plan::ScanEstimate;
pub use crate::raster::resolve::{find_scans, resolve_scans};
pub use crate::template::Param;

use datafusion::execution::context::SessionContext;

use crate::context::QueryProgress;
use crate::error::{join_err, Error, Result};
use crate::output::remote::Staging;
use crate::output::sink::{RasterSink, Written};
use crate::raster::plan::ScanPlan;
use statement::{stream_statement, StatementStream};

/// What a raster run is, beside its SQL: recorded in its outputs.
#[derive(Debug, Clone, Default)]
pub struct RunLabel {
    /// What the result is, e.g. "Maximum flood extent".
    pub title: String,
    /// The parameters bound into the SQL (name, value).
    pub parameters: Vec<(String, String)>,
    /// `floodsql extent --update`: the earlier result this run's chunks are
    /// merged into, and what its lineage recorded.
    pub update: Option<Update>,
}

/// An earlier result to update (see [`RunLabel::update`]).
#[derive(Debug, Clone)]
pub struct Update {
    /// Its GeoTIFF.
    pub tif: std::path::PathBuf,
    /// The items it holds.
    pub items: Vec<String>,
    /// What identified each item's content when it was read (id →
    /// version; empty for results made before floodsql recorded them).
    pub versions: std::collections::BTreeMap<String, String>,
    /// Its first and last time slice (RFC 3339).
    pub time_range: Option<(String, String)>,
}

impl Update {
    /// The items to leave out (`floodsql.skip_items`): `ID@VERSION` when
    /// the version is known, so that a reprocessed item is not skipped.
    pub fn skip_list(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|id| match self.versions.get(id) {
                Some(v) => format!("{id}@{v}"),
                None => id.clone(),
            })
            .collect()
    }
}

impl RunLabel {
    /// A run called `title`.
    pub fn titled(title: &str) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }
}

/// Runs SQL text; the last statement's result streams onto the grid of its
/// `flood_chunks` scan, chunk by chunk, into `outputs` (all or nothing).
pub async fn run_to_outputs(
    ctx: &SessionContext,
    sql: &str,
    outputs: &Outputs,
    run: &RunLabel,
    progress: &QueryProgress,
) -> datafusion::error::Result<Summary> {
    let t0 = Instant::now();
    // remote outputs (s3://, gs://, az://) are written to staging files,
    // then uploaded once every output is complete
    let outputs = &outputs.clone().with_lineage();
    if let Some(item) = &outputs.lineage {
        crate::output::lineage::check_replaceable(item)?;
    }
    let (staging, local) = Staging::new(outputs)?;
    local.check_dirs()?;
    let StatementStream {
        mut stream,
        scans,
        job,
    } = start_last(ctx, sql, progress, &outputs.unread_columns()).await?;
    let scanned_rows = scans.iter().map(|(_, n)| n).sum();
    let scan = the_grid_scan(scans.into_iter().map(|(s, _)| s).collect())?;
    progress.plan(&scan.estimate().one_line());
    outputs.check_not_inputs(&scan.locations())?;
    let provenance = run_provenance(&scan, sql, run, outputs);
    let base = run.update.as_ref().map(|u| (u.tif.clone(), scan.chunk));
    let (tx, writer) = spawn_writers(
        scan.grid.clone(),
        local,
        provenance,
        base,
        progress.cancel.clone(),
    );
    let mut failure = None;
    while let Some(b) = stream.next().await {
        match b {
            Ok(b) => {
                if tx.send(Msg::Batch(b)).await.is_err() {
                    break; // the writer failed: its error is reported below
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() {
        let _ = tx.send(Msg::Done).await;
    }
    drop(tx);
    let written = writer.await.map_err(join_err("writing outputs"))??;
    let (written, result_chunks) = match (failure, written) {
        (Some(e), _) => return Err(e),
        (None, Some(w)) => w,
        (None, None) => {
            return Err(Error::Internal("the writers stopped without finishing".into()).into())
        }
    };
    drop(job);
    staging.upload(&progress.cancel).await?;
    progress.scan.finish_and_clear();
    Ok(Summary {
        items: scan.n_items(),
        slices: scan.slices.len(),
        scanned_rows,
        result_chunks,
        grid: scan.grid.clone(),
        written,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The chunk side (pixels) the CLI's scans use unless told otherwise.
pub const DEFAULT_CHUNK: usize = crate::options::DEFAULT_CHUNK_SIZE;
/// The collection the CLI's scans search unless told otherwise.
pub const DEFAULT_COLLECTION: &str = crate::options::DEFAULT_COLLECTION;

/// Environment variables that set session options: the read policy's
/// allow-lists may be a deployment's standing choice. A session's own
/// settings (`--set`, `SET`, a connection's options) win.
pub const ENV_OPTIONS: [(&str, &str); 2] = [
    ("FLOODSQL_ALLOWED_HOSTS", "floodsql.allowed_hosts"),
    ("FLOODSQL_ALLOWED_PATHS", "floodsql.allowed_paths"),
];

/// A session: local (`cluster` None; `partitions` scan partitions, default
/// the cores) or connected to a floodsql cluster at `df://HOST:PORT`, with
/// the options of [`ENV_OPTIONS`] applied.
pub async fn connect(
    cluster: Option<&str>,
    partitions: Option<usize>,
) -> datafusion::error::Result<SessionContext> {
    let ctx = match cluster {
        None => crate::session::new_context(partitions)?,
        Some(u) => {
            let url = crate::cluster::client::ClusterUrl::parse(u)?;
            crate::cluster::client::connect(&url, partitions).await?
        }
    };
    for (var, key) in ENV_OPTIONS {
        if let Ok(v) = std::env::var(var) {
            set_option(&ctx, key, &v)
                .map_err(|e| Error::invalid("environment variable", var, e.to_string()))?;
        }
    }
    Ok(ctx)
}

/// Sets a session option (`floodsql.*`, `datafusion.*`, `ballista.*`) as
/// SQL `SET key = value` would; an unknown or invalid one is refused with
/// its name.
pub fn set_option(ctx: &SessionContext, key: &str, value: &str) -> Result<()> {
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .set(key.trim(), value.trim())
        .map_err(|e| Error::invalid("session option", key, crate::error::root_message(&e)))
}

/// Runs every statement of SQL text but the last, and starts the last.
pub(crate) async fn start_last(
    ctx: &SessionContext,
    sql: &str,
    progress: &QueryProgress,
    unread: &[&str],
) -> datafusion::error::Result<StatementStream> {
    let mut stmts = split_statements(sql)?;
    let last = stmts
        .pop()
        .ok_or_else(|| Error::Sql("text has no statement".into()))?;
    for s in stmts {
        run_statement(ctx, s, progress).await?;
    }
    stream_statement(ctx, last, progress, unread).await
}

/// Runs SQL text's statements and streams the last one's result (locally,
/// or on the cluster the session is connected to); the cluster job is
/// followed while the stream lives.
pub async fn stream_sql(
    ctx: &SessionContext,
    sql: &str,
    progress: &QueryProgress,
) -> datafusion::error::Result<datafusion::execution::SendableRecordBatchStream> {
    let StatementStream { stream, job, .. } = start_last(ctx, sql, progress, &[]).await?;
    let schema = stream.schema();
    let stream = stream.map(move |b| {
        let _follow = &job;
        b
    });
    Ok(Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream),
    ))
}

/// Binds `${name}` parameters into SQL text, as `floodsql sql --param`
/// does: strings quoted, numbers as they are; a name the text lacks, or a
/// `${name}` left unbound, is an error naming it. A float must be finite.
pub fn bind(sql: &str, params: &[(String, Param)]) -> Result<String> {
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in params {
        if let Param::Float(f) = v {
            if !f.is_finite() {
                return Err(Error::invalid(
                    "parameter",
                    k.clone(),
                    format!("{f} is not a finite number"),
                ));
            }
        }
        map.insert(k.clone(), v.clone());
    }
    crate::template::bind(sql, &map)
}

/// The root cause of a query's error in one line, as the CLI prints it
/// (credentials in URLs masked).
pub fn report(e: &datafusion::error::DataFusionError) -> String {
    crate::error::redact_urls(&crate::error::root_message(e))
}

/// Cancels a query: marks it cancelled (its writers then leave nothing
/// behind) and, when it runs on a cluster, cancels its job on the
/// scheduler. Returns the cancelled job's id.
pub async fn cancel(cancel: &crate::context::Cancel) -> Result<Option<String>> {
    cancel.cancel();
    match cancel.job() {
        Some((rest, id)) => {
            crate::cluster::client::cancel_job(&rest, &id).await?;
            Ok(Some(id))
        }
        None => Ok(None),
    }
}

/// A message to the writers.
enum Msg {
    Batch(RecordBatch),
    /// The query ended: finish and commit the outputs.
    Done,
}

/// The writers, on a blocking thread, fed batch by batch; a bounded channel
/// keeps the query from running ahead of them. They finish only on
/// [`Msg::Done`]: a failed or cancelled query (the channel closes without
/// it) drops the sink, which leaves nothing of the run. `base`: the earlier
/// result an update merges into, with its chunk size. The writer returns
/// what was written and the result rows, or `None` when not finished.
#[allow(clippy::type_complexity)]
fn spawn_writers(
    grid: crate::raster::grid::OutputGrid,
    outputs: Outputs,
    provenance: Provenance,
    base: Option<(std::path::PathBuf, usize)>,
    cancel: crate::context::Cancel,
) -> (
    tokio::sync::mpsc::Sender<Msg>,
    tokio::task::JoinHandle<Result<Option<(Written, usize)>>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(2);
    let writer = tokio::task::spawn_blocking(move || -> Result<Option<(Written, usize)>> {
        let mut sink = RasterSink::new(&grid, &outputs, &provenance, cancel)?;
        if let Some((tif, chunk)) = &base {
            sink = sink.with_base(tif, *chunk)?;
        }
        let mut rows = 0;
        loop {
            match rx.blocking_recv() {
                Some(Msg::Batch(b)) => {
                    rows += b.num_rows();
                    sink.write(&b)?;
                }
                Some(Msg::Done) => return Ok(Some((sink.finish()?, rows))),
                None => return Ok(None),
            }
        }
    });
    (tx, writer)
}

/// The provenance of a run: the scan's, its parameters (credentials
/// masked), and for an update the earlier result's items and time range.
fn run_provenance(scan: &ScanPlan, sql: &str, run: &RunLabel, outputs: &Outputs) -> Provenance {
    let mut p = provenance(scan, sql, &run.title, outputs);
    p.parameters = run
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), crate::error::redact_urls(v)))
        .collect();
    if let Some(u) = &run.update {
        // the result holds the earlier items too
        p.item_ids.extend(u.items.iter().cloned());
        p.item_ids.sort();
        p.item_ids.dedup();
        for (id, v) in &u.versions {
            p.item_versions
                .entry(id.clone())
                .or_insert_with(|| v.clone());
        }
        p.items = p.item_ids.len();
        p.time_range = match (p.time_range.take(), &u.time_range) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c.clone()), b.max(d.clone()))),
            (a, b) => a.or(b.clone()),
        };
    }
    p
}

/// What the outputs record about where they come from.
fn provenance(scan: &ScanPlan, sql: &str, title: &str, outputs: &Outputs) -> Provenance {
    let time = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    Provenance {
        title: title.to_string(),
        source: scan.search.clone(),
        asset: scan.pixels.name.clone(),
        time_range: match (scan.slices.first(), scan.slices.last()) {
            (Some(a), Some(b)) => Some((time(a.datetime_us), time(b.datetime_us))),
            _ => None,
        },
        items: scan.n_items(),
        query: crate::error::redact_urls(sql.trim()),
        parameters: Vec::new(),
        item_ids: {
            let mut ids: Vec<String> = scan
                .slices
                .iter()
                .flat_map(|s| s.sources.iter().map(|src| src.item_id.clone()))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        },
        item_versions: scan
            .slices
            .iter()
            .flat_map(|s| &s.sources)
            .filter(|src| !src.version.is_empty())
            .map(|src| (src.item_id.clone(), src.version.clone()))
            .collect(),
        missing: scan.missing(),
        outputs: outputs.clone(),
        version: crate::version::version_tag().to_string(),
    }
}

/// The scan whose grid a result is rasterised onto: the query's only
/// `flood_chunks` scan, or several on the same grid.
pub(crate) fn the_grid_scan(scans: Vec<Arc<ScanPlan>>) -> Result<Arc<ScanPlan>> {
    match scans.as_slice() {
        [] => Err(Error::NotRasterisable(
            "a raster output needs a query over flood_chunks(...): none found in the plan".into(),
        )),
        [first, rest @ ..] if rest.iter().any(|s| s.grid != first.grid) => Err(
            Error::NotRasterisable("the query scans flood_chunks on different grids".into()),
        ),
        [first, ..] => Ok(first.clone()),
    }
}
