//! Running SQL statements: split with DataFusion's parser, plan, resolve the
//! `flood_chunks` scans on the client, execute (locally, or on the cluster
//! the session is connected to) with the query's own progress sinks.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::execution::context::SessionContext;
use datafusion::physical_plan::collect;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::cluster::client::{cluster_error, ClusterUrl, JobProgress};
use crate::context::QueryProgress;
use crate::error::{Error, Result};
use crate::raster::exec::scan_rows;
use crate::raster::plan::ScanPlan;
use crate::raster::resolve::{find_scans, resolve_scans};

/// Splits SQL text into statements with DataFusion's own parser.
pub fn split_statements(sql: &str) -> Result<Vec<Statement>> {
    let stmts = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| Error::Sql(format!("syntax error: {e}")))?;
    Ok(stmts.into_iter().collect())
}

/// What one statement produced.
#[derive(Debug)]
pub struct StatementOutput {
    /// The result rows.
    pub batches: Vec<RecordBatch>,
    /// The `flood_chunks` scans it ran, with the (slice, chunk) rows each produced.
    pub(crate) scans: Vec<(Arc<ScanPlan>, usize)>,
}

/// Plans one statement and runs it to batches (locally, or on the cluster
/// the session is connected to), reporting on `progress`: STAC searches on
/// its search bar, scanned rows (locally) or tasks (on a cluster) on its scan
/// bar.
pub async fn run_statement(
    ctx: &SessionContext,
    stmt: Statement,
    progress: &QueryProgress,
) -> datafusion::error::Result<StatementOutput> {
    let logical = ctx.state().statement_to_plan(stmt).await?;
    let mut scans = resolve_scans(&logical, &progress.search).await?;
    // SET, CREATE VIEW, ... act on the context; queries come back as a plan
    let (mut state, logical) = ctx.execute_logical_plan(logical).await?.into_parts();
    state.config_mut().set_extension(Arc::new(progress.clone()));
    let physical = state.create_physical_plan(&logical).await?;
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
        Some(url) => JobProgress::follow(&physical, url, &progress.scan),
        None => {
            let rows: usize = scans.iter().map(|(_, n)| n).sum();
            if rows > 0 {
                progress.scan.set_length(rows as u64);
            }
            None
        }
    };
    let batches = match (collect(physical, state.task_ctx()).await, &cluster) {
        (Err(e), Some(url)) => return Err(cluster_error(e, url)),
        (b, _) => b?,
    };
    Ok(StatementOutput { batches, scans })
}
