//! `floodsql extent`: the tutorial's job from one command. It binds the
//! canonical `sql/max_flood_extent.sql` and runs it through the same engine
//! path as any user SQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::context::Cancel;
use crate::geo::Bbox;
use crate::options::{DEFAULT_CHUNK_SIZE, DEFAULT_COLLECTION, DEFAULT_PAGE_SIZE, DEFAULT_STAC_URL};
use crate::output::lineage;
use crate::pipeline::{run_to_outputs, Outputs, RunLabel, Update};
use crate::template::{bind, Param};

/// A `flood_chunks` scan from the command line: the STAC search, the grid's
/// chunking and where the query runs (shared by `extent` and `series`).
#[derive(Debug, Args, Clone)]
pub(crate) struct ScanArgs {
    /// STAC API URL (root or /search), or a static catalogue: ItemCollection /
    /// NDJSON file, directory of item files, or their http(s) URL.
    #[arg(long, visible_alias = "source", default_value = DEFAULT_STAC_URL)]
    pub(crate) stac_url: String,
    /// Collection id(s), comma-separated ('' = any collection).
    #[arg(long, default_value = DEFAULT_COLLECTION)]
    pub(crate) collection: Option<String>,
    /// Area of interest, degrees: MINX,MINY,MAXX,MAXY.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) bbox: String,
    /// Time range START/END (RFC 3339; '..' open; date-only ends expanded like pystac-client).
    #[arg(long)]
    pub(crate) datetime: Option<String>,
    /// Asset to read.
    #[arg(long, default_value = "ensemble_flood_extent")]
    pub(crate) asset: String,
    /// Chunk side in pixels.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub(crate) chunk: usize,
    /// Items per page asked of a STAC API.
    #[arg(long, default_value_t = DEFAULT_PAGE_SIZE)]
    pub(crate) page_size: usize,
    /// Cap on the number of items (like pystac-client's max_items).
    #[arg(long)]
    pub(crate) max_items: Option<usize>,
    /// Scan partitions (default: number of cores; on a cluster 16, Ballista's default).
    #[arg(long)]
    pub(crate) partitions: Option<usize>,
    /// Run on a floodsql cluster (`floodsql scheduler` + executors): df://HOST:PORT.
    #[arg(long)]
    pub(crate) cluster: Option<String>,
    /// Set a session option before running, e.g. `--set floodsql.reader=gdal`
    /// or `--set datafusion.runtime.memory_limit=1G` (repeatable; as SQL `SET`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
    /// CQL2 filter on the items (cql2-text or cql2-json), e.g.
    /// "flooded_pixels > 0": sent to a STAC API (filter extension), evaluated
    /// by floodsql on static catalogues (`floodsql.filter`).
    #[arg(long, value_name = "CQL2")]
    pub(crate) filter: Option<String>,
    /// Time slices: 'time' (one per exact datetime, the tutorial's) or
    /// 'solar_day' (the frames of one pass fused, as odc-stac's
    /// groupby="solar_day"; `floodsql.group_by`).
    #[arg(long, value_name = "time|solar_day")]
    pub(crate) group_by: Option<String>,
    /// What an item lacking an asset reads as: ASSET=error|nodata|VALUE,
    /// comma-separated, '*' for any asset, e.g. 'exclusion_mask=0'
    /// (`floodsql.missing_assets`; default: an error).
    #[arg(long, value_name = "ASSET=POLICY,...")]
    pub(crate) missing_assets: Option<String>,
    /// Print the SQL that runs, then run it.
    #[arg(long)]
    pub(crate) print_sql: bool,
    /// Search and plan only: print the estimate (items, slices, grid, bytes
    /// to read, output size) and exit without reading a pixel or writing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

impl ScanArgs {
    /// The arguments of a scan with defaults for everything but the search.
    pub(crate) fn new(stac_url: String, bbox: String, datetime: Option<String>) -> Self {
        Self {
            stac_url,
            collection: Some(DEFAULT_COLLECTION.into()),
            bbox,
            datetime,
            asset: "ensemble_flood_extent".into(),
            chunk: DEFAULT_CHUNK_SIZE,
            page_size: DEFAULT_PAGE_SIZE,
            max_items: None,
            partitions: None,
            cluster: None,
            set: Vec::new(),
            filter: None,
            group_by: None,
            missing_assets: None,
            print_sql: false,
            dry_run: false,
        }
    }

