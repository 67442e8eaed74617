//! Running SQL statements: split with DataFusion's parser, plan, resolve the
//! `flood_chunks` scans on the client, execute (locally, or on the cluster
//! the session is connected to) with the query's own progress sinks.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::execution::context::SessionContext;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use futures::TryStreamExt;

use crate::cluster::client::{cluster_error, ClusterUrl, JobProgress};
use crate::context::QueryProgress;
use crate::error::{Error, Result};
use crate::raster::plan::ScanPlan;
use crate::raster::resolve::{find_scans, resolve_scans};

/// Splits SQL text into statements with DataFusion's own parser.
pub fn split_statements(sql: &str) -> Result<Vec<Statement>> {
    let stmts = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| Error::Sql(format!("syntax error: {}", parser_message(&e))))?;
    Ok(stmts.into_iter().collect())
}

/// The parser's own words, once: DataFusion wraps them as `SQL error:
/// ParserError("…")`.
fn parser_message(e: &datafusion::error::DataFusionError) -> String {
    use datafusion::error::DataFusionError;
    use datafusion::sql::sqlparser::parser::ParserError;
    match e {
        DataFusionError::SQL(p, _) => match p.as_ref() {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
            ParserError::RecursionLimitExceeded => "the statement nests too deeply".into(),
        },
        other => other.message().into_owned(),
    }
}

/// What one statement produced.
#[derive(Debug)]
pub struct StatementOutput {
    /// The result rows.
    pub batches: Vec<RecordBatch>,
}

/// A statement planned and started: its result as a stream.
pub(crate) struct StatementStream {
    /// The result rows, as they come (cluster errors already tidied).
    pub(crate) stream: SendableRecordBatchStream,
    /// The `flood_chunks` scans it runs, with the (slice, chunk) rows each produces.
    pub(crate) scans: Vec<(Arc<ScanPlan>, usize)>,
    /// Follows the cluster job while the stream is read (keep it alive).
    pub(crate) job: Option<JobProgress>,
}

/// Plans one statement and starts it (locally, or on the cluster the session
/// is connected to), reporting on `progress`: STAC searches on its search
/// bar, scanned rows (locally) or tasks (on a cluster) on its scan bar.
pub(crate) async fn stream_statement(
    ctx: &SessionContext,
    stmt: Statement,
    progress: &QueryProgress,
    unread: &[&str],
) -> datafusion::error::Result<StatementStream> {
    register_stores(ctx, &stmt)?;
    let logical = ctx.state().statement_to_plan(stmt).await?;
    let mut scans = resolve_scans(&logical, &progress.search).await?;
    let (mut state, logical) = query_plan(ctx, logical, unread).await?;
    state.config_mut().set_extension(Arc::new(progress.clone()));
    let physical = state.create_physical_plan(&logical).await?;
    if scans.is_empty() {
        scans = find_scans(&physical);
    }
    let scans: Vec<(Arc<ScanPlan>, usize)> = scans
        .into_iter()
        .map(|s| {
            let n = s.rows();
            (s, n)
        })
        .collect();
    let cluster = state.config().get_extension::<ClusterUrl>();
    // a name of its own, so that the client can find its job on the scheduler
    // before Ballista tells it the id (in push mode: only at the end)
    let job_name = cluster.as_ref().map(|_| unique_job_name());
    if let Some(name) = &job_name {
        state
            .config_mut()
            .options_mut()
            .set("ballista.job.name", name)?;
    }
    let job = match (&cluster, job_name) {
        (Some(url), Some(name)) => {
            JobProgress::follow(&physical, url, &name, &progress.scan, &progress.cancel)
        }
        (Some(_), None) => None,
        (None, _) => {
            let rows: usize = scans.iter().map(|(_, n)| n).sum();
            if rows > 0 {
                progress.scan.set_length(rows as u64);
            }
            None
        }
    };
    let stream = execute_stream(physical, state.task_ctx()).map_err(|e| tidy(e, &cluster))?;
    let schema = stream.schema();
    let stream = stream.map_err(move |e| tidy(e, &cluster));
    Ok(StatementStream {
        stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        scans,
        job,
    })
}

/// The statement's query plan, with its session state: SET, CREATE VIEW,
/// ... act on the context here (and leave an empty plan). When the result
/// has a `pixels` column, its columns in `unread` (which no output reads
/// beside the pixels) are dropped before planning, so that the optimiser
/// drops what computes only them, an aggregate's call say. Without a
/// `pixels` column nothing is dropped: the writers then rasterise the only
/// binary column, whatever its name.
async fn query_plan(
    ctx: &SessionContext,
    logical: LogicalPlan,
    unread: &[&str],
) -> datafusion::error::Result<(SessionState, LogicalPlan)> {
    let df = ctx.execute_logical_plan(logical).await?;
    let df = if df.schema().has_column_with_unqualified_name("pixels") {
        df.drop_columns(unread)?
    } else {
        df
    };
    Ok(df.into_parts())
}

