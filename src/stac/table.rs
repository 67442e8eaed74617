//! `stac_items(source [, collection [, bbox [, datetime]]])`: the items of a
//! STAC search as a table. The search runs when the query is planned for
//! execution (`TableProvider::scan`), with `floodsql.page_size` and
//! `floodsql.max_items` from the session.

use std::sync::Arc;

use crate::context::QueryProgress;
use crate::datetime::{parse_interval, Interval};
use crate::geo::Bbox;
use crate::options::FloodsqlOptions;
use crate::sqlargs::{check_arity, opt_str, req_str};
use crate::stac::arrow::{items_schema, items_to_batch};
use crate::stac::search::{search, SearchParams};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

/// The SQL name of the table function.
pub(crate) const NAME: &str = "stac_items";

/// Its arguments, as error messages and `\df` show them.
pub(crate) const SIGNATURE: &str = "source [, collection [, bbox [, datetime]]]";

/// Builds search parameters from the (source, collection, bbox, datetime)
/// arguments at positions 0..4 and the session's options.
pub(crate) fn search_params(
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
    let opts = FloodsqlOptions::from_config(session.config_options());
    if opts.page_size == 0 {
        return plan_err!("floodsql.page_size must be > 0");
    }
    if opts.http_timeout == 0 {
        return plan_err!("floodsql.http_timeout must be > 0 seconds");
    }
    Ok(SearchParams {
        source,
        collections,
        bbox,
        datetime,
        max_items: (opts.max_items > 0).then_some(opts.max_items),
        page_size: opts.page_size,
        timeout_secs: opts.http_timeout as u64,
        filter: opts.filter.filter().cloned(),
    })
}

/// `stac_items(...)`: the table function.
#[derive(Debug)]
pub(crate) struct StacItemsFunction;

impl TableFunctionImpl for StacItemsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = NAME;
        check_arity(F, SIGNATURE, args.exprs(), 4)?;
        let params = search_params(F, args.exprs(), args.session(), false)?;
        Ok(Arc::new(StacItemsTable { params }))
    }
}

/// The items of one search, as a table.
#[derive(Debug)]
pub(crate) struct StacItemsTable {
    pub(crate) params: SearchParams,
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
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let progress = QueryProgress::of(state.config());
        let items = search(&self.params, &progress.search).await?;
        let batch = items_to_batch(&items)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            items_schema(),
            projection.cloned(),
        )?)
    }
}
