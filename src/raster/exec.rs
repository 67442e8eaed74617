//! `FloodChunksExec`: the raster scan. One output row per (time slice, chunk)
//! that some item overlaps: the slice's fused uint8 pixels over the chunk
//! window. Within a partition it scans its chunks one after the other and,
//! within a chunk, the slices in time order, so the partial aggregate directly
//! above keeps one state per chunk and never holds all slices of a chunk at
//! once. A few (slice, chunk) windows are in flight per partition: with the
//! native reader (the default) their source blocks are fetched concurrently
//! on the runtime and decoded and fused on blocking threads; with
//! `floodsql.reader = 'gdal'` GDAL reads and fusing run on blocking threads.
//!
//! Which chunks a partition scans is data: the scan's only input is a small
//! in-memory table with one partition per scan partition, listing its chunks
//! (whole chunk rows in contiguous runs, see [`Assignment`]). On a Ballista cluster the scheduler
//! restricts that input to the partitions of each task — Ballista knows how to
//! slice an in-memory source, not a custom leaf — so a task scans exactly its
//! own chunks, locally and remotely alike.

use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock};

use arrow::array::{
    ArrayRef, Int32Array, LargeBinaryArray, RecordBatch, RecordBatchOptions,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{
    exec_datafusion_err, internal_datafusion_err, internal_err, Result, ScalarValue, SplitPoint,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalSortExpr, RangePartitioning,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, RecordOutput, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;

use crate::access::ReadPolicy;
use crate::context::{ProcessLabel, QueryProgress};
use crate::error::join_err;
use crate::geo::Window;
use crate::options::{FloodsqlOptions, Reader};
use crate::raster::area::{AreaColumn, ChunkValue, ZoneColumn};
use crate::raster::cog::CogReader;
use crate::raster::constant::Pixels;
use crate::raster::fuse::{fetch_window, fuse_window, native_reads, FetchedWindow, FuseStats};
use crate::raster::grid::OutputGrid;
use crate::raster::plan::{AssetSpec, ChunkIndex, ScanPlan, Source};
use datafusion::execution::runtime_env::RuntimeEnv;

/// The columns of `flood_chunks(...)`, in schema order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkColumn {
    /// The time slice (UTC µs).
    Datetime,
    /// Chunk column index on the output grid.
    ChunkCol,
    /// Chunk row index on the output grid.
    ChunkRow,
    /// The chunk window on the output grid.
    XOff,
    YOff,
    Width,
    Height,
    /// Items fused into the row.
    Items,
    /// The fused uint8 pixels, row-major.
    Pixels,
    /// The chunk's ellipsoidal pixel areas (`floodsql_udfs::pixel_areas`).
    PixelAreas,
}

impl ChunkColumn {
    /// Every column, in schema order.
    pub(crate) const ALL: [ChunkColumn; 10] = [
        ChunkColumn::Datetime,
        ChunkColumn::ChunkCol,
        ChunkColumn::ChunkRow,
        ChunkColumn::XOff,
        ChunkColumn::YOff,
        ChunkColumn::Width,
        ChunkColumn::Height,
        ChunkColumn::Items,
        ChunkColumn::Pixels,
        ChunkColumn::PixelAreas,
    ];

    /// The column at schema index `i`.
    pub(crate) fn at(i: usize) -> Option<ChunkColumn> {
        Self::ALL.get(i).copied()
    }

    /// Its name in SQL.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ChunkColumn::Datetime => "datetime",
            ChunkColumn::ChunkCol => "chunk_col",
            ChunkColumn::ChunkRow => "chunk_row",
            ChunkColumn::XOff => "x_off",
            ChunkColumn::YOff => "y_off",
            ChunkColumn::Width => "width",
            ChunkColumn::Height => "height",
            ChunkColumn::Items => "items",
            ChunkColumn::Pixels => "pixels",
            ChunkColumn::PixelAreas => "pixel_areas",
        }
    }

    fn data_type(self) -> DataType {
        match self {
            ChunkColumn::Datetime => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ChunkColumn::Pixels | ChunkColumn::PixelAreas => DataType::LargeBinary,
            _ => DataType::Int32,
        }
    }
}

/// How many rows per partition have their blocks fetched, for each one
/// being decoded (`floodsql.read_concurrency`): a fetched row holds only
/// compressed bytes (tens of KB for GFM's mostly constant blocks), so 4 x
/// 64 rows in flight cost a few MB. Each row's fetch takes a round trip, so
/// at most this many rows per round trip are read: on the GFM-shaped scene
/// at 100 ms per response (1 698 requests), 4 x 32 took 2.13 s, 4 x 64
/// 1.85 s and 4 x 128 1.81 s (0 ms: 1.29 s; peak RSS +2 MB, +4 MB).
const READ_AHEAD: usize = 64;

/// How many COGs per partition, beyond those of the rows fetching blocks,
/// have their headers read ahead ([`HeaderScout`]): a row's fetch then
/// costs one round trip to the store, not two (header, then blocks). Each
/// read is one request of at most 128 KB (`tiff::HEADER_READ`), its bytes
/// kept in the reader's bounded block cache.
const HEADERS_AHEAD: usize = 64;

/// The most bytes of one COG read ahead with its header for all of a
/// partition's rows ([`CogReader::start_blocks`]): a GFM-sized COG's
/// blocks beyond its first 128 KB (tens of KB on the GFM-shaped scene),
/// not a large COG's. With [`HEADERS_AHEAD`], at most 16 MB per partition
/// beyond the rows being fetched; the bytes wait in the reader's block
/// cache.
const BLOCKS_AHEAD_PER_FILE: u64 = 256 << 10;

/// Rows per partition whose blocks are asked for ahead of the fetch stage
/// ([`HeaderScout`]) until the compressed bytes of a row are known (rows
/// fused), and the fewest at any time.
const HORIZON_ROWS: usize = 512;

/// The most rows per partition whose blocks are asked for ahead.
const HORIZON_ROWS_MAX: usize = 16_384;