    /// `template` bound with this scan's parameters (`${source}`,
    /// `${collection}`, `${bbox}`, `${datetime}`, `${asset}`, `${chunk}`).
    /// The session options the scan implies are set on its context
    /// ([`Self::context`]), not in the SQL.
    pub(crate) fn sql(&self, template: &str) -> anyhow::Result<String> {
        self.sql_with(template, &self.params()?)
    }

    /// `template` bound with `params` (this scan's and more).
    pub(crate) fn sql_with(
        &self,
        template: &str,
        params: &BTreeMap<String, Param>,
    ) -> anyhow::Result<String> {
        Ok(bind(template, params)?)
    }

    /// The template parameters of this scan (checked).
    pub(crate) fn params(&self) -> anyhow::Result<BTreeMap<String, Param>> {
        // validate early for clear messages
        Bbox::parse(&self.bbox)?;
        if let Some(d) = &self.datetime {
            crate::datetime::parse_interval(d)?;
        }
        let mut p = BTreeMap::new();
        p.insert("source".to_string(), Param::Str(self.stac_url.clone()));
        p.insert(
            "collection".to_string(),
            self.collection
                .clone()
                .map(Param::Str)
                .unwrap_or(Param::Null),
        );
        p.insert("bbox".to_string(), Param::Str(self.bbox.clone()));
        p.insert(
            "datetime".to_string(),
            self.datetime.clone().map(Param::Str).unwrap_or(Param::Null),
        );
        p.insert("asset".to_string(), Param::Str(self.asset.clone()));
        p.insert("chunk".to_string(), Param::Int(self.chunk as i64));
        Ok(p)
    }

    /// The session this scan runs in (local, or on `--cluster`), with the
    /// options its flags set (after any `--set`).
    pub(crate) async fn context(
        &self,
    ) -> anyhow::Result<datafusion::execution::context::SessionContext> {
        self.context_skipping(&[]).await
    }

    /// [`Self::context`] leaving out the items `skip` (`--update`: an
    /// earlier result holds them; `floodsql.skip_items`).
    pub(crate) async fn context_skipping(
        &self,
        skip: &[String],
    ) -> anyhow::Result<datafusion::execution::context::SessionContext> {
        let ctx =
            super::cluster::context(self.cluster.as_deref(), self.partitions, &self.set).await?;
        let (page_size, max_items) = (self.page_size, self.max_items.unwrap_or(0));
        super::cluster::set_options(&ctx, |o| {
            o.page_size = page_size;
            o.max_items = max_items;
            o.skip_items = skip.to_vec();
        })?;
        for (key, value) in self.search_options() {
            crate::pipeline::set_option(&ctx, &format!("floodsql.{key}"), &value)?;
        }
        Ok(ctx)
    }

