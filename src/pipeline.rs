//! Running SQL and turning the last statement's result into outputs. The
//! output grid comes from the `flood_chunks` scans of the statement, which
//! are resolved (searched and planned) here, on the client, before the plan
//! runs — locally or on a cluster (the rasteriser needs the full grid,
//! including chunks no item touches).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::{source_as_provider, ViewTable};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use indicatif::ProgressBar;

use crate::cluster::client::{ClusterUrl, JobProgress};
use crate::error::{Error, Result};
use crate::output::assemble::{assemble, Raster};
use crate::raster::exec::{scan_rows, set_progress, FloodChunksExec};
use crate::raster::plan::ScanPlan;
use crate::raster::table::FloodChunksTable;

/// Where to write a raster result.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub tif: Option<PathBuf>,
    pub parquet: Option<PathBuf>,
    pub png: Option<PathBuf>,
}

impl Outputs {
    pub fn any(&self) -> bool {
        self.tif.is_some() || self.parquet.is_some() || self.png.is_some()
    }
}

/// What a raster run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub items: usize,
    pub slices: usize,
    /// (time slice, chunk) rows the scan produced.
    pub scanned_rows: usize,
    /// Rows (aggregated chunks) in the result.
    pub result_chunks: usize,
    pub raster: Raster,
    pub seconds: f64,
}

impl Summary {
    pub fn flooded_pixels(&self) -> usize {
        self.raster.u8_count(1)
    }

    pub fn describe(&self) -> String {
        let g = &self.raster.grid;
        let px = self.flooded_pixels();
        let gt = g.geotransform();
        format!(
            "items: {}\ntime slices: {}\n(slice, chunk) rows scanned: {}\nchunks in result: {}\n\
             grid: {} x {} px at {} m, origin ({}, {})\nflooded pixels: {} ({:.3} km²)\nwall time: {:.2} s",
            self.items,
            self.slices,
            self.scanned_rows,
            self.result_chunks,
            g.width,
            g.height,
            g.res,
            gt[0],
            gt[3],
            px,
            px as f64 * g.res * g.res / 1e6,
            self.seconds
        )
    }
}

/// Splits SQL text into statements with DataFusion's own parser.
pub fn split_statements(sql: &str) -> Result<Vec<Statement>> {
    let stmts = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| Error::Other(format!("SQL syntax error: {e}")))?;
    Ok(stmts.into_iter().collect())
}