/// The horizon in rows: as many rows as three quarters of the reader's
/// block cache hold, shared by the scan's `partitions` (in one process: a
/// cluster's executor runs fewer of them at once, so its horizon is only
/// shorter than it could be), at the compressed bytes per row fused so far;
/// [`HORIZON_ROWS`] until 64 rows are fused, and never fewer. A row's blocks
/// must be asked for a round trip before the fetch stage comes to it, and
/// rows read ahead must not be dropped from the cache before they are used
/// (that costs more requests than not reading ahead): a horizon of 2 048
/// rows in a cache of 24 MB was slower than one of 512.
fn horizon_rows(bytes_fused: u64, rows_fused: usize, partitions: usize) -> usize {
    if rows_fused < 64 {
        return HORIZON_ROWS;
    }
    let budget = (crate::raster::cog::BLOCK_CACHE_BYTES as u64 / 4 * 3) / partitions.max(1) as u64;
    let per_row = (bytes_fused / rows_fused as u64).max(1);
    usize::try_from(budget / per_row)
        .unwrap_or(usize::MAX)
        .clamp(HORIZON_ROWS, HORIZON_ROWS_MAX)
}

/// The most bytes of one COG asked for at a time by the rows' horizon
/// (more: the rows fetch their own blocks).
const HORIZON_BYTES_PER_FILE: u64 = 2 << 20;

/// The schema of `flood_chunks(...)`.
pub(crate) fn chunk_schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(
            ChunkColumn::ALL
                .iter()
                .map(|c| Field::new(c.name(), c.data_type(), false))
                .collect::<Vec<_>>(),
        ))
    });
    S.clone()
}

/// The name of the zones column (a scan with regions).
pub(crate) const ZONES: &str = "zones";

/// The schema of a `flood_chunks(...)` scan reading `extra` assets besides
/// its first: the fixed columns, then one LargeBinary column per extra
/// asset, named after it, then with regions `zones` (little-endian u32
/// region ids per pixel, 0: none; see [`crate::vector::zones`]).
pub(crate) fn chunk_schema_for(extra: &[String], zones: bool) -> SchemaRef {
    if extra.is_empty() && !zones {
        return chunk_schema();
    }
    let mut fields: Vec<Field> = chunk_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(
        extra
            .iter()
            .map(|a| Field::new(a, DataType::LargeBinary, false)),
    );
    if zones {
        fields.push(Field::new(ZONES, DataType::LargeBinary, false));
    }
    Arc::new(Schema::new(fields))
}

/// A column of a scan: a fixed one, the pixels of extra asset `k`, or the
/// zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Fixed(ChunkColumn),
    Asset(usize),
    Zones,
}

impl Col {
    /// The column at schema index `i` of a scan with `extra` extra assets.
    fn at(i: usize, extra: usize) -> Col {
        match ChunkColumn::at(i) {
            Some(c) => Col::Fixed(c),
            None if i - ChunkColumn::ALL.len() < extra => Col::Asset(i - ChunkColumn::ALL.len()),
            None => Col::Zones,
        }
    }
}

/// One (slice, chunk) row to produce.
#[derive(Debug, Clone)]
struct Unit {
    datetime_us: i64,
    col: usize,
    row: usize,
    window: Window,
    sources: Vec<Source>,
}

/// The scan's own metrics, beside DataFusion's baseline (output rows,
/// compute time): shown by `EXPLAIN ANALYZE`.
struct ScanMetrics {
    baseline: BaselineMetrics,
    /// Source windows read from COGs.
    windows_read: Count,
    /// Compressed bytes fetched from stores (native reader).
    fetched_bytes: Count,
    /// Fused pixel bytes produced.
    pixel_bytes: Count,
    /// Wall time of reading and fusing windows (summed over windows in flight).
    read_time: Time,
    /// Rows (per asset) whose pixels are all one value, shared rather than
    /// materialised (see `floodsql_udfs::constant`).
    constant_rows: Count,
}

impl ScanMetrics {
    fn new(set: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            baseline: BaselineMetrics::new(set, partition),
            windows_read: MetricBuilder::new(set).counter("windows_read", partition),
            fetched_bytes: MetricBuilder::new(set).counter("fetched_bytes", partition),
            pixel_bytes: MetricBuilder::new(set).counter("pixel_bytes", partition),
            read_time: MetricBuilder::new(set).subset_time("read_time", partition),
            constant_rows: MetricBuilder::new(set).counter("constant_rows", partition),
        }
    }
}

/// The raster scan (see the module docs).
#[derive(Debug)]
pub(crate) struct FloodChunksExec {
    plan: Arc<ScanPlan>,
    /// The chunk assignment: partition p lists the chunks partition p scans.
    input: Arc<dyn ExecutionPlan>,
    concurrency: usize,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Native reader (its COG layout cache is shared by the partitions).
    reader: Arc<CogReader>,
    /// The grid's ellipsoidal area, once computed (for `pixel_areas`).
    grid_m2: Arc<OnceLock<f64>>,
}

/// Schema of the chunk assignment a `FloodChunksExec` reads.
pub(crate) fn assignment_schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("chunk_col", DataType::UInt32, false),
            Field::new("chunk_row", DataType::UInt32, false),
        ]))
    });
    S.clone()
}

/// The chunk rows with data, (row, weight), split into `n` contiguous,
/// non-empty runs of about equal weight: for each partition after the first, the index
/// (into `rows`) of its first row. Deterministic in (`rows`, `n`), so that a
/// decoded plan declares the same partitioning; `n` is at most `rows.len()`.
fn split_rows(rows: &[(usize, usize)], n: usize) -> Vec<usize> {
    let total: usize = rows.iter().map(|(_, k)| k).sum();
    let mut splits = Vec::new();
    let mut acc = 0;
    for (i, (_, k)) in rows.iter().enumerate() {
        let parts_left = n.saturating_sub(1 + splits.len());
        let rows_left = rows.len() - i;
        if i > 0
            && parts_left > 0
            && (acc * n >= total * (splits.len() + 1) || rows_left == parts_left)
        {
            splits.push(i);
        }
        acc += k;
    }
    splits
}

/// How a scan's chunks are dealt to its partitions: whole chunk rows, in
/// contiguous runs (row-major within a partition), so that each chunk lives
/// in exactly one partition and every partition's rows come ordered by
/// chunk — what lets the aggregate above emit a chunk as soon as its last
/// slice is scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// Chunks (col, row) per partition.
    pub(crate) partitions: Vec<Vec<(usize, usize)>>,
    /// First chunk row of each partition after the first.
    pub(crate) first_rows: Vec<usize>,
}

