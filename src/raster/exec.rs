//! `FloodChunksExec`: the raster scan. One output row per (time slice, chunk)
//! that some item overlaps: the slice's fused uint8 pixels over the chunk
//! window. Within a partition it scans its chunks one after the other and,
//! within a chunk, the slices in time order, so the partial aggregate directly
//! above keeps one state per chunk and never holds all slices of a chunk at
//! once. Reads and fusing run on blocking threads, a few windows at a time per
//! partition.
//!
//! Which chunks a partition scans is data: the scan's only input is a small
//! in-memory table with one partition per scan partition, listing its chunks
//! (dealt round-robin: p, p+n, p+2n, …). On a Ballista cluster the scheduler
//! restricts that input to the partitions of each task — Ballista knows how to
//! slice an in-memory source, not a custom leaf — so a task scans exactly its
//! own chunks, locally and remotely alike.

use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{
    ArrayRef, Int32Array, LargeBinaryArray, RecordBatch, RecordBatchOptions,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_datafusion_err, internal_err, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;
use indicatif::ProgressBar;

use crate::raster::fuse::fuse_window;
use crate::raster::plan::{ScanPlan, Source};

/// Column index of `pixels` in [`chunk_schema`].
pub const PIXELS_COL: usize = 8;

/// The schema of `flood_chunks(...)`.
pub fn chunk_schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new(
                "datetime",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("chunk_col", DataType::Int32, false),
            Field::new("chunk_row", DataType::Int32, false),
            Field::new("x_off", DataType::Int32, false),
            Field::new("y_off", DataType::Int32, false),
            Field::new("width", DataType::Int32, false),
            Field::new("height", DataType::Int32, false),
            Field::new("items", DataType::Int32, false),
            Field::new("pixels", DataType::LargeBinary, false),
        ]))
    });
    S.clone()
}

static PROGRESS: LazyLock<Mutex<Option<ProgressBar>>> = LazyLock::new(|| Mutex::new(None));

/// Where scans report each (slice, chunk) row done (the CLI's progress bar).
pub fn set_progress(pb: Option<ProgressBar>) {
    if let Ok(mut p) = PROGRESS.lock() {
        *p = pb;
    }
}

fn tick() {
    if let Ok(p) = PROGRESS.lock() {
        if let Some(pb) = p.as_ref() {
            pb.inc(1);
        }
    }
}

/// One (slice, chunk) row to produce.
#[derive(Debug, Clone)]
struct Unit {
    datetime_us: i64,
    col: usize,
    row: usize,
    window: (usize, usize, usize, usize),
    sources: Vec<Source>,
}

#[derive(Debug)]
pub struct FloodChunksExec {
    plan: Arc<ScanPlan>,
    /// The chunk assignment: partition p lists the chunks partition p scans.
    input: Arc<dyn ExecutionPlan>,
    concurrency: usize,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

/// Schema of the chunk assignment a `FloodChunksExec` reads.
pub fn assignment_schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("chunk_col", DataType::UInt32, false),
            Field::new("chunk_row", DataType::UInt32, false),
        ]))
    });
    S.clone()
}

/// The chunks with data dealt round-robin over `partitions` partitions, as an
/// in-memory source.
pub fn chunk_assignment(plan: &ScanPlan, partitions: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let n = partitions.max(1);
    let mut parts: Vec<(Vec<u32>, Vec<u32>)> = vec![(Vec::new(), Vec::new()); n];
    for (i, (c, r)) in plan.chunks_with_data().into_iter().enumerate() {
        parts[i % n].0.push(c as u32);
        parts[i % n].1.push(r as u32);
    }
    let batches = parts
        .into_iter()
        .map(|(cols, rows)| {
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

impl FloodChunksExec {
    /// A scan of `plan` in `partitions` partitions.
    pub fn try_new(
        plan: Arc<ScanPlan>,
        partitions: usize,
        concurrency: usize,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let input = chunk_assignment(&plan, partitions)?;
        Self::with_input(plan, input, concurrency, projection)
    }

    /// A scan of `plan` whose chunks per partition come from `input`.
    pub fn with_input(
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
        let full = chunk_schema();
        let schema = match &projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        let partitions = input.properties().partitioning.partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            plan,
            input,
            concurrency: concurrency.max(1),
            projection,
            schema,
            properties,
        })
    }

    pub fn scan_plan(&self) -> &Arc<ScanPlan> {
        &self.plan
    }

    pub fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }

    pub fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }
}

