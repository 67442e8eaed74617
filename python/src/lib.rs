//! `floodsql._floodsql`: the extension module behind the `floodsql` Python
//! package. It links the library the CLI uses (`floodsql::pipeline`) and
//! keeps the Python side in charge of the waiting:
//!
//! - a query starts as a [`Job`] on floodsql's own tokio runtime and runs
//!   with the GIL released; Python waits in short slices (`Job.wait`), so a
//!   KeyboardInterrupt arrives between them, and calls `Job.cancel` (the
//!   query's `Cancel`, the cluster job, the task aborted);
//! - results cross without copies: Arrow batches through the Arrow C stream
//!   interface (`__arrow_c_stream__` PyCapsules), a raster's pixels through
//!   the buffer protocol (numpy views the Rust allocation);
//! - errors cross as `_floodsql.QueryError(kind, message)`; the package
//!   raises them as `floodsql.InvalidInputError` (ValueError),
//!   `floodsql.DataError` (OSError), … (`floodsql/_errors.py`).
//!
//! Nothing CLI-only happens here: no allocator tuning, no logging setup, no
//! signal handlers (Python keeps its own).

use std::ffi::{c_int, CString};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow::array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ffi_stream::FFI_ArrowArrayStream;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyList};

use floodsql::pipeline::{self, Outputs, RasterArray, RunLabel};
use floodsql::{Error, ErrorKind, QueryProgress};

pyo3::create_exception!(
    _floodsql,
    QueryError,
    pyo3::exceptions::PyException,
    "A floodsql error: args = (kind, message); the package re-raises it by kind."
);

/// floodsql's runtime in this process: started at the first query, its
/// threads named so that a profiler shows whose they are.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("floodsql")
            .max_blocking_threads((4 * cores).max(8))
            .enable_all()
            .build()
    })
    .as_ref()
    .map_err(|e| PyRuntimeError::new_err(format!("floodsql: starting its runtime: {e}")))
}

/// The kind of an error, as the package names it.
fn kind_name(e: &DataFusionError) -> &'static str {
    if let Some(f) = Error::find_root(e) {
        return match f {
            Error::Cancelled => "cancelled",
            Error::Refused(_) => "refused",
            Error::Timeout { .. } => "timeout",
            f => match f.kind() {
                ErrorKind::User => "input",
                ErrorKind::Data => "data",
                ErrorKind::Internal => "internal",
            },
        };
    }
    match e.find_root() {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => "input",
        DataFusionError::Internal(_) => "internal",
        _ => "data",
    }
}

fn query_error(e: &DataFusionError) -> PyErr {
    QueryError::new_err((kind_name(e), pipeline::report(e)))
}

fn floodsql_error(e: Error) -> PyErr {
    query_error(&e.into())
}

/// What a finished job hands back.
enum Outcome {
    Stream(SendableRecordBatchStream),
    Batches(SchemaRef, Vec<RecordBatch>),
    Array(RasterArray),
    Summary(pipeline::Summary),
    Plan(Vec<pipeline::ScanEstimate>),
}

type Running = tokio::task::JoinHandle<Result<Outcome, DataFusionError>>;

/// A query running on floodsql's runtime.
#[pyclass(module = "floodsql._floodsql")]
struct Job {
    progress: QueryProgress,
    task: Mutex<Option<Running>>,
    done: Mutex<Option<Result<Outcome, DataFusionError>>>,
}

impl Job {
    fn start(
        progress: QueryProgress,
        fut: impl std::future::Future<Output = Result<Outcome, DataFusionError>> + Send + 'static,
    ) -> PyResult<Self> {
        let task = runtime()?.spawn(fut);
        Ok(Self {
            progress,
            task: Mutex::new(Some(task)),
            done: Mutex::new(None),
        })
    }
}

#[pymethods]
impl Job {
    /// Waits up to `timeout` seconds (GIL released); True once finished.
    fn wait(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let rt = runtime()?;
        let mut task = self.task.lock().map_err(|_| poisoned())?;
        let Some(handle) = task.as_mut() else {
            return Ok(true);
        };
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let out =
            py.detach(|| rt.block_on(async { tokio::time::timeout(wait, handle).await.ok() }));
        match out {
            None => Ok(false),
            Some(joined) => {
                *task = None;
                let r = joined.unwrap_or_else(|e| {
                    Err(if e.is_cancelled() {
                        Error::Cancelled.into()
                    } else {
                        Error::Internal(format!("the query's task failed: {e}")).into()
                    })
                });
                *self.done.lock().map_err(|_| poisoned())? = Some(r);
                Ok(true)
            }
        }
    }