impl Assignment {
    /// The chunks with data of `plan` over at most `partitions` partitions
    /// (never more than there are chunk rows with data; at least one).
    pub(crate) fn new(plan: &ScanPlan, partitions: usize) -> Self {
        let index = plan.chunk_index();
        let chunks: Vec<(usize, usize)> = index.chunks().collect();
        // rows weighed by their (slice, chunk) units: the work of scanning them
        let mut rows: Vec<(usize, usize)> = Vec::new();
        for &(c, r) in &chunks {
            let units = index.sources(c, r).chunk_by(|a, b| a.0 == b.0).count();
            match rows.last_mut() {
                Some((row, k)) if *row == r => *k += units,
                _ => rows.push((r, units)),
            }
        }
        let n = partitions.clamp(1, rows.len().max(1));
        let splits = split_rows(&rows, n);
        let first_rows: Vec<usize> = splits.iter().map(|&i| rows[i].0).collect();
        let mut parts: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        for (c, r) in chunks {
            let p = first_rows.partition_point(|&first| first <= r);
            parts[p].push((c, r));
        }
        Self {
            partitions: parts,
            first_rows,
        }
    }

    /// As an in-memory source with one partition per scan partition.
    fn to_exec(&self) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = self
            .partitions
            .iter()
            .map(|chunks| {
                let cols: Vec<u32> = chunks.iter().map(|&(c, _)| c as u32).collect();
                let rows: Vec<u32> = chunks.iter().map(|&(_, r)| r as u32).collect();
                Ok(vec![RecordBatch::try_new(
                    assignment_schema(),
                    vec![
                        Arc::new(UInt32Array::from(cols)) as ArrayRef,
                        Arc::new(UInt32Array::from(rows)),
                    ],
                )?])
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &batches,
            assignment_schema(),
            None,
        )?)
    }
}

/// The chunk assignment of `plan` over `partitions` partitions, as an
/// in-memory source.
pub(crate) fn chunk_assignment(
    plan: &ScanPlan,
    partitions: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    Assignment::new(plan, partitions).to_exec()
}

/// What the scan declares about its output: rows ordered by chunk within
/// each partition, and partitions holding disjoint ranges of chunk rows
/// (declared on `y_off`, else `chunk_row`, when projected).
fn declared_properties(
    plan: &ScanPlan,
    schema: &SchemaRef,
    partitions: usize,
) -> (EquivalenceProperties, Partitioning) {
    let col = |c: ChunkColumn| -> Option<Arc<dyn PhysicalExpr>> {
        let i = schema.index_of(c.name()).ok()?;
        Some(Arc::new(Column::new(c.name(), i)))
    };
    let sort = |e: Arc<dyn PhysicalExpr>| PhysicalSortExpr::new(e, SortOptions::default());
    let mut orderings: Vec<LexOrdering> = Vec::new();
    for (outer, inner) in [
        (ChunkColumn::ChunkRow, ChunkColumn::ChunkCol),
        (ChunkColumn::YOff, ChunkColumn::XOff),
    ] {
        if let Some(o) = col(outer) {
            let mut exprs = vec![sort(o)];
            exprs.extend(col(inner).map(sort));
            orderings.extend(LexOrdering::new(exprs));
        }
    }
    let eq = EquivalenceProperties::new_with_orderings(schema.clone(), orderings);
    let assignment = Assignment::new(plan, partitions);
    if assignment.partitions.len() != partitions {
        // a restricted copy (a cluster task's): nothing to declare
        return (eq, Partitioning::UnknownPartitioning(partitions));
    }
    let key = [(ChunkColumn::YOff, plan.chunk), (ChunkColumn::ChunkRow, 1)]
        .into_iter()
        .find_map(|(c, scale)| col(c).map(|e| (e, scale)));
    let Some((key, scale)) = key else {
        return (eq, Partitioning::UnknownPartitioning(partitions));
    };
    let splits = assignment
        .first_rows
        .iter()
        .map(|&r| SplitPoint::new(vec![ScalarValue::Int32(Some((r * scale) as i32))]))
        .collect();
    let partitioning = LexOrdering::new(vec![sort(key)])
        .and_then(|o| RangePartitioning::try_new(o, splits).ok())
        .map(Partitioning::Range)
        .unwrap_or(Partitioning::UnknownPartitioning(partitions));
    (eq, partitioning)
}

impl FloodChunksExec {
    /// A scan of `plan` in `partitions` partitions.
    pub(crate) fn try_new(
        plan: Arc<ScanPlan>,
        partitions: usize,
        concurrency: usize,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let input = chunk_assignment(&plan, partitions)?;
        Self::with_input(plan, input, concurrency, projection)
    }

    /// A scan of `plan` whose chunks per partition come from `input`.
    pub(crate) fn with_input(
        plan: Arc<ScanPlan>,
        input: Arc<dyn ExecutionPlan>,
        concurrency: usize,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        if input.schema() != assignment_schema() {
            return internal_err!(
                "FloodChunksExec: chunk assignment has schema {:?}",
                input.schema()
            );
        }
        let full = chunk_schema_for(
            &plan
                .columns
                .iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>(),
            plan.zones.is_some(),
        );
        let schema = match &projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        let partitions = input.properties().partitioning.partition_count();
        let (eq, partitioning) = declared_properties(&plan, &schema, partitions);
        let properties = Arc::new(PlanProperties::new(
            eq,
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let reader = Arc::new(CogReader::new(plan.policy.clone()));
        Ok(Self {
            plan,
            input,
            concurrency: concurrency.max(1),
            projection,
            schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            reader,
            grid_m2: Arc::default(),
        })
    }

    pub(crate) fn scan_plan(&self) -> &Arc<ScanPlan> {
        &self.plan
    }

    pub(crate) fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }

    pub(crate) fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency
    }
}

