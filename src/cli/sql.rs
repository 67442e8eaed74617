//! `floodsql sql`: run SQL from a file, `-c`, or an interactive prompt, with
//! every floodsql function registered. With `--out/--parquet/--png` the last
//! statement's result is rasterised like `floodsql extent` does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Args;
use datafusion::execution::context::SessionContext;

use crate::context::Cancel;
use crate::pipeline::{run_statement, run_to_outputs, split_statements, Outputs, RunLabel};
use crate::template::{bind, Param};

/// Where the SQL comes from and where its result goes.
#[derive(Debug, Args, Clone)]
pub(crate) struct SqlArgs {
    /// SQL file to run.
    pub(crate) file: Option<PathBuf>,
    /// SQL text to run (it may start with a `--` comment).
    #[arg(
        short = 'c',
        long = "command",
        conflicts_with = "file",
        allow_hyphen_values = true
    )]
    pub(crate) command: Option<String>,
    /// Bind a ${name} parameter: --param name=value (integers stay integers, NULL is NULL).
    #[arg(long = "param", value_parser = parse_kv)]
    pub(crate) params: Vec<(String, String)>,
    /// Rasterise the last statement's result to a COG.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Write the last statement's result (chunk table) as Parquet.
    #[arg(long)]
    pub(crate) parquet: Option<PathBuf>,
    /// PNG quicklook of the rasterised result.
    #[arg(long)]
    pub(crate) png: Option<PathBuf>,
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
    /// How results print: an aligned `table` (default), `csv` (with a
    /// header) or `json` (one object per line); binary columns show as
    /// their size.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Search and plan only: print each scan's estimate (items, slices,
    /// grid, bytes to read, output size) and exit without reading a pixel.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// How `floodsql sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Csv,
    Json,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))
}

/// Pixel buffers print as their size, not megabytes of hex.
fn printable(b: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if matches!(
            f.data_type(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ) {
            let c2 = arrow::compute::cast(c, &DataType::LargeBinary)?;
            let a = c2
                .as_any()
                .downcast_ref::<arrow::array::LargeBinaryArray>()
                .context("binary")?;
            let s: StringArray = (0..a.len())
                .map(|i| {
                    a.is_valid(i)
                        .then(|| format!("<{} bytes>", a.value(i).len()))
                })
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(s));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// A float for people: 3 decimals (km², shares), scientific below 0.001;
/// CSV, JSON and Parquet keep every digit.
fn rounded(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || v.abs() >= 1e-3 {
        format!("{v:.3}")
    } else {
        format!("{v:.3e}")
    }
}

/// `b` as a table shows it: floats rounded ([`rounded`]), right-aligned
/// by padding to one width per column.
pub(super) fn displayed(b: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if matches!(f.data_type(), DataType::Float64 | DataType::Float32) {
            let c2 = arrow::compute::cast(c, &DataType::Float64)?;
            let a = c2
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .context("float")?;
            let texts: Vec<Option<String>> = a.iter().map(|v| v.map(rounded)).collect();
            let width = texts.iter().flatten().map(String::len).max().unwrap_or(0);
            let s: StringArray = texts
                .into_iter()
                .map(|t| t.map(|t| format!("{t:>width$}")))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
            cols.push(Arc::new(s));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

pub(super) async fn run_text(
    ctx: &SessionContext,
    sql: &str,
    quiet: bool,
    on_cluster: bool,
    cancel: &Cancel,
    format: Format,
) -> anyhow::Result<()> {
    for stmt in split_statements(sql)? {
        let progress = super::query_progress(quiet, on_cluster, cancel);
        let out = run_statement(ctx, stmt, &progress).await;
        progress.search.finish_and_clear();
        progress.scan.finish_and_clear();
        let shown: Vec<RecordBatch> = out?
            .batches
            .iter()
            .map(printable)
            .collect::<anyhow::Result<_>>()?;
        if shown.is_empty() || shown[0].num_columns() == 0 {
            continue;
        }
        match format {
            Format::Table => {
                let rounded: Vec<RecordBatch> =
                    shown.iter().map(displayed).collect::<anyhow::Result<_>>()?;
                println!("{}", arrow::util::pretty::pretty_format_batches(&rounded)?)
            }
            Format::Csv => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(std::io::stdout().lock());
                for b in &shown {
                    w.write(b)?;
                }
            }
            Format::Json => {
                let mut w = arrow::json::LineDelimitedWriter::new(std::io::stdout().lock());
                for b in &shown {
                    w.write(b)?;
                }
                w.finish()?;
            }
        }
    }
    Ok(())
}

pub(crate) fn run(a: SqlArgs, quiet: bool) -> anyhow::Result<()> {
    let params: BTreeMap<String, Param> = a
        .params
        .iter()
        .map(|(k, v)| (k.clone(), Param::parse(v)))
        .collect();
    let text = match (&a.file, &a.command) {
        (Some(f), _) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading SQL file '{}'", f.display()))?,
        ),
        (None, Some(c)) => Some(c.clone()),
        (None, None) => None,
    };
    let outputs = Outputs {
        tif: a.out.clone(),
        parquet: a.parquet.clone(),
        png: a.png.clone(),
        lineage: None,
    };
    let rt = super::runtime()?;
    let on_cluster = a.cluster.is_some();
    let ctx = rt.block_on(super::cluster::context(
        a.cluster.as_deref(),
        a.partitions,
        &a.set,
    ))?;
    let Some(text) = text else {
        if a.dry_run {
            anyhow::bail!("--dry-run needs a SQL file or -c");
        }
        if outputs.any() {
            anyhow::bail!("--out/--parquet/--png need a SQL file or -c");
        }
        return super::prompt::run(
            &rt,
            &ctx,
            super::prompt::PromptOptions {
                quiet,
                on_cluster,
                params,
            },
        );
    };
    let sql = bind(&text, &params)?;
    let cancel = Cancel::default();
    rt.block_on(super::until_signal(&cancel, async {
        if a.dry_run {
            let progress = super::query_progress(quiet, on_cluster, &cancel);
            super::print_plan(&ctx, &sql, &progress).await
        } else if outputs.any() {
            let progress = super::query_progress(quiet, on_cluster, &cancel);
            let run = RunLabel {
                parameters: Param::pairs(&params),
                ..RunLabel::titled("floodsql result")
            };
            let s = run_to_outputs(&ctx, &sql, &outputs, &run, &progress).await;
            progress.search.finish_and_clear();
            super::print_written(&outputs, &s?);
            Ok(())
        } else {
            run_text(&ctx, &sql, quiet, on_cluster, &cancel, a.format).await
        }
    }))
}