    /// (items found by the STAC searches, rows or tasks done, rows or tasks in all).
    fn progress(&self) -> (u64, u64, Option<u64>) {
        let p = &self.progress;
        (p.search.position(), p.scan.position(), p.scan.length())
    }

    /// Cancels the query: its writers leave nothing behind, its cluster job
    /// is cancelled on the scheduler, its task is stopped; returns once it
    /// has ended. Returns the cancelled cluster job's id, if any.
    fn cancel(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let rt = runtime()?;
        let cancel = self.progress.cancel.clone();
        let task = self.task.lock().map_err(|_| poisoned())?.take();
        let was_running = task.is_some();
        let job = py.detach(|| {
            rt.block_on(async move {
                let job = pipeline::cancel(&cancel).await;
                if let Some(t) = task {
                    t.abort();
                    let _ = t.await;
                }
                job
            })
        });
        if was_running {
            // a query that had already finished keeps its result
            *self.done.lock().map_err(|_| poisoned())? = Some(Err(Error::Cancelled.into()));
        }
        job.map_err(floodsql_error)
    }

    /// The result (once `wait` returned True): raises the query's error.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let done = self
            .done
            .lock()
            .map_err(|_| poisoned())?
            .take()
            .ok_or_else(|| {
                PyRuntimeError::new_err("the job is not finished (or its result was taken)")
            })?;
        match done.map_err(|e| query_error(&e))? {
            Outcome::Stream(s) => Ok(Py::new(py, ResultStream::new(s))?.into_any()),
            Outcome::Batches(schema, batches) => {
                Ok(Py::new(py, ResultStream::batches(schema, batches))?.into_any())
            }
            Outcome::Array(a) => raster_to_py(py, a),
            Outcome::Summary(s) => summary_to_py(py, &s),
            Outcome::Plan(p) => plan_to_py(py, &p),
        }
    }
}

fn poisoned() -> PyErr {
    PyRuntimeError::new_err("floodsql: a job's lock was poisoned by an earlier panic")
}

/// A query's result rows, as an Arrow stream (`__arrow_c_stream__`): read
/// once, by pyarrow, polars, DuckDB, … without copies.
#[pyclass(module = "floodsql._floodsql")]
struct ResultStream {
    schema: SchemaRef,
    reader: Mutex<Option<Box<dyn RecordBatchReader + Send>>>,
}

impl ResultStream {
    fn new(stream: SendableRecordBatchStream) -> Self {
        let schema = stream.schema();
        let reader = BlockingReader {
            schema: schema.clone(),
            stream: Some(stream),
        };
        Self {
            schema,
            reader: Mutex::new(Some(Box::new(reader))),
        }
    }

    fn batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema.clone());
        Self {
            schema,
            reader: Mutex::new(Some(Box::new(reader))),
        }
    }
}

#[pymethods]
impl ResultStream {
    /// The Arrow C stream PyCapsule (the Arrow PyCapsule interface). A
    /// requested schema other than the stream's own is not supported: it
    /// is ignored, as the protocol allows.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = self
            .reader
            .lock()
            .map_err(|_| poisoned())?
            .take()
            .ok_or_else(|| {
                PyValueError::new_err("this result was already read (a result streams once)")
            })?;
        let stream = FFI_ArrowArrayStream::new(reader);
        let name = CString::new("arrow_array_stream").expect("no NUL");
        PyCapsule::new(py, stream, Some(name))
    }

    /// The schema's column names.
    fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}

/// Reads a DataFusion stream from a foreign thread (pyarrow's), one batch
/// at a time, on floodsql's runtime.
struct BlockingReader {
    schema: SchemaRef,
    stream: Option<SendableRecordBatchStream>,
}

impl Iterator for BlockingReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.stream.as_mut()?;
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => return Some(Err(ArrowError::ExternalError(e.to_string().into()))),
        };
        let next = rt.block_on(stream.next());
        match next {
            None => {
                self.stream = None;
                None
            }
            Some(Ok(b)) => Some(Ok(b)),
            Some(Err(e)) => {
                self.stream = None;
                Some(Err(ArrowError::ExternalError(pipeline::report(&e).into())))
            }
        }
    }
}

impl RecordBatchReader for BlockingReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A raster's pixels, owned by Rust and lent to numpy (buffer protocol,
/// writable): `numpy.frombuffer(pixels, dtype)` makes no copy.
#[pyclass(module = "floodsql._floodsql")]
struct Pixels {
    data: Vec<u8>,
}

