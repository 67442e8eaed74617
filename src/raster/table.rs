//! `flood_chunks(source, collection, bbox, datetime, asset [, chunk_size])`:
//! raster chunks as a table, one row per (time slice, chunk) — see
//! [`chunk_schema`](crate::raster::exec::chunk_schema). The STAC search and
//! the scan plan are made once per table: by the client before it sends a
//! plan to a cluster ([`FloodChunksTable::resolve`], so that the scheduler
//! needs no access to the catalogue and the client knows the output grid), or
//! else when the query is planned for execution.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{internal_datafusion_err, Result};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::access::ReadPolicy;
use crate::context::QueryProgress;
use crate::error::{join_err, Error};
use crate::options::{FloodsqlOptions, GroupBy, MissingAssets};
use crate::raster::exec::{chunk_schema_for, ChunkColumn, FloodChunksExec, ZONES};
use crate::raster::plan::{plan_scan, ScanLimits, ScanPlan, ScanRequest};
use crate::sqlargs::{check_arity, opt_str, opt_usize, req_str};
use crate::stac::item::resolve_href;
use crate::stac::search::{search, SearchParams};
use crate::stac::table::search_params;
use crate::store::prepare_http_stores;
use crate::vector::regions::{RegionSet, RegionsSpec};
use crate::vector::zones::ZoneSet;

/// The SQL name of the table function.
pub(crate) const NAME: &str = "flood_chunks";

/// Its arguments, as error messages show them.
pub(crate) const SIGNATURE: &str =
    "source, collection, bbox, datetime, asset[,asset…] [, chunk_size] [, regions]";

/// `flood_chunks(...)`: the table function.
#[derive(Debug)]
pub(crate) struct FloodChunksFunction;

impl TableFunctionImpl for FloodChunksFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = NAME;
        let a = args.exprs();
        check_arity(F, SIGNATURE, a, 7)?;
        let search = search_params(F, a, args.session(), true)?;
        let assets = asset_list(&req_str(F, "asset", a, 4)?)?;
        let opts = FloodsqlOptions::from_config(args.session().config_options());
        // the 6th argument is the chunk size, or (a string) the regions
        let regions_at = match a.get(5) {
            Some(Expr::Literal(v, _))
                if matches!(
                    v.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                5
            }
            _ => 6,
        };
        let chunk = if regions_at == 5 {
            check_arity(F, SIGNATURE, a, 6)?;
            None
        } else {
            opt_usize(F, "chunk_size", a, 5)?
        }
        .unwrap_or(opts.chunk_size);
        let regions = opt_str(F, "regions", a, regions_at)?
            .map(|p| RegionsSpec::new(&p, None))
            .transpose()?;
        let policy = ReadPolicy::new(&search.source, &opts.allowed_hosts, &opts.allowed_paths);
        Ok(Arc::new(FloodChunksTable::new(FloodChunksSpec {
            search,
            assets,
            chunk,
            concurrency: opts.read_concurrency,
            nodata: opts.nodata,
            policy,
            limits: ScanLimits {
                max_grid_pixels: opts.max_grid_pixels.0,
                max_read_bytes: opts.max_read_bytes.0,
            },
            skip_items: opts.skip_items,
            missing_assets: opts.missing_assets,
            group_by: opts.group_by,
            regions,
        })))
    }
}

/// The assets of a `flood_chunks` call: `asset` is one name or a
/// comma-separated list (the first gives `pixels`, each other its own
/// column, named after it).
pub(crate) fn asset_list(asset: &str) -> Result<Vec<String>, Error> {
    let names: Vec<String> = asset.split(',').map(|a| a.trim().to_string()).collect();
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(Error::invalid("asset", asset, "an asset name is empty"));
        }
        if names[..i].contains(n) {
            return Err(Error::invalid(
                "asset",
                asset,
                format!("'{n}' is given twice"),
            ));
        }
        if i > 0 && (ChunkColumn::ALL.iter().any(|c| c.name() == n) || n == ZONES) {
            return Err(Error::invalid(
                "asset",
                asset,
                format!("'{n}' would be a column of its own, but flood_chunks already has a column '{n}'"),
            ));
        }
    }
    Ok(names)
}

/// What a `flood_chunks(...)` call asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FloodChunksSpec {
    pub(crate) search: SearchParams,
    /// The assets read, checked ([`asset_list`]): the first gives `pixels`,
    /// each other a column named after it.
    pub(crate) assets: Vec<String>,
    /// Chunk side in pixels.
    pub(crate) chunk: usize,
    /// Windows read concurrently per scan partition.
    pub(crate) concurrency: usize,
    /// Nodata of every item's asset (`floodsql.nodata`); `None`: as declared.
    #[serde(default)]
    pub(crate) nodata: Option<u8>,
    /// What the catalogue may make the scan read.
    #[serde(default)]
    pub(crate) policy: ReadPolicy,
    /// Bounds checked when the scan is planned.
    #[serde(default)]
    pub(crate) limits: ScanLimits,
    /// Items left out: an earlier result holds them (see [`only_new`]).
    #[serde(default)]
    pub(crate) skip_items: Vec<String>,
    /// Regions whose zones the scan gives (column `zones`).
    #[serde(default)]
    pub(crate) regions: Option<RegionsSpec>,
    /// What an item lacking an asset reads as (`floodsql.missing_assets`).
    #[serde(default)]
    pub(crate) missing_assets: MissingAssets,
    /// How items make time slices (`floodsql.group_by`).
    #[serde(default)]
    pub(crate) group_by: GroupBy,
}