/// The (slice, chunk) rows of a scan over `chunks`, chunk by chunk and, within
/// a chunk, slice by slice in time order.
fn scan_units(p: &ScanPlan, chunks: &[(usize, usize)]) -> Vec<Unit> {
    let mut out = Vec::new();
    for &(c, r) in chunks {
        let window = p.grid.chunk_window(p.chunk, c, r);
        for s in &p.slices {
            let sources: Vec<Source> = s
                .sources
                .iter()
                .filter(|src| src.overlap(window).is_some())
                .cloned()
                .collect();
            if !sources.is_empty() {
                out.push(Unit {
                    datetime_us: s.datetime_us,
                    col: c,
                    row: r,
                    window,
                    sources,
                });
            }
        }
    }
    out
}

/// (slice, chunk) rows a scan of `plan` produces, however it is partitioned.
pub fn scan_rows(plan: &ScanPlan) -> usize {
    scan_units(plan, &plan.chunks_with_data()).len()
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
            self.plan.asset,
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
            let schema = chunk_schema();
            let names: Vec<&str> = p.iter().map(|&i| schema.field(i).name().as_str()).collect();
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
        let task = ctx.task_id();
        let units = futures::stream::once(async move {
            let batches: Vec<RecordBatch> = assignment.try_collect().await?;
            let chunks = assigned_chunks(&batches)?;
            let units = scan_units(&plan, &chunks);
            tracing::info!(
                "{}{}scan partition {partition}/{n}: {} (slice, chunk) rows over {} chunks of {}",
                crate::cluster::role()
                    .map(|r| format!("{r}: "))
                    .unwrap_or_default(),
                task.map(|t| format!("[{t}] ")).unwrap_or_default(),
                units.len(),
                chunks.len(),
                plan.asset
            );
            Ok::<_, datafusion::error::DataFusionError>(futures::stream::iter(
                units
                    .into_iter()
                    .map(Ok::<_, datafusion::error::DataFusionError>),
            ))
        })
        .try_flatten();
        let need_pixels = self
            .projection
            .as_ref()
            .is_none_or(|p| p.contains(&PIXELS_COL));
        let projection = self.projection.clone();
        let schema = self.schema.clone();
        let out_schema = schema.clone();
        let stream = units
            .map_ok(move |u| {
                let projection = projection.clone();
                let schema = schema.clone();
                async move {
                    let pixels = if need_pixels {
                        let (window, sources) = (u.window, u.sources.clone());
                        let fill = sources[0].nodata;
                        let px = tokio::task::spawn_blocking(move || {
                            let refs: Vec<&Source> = sources.iter().collect();
                            fuse_window(window, &refs, fill)
                        })
                        .await
                        .map_err(|e| exec_datafusion_err!("raster read task failed: {e}"))??;
                        Some(px)
                    } else {
                        None
                    };
                    tick();
                    unit_batch(&u, pixels, projection.as_deref(), schema)
                }
            })
            .try_buffered(self.concurrency);
        Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, stream)))
    }
}

fn unit_batch(
    u: &Unit,
    pixels: Option<Vec<u8>>,
    projection: Option<&[usize]>,
    schema: SchemaRef,
) -> Result<RecordBatch> {
    let i32a = |v: usize| -> ArrayRef { Arc::new(Int32Array::from(vec![v as i32])) };
    let (x, y, w, h) = u.window;
    let cols: Vec<usize> = match projection {
        Some(p) => p.to_vec(),
        None => (0..=PIXELS_COL).collect(),
    };
    let arrays = cols
        .iter()
        .map(|&c| -> Result<ArrayRef> {
            Ok(match c {
                0 => Arc::new(
                    TimestampMicrosecondArray::from(vec![u.datetime_us]).with_timezone("UTC"),
                ),
                1 => i32a(u.col),
                2 => i32a(u.row),
                3 => i32a(x),
                4 => i32a(y),
                5 => i32a(w),
                6 => i32a(h),
                7 => i32a(u.sources.len()),
                PIXELS_COL => {
                    let px = pixels
                        .as_deref()
                        .ok_or_else(|| exec_datafusion_err!("pixels not read"))?;
                    Arc::new(LargeBinaryArray::from_vec(vec![px]))
                }
                _ => return internal_err!("FloodChunksExec: no column {c}"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema,
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?)
}
