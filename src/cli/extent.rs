//! `floodsql extent`: the tutorial's job from one command. It binds the
//! canonical `sql/max_flood_extent.sql` and runs it through the same engine
//! path as any user SQL.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use crate::context::Cancel;
use crate::geo::Bbox;
use crate::options::{DEFAULT_CHUNK_SIZE, DEFAULT_COLLECTION, DEFAULT_PAGE_SIZE, DEFAULT_STAC_URL};
use crate::pipeline::{run_to_outputs, Outputs};
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
            print_sql: false,
            dry_run: false,
        }
    }

    /// `template` bound with this scan's parameters (`${source}`,
    /// `${collection}`, `${bbox}`, `${datetime}`, `${asset}`, `${chunk}`),
    /// after the session options it implies.
    pub(crate) fn sql(&self, template: &str) -> anyhow::Result<String> {
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
        let query = bind(template, &p)?;
        Ok(format!(
            "SET floodsql.page_size = {};\nSET floodsql.max_items = {};\n{query}",
            self.page_size,
            self.max_items.unwrap_or(0)
        ))
    }

    /// The session this scan runs in (local, or on `--cluster`).
    pub(crate) async fn context(
        &self,
    ) -> anyhow::Result<datafusion::execution::context::SessionContext> {
        super::cluster::context(self.cluster.as_deref(), self.partitions, &self.set).await
    }
}

/// The tutorial's query as one command.
#[derive(Debug, Args, Clone)]
pub(crate) struct ExtentArgs {
    #[command(flatten)]
    pub(crate) scan: ScanArgs,
    /// Output COG (not needed with --dry-run).
    #[arg(long, required_unless_present = "dry_run")]
    pub(crate) out: Option<PathBuf>,
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

pub(crate) fn run(a: ExtentArgs, quiet: bool) -> anyhow::Result<()> {
    let sql = a.sql()?;
    let on_cluster = a.scan.cluster.is_some();
    if a.scan.print_sql {
        println!("{sql}");
    }
    let outputs = Outputs {
        tif: a.out.clone(),
        parquet: a.parquet.clone(),
        png: a.png.clone(),
    };
    let rt = super::runtime()?;
    let cancel = Cancel::default();
    if a.scan.dry_run {
        return rt.block_on(super::until_signal(&cancel, async {
            let ctx = a.scan.context().await?;
            let progress = super::query_progress(quiet, on_cluster, &cancel);
            super::print_plan(&ctx, &sql, &progress).await
        }));
    }
    let summary = rt.block_on(super::until_signal(&cancel, async {
        let ctx = a.scan.context().await?;
        let progress = super::query_progress(quiet, on_cluster, &cancel);
        let r = run_to_outputs(&ctx, &sql, &outputs, "Maximum flood extent", &progress).await;
        progress.search.finish_and_clear();
        anyhow::Ok(r?)
    }))?;
    eprintln!("{}", summary.describe());
    Ok(())
}