/// The part of `plan` an earlier result holding the items `skip` lacks:
/// the time slices with none of them. Merging that part into the earlier
/// result gives what the full plan gives only when every slice is either
/// wholly old or wholly new (a slice fuses its items first-valid-wins, so
/// one read in part before must be read whole: by a full run), every
/// skipped item is still in the plan, and none of them changed since
/// (an entry `ID@VERSION` names the content read then, see
/// `StacItem::version`: a reprocessed item republished under its id has
/// another, and its old pixels cannot be taken out of a merged result);
/// otherwise [`Error::NotIncremental`]. Items the search finds that touch
/// no chunk of the grid play no part.
pub(crate) fn keep_new(mut plan: ScanPlan, skip: &[String]) -> Result<ScanPlan, Error> {
    if skip.is_empty() {
        return Ok(plan);
    }
    // id → the version read then (None: not recorded)
    let skip: HashMap<&str, Option<&str>> = skip
        .iter()
        .map(|e| match e.rsplit_once('@') {
            Some((id, v)) if v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (id, Some(v))
            }
            _ => (e.as_str(), None),
        })
        .collect();
    let planned: HashMap<&str, &str> = plan
        .slices
        .iter()
        .flat_map(|s| &s.sources)
        .map(|src| (src.item_id.as_str(), src.version.as_str()))
        .collect();
    let mut gone: Vec<&str> = skip
        .keys()
        .filter(|id| !planned.contains_key(**id))
        .copied()
        .collect();
    gone.sort();
    if let Some(first) = gone.first() {
        return Err(Error::NotIncremental(format!(
            "{} item(s) of the earlier result are no longer found by the search (e.g. '{first}')",
            gone.len()
        )));
    }
    let mut changed: Vec<&str> = skip
        .iter()
        .filter(|(id, then)| then.is_some_and(|v| planned.get(*id) != Some(&v)))
        .map(|(id, _)| *id)
        .collect();
    changed.sort();
    if let Some(first) = changed.first() {
        return Err(Error::NotIncremental(format!(
            "{} item(s) of the earlier result were republished with other content since it \
             was made (reprocessed: e.g. '{first}', whose updated/created or asset changed)",
            changed.len()
        )));
    }
    let old = |id: &str| skip.contains_key(id);
    for s in &plan.slices {
        let new = s.sources.iter().find(|x| !old(&x.item_id));
        if let (Some(new), true) = (new, s.sources.iter().any(|x| old(&x.item_id))) {
            return Err(Error::NotIncremental(format!(
                "new item '{}' belongs to a time slice the earlier result read in part",
                new.item_id
            )));
        }
    }
    let before = plan.n_items();
    plan.slices
        .retain(|s| !s.sources.iter().any(|x| old(&x.item_id)));
    if plan.slices.is_empty() {
        return Err(Error::NothingNew(before));
    }
    plan.index = Default::default();
    Ok(plan)
}

/// One `flood_chunks(...)` table: its spec and, once made, its scan plan.
#[derive(Debug)]
pub(crate) struct FloodChunksTable {
    pub(crate) spec: FloodChunksSpec,
    resolved: OnceCell<Arc<ScanPlan>>,
}

impl FloodChunksTable {
    pub(crate) fn new(spec: FloodChunksSpec) -> Self {
        Self {
            spec,
            resolved: OnceCell::new(),
        }
    }

    /// A table whose search and scan plan are already made (decoded on a
    /// scheduler).
    pub(crate) fn with_plan(spec: FloodChunksSpec, plan: Arc<ScanPlan>) -> Self {
        Self {
            spec,
            resolved: OnceCell::new_with(Some(plan)),
        }
    }

    /// The scan plan, if it has been made.
    pub(crate) fn resolved(&self) -> Option<Arc<ScanPlan>> {
        self.resolved.get().cloned()
    }

