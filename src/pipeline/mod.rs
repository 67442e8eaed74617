//! SQL in, raster files out: run a script's statements
//! ([`statement`]), then rasterise the last statement's result onto the grid
//! of its `flood_chunks` scan and write the outputs ([`run_to_outputs`]).
//! The scans are resolved (searched and planned) on the client before the
//! plan runs, locally or on a cluster: the rasteriser needs the full grid,
//! including chunks no item touches.

pub(crate) mod statement;
pub(crate) mod summary;

use std::sync::Arc;
use std::time::Instant;

pub use statement::{run_statement, split_statements, StatementOutput};
pub use summary::Summary;

pub use crate::output::Outputs;
pub use crate::raster::resolve::{find_scans, resolve_scans};

use datafusion::execution::context::SessionContext;

use crate::context::QueryProgress;
use crate::error::{join_err, Error, Result};
use crate::output::write_all;
use crate::raster::plan::ScanPlan;

/// Runs SQL text; the last statement's result is rasterised onto the grid of
/// its `flood_chunks` scan and written to `outputs` (all or nothing).
pub async fn run_to_outputs(
    ctx: &SessionContext,
    sql: &str,
    outputs: &Outputs,
    title: &str,
    progress: &QueryProgress,
) -> datafusion::error::Result<Summary> {
    let t0 = Instant::now();
    outputs.check_dirs()?;
    let mut stmts = split_statements(sql)?;
    let last = stmts
        .pop()
        .ok_or_else(|| Error::Sql("text has no statement".into()))?;
    for s in stmts {
        run_statement(ctx, s, progress).await?;
    }
    let out = run_statement(ctx, last, progress).await?;
    progress.scan.finish_and_clear();
    let scanned_rows = out.scans.iter().map(|(_, n)| n).sum();
    let scan = the_grid_scan(out.scans.into_iter().map(|(s, _)| s).collect())?;
    let result_chunks = out.batches.iter().map(|b| b.num_rows()).sum();
    let (grid, outputs, title) = (scan.grid.clone(), outputs.clone(), title.to_string());
    let batches = out.batches;
    let raster = tokio::task::spawn_blocking(move || write_all(&grid, batches, &outputs, &title))
        .await
        .map_err(join_err("writing outputs"))??;
    Ok(Summary {
        items: scan.n_items(),
        slices: scan.slices.len(),
        scanned_rows,
        result_chunks,
        raster,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The scan whose grid a result is rasterised onto: the query's only
/// `flood_chunks` scan, or several on the same grid.
fn the_grid_scan(scans: Vec<Arc<ScanPlan>>) -> Result<Arc<ScanPlan>> {
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