#[pymethods]
impl Pixels {
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let (ptr, len) = {
            let mut p = slf.borrow_mut();
            (p.data.as_mut_ptr(), p.data.len())
        };
        // SAFETY: the view keeps `slf` (and so `data`, never resized) alive
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                ptr.cast(),
                len as pyo3::ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.data.len()
    }
}

fn raster_to_py(py: Python<'_>, a: RasterArray) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    d.set_item("width", a.width)?;
    d.set_item("height", a.height)?;
    d.set_item("geotransform", a.geotransform.to_vec())?;
    d.set_item("crs", &a.crs)?;
    d.set_item("kind", a.kind)?;
    d.set_item("nodata", a.nodata)?;
    d.set_item("dtype", if a.bytes_per_pixel == 2 { "<u2" } else { "u1" })?;
    d.set_item("items", a.items)?;
    d.set_item("slices", a.slices)?;
    d.set_item("result_chunks", a.result_chunks)?;
    d.set_item("pixels", Py::new(py, Pixels { data: a.data })?)?;
    Ok(d.into_any().unbind())
}

fn summary_to_py(py: Python<'_>, s: &pipeline::Summary) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    d.set_item("items", s.items)?;
    d.set_item("slices", s.slices)?;
    d.set_item("scanned_rows", s.scanned_rows)?;
    d.set_item("result_chunks", s.result_chunks)?;
    d.set_item("seconds", s.seconds)?;
    d.set_item("is_mask", s.is_mask())?;
    d.set_item("flooded_pixels", s.flooded_pixels())?;
    d.set_item("flooded_km2", s.flooded_km2())?;
    d.set_item("text", s.describe())?;
    Ok(d.into_any().unbind())
}

fn plan_to_py(py: Python<'_>, plans: &[pipeline::ScanEstimate]) -> PyResult<Py<PyAny>> {
    let out = PyList::empty(py);
    for e in plans {
        let d = PyDict::new(py);
        d.set_item("items", e.items)?;
        d.set_item("slices", e.slices)?;
        d.set_item("width", e.width)?;
        d.set_item("height", e.height)?;
        d.set_item("resolution", e.res)?;
        d.set_item("chunk", e.chunk)?;
        d.set_item("chunks", e.chunks)?;
        d.set_item("chunks_with_data", e.chunks_with_data)?;
        d.set_item("rows", e.rows)?;
        d.set_item("read_bytes", e.read_bytes)?;
        let missing = PyDict::new(py);
        for m in &e.missing {
            let read_as = if m.nodata {
                "nodata".into_pyobject(py)?.into_any()
            } else {
                m.fill.into_pyobject(py)?.into_any()
            };
            let one = PyDict::new(py);
            one.set_item("read_as", read_as)?;
            one.set_item("items", &m.items)?;
            missing.set_item(&m.asset, one)?;
        }
        d.set_item("missing_assets", missing)?;
        d.set_item("text", e.one_line())?;
        out.append(d)?;
    }
    Ok(out.into_any().unbind())
}

/// A session: local, or connected to a floodsql cluster.
#[pyclass(module = "floodsql._floodsql")]
struct Connection {
    ctx: Arc<SessionContext>,
}

impl Connection {
    fn job<F, Fut>(&self, f: F) -> PyResult<Job>
    where
        F: FnOnce(Arc<SessionContext>, QueryProgress) -> Fut,
        Fut: std::future::Future<Output = Result<Outcome, DataFusionError>> + Send + 'static,
    {
        let progress = QueryProgress::default();
        Job::start(progress.clone(), f(self.ctx.clone(), progress))
    }
}

#[pymethods]
impl Connection {
    /// `cluster`: None (local) or `df://HOST:PORT`; `partitions`: scan
    /// partitions; `options`: session options (`floodsql.*`,
    /// `datafusion.*`), set in order.
    #[new]
    #[pyo3(signature = (cluster=None, partitions=None, options=Vec::new()))]
    fn new(
        py: Python<'_>,
        cluster: Option<String>,
        partitions: Option<usize>,
        options: Vec<(String, String)>,
    ) -> PyResult<Self> {
        let rt = runtime()?;
        let ctx = py
            .detach(|| rt.block_on(pipeline::connect(cluster.as_deref(), partitions)))
            .map_err(|e| query_error(&e))?;
        for (k, v) in &options {
            pipeline::set_option(&ctx, k, v).map_err(floodsql_error)?;
        }
        Ok(Self { ctx: Arc::new(ctx) })
    }

    /// Sets a session option, as SQL `SET` does.
    fn set(&self, key: &str, value: &str) -> PyResult<()> {
        pipeline::set_option(&self.ctx, key, value).map_err(floodsql_error)
    }