    /// Searches and plans the scan (once; later calls return the same
    /// plan), reporting items found on `progress`.
    pub(crate) async fn resolve(&self, progress: &ProgressBar) -> Result<Arc<ScanPlan>> {
        self.resolved
            .get_or_try_init(|| async {
                let s = &self.spec;
                let items = search(&s.search, progress).await?;
                if items.is_empty() {
                    let hints = s.search.no_items_hints().await;
                    return Err(Error::NoItems(format!("{}{hints}", s.search.describe())).into());
                }
                // the HTTP store its reads will take is built while the
                // scan is planned
                let hrefs = items.iter().flat_map(|it| {
                    s.assets.iter().filter_map(|a| {
                        let href = it.assets.get(a)?.get("href")?.as_str()?;
                        resolve_href(href, it.base.as_deref()).ok()
                    })
                });
                prepare_http_stores(hrefs, &s.policy);
                let bbox = s.search.bbox.ok_or_else(|| {
                    internal_datafusion_err!("flood_chunks without a bbox (checked at planning)")
                })?;
                let (assets, chunk, nodata) = (s.assets.clone(), s.chunk, s.nodata);
                let (policy, limits) = (s.policy.clone(), s.limits);
                let (missing, group_by) = (s.missing_assets.clone(), s.group_by);
                let plan = tokio::task::spawn_blocking(move || {
                    plan_scan(ScanRequest {
                        items: &items,
                        bbox: &bbox,
                        assets: &assets,
                        chunk,
                        nodata,
                        policy,
                        limits,
                        missing: &missing,
                        group_by,
                    })
                })
                .await
                .map_err(join_err("scan planning"))??;
                let mut plan = keep_new(plan, &s.skip_items)?;
                plan.search = s.search.source_and_collections();
                if let Some(r) = s.regions.clone() {
                    let g = plan.grid.clone();
                    let zones = tokio::task::spawn_blocking(move || {
                        let set = RegionSet::read(&r)?;
                        ZoneSet::new(&set, &g.crs, g.geotransform(), g.width, g.height)
                    })
                    .await
                    .map_err(join_err("reading the regions"))??;
                    plan.zones = Some(Arc::new(zones));
                }
                Ok(Arc::new(plan))
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl TableProvider for FloodChunksTable {
    fn schema(&self) -> SchemaRef {
        chunk_schema_for(
            self.spec.assets.get(1..).unwrap_or_default(),
            self.spec.regions.is_some(),
        )
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
        let plan = self
            .resolve(&QueryProgress::of(state.config()).search)
            .await?;
        // at most one partition per chunk row with data (the assignment's rule)
        Ok(Arc::new(FloodChunksExec::try_new(
            plan,
            state.config().target_partitions(),
            self.spec.concurrency,
            projection.cloned(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::plan::tests::random_plan;

    fn ids(p: &ScanPlan, slice: usize) -> Vec<String> {
        p.slices[slice]
            .sources
            .iter()
            .map(|s| s.item_id.clone())
            .collect()
    }

    #[test]
    fn an_update_keeps_the_wholly_new_slices_only() {
        let p = random_plan(3, 40, 97);
        assert!(p.slices.len() == 4 && p.slices.iter().all(|s| s.sources.len() >= 2));
        // slices 0 and 2 held before: 1 and 3 are read
        let old: Vec<String> = ids(&p, 0).into_iter().chain(ids(&p, 2)).collect();
        let kept = keep_new(p.clone(), &old).unwrap();
        assert_eq!(kept.slices, vec![p.slices[1].clone(), p.slices[3].clone()]);
        // a slice read in part before: not incremental
        let part = vec![ids(&p, 1)[0].clone()];
        let e = keep_new(p.clone(), &part).unwrap_err().to_string();
        assert!(
            e.contains("not incremental") && e.contains("in part"),
            "{e}"
        );
        // an item held before is gone from the search
        let e = keep_new(p.clone(), &["gone".to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no longer found") && e.contains("'gone'"), "{e}");
        // nothing new
        let all: Vec<String> = (0..4).flat_map(|s| ids(&p, s)).collect();
        assert!(matches!(
            keep_new(p.clone(), &all),
            Err(Error::NothingNew(_))
        ));
        // no skip list: the plan as it is
        assert_eq!(keep_new(p.clone(), &[]).unwrap(), p);
        // versions: the same content is skipped; another (reprocessed) is
        // not incremental, naming the item
        let mut v = p.clone();
        for s in &mut v.slices {
            for src in &mut s.sources {
                src.version = format!("{:016x}", src.item_id.len());
            }
        }
        let same: Vec<String> = ids(&v, 0)
            .into_iter()
            .map(|id| format!("{id}@{:016x}", id.len()))
            .collect();
        assert_eq!(keep_new(v.clone(), &same).unwrap().slices.len(), 3);
        let mut other = same.clone();
        other[0] = format!("{}@00000000000000ff", ids(&v, 0)[0]);
        let e = keep_new(v.clone(), &other).unwrap_err().to_string();
        assert!(
            e.contains("republished") && e.contains(&format!("'{}'", ids(&v, 0)[0])),
            "{e}"
        );
    }

    #[test]
    fn asset_lists() {
        assert_eq!(asset_list("a").unwrap(), vec!["a"]);
        assert_eq!(asset_list("a, b").unwrap(), vec!["a", "b"]);
        for bad in ["a,a", "a,", "a,pixels", "a,datetime"] {
            assert!(asset_list(bad).is_err(), "{bad}");
        }
    }
}