    /// The options the search and slicing flags set (`--filter`,
    /// `--group-by`, `--missing-assets`), as (key, value): they shape the
    /// result, so the lineage records them with the parameters.
    pub(crate) fn search_options(&self) -> Vec<(String, String)> {
        [
            ("filter", &self.filter),
            ("group_by", &self.group_by),
            ("missing_assets", &self.missing_assets),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
        .collect()
    }

    /// The parameters a result records: the template's and the search
    /// options given.
    pub(crate) fn recorded(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut p = Param::pairs(&self.params()?);
        p.extend(self.search_options());
        Ok(p)
    }
}

/// The tutorial's query as one command.
#[derive(Debug, Args, Clone)]
pub(crate) struct ExtentArgs {
    #[command(flatten)]
    pub(crate) scan: ScanArgs,
    /// Output COG (not needed with --dry-run or --update).
    #[arg(long, required_unless_present_any = ["dry_run", "update"], conflicts_with = "update")]
    pub(crate) out: Option<PathBuf>,
    /// Update an earlier extent in place: read only the items its lineage
    /// item (OUT.stac.json beside it) does not list, OR them into OUT.tif and
    /// rewrite it (atomically). Recomputes in full when merging cannot give
    /// the full result (an item gone from the catalogue, or a new item in a
    /// time slice read before).
    #[arg(long, value_name = "OUT.tif")]
    pub(crate) update: Option<PathBuf>,
    /// Also write the chunk table as Parquet.
    #[arg(long)]
    pub(crate) parquet: Option<PathBuf>,
    /// Also write a PNG quicklook.
    #[arg(long)]
    pub(crate) png: Option<PathBuf>,
}

impl ExtentArgs {
    /// The SQL this command runs: session options, then the bound canonical query.
    pub(crate) fn sql(&self) -> anyhow::Result<String> {
        self.scan.sql(crate::MAX_FLOOD_EXTENT_SQL)
    }
}

/// The earlier result `--update` names, checked against this run's search.
fn earlier(a: &ExtentArgs, tif: &Path) -> anyhow::Result<Update> {
    if !tif.is_file() {
        anyhow::bail!(
            "--update {}: no such file (make it with a full run: --out)",
            tif.display()
        );
    }
    let item = lineage::lineage_path(tif);
    let recorded = lineage::read(&item).with_context(|| {
        format!(
            "--update {}: its lineage item {} is needed to know which items it holds",
            tif.display(),
            item.display()
        )
    })?;
    let props = recorded.properties;
    let ours = a.scan.recorded()?;
    for key in [
        "source",
        "collection",
        "bbox",
        "asset",
        "filter",
        "group_by",
        "missing_assets",
    ] {
        let now = ours.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let then = props.parameters.get(key).map(String::as_str);
        if then != now {
            anyhow::bail!(
                "--update {}: it was made with {key} = {}, this run has {}: not the same query",
                tif.display(),
                then.unwrap_or("(none)"),
                now.unwrap_or("(none)")
            );
        }
    }
    Ok(Update {
        tif: tif.to_path_buf(),
        items: props.items,
        versions: props.item_versions,
        time_range: props.start_datetime.zip(props.end_datetime),
    })
}

/// The floodsql error inside `e`, if any (DataFusion carries floodsql's
/// errors with their type: see [`crate::Error::find`]).
fn floodsql_error(e: &anyhow::Error) -> Option<&crate::Error> {
    e.chain().find_map(|c| crate::Error::find(c))
}

pub(crate) fn run(a: ExtentArgs, quiet: bool) -> anyhow::Result<()> {
    let sql = a.sql()?;
    let on_cluster = a.scan.cluster.is_some();
    if a.scan.print_sql {
        println!("{sql}");
    }
    let update = match &a.update {
        Some(tif) => Some(earlier(&a, tif)?),
        None => None,
    };
    let outputs = Outputs {
        tif: a.out.clone().or_else(|| a.update.clone()),
        parquet: a.parquet.clone(),
        png: a.png.clone(),
        lineage: None,
    };
    let rt = super::runtime()?;
    let cancel = Cancel::default();
    if a.scan.dry_run {
        let skip = update.as_ref().map(Update::skip_list).unwrap_or_default();
        return rt.block_on(super::until_signal(&cancel, async {
            let ctx = a.scan.context_skipping(&skip).await?;
            let progress = super::query_progress(quiet, on_cluster, &cancel);
            super::print_plan(&ctx, &sql, &progress).await
        }));
    }
    let label = RunLabel {
        parameters: a.scan.recorded()?,
        update: update.clone(),
        ..RunLabel::titled("Maximum flood extent")
    };
    let go = |skip: &[String], label: RunLabel| {
        let (outputs, cancel, scan, sql) = (&outputs, &cancel, &a.scan, &sql);
        let skip = skip.to_vec();
        rt.block_on(super::until_signal(cancel, async move {
            let ctx = scan.context_skipping(&skip).await?;
            let progress = super::query_progress(quiet, on_cluster, cancel);
            let r = run_to_outputs(&ctx, sql, outputs, &label, &progress).await;
            progress.search.finish_and_clear();
            anyhow::Ok(r?)
        }))
    };
    let summary = match &update {
        None => go(&[], label)?,
        Some(u) => match go(&u.skip_list(), label.clone()) {
            Ok(s) => {
                eprintln!(
                    "update: read the {} new items only; {} held {} already",
                    s.items,
                    u.tif.display(),
                    u.items.len()
                );
                s
            }
            Err(e) if matches!(floodsql_error(&e), Some(crate::Error::NothingNew(_))) => {
                eprintln!("{}; {} is up to date", super::report(&e), u.tif.display());
                return Ok(());
            }
            Err(e) if matches!(floodsql_error(&e), Some(crate::Error::NotIncremental(_))) => {
                eprintln!(
                    "{}: recomputing {} in full",
                    super::report(&e),
                    u.tif.display()
                );
                go(
                    &[],
                    RunLabel {
                        update: None,
                        ..label
                    },
                )?
            }
            Err(e) => return Err(e),
        },
    };
    super::print_written(&outputs, &summary);
    Ok(())
}