/// The (slice, chunk) rows of a scan over `chunks`, chunk by chunk and, within
/// a chunk, slice by slice in time order (sources found through the plan's
/// chunk index, never by testing every source).
fn scan_units(p: &ScanPlan, index: &ChunkIndex, chunks: &[(usize, usize)]) -> Vec<Unit> {
    let mut out = Vec::new();
    for &(c, r) in chunks {
        let window = p.grid.chunk_window(p.chunk, c, r);
        // the index lists a chunk's sources slice by slice: one unit per run
        for run in index.sources(c, r).chunk_by(|a, b| a.0 == b.0) {
            let slice = &p.slices[run[0].0];
            out.push(Unit {
                datetime_us: slice.datetime_us,
                col: c,
                row: r,
                window,
                sources: run.iter().map(|&(_, k)| slice.sources[k].clone()).collect(),
            });
        }
    }
    out
}

/// The chunks listed in a partition of the chunk assignment.
fn assigned_chunks(batches: &[RecordBatch]) -> Result<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    for b in batches {
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<UInt32Array>()
                .ok_or_else(|| exec_datafusion_err!("FloodChunksExec: bad chunk assignment"))
        };
        let (cols, rows) = (col(0)?, col(1)?);
        out.extend(
            cols.values()
                .iter()
                .zip(rows.values().iter())
                .map(|(&c, &r)| (c as usize, r as usize)),
        );
    }
    Ok(out)
}

