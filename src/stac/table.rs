//! `stac_items(source [, collection [, bbox [, datetime]]])`: the items of a
//! STAC search as a table. The search runs when the query is planned for
//! execution (`TableProvider::scan`), with `floodsql.page_size` and
//! `floodsql.max_items` from the session.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use indicatif::ProgressBar;

use crate::datetime::{parse_interval, Interval};
use crate::options::FloodsqlOptions;
use crate::sqlargs::{check_arity, opt_str, req_str};
use crate::stac::arrow::{items_schema, items_to_batch};
use crate::stac::search::{search, Bbox, SearchParams};

/// Builds search parameters from (source, collection, bbox, datetime) arguments
/// at positions `at..at+4` and the session's options.
pub fn search_params(
    fun: &str,
    args: &[Expr],
    session: &dyn Session,
    bbox_required: bool,
) -> Result<SearchParams> {
    let source = req_str(fun, "source", args, 0)?;
    let collections = opt_str(fun, "collection", args, 1)?
        .map(|c| c.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let bbox = match opt_str(fun, "bbox", args, 2)? {
        Some(b) => Some(Bbox::parse(&b)?),
        None if bbox_required => return plan_err!("{fun}: argument 3 (bbox) is required"),
        None => None,
    };
    let datetime = match opt_str(fun, "datetime", args, 3)? {
        Some(d) => parse_interval(&d)?,
        None => Interval::default(),
    };
    let opts = session
        .config_options()
        .extensions
        .get::<FloodsqlOptions>()
        .cloned()
        .unwrap_or_default();
    if opts.page_size == 0 {
        return plan_err!("floodsql.page_size must be > 0");
    }
    Ok(SearchParams {
        source,
        collections,
        bbox,
        datetime,
        max_items: (opts.max_items > 0).then_some(opts.max_items),
        page_size: opts.page_size,
    })
}

/// Progress of searches (the CLI sets a spinner; hidden by default).
pub fn search_progress() -> ProgressBar {
    SEARCH_PROGRESS
        .lock()
        .ok()
        .and_then(|p| p.clone())
        .unwrap_or_else(ProgressBar::hidden)
}

static SEARCH_PROGRESS: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// Where searches report items found.
pub fn set_search_progress(pb: Option<ProgressBar>) {
    if let Ok(mut p) = SEARCH_PROGRESS.lock() {
        *p = pb;
    }
}

#[derive(Debug)]
pub struct StacItemsFunction;

impl TableFunctionImpl for StacItemsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "stac_items";
        check_arity(
            F,
            "source [, collection [, bbox [, datetime]]]",
            args.exprs(),
            4,
        )?;
        let params = search_params(F, args.exprs(), args.session(), false)?;
        Ok(Arc::new(StacItemsTable { params }))
    }
}

#[derive(Debug)]
pub struct StacItemsTable {
    pub params: SearchParams,
}

#[async_trait]
impl TableProvider for StacItemsTable {
    fn schema(&self) -> SchemaRef {
        items_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let items = search(&self.params, &search_progress()).await?;
        let batch = items_to_batch(&items)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            items_schema(),
            projection.cloned(),
        )?)
    }
}
