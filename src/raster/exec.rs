//! `FloodChunksExec`: the raster scan. One output row per (time slice, chunk)
//! that some item overlaps: the slice's fused uint8 pixels over the chunk
//! window. Partition p scans chunks p, p+n, p+2n, … and, within a chunk, the
//! slices in time order, so the partial aggregate directly above keeps one
//! state per chunk and never holds all slices of a chunk at once. Reads and
//! fusing run on blocking threads, a few windows at a time per partition.

use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{
    ArrayRef, Int32Array, LargeBinaryArray, RecordBatch, RecordBatchOptions,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_datafusion_err, internal_err, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;
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
    partitions: usize,
    concurrency: usize,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl FloodChunksExec {
    pub fn try_new(
        plan: Arc<ScanPlan>,
        partitions: usize,
        concurrency: usize,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let full = chunk_schema();
        let schema = match &projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        let partitions = partitions.max(1);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            plan,
            partitions,
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
        self.partitions
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The rows of one partition (`None`: of all partitions).
    fn units(&self, partition: Option<usize>) -> Vec<Unit> {
        scan_units(&self.plan, self.partitions, partition)
    }

    /// Rows the whole scan produces (for progress bars).
    pub fn total_rows(&self) -> usize {
        self.units(None).len()
    }
}

/// The (slice, chunk) rows of a scan; with `partition`, only those of that
/// partition when chunks are dealt round-robin over `partitions`.
fn scan_units(p: &ScanPlan, partitions: usize, partition: Option<usize>) -> Vec<Unit> {
    let mut out = Vec::new();
    for (i, (c, r)) in p.chunks_with_data().into_iter().enumerate() {
        if partition.is_some_and(|part| i % partitions != part) {
            continue;
        }
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
    scan_units(plan, 1, None).len()
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
            self.partitions
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
        vec![]
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
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("FloodChunksExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.partitions {
            return internal_err!(
                "FloodChunksExec: partition {partition} of {}",
                self.partitions
            );
        }
        let units = self.units(Some(partition));
        let chunks = units
            .iter()
            .map(|u| (u.col, u.row))
            .collect::<std::collections::BTreeSet<_>>();
        tracing::info!(
            "{}{}scan partition {partition}/{}: {} (slice, chunk) rows over {} chunks of {}",
            crate::cluster::role()
                .map(|r| format!("{r}: "))
                .unwrap_or_default(),
            ctx.task_id().map(|t| format!("[{t}] ")).unwrap_or_default(),
            self.partitions,
            units.len(),
            chunks.len(),
            self.plan.asset
        );
        let need_pixels = self
            .projection
            .as_ref()
            .is_none_or(|p| p.contains(&PIXELS_COL));
        let projection = self.projection.clone();
        let schema = self.schema.clone();
        let out_schema = schema.clone();
        let stream = futures::stream::iter(units)
            .map(move |u| {
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
            .buffered(self.concurrency);
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