impl DisplayAs for FloodChunksExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let g = &self.plan.grid;
        let (nc, nr) = g.chunks(self.plan.chunk);
        write!(
            f,
            "FloodChunksExec: asset={}, grid={}x{} @ {} m, chunk={} ({}x{} chunks), slices={}, items={}, partitions={}",
            std::iter::once(&self.plan.pixels)
                .chain(&self.plan.columns)
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            g.width,
            g.height,
            g.res,
            self.plan.chunk,
            nc,
            nr,
            self.plan.slices.len(),
            self.plan.n_items(),
            self.partitions()
        )?;
        if let Some(p) = &self.projection {
            let names: Vec<&str> = p
                .iter()
                .filter_map(|&i| match Col::at(i, self.plan.columns.len()) {
                    Col::Fixed(c) => Some(c.name()),
                    Col::Asset(k) => self.plan.columns.get(k).map(|a| a.name.as_str()),
                    Col::Zones => Some(ZONES),
                })
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for FloodChunksExec {
    fn name(&self) -> &str {
        "FloodChunksExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // the assignment's partitioning *is* the scan's: never repartition it
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.as_slice() {
            [input] => Ok(Arc::new(Self::with_input(
                self.plan.clone(),
                input.clone(),
                self.concurrency,
                self.projection.clone(),
            )?)),
            _ => internal_err!(
                "FloodChunksExec has one input (its chunk assignment), got {}",
                children.len()
            ),
        }
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let n = self.partitions();
        if partition >= n {
            return internal_err!("FloodChunksExec: partition {partition} of {n}");
        }
        let assignment = self.input.execute(partition, ctx.clone())?;
        let plan = self.plan.clone();
        let who = format!(
            "{}{}",
            ProcessLabel::prefix(ctx.session_config()),
            ctx.task_id().map(|t| format!("[{t}] ")).unwrap_or_default()
        );
        let opener = Arc::new(UnitReader::new(self, partition, &ctx)?);
        let scout = opener.clone();
        let units = futures::stream::once(async move {
            let batches: Vec<RecordBatch> = assignment.try_collect().await?;
            let chunks = assigned_chunks(&batches)?;
            let units = scan_units(&plan, plan.chunk_index(), &chunks);
            tracing::info!(
                "{who}scan partition {partition}/{n}: {} (slice, chunk) rows over {} chunks of {}",
                units.len(),
                chunks.len(),
                plan.pixels.name
            );
            let mut scout = HeaderScout::new(scout, &units, n)?;
            // a row is taken when the fetch stage has room for it: the
            // scout then reads headers ahead of it
            Ok::<_, datafusion::error::DataFusionError>(futures::stream::iter(
                units.into_iter().map(move |u| {
                    scout.take();
                    Ok::<_, datafusion::error::DataFusionError>(u)
                }),
            ))
        })
        .try_flatten();
        let reader = opener.clone();
        // two stages: rows' blocks fetched well ahead (compressed bytes:
        // with the headers read further ahead, this hides the store's
        // latency), then decoded and fused a few at a time (pixels: bounds
        // the memory)
        let stream = units
            .map_ok(move |u| opener.clone().fetch(u))
            .try_buffered(self.concurrency * READ_AHEAD)
            .map_ok(move |p| reader.clone().read(p))
            .try_buffered(self.concurrency);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// What one scan partition needs to turn a (slice, chunk) [`Unit`] into its
/// row, in the manner of DataFusion's `FileOpener`: the columns projected,
/// the assets to fuse, the reader, the per-chunk columns and the metrics.
struct UnitReader {
    columns: Vec<Col>,
    schema: SchemaRef,
    /// The `pixels` asset, when its column is read.
    pixels: Option<AssetSpec>,
    /// The extra asset columns read: (index among the plan's columns, asset).
    extra: Vec<(usize, AssetSpec)>,
    areas: Option<Arc<AreaColumn>>,
    zones: Option<Arc<ZoneColumn>>,
    reader: Reader,
    cog: Arc<CogReader>,
    env: Arc<RuntimeEnv>,
    policy: Arc<ReadPolicy>,
    grid: Arc<OutputGrid>,
    metrics: Arc<ScanMetrics>,
    progress: Arc<QueryProgress>,
}

impl UnitReader {
    fn new(exec: &FloodChunksExec, partition: usize, ctx: &Arc<TaskContext>) -> Result<Self> {
        let plan = &exec.plan;
        let n_extra = plan.columns.len();
        let columns: Vec<Col> = match &exec.projection {
            Some(p) => p.iter().map(|&i| Col::at(i, n_extra)).collect(),
            None => (0..exec.schema.fields().len())
                .map(|i| Col::at(i, n_extra))
                .collect(),
        };
        let zones = match (&plan.zones, columns.contains(&Col::Zones)) {
            (Some(z), true) => Some(Arc::new(ZoneColumn::new(z.clone()))),
            (None, true) => return internal_err!("FloodChunksExec: zones without regions"),
            _ => None,
        };
        let areas = columns
            .contains(&Col::Fixed(ChunkColumn::PixelAreas))
            .then(|| Arc::new(AreaColumn::new(plan.grid.clone(), exec.grid_m2.clone())));
        let extra = columns
            .iter()
            .filter_map(|c| match c {
                Col::Asset(k) => Some(plan.columns.get(*k).map(|a| (*k, a.clone()))),
                Col::Fixed(_) | Col::Zones => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                internal_datafusion_err!("FloodChunksExec: an asset column not planned")
            })?;
        Ok(Self {
            pixels: columns
                .contains(&Col::Fixed(ChunkColumn::Pixels))
                .then(|| plan.pixels.clone()),
            columns,
            schema: exec.schema.clone(),
            extra,
            areas,
            zones,
            reader: FloodsqlOptions::from_config(ctx.session_config().options()).reader,
            cog: exec.reader.clone(),
            env: ctx.runtime_env(),
            policy: Arc::new(plan.policy.clone()),
            grid: Arc::new(plan.grid.clone()),
            metrics: Arc::new(ScanMetrics::new(&exec.metrics, partition)),
            progress: QueryProgress::of(ctx.session_config()),
        })
    }

    /// The sources of every asset read for `u` with the asset's nodata:
    /// the `pixels` asset first, when read, then the extra ones in column
    /// order.
    fn assets(&self, u: &Unit) -> Result<Vec<(u8, Vec<Source>)>> {
        let mut assets = Vec::with_capacity(1 + self.extra.len());
        if let Some(a) = &self.pixels {
            assets.push((a.nodata, u.sources.clone()));
        }
        for (k, a) in &self.extra {
            let sources = u
                .sources
                .iter()
                .map(|s| s.for_extra(*k))
                .collect::<crate::error::Result<Vec<_>>>()?;
            assets.push((a.nodata, sources));
        }
        Ok(assets)
    }

    /// The first stage of a (slice, chunk) row: with the native reader,
    /// every asset's blocks fetched (compressed bytes only, so many rows can
    /// wait in this stage at once and hide the store's latency); with GDAL,
    /// nothing yet.
    async fn fetch(self: Arc<Self>, u: Unit) -> Result<Prefetched> {
        let assets = self.assets(&u)?;
        let timer = self.metrics.read_time.timer();
        let windows = match self.reader {
            // every asset's blocks at once
            Reader::Native => {
                let (cog, env, window) = (&self.cog, &self.env, u.window);
                futures::future::try_join_all(assets.into_iter().map(
                    |(nodata, sources)| async move {
                        let f = fetch_window(cog, env, window, &sources).await?;
                        Ok::<_, datafusion::error::DataFusionError>((nodata, Pending::Fetched(f)))
                    },
                ))
                .await?
            }
            Reader::Gdal => assets
                .into_iter()
                .map(|(nodata, sources)| (nodata, Pending::Sources(sources)))
                .collect(),
        };
        timer.done();
        Ok(Prefetched { unit: u, windows })
    }

    /// The row of one (slice, chunk): every asset read fused over the
    /// chunk, the per-chunk columns computed.
    async fn read(self: Arc<Self>, p: Prefetched) -> Result<RecordBatch> {
        let Prefetched { unit: u, windows } = p;
        tracing::trace!(
            "row fetched: chunk ({}, {}) at {}",
            u.col,
            u.row,
            u.datetime_us
        );
        let zones = chunk_value(self.zones.clone(), u.window, "zones").await?;
        let areas = chunk_value(self.areas.clone(), u.window, "pixel areas").await?;
        let mut fused = Vec::with_capacity(windows.len());
        for (nodata, pending) in windows {
            fused.push(self.fuse(u.window, pending, nodata).await?);
        }
        let mut fused = fused.into_iter();
        let pixels = match &self.pixels {
            Some(_) => fused.next(),
            None => None,
        };
        let extra: Vec<Pixels> = fused.collect();
        self.progress.scan.inc(1);
        let _compute = self.metrics.baseline.elapsed_compute().timer();
        Ok(unit_batch(
            &u,
            pixels,
            extra,
            areas,
            zones,
            &self.columns,
            self.schema.clone(),
        )?
        .record_output(&self.metrics.baseline))
    }

    /// One asset's window fused by the session's reader.
    async fn fuse(&self, window: Window, pending: Pending, nodata: u8) -> Result<Pixels> {
        let timer = self.metrics.read_time.timer();
        let (px, stats) = match pending {
            Pending::Fetched(f) => f.fuse(&self.cog, &self.grid, nodata, &self.policy).await?,
            Pending::Sources(sources) => {
                let windows = sources
                    .iter()
                    .filter(|s| s.loc.location().is_some())
                    .count();
                let (grid, policy) = (self.grid.clone(), self.policy.clone());
                let px = tokio::task::spawn_blocking(move || {
                    fuse_window(window, &sources, &grid, nodata, &policy)
                })
                .await
                .map_err(join_err("raster read"))??;
                let stats = FuseStats {
                    windows,
                    ..FuseStats::default()
                };
                (Pixels::Data(px), stats)
            }
        };
        timer.done();
        self.metrics.windows_read.add(stats.windows);
        self.metrics.fetched_bytes.add(stats.fetched_bytes);
        self.metrics.pixel_bytes.add(window.area());
        if let Pixels::Constant(_) = px {
            self.metrics.constant_rows.add(1);
        }
        Ok(px)
    }
}

/// Reads a scan partition's COGs ahead of its rows, in two ways, with the
/// native reader:
/// - **by file**: when a row is taken by the fetch stage, the headers of
///   every COG of the rows taken so far and of the next [`HEADERS_AHEAD`]
///   COGs after them are being read, each with the blocks all of the
///   partition's rows need of it when they come to at most
///   [`BLOCKS_AHEAD_PER_FILE`] (a GFM-sized COG: one request after its
///   header);
/// - **by rows**: the blocks of the next rows up to a horizon are being
///   read (as many rows as a share of the block cache holds,
///   [`horizon_rows`]), one request per COG and run of blocks, the horizon
///   moving on when the rows taken come within half its length (a larger
///   COG, whose rows are spread over the partition: chunks go one after the
///   other, and each COG is used by the chunks it overlaps).
///
/// Reads are started, not awaited (each is a task of the reader's, shared
/// with any fetch that needs it, and a block kept or being read is not
/// asked for again), so the scout never holds a row back. Ahead-reading by
/// rows only (a buffered stage of 128 rows) started only the first 128
/// rows' headers until the first of them came back: on the medium scene at
/// 100 ms, the last COGs' headers went out a round trip late. By file only,
/// on the tutorial-sized scene (COGs of 300-900 KB) the rows' fetches made
/// 2 250 requests of ~20 KB each.
struct HeaderScout {
    reader: Arc<UnitReader>,
    /// Each COG the partition reads natively, in the order its rows first
    /// use them.
    files: Vec<ScoutFile>,
    /// Rows in the partition.
    rows: usize,
    /// Rows taken so far.
    taken: usize,
    /// Files first used by the rows taken so far (a prefix of `files`).
    through: usize,
    /// Files whose header reads have been started (a prefix of `files`).
    started: usize,
    /// Rows whose blocks have been asked for (a prefix of the rows).
    horizon: usize,
    /// Partitions of the scan ([`horizon_rows`]).
    partitions: usize,
}

/// A COG as the [`HeaderScout`] sees it.
struct ScoutFile {
    /// The index of the first row reading it.
    first: usize,
    location: String,
    /// The window (its own pixels) of every row reading it, with the row's
    /// index, in row order.
    windows: Vec<(usize, Window)>,
    /// How many of `windows` are behind the horizon.
    asked: usize,
}

impl HeaderScout {
    fn new(reader: Arc<UnitReader>, units: &[Unit], partitions: usize) -> Result<Self> {
        let mut files: Vec<ScoutFile> = Vec::new();
        if reader.reader == Reader::Native {
            let mut seen: std::collections::HashMap<String, usize> = Default::default();
            for (i, u) in units.iter().enumerate() {
                for (_, sources) in reader.assets(u)? {
                    for (loc, w) in native_reads(u.window, &sources) {
                        match seen.get(loc) {
                            Some(&k) => files[k].windows.push((i, w)),
                            None => {
                                seen.insert(loc.to_string(), files.len());
                                files.push(ScoutFile {
                                    first: i,
                                    location: loc.to_string(),
                                    windows: vec![(i, w)],
                                    asked: 0,
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(Self {
            reader,
            files,
            rows: units.len(),
            taken: 0,
            through: 0,
            started: 0,
            horizon: 0,
            partitions,
        })
    }

    /// The next row is taken: reads up to [`HEADERS_AHEAD`] files past its
    /// own are started, and the horizon moved on when the row is within
    /// half of it. A location refused or malformed is left to the row's
    /// fetch, which reports it with its item.
    fn take(&mut self) {
        let row = self.taken;
        self.taken += 1;
        while self.files.get(self.through).is_some_and(|f| f.first <= row) {
            self.through += 1;
        }
        let until = (self.through + HEADERS_AHEAD).min(self.files.len());
        let (cog, env) = (&self.reader.cog, &self.reader.env);
        for f in self.files.get(self.started..until).unwrap_or_default() {
            let windows = f.windows.iter().map(|&(_, w)| w).collect();
            Self::start(cog, env, &f.location, windows, BLOCKS_AHEAD_PER_FILE);
        }
        self.started = self.started.max(until);
        let m = &self.reader.metrics;
        let rows_fused = m.baseline.output_rows().value();
        let ahead = horizon_rows(m.fetched_bytes.value() as u64, rows_fused, self.partitions);
        if !self.files.is_empty() && self.horizon < self.rows.min(row + ahead / 2) {
            tracing::debug!("rows' horizon at row {row}: {ahead} rows ahead");
            self.advance((row + ahead).min(self.rows));
        }
    }

    /// Asks for the blocks of every row before `until` not asked for yet:
    /// one read ahead per COG.
    fn advance(&mut self, until: usize) {
        let (cog, env) = (&self.reader.cog, &self.reader.env);
        // files are in the order of their first rows
        let n = self.files.partition_point(|f| f.first < until);
        for f in &mut self.files[..n] {
            let rest = &f.windows[f.asked..];
            let k = rest.partition_point(|&(r, _)| r < until);
            if k == 0 {
                continue;
            }
            let windows = rest[..k].iter().map(|&(_, w)| w).collect();
            f.asked += k;
            Self::start(cog, env, &f.location, windows, HORIZON_BYTES_PER_FILE);
        }
        self.horizon = until;
    }

    /// Starts reading a COG's header, when it is not read or being read,
    /// and then the blocks of `windows` ([`CogReader::start_blocks`]).
    fn start(cog: &CogReader, env: &RuntimeEnv, location: &str, windows: Vec<Window>, cap: u64) {
        if let Err(e) = cog.start_blocks(env, location, windows, cap) {
            tracing::debug!(
                "{} not read ahead: {e}",
                crate::error::redact_urls(location)
            );
        }
    }
}

/// One asset's window between the last two stages of a row.
enum Pending {
    /// Its blocks fetched (native reader).
    Fetched(FetchedWindow),
    /// Its sources, read and fused by GDAL in the second stage.
    Sources(Vec<Source>),
}

/// A (slice, chunk) row between its last two stages: each asset's window (the
/// `pixels` asset first, when read, then the extra ones in column order)
/// with the asset's nodata.
struct Prefetched {
    unit: Unit,
    windows: Vec<(u8, Pending)>,
}

/// The value of a per-chunk column for window `w`, if the column is read
/// (computed on a blocking thread).
async fn chunk_value<C: ChunkValue + 'static>(
    column: Option<Arc<C>>,
    w: Window,
    what: &'static str,
) -> Result<Option<Buffer>> {
    match column {
        Some(c) => Ok(Some(
            tokio::task::spawn_blocking(move || c.value(w))
                .await
                .map_err(join_err(what))??,
        )),
        None => Ok(None),
    }
}

/// One (slice, chunk) row: `extra` holds the fused pixels of the extra
/// asset columns, in their order in `columns`.
fn unit_batch(
    u: &Unit,
    pixels: Option<Pixels>,
    extra: Vec<Pixels>,
    areas: Option<Buffer>,
    zones: Option<Buffer>,
    columns: &[Col],
    schema: SchemaRef,
) -> Result<RecordBatch> {
    let i32a = |v: usize| -> ArrayRef { Arc::new(Int32Array::from(vec![v as i32])) };
    let w = u.window;
    let mut pixels = pixels;
    let mut extra = extra.into_iter();
    let arrays = columns
        .iter()
        .map(|&c| -> Result<ArrayRef> {
            let c = match c {
                Col::Fixed(c) => c,
                Col::Asset(_) => {
                    let px = extra.next().ok_or_else(|| {
                        internal_datafusion_err!("FloodChunksExec: an asset column not read")
                    })?;
                    return Ok(pixel_array(px, w.area()));
                }
                Col::Zones => {
                    let z = zones.clone().ok_or_else(|| {
                        internal_datafusion_err!("FloodChunksExec: zones not computed")
                    })?;
                    return Ok(binary_row(z));
                }
            };
            Ok(match c {
                ChunkColumn::Datetime => Arc::new(
                    TimestampMicrosecondArray::from(vec![u.datetime_us]).with_timezone("UTC"),
                ),
                ChunkColumn::ChunkCol => i32a(u.col),
                ChunkColumn::ChunkRow => i32a(u.row),
                ChunkColumn::XOff => i32a(w.x),
                ChunkColumn::YOff => i32a(w.y),
                ChunkColumn::Width => i32a(w.width),
                ChunkColumn::Height => i32a(w.height),
                ChunkColumn::Items => i32a(u.sources.len()),
                ChunkColumn::Pixels => {
                    let px = pixels.take().ok_or_else(|| {
                        internal_datafusion_err!("FloodChunksExec: pixels not read")
                    })?;
                    pixel_array(px, w.area())
                }
                ChunkColumn::PixelAreas => {
                    let a = areas.clone().ok_or_else(|| {
                        internal_datafusion_err!("FloodChunksExec: pixel areas not computed")
                    })?;
                    binary_row(a)
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema,
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?)
}

/// One row's pixels as a one-value LargeBinary array, without copying: a
/// decoded buffer is handed over as it is, and a row of one value is a
/// slice of the process-wide buffer of that value
/// ([`floodsql_udfs::constant`]), which the aggregates fold as a value.
fn pixel_array(px: Pixels, len: usize) -> ArrayRef {
    let values = match px {
        Pixels::Data(d) => Buffer::from_vec(d),
        Pixels::Constant(v) => floodsql_udfs::constant::shared(v, len)
            .unwrap_or_else(|| Buffer::from_vec(vec![v; len])),
    };
    binary_row(values)
}

/// `values` as the one value of a LargeBinary array (no copy).
fn binary_row(values: Buffer) -> ArrayRef {
    let offsets = OffsetBuffer::new(vec![0i64, values.len() as i64].into());
    Arc::new(LargeBinaryArray::new(offsets, values, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::grid::OutputGrid;
    use crate::raster::plan::TimeSlice;

    /// The horizon holds what a share of the block cache holds: 512 rows
    /// until rows are measured, more for light rows, never fewer than 512
    /// nor more than the cap, less with more partitions sharing the cache.
    #[test]
    fn the_horizon_is_what_the_cache_holds() {
        let cache = crate::raster::cog::BLOCK_CACHE_BYTES as u64;
        assert_eq!(horizon_rows(0, 0, 2), HORIZON_ROWS);
        assert_eq!(horizon_rows(1 << 30, 63, 2), HORIZON_ROWS);
        // rows of 10 KB, 2 partitions: 3/8 of the cache each
        let rows = horizon_rows(10_000 * 100, 100, 2);
        assert_eq!(rows as u64, cache * 3 / 4 / 2 / 10_000);
        assert!((HORIZON_ROWS..HORIZON_ROWS_MAX).contains(&rows), "{rows}");
        // what the horizon asks fits in the partition's share
        assert!(rows as u64 * 10_000 * 2 <= cache);
        assert!(horizon_rows(10_000 * 100, 100, 8) < rows);
        // heavy rows: the floor; constant rows (a few bytes): the cap
        assert_eq!(horizon_rows(1 << 30, 100, 2), HORIZON_ROWS);
        assert_eq!(horizon_rows(100, 100, 2), HORIZON_ROWS_MAX);
    }

    fn src(id: &str, col_off: i64, row_off: i64, width: usize, height: usize) -> Source {
        Source {
            item_id: id.into(),
            version: String::new(),
            loc: crate::raster::plan::AssetLoc::Read(format!("/nowhere/{id}.tif")),
            col_off,
            row_off,
            width,
            height,
            warp: None,
            extra_locs: Vec::new(),
        }
    }

    /// A 250 x 130 grid in 100 px chunks (3 x 2 chunks); two slices whose
    /// sources touch chunks (0,0), (1,0), (1,1) and (2,1) but not (2,0), (0,1).
    fn plan() -> ScanPlan {
        ScanPlan {
            search: String::new(),
            index: Default::default(),
            grid: OutputGrid {
                crs: "EPSG:3857".into(),
                res: 20.0,
                col0: 0,
                row0: 0,
                width: 250,
                height: 130,
            },
            chunk: 100,
            pixels: crate::raster::plan::AssetSpec {
                name: "a".into(),
                nodata: 255,
            },
            columns: Vec::new(),
            zones: None,
            policy: crate::access::ReadPolicy::allow_all(),
            slices: vec![
                TimeSlice {
                    datetime_us: 2,
                    sources: vec![src("late", 150, 100, 200, 200)],
                },
                TimeSlice {
                    datetime_us: 1,
                    sources: vec![src("early", -50, -50, 200, 140)],
                },
            ],
        }
    }

    /// Every chunk with data in exactly one partition; partitions are
    /// contiguous runs of whole chunk rows, row-major inside, none empty.
    #[tokio::test]
    async fn chunk_assignment_deals_whole_rows_in_contiguous_runs() {
        for seed in 0..10 {
            let p = crate::raster::plan::tests::random_plan(seed, 30, 97);
            let with_data = p.chunks_with_data();
            let rows: std::collections::BTreeSet<usize> =
                with_data.iter().map(|&(_, r)| r).collect();
            for n in 1..=12 {
                let exec = chunk_assignment(&p, n).unwrap();
                let parts = exec.properties().partitioning.partition_count();
                assert_eq!(
                    parts,
                    n.min(rows.len()),
                    "seed {seed}, {n} partitions asked"
                );
                let ctx = Arc::new(TaskContext::default());
                let mut all = Vec::new();
                let mut last_row: Option<usize> = None;
                for part in 0..parts {
                    let batches: Vec<RecordBatch> = exec
                        .execute(part, ctx.clone())
                        .unwrap()
                        .try_collect()
                        .await
                        .unwrap();
                    let chunks = assigned_chunks(&batches).unwrap();
                    assert!(
                        !chunks.is_empty(),
                        "seed {seed}: partition {part} of {parts} empty"
                    );
                    // row-major inside, and after every row of the previous partition
                    let mut sorted = chunks.clone();
                    sorted.sort_by_key(|&(c, r)| (r, c));
                    assert_eq!(chunks, sorted);
                    assert!(
                        last_row.is_none_or(|l| chunks[0].1 > l),
                        "rows overlap partitions"
                    );
                    last_row = chunks.last().map(|&(_, r)| r);
                    all.extend(chunks);
                }
                assert_eq!(all, with_data, "seed {seed}, {n} partitions");
            }
        }
    }

    #[test]
    fn rows_split_into_balanced_runs() {
        // (row, chunks): 10 chunks over 5 rows
        let rows = [(0, 2), (1, 2), (2, 2), (3, 2), (4, 2)];
        assert_eq!(split_rows(&rows, 1), Vec::<usize>::new());
        assert_eq!(split_rows(&rows, 2), [3]);
        assert_eq!(split_rows(&rows, 5), [1, 2, 3, 4]);
        // one heavy row first: the others still get a partition each
        let rows = [(0, 100), (1, 1), (2, 1)];
        assert_eq!(split_rows(&rows, 3), [1, 2]);
    }

    /// The scan declares what makes the aggregate above single-stage and
    /// streaming: range partitioning on y_off (or chunk_row) and rows
    /// ordered by chunk.
    #[test]
    fn declares_range_partitioning_and_chunk_order() {
        let p = crate::raster::plan::tests::random_plan(3, 30, 97);
        let exec = FloodChunksExec::try_new(Arc::new(p), 3, 2, Some(vec![3, 4, 8])).unwrap();
        let props = exec.properties();
        let shown = format!("{:?}", props.partitioning);
        assert!(
            matches!(props.partitioning, Partitioning::Range(_)),
            "{shown}"
        );
        assert!(shown.contains("y_off"), "{shown}");
        let ordering = props
            .output_ordering()
            .map(|o| o.to_string())
            .unwrap_or_default();
        assert!(
            ordering.contains("y_off") && ordering.contains("x_off"),
            "{ordering}"
        );
        // without y_off or chunk_row in the projection there is no key to declare
        let p = crate::raster::plan::tests::random_plan(3, 30, 97);
        let exec = FloodChunksExec::try_new(Arc::new(p), 3, 2, Some(vec![8])).unwrap();
        assert!(matches!(
            exec.properties().partitioning,
            Partitioning::UnknownPartitioning(_)
        ));
    }

    #[test]
    fn units_run_chunk_by_chunk_then_slice_by_slice() {
        let mut p = plan();
        // slices are planned in time order
        p.slices.sort_by_key(|s| s.datetime_us);
        let units = scan_units(&p, p.chunk_index(), &p.chunks_with_data());
        let got: Vec<(usize, usize, i64)> = units
            .iter()
            .map(|u| (u.col, u.row, u.datetime_us))
            .collect();
        assert_eq!(got, [(0, 0, 1), (1, 0, 1), (1, 1, 2), (2, 1, 2)]);
        assert_eq!(p.rows(), 4);
        // a unit carries only the sources touching its window
        let last = units.last().unwrap();
        assert_eq!(
            last.window,
            Window {
                x: 200,
                y: 100,
                width: 50,
                height: 30
            }
        );
        assert_eq!(last.sources.len(), 1);
        assert_eq!(last.sources[0].item_id, "late");
    }

    /// The indexed units equal the direct definition (every slice's sources
    /// filtered by overlap), on random plans.
    #[test]
    fn indexed_units_equal_filtering_every_source() {
        for seed in 0..20 {
            for chunk in [16, 250, 1000] {
                let p = crate::raster::plan::tests::random_plan(seed, 30, chunk);
                let chunks = p.chunks_with_data();
                let got = scan_units(&p, p.chunk_index(), &chunks);
                let mut want = vec![];
                for &(c, r) in &chunks {
                    let w = p.grid.chunk_window(chunk, c, r);
                    for s in &p.slices {
                        let ids: Vec<&str> = s
                            .sources
                            .iter()
                            .filter(|src| src.overlap(w).is_some())
                            .map(|src| src.item_id.as_str())
                            .collect();
                        if !ids.is_empty() {
                            want.push((c, r, s.datetime_us, ids));
                        }
                    }
                }
                let got: Vec<_> = got
                    .iter()
                    .map(|u| {
                        let ids: Vec<&str> = u.sources.iter().map(|s| s.item_id.as_str()).collect();
                        (u.col, u.row, u.datetime_us, ids)
                    })
                    .collect();
                assert_eq!(got, want, "seed {seed} chunk {chunk}");
                assert_eq!(p.rows(), want.len());
            }
        }
    }

    /// A constant row reaches the aggregates as the shared buffer of its
    /// value (recognised, and reading as that value repeated); a data row
    /// as its own bytes, not recognised.
    #[test]
    fn constant_rows_are_shared_and_data_rows_are_not() {
        use arrow::array::AsArray;
        for v in [0u8, 1, 255] {
            let a = pixel_array(Pixels::Constant(v), 5000);
            let row = a.as_binary::<i64>().value(0);
            assert_eq!(row, vec![v; 5000].as_slice());
            assert_eq!(floodsql_udfs::constant::value_of(row), Some(v));
        }
        let data = vec![255u8; 5000];
        let a = pixel_array(Pixels::Data(data.clone()), 5000);
        let row = a.as_binary::<i64>().value(0);
        assert_eq!(row, data.as_slice());
        assert_eq!(floodsql_udfs::constant::value_of(row), None);
    }

    #[test]
    fn columns_match_the_schema() {
        let s = chunk_schema();
        assert_eq!(s.fields().len(), ChunkColumn::ALL.len());
        for c in ChunkColumn::ALL {
            assert_eq!(s.field(c as usize).name(), c.name());
            assert_eq!(ChunkColumn::at(c as usize), Some(c));
        }
    }
}