/// The scan plans of every `flood_chunks` scan in a physical plan.
pub fn find_scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<ScanPlan>> {
    let mut out = Vec::new();
    let _ = plan.apply(|node| {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(s) = any.downcast_ref::<FloodChunksExec>() {
            out.push(s.scan_plan().clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Searches and plans every `flood_chunks` table a logical plan scans
/// (views included), so that the plan carries its scan plans wherever it runs.
pub async fn resolve_scans(plan: &LogicalPlan) -> datafusion::error::Result<Vec<Arc<ScanPlan>>> {
    let mut tables: Vec<Arc<dyn TableProvider>> = Vec::new();
    collect_tables(plan, &mut tables);
    let mut out: Vec<Arc<ScanPlan>> = Vec::new();
    for t in tables {
        let any: &dyn std::any::Any = t.as_ref();
        if let Some(fc) = any.downcast_ref::<FloodChunksTable>() {
            let p = fc.resolve().await?;
            if !out.iter().any(|q| Arc::ptr_eq(q, &p)) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn collect_tables(plan: &LogicalPlan, out: &mut Vec<Arc<dyn TableProvider>>) {
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Ok(p) = source_as_provider(&scan.source) {
                let any: &dyn std::any::Any = p.as_ref();
                if let Some(v) = any.downcast_ref::<ViewTable>() {
                    collect_tables(v.logical_plan(), out);
                }
                out.push(p);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

/// Plans one statement; runs it to batches (locally, or on the cluster the
/// session is connected to); the flood scans it contains, with the number of
/// (slice, chunk) rows each produces.
pub async fn run_statement(
    ctx: &SessionContext,
    stmt: Statement,
    progress: &ProgressBar,
) -> datafusion::error::Result<(Vec<RecordBatch>, Vec<(Arc<ScanPlan>, usize)>)> {
    let state = ctx.state();
    let logical = state.statement_to_plan(stmt).await?;
    let mut scans = resolve_scans(&logical).await?;
    let df = ctx.execute_logical_plan(logical).await?;
    let physical = df.create_physical_plan().await?;
    if scans.is_empty() {
        scans = find_scans(&physical);
    }
    let scans: Vec<(Arc<ScanPlan>, usize)> = scans
        .into_iter()
        .map(|s| {
            let n = scan_rows(&s);
            (s, n)
        })
        .collect();
    let cluster = state.config().get_extension::<ClusterUrl>();
    let _job = match &cluster {
        Some(url) => JobProgress::follow(&physical, url, progress),
        None => {
            let rows: usize = scans.iter().map(|(_, n)| n).sum();
            if rows > 0 {
                progress.set_length(rows as u64);
                set_progress(Some(progress.clone()));
            }
            None
        }
    };
    let batches = collect(physical, ctx.task_ctx()).await;
    set_progress(None);
    let batches = match (batches, &cluster) {
        (Err(e), Some(url)) => return Err(cluster_error(e, url)),
        (b, _) => b?,
    };
    Ok((batches, scans))
}

/// Ballista wraps a failed job's cause in several layers (a gRPC status in
/// Debug form inside DataFusion errors); keep the cause, say where it ran.
fn cluster_error(
    e: datafusion::error::DataFusionError,
    url: &ClusterUrl,
) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!(
        "query on cluster {} failed: {}",
        url.df(),
        tidy_cluster_message(&e.to_string())
    ))
}

/// The `message: "…"` of a gRPC status, unescaped; the text otherwise.
pub fn tidy_cluster_message(text: &str) -> String {
    let Some(start) = text.find("message: \"") else {
        return text.trim().to_string();
    };
    let body = &text[start + "message: \"".len()..];
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push(' '),
                Some(o) => out.push(o),
                None => break,
            },
            '"' => break,
            c => out.push(c),
        }
    }
    for noise in [
        "Failed to create SessionContext: ",
        "DataFusionError(",
        "Plan(\"",
        "Execution(\"",
    ] {
        out = out.replace(noise, "");
    }
    out.trim_end_matches(['"', ')', ' ']).to_string()
}

/// Runs SQL text; the last statement's result is rasterised onto the grid of
/// its `flood_chunks` scan and written to `outputs`.
pub async fn run_to_outputs(
    ctx: &SessionContext,
    sql: &str,
    outputs: &Outputs,
    title: &str,
    progress: &ProgressBar,
) -> anyhow::Result<Summary> {
    let t0 = Instant::now();
    for p in [&outputs.tif, &outputs.parquet, &outputs.png]
        .into_iter()
        .flatten()
    {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            return Err(Error::Other(format!(
                "output directory '{}' does not exist",
                dir.map(|d| d.display().to_string()).unwrap_or_default()
            ))
            .into());
        }
    }
    let mut stmts = split_statements(sql)?;
    let last = stmts
        .pop()
        .ok_or_else(|| Error::Other("no SQL statement".into()))?;
    for s in stmts {
        run_statement(ctx, s, progress).await?;
    }
    let (batches, scans) = run_statement(ctx, last, progress).await?;
    progress.finish_and_clear();
    let scanned_rows = scans.iter().map(|(_, n)| n).sum();
    let scans: Vec<Arc<ScanPlan>> = scans.into_iter().map(|(s, _)| s).collect();
    let scan = match scans.as_slice() {
        [s] => s.clone(),
        [] => {
            return Err(Error::Other(
                "a raster output needs a query over flood_chunks(...): none found in the plan"
                    .into(),
            )
            .into())
        }
        [first, rest @ ..] => {
            if rest.iter().any(|s| s.grid != first.grid) {
                return Err(
                    Error::Other("the query scans flood_chunks on different grids".into()).into(),
                );
            }
            first.clone()
        }
    };
    let grid = scan.grid.clone();
    let result_chunks = batches.iter().map(|b| b.num_rows()).sum();
    let (outputs2, title) = (outputs.clone(), title.to_string());
    let raster = tokio::task::spawn_blocking(move || -> Result<Raster> {
        let raster = assemble(&grid, &batches)?;
        // all or nothing: when a later output fails, the earlier ones are removed
        let mut written: Vec<&std::path::Path> = Vec::new();
        let result = (|| -> Result<()> {
            if let Some(p) = &outputs2.parquet {
                crate::output::parquet::write_parquet(&batches, &raster, p)?;
                written.push(p);
            }
            drop(batches);
            if let Some(p) = &outputs2.png {
                crate::output::png::write_png(&raster, &title, p)?;
                written.push(p);
            }
            if let Some(p) = &outputs2.tif {
                crate::output::cog::write_cog(&raster, p)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for p in written {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        Ok(raster)
    })
    .await??;
    Ok(Summary {
        items: scan.n_items(),
        slices: scan.slices.len(),
        scanned_rows,
        result_chunks,
        raster,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::tidy_cluster_message;

    #[test]
    fn cluster_messages_lose_their_wrapping() {
        let t = r#"Execution error: Status { code: Internal, message: "Failed to create SessionContext: DataFusionError(Plan(\"floodsql version mismatch: peer is floodsql 1, this process is floodsql 2\"))", metadata: MetadataMap { } }"#;
        assert_eq!(
            tidy_cluster_message(t),
            "floodsql version mismatch: peer is floodsql 1, this process is floodsql 2"
        );
        assert_eq!(tidy_cluster_message(" plain "), "plain");
    }
}