/// Makes the object stores a statement names reachable: `COPY … TO
/// 's3://…'` and `CREATE EXTERNAL TABLE … LOCATION 's3://…'` (also gs://,
/// az://) get a store for their bucket, configured from the environment
/// like every other store (`store::cloud_object`), as datafusion-cli does.
fn register_stores(ctx: &SessionContext, stmt: &Statement) -> Result<()> {
    let locations: Vec<&str> = match stmt {
        Statement::CopyTo(c) => vec![c.target.as_str()],
        Statement::CreateExternalTable(t) => t.locations.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    for loc in locations.into_iter().filter(|l| crate::store::is_cloud(l)) {
        let (store, _) = crate::store::cloud_object(loc)?;
        let mut root =
            url::Url::parse(loc).map_err(|e| Error::invalid("object URL", loc, e.to_string()))?;
        root.set_path("");
        root.set_query(None);
        ctx.register_object_store(&root, store);
    }
    Ok(())
}

/// A job name no other query shares: `floodsql-PID-NANOS-N`.
fn unique_job_name() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("floodsql-{}-{nanos}-{n}", std::process::id())
}

fn tidy(
    e: datafusion::error::DataFusionError,
    cluster: &Option<Arc<ClusterUrl>>,
) -> datafusion::error::DataFusionError {
    match cluster {
        Some(url) => cluster_error(e, url),
        None => e,
    }
}

/// Plans SQL text without running it (`--dry-run`): `SET` and `CREATE
/// VIEW`/`DROP VIEW` statements act on the context (they read nothing); every
/// other statement's `flood_chunks` scans are searched and planned — limits
/// checked, no pixel read, nothing written. Returns the scans in order.
pub async fn plan_only(
    ctx: &SessionContext,
    sql: &str,
    progress: &QueryProgress,
) -> datafusion::error::Result<Vec<Arc<ScanPlan>>> {
    use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement as Stmt};
    let mut out: Vec<Arc<ScanPlan>> = Vec::new();
    for stmt in split_statements(sql)? {
        let logical = ctx.state().statement_to_plan(stmt).await?;
        match &logical {
            LogicalPlan::Statement(Stmt::SetVariable(_))
            | LogicalPlan::Ddl(DdlStatement::CreateView(_) | DdlStatement::DropView(_)) => {
                ctx.execute_logical_plan(logical).await?;
            }
            _ => {
                for s in resolve_scans(&logical, &progress.search).await? {
                    if !out.iter().any(|q| Arc::ptr_eq(q, &s)) {
                        out.push(s);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Plans one statement and runs it to batches; see [`stream_statement`].
pub async fn run_statement(
    ctx: &SessionContext,
    stmt: Statement,
    progress: &QueryProgress,
) -> datafusion::error::Result<StatementOutput> {
    let StatementStream { stream, job, .. } = stream_statement(ctx, stmt, progress, &[]).await?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    drop(job);
    Ok(StatementOutput { batches })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, LargeBinaryArray, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    /// The plan of the extent query, its mask named `mask`, with the
    /// columns in `unread` dropped.
    async fn extent_plan(mask: &str, unread: &[&str]) -> (Vec<String>, String) {
        let mut ctx = SessionContext::new();
        floodsql_udfs::register::register_all(&mut ctx).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("chunk_row", DataType::Int32, false),
            Field::new("pixels", DataType::LargeBinary, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![0, 0])),
                Arc::new(LargeBinaryArray::from_vec(vec![
                    &[0u8, 1, 255][..],
                    &[1, 0, 0],
                ])),
            ],
        )
        .unwrap();
        let t = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("chunks", Arc::new(t)).unwrap();
        let sql = format!(
            "SELECT chunk_row, flood_max_extent(pixels) AS {mask}, \
             flood_observed(pixels) AS observed FROM chunks GROUP BY chunk_row"
        );
        let stmt = super::split_statements(&sql).unwrap().pop().unwrap();
        let logical = ctx.state().statement_to_plan(stmt).await.unwrap();
        let (state, logical) = super::query_plan(&ctx, logical, unread).await.unwrap();
        let physical = state.create_physical_plan(&logical).await.unwrap();
        let columns = physical
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let text = displayable(physical.as_ref()).indent(true).to_string();
        (columns, text)
    }

    #[tokio::test]
    async fn an_unused_column_is_not_computed() {
        let (columns, plan) = extent_plan("pixels", &[]).await;
        assert_eq!(columns, ["chunk_row", "pixels", "observed"]);
        assert!(plan.contains("flood_observed"), "{plan}");
        let (columns, plan) = extent_plan("pixels", &["observed", "not_a_column"]).await;
        assert_eq!(columns, ["chunk_row", "pixels"]);
        assert!(plan.contains("flood_max_extent"), "{plan}");
        assert!(!plan.contains("flood_observed"), "{plan}");
        // no `pixels` column: nothing is dropped (which binary column is
        // rasterised is then the writers' call)
        let (columns, plan) = extent_plan("mask", &["observed"]).await;
        assert_eq!(columns, ["chunk_row", "mask", "observed"]);
        assert!(plan.contains("flood_observed"), "{plan}");
    }
    #[test]
    fn syntax_errors_say_the_parsers_words_once() {
        let e = super::split_statements("SELEC 1").unwrap_err().to_string();
        assert_eq!(
            e,
            "SQL syntax error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1"
        );
    }
}