    /// Starts the SQL; the result streams (read it once).
    fn start_stream(&self, sql: String) -> PyResult<Job> {
        self.job(|ctx, p| async move {
            let s = pipeline::stream_sql(&ctx, &sql, &p).await?;
            Ok(Outcome::Stream(s))
        })
    }

    /// Starts the SQL and collects its result rows.
    fn start_collect(&self, sql: String) -> PyResult<Job> {
        self.job(|ctx, p| async move {
            let mut s = pipeline::stream_sql(&ctx, &sql, &p).await?;
            let schema = s.schema();
            let mut batches = Vec::new();
            while let Some(b) = s.next().await {
                batches.push(b?);
            }
            Ok(Outcome::Batches(schema, batches))
        })
    }

    /// Starts the SQL; its result is rasterised in memory.
    fn start_array(&self, sql: String) -> PyResult<Job> {
        self.job(|ctx, p| async move {
            Ok(Outcome::Array(
                pipeline::run_to_array(&ctx, &sql, &p).await?,
            ))
        })
    }

    /// Starts the SQL; its result is written to the outputs (all or nothing).
    #[pyo3(signature = (sql, tif=None, parquet=None, png=None, title=None))]
    fn start_write(
        &self,
        sql: String,
        tif: Option<std::path::PathBuf>,
        parquet: Option<std::path::PathBuf>,
        png: Option<std::path::PathBuf>,
        title: Option<String>,
    ) -> PyResult<Job> {
        let outputs = Outputs {
            tif,
            parquet,
            png,
            lineage: None,
        };
        if !outputs.any() {
            return Err(QueryError::new_err((
                "input",
                "write() needs at least one of tif=, parquet=, png=",
            )));
        }
        let label = RunLabel::titled(title.as_deref().unwrap_or("floodsql query"));
        self.job(|ctx, p| async move {
            let s = pipeline::run_to_outputs(&ctx, &sql, &outputs, &label, &p).await?;
            Ok(Outcome::Summary(s))
        })
    }

    /// Starts planning the SQL (searches, no pixel read).
    fn start_plan(&self, sql: String) -> PyResult<Job> {
        self.job(|ctx, p| async move {
            let scans = pipeline::plan_only(&ctx, &sql, &p).await?;
            Ok(Outcome::Plan(scans.iter().map(|s| s.estimate()).collect()))
        })
    }
}

/// floodsql's version tag (package version + function set fingerprint).
#[pyfunction]
fn version() -> String {
    floodsql::version::version_tag().to_string()
}

/// The CLI's defaults: chunk side, collection.
#[pyfunction]
fn defaults() -> (usize, &'static str) {
    (pipeline::DEFAULT_CHUNK, pipeline::DEFAULT_COLLECTION)
}

/// The SQL floodsql ships: name → text.
#[pyfunction]
fn shipped_sql() -> Vec<(&'static str, &'static str)> {
    vec![
        ("max_flood_extent", floodsql::MAX_FLOOD_EXTENT_SQL),
        ("daily_series", floodsql::DAILY_SERIES_SQL),
        ("zonal_stats", floodsql::ZONAL_STATS_SQL),
    ]
}

/// A parameter value from Python: None, bool/int, float or str.
#[derive(FromPyObject)]
enum ParamValue {
    Int(i64),
    Float(f64),
    Str(String),
}

/// Binds `${name}` parameters into SQL text as the CLI does (strings
/// quoted, numbers as they are, None as NULL).
#[pyfunction]
fn bind(sql: &str, params: Vec<(String, Option<ParamValue>)>) -> PyResult<String> {
    let params: Vec<(String, pipeline::Param)> = params
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                None => pipeline::Param::Null,
                Some(ParamValue::Int(i)) => pipeline::Param::Int(i),
                Some(ParamValue::Float(f)) => pipeline::Param::Float(f),
                Some(ParamValue::Str(s)) => pipeline::Param::Str(s),
            };
            (k, v)
        })
        .collect();
    pipeline::bind(sql, &params).map_err(floodsql_error)
}

#[pymodule]
fn _floodsql(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Connection>()?;
    m.add_class::<Job>()?;
    m.add_class::<ResultStream>()?;
    m.add_class::<Pixels>()?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(shipped_sql, m)?)?;
    m.add_function(wrap_pyfunction!(defaults, m)?)?;
    m.add_function(wrap_pyfunction!(bind, m)?)?;
    m.add("QueryError", m.py().get_type::<QueryError>())?;
    Ok(())
}
