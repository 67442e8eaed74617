//! `floodsql series`: the daily flood series of a STAC search — per UTC day,
//! flooded and observed km² (ellipsoidal) and the share of the AOI
//! observed. It binds `sql/daily_series.sql` (the same engine path as any
//! SQL), prints the table and writes it as CSV, Parquet and a line chart.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::extent::ScanArgs;
use crate::context::Cancel;
use crate::error::join_err;
use crate::output::series::{write_series, SeriesOutputs};
use crate::pipeline::{run_statement, split_statements};

/// The daily series as one command.
#[derive(Debug, Args, Clone)]
pub(crate) struct SeriesArgs {
    #[command(flatten)]
    pub(crate) scan: ScanArgs,
    /// Write the series as CSV.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    /// Write the series as Parquet.
    #[arg(long)]
    pub(crate) parquet: Option<PathBuf>,
    /// Draw the series as a line chart (PNG).
    #[arg(long)]
    pub(crate) png: Option<PathBuf>,
}

pub(crate) fn run(a: SeriesArgs, quiet: bool) -> anyhow::Result<()> {
    let sql = a.scan.sql(crate::DAILY_SERIES_SQL)?;
    let outputs = SeriesOutputs {
        csv: a.csv.clone(),
        parquet: a.parquet.clone(),
        png: a.png.clone(),
    };
    let title = match &a.scan.datetime {
        Some(d) => format!("Daily flood series — {d}"),
        None => "Daily flood series".to_string(),
    };
    run_table(
        &a.scan,
        &sql,
        outputs,
        "days with an acquisition",
        &title,
        quiet,
    )
}

/// Runs `sql` (a bound template of `scan`), prints its result as a table
/// with its row count (`rows_are`) and writes it to `outputs` (the chart
/// titled `title`). Shared by `series` and `zonal`.
pub(super) fn run_table(
    scan: &ScanArgs,
    sql: &str,
    outputs: SeriesOutputs,
    rows_are: &str,
    title: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let on_cluster = scan.cluster.is_some();
    if scan.print_sql {
        println!("{sql}");
    }
    outputs.transaction(Cancel::default())?; // refused before the query runs
    let rt = super::runtime()?;
    let cancel = Cancel::default();
    let batches = rt.block_on(super::until_signal(&cancel, async {
        let ctx = scan.context().await?;
        let progress = super::query_progress(quiet, on_cluster, &cancel);
        if scan.dry_run {
            super::print_plan(&ctx, sql, &progress).await?;
            return Ok(None);
        }
        let mut last = None;
        for stmt in split_statements(sql)? {
            last = Some(run_statement(&ctx, stmt, &progress).await?);
        }
        progress.search.finish_and_clear();
        progress.scan.finish_and_clear();
        anyhow::Ok(last.map(|o| o.batches))
    }))?;
    let Some(batches) = batches else {
        return Ok(());
    };
    let shown: Vec<_> = batches
        .iter()
        .map(super::sql::displayed)
        .collect::<anyhow::Result<_>>()?;
    println!(
        "{}",
        arrow::util::pretty::pretty_format_batches(&shown).context("printing the result")?
    );
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!("{rows_are}: {rows}");
    if outputs.any() {
        if rows == 0 {
            anyhow::bail!("the result has no row: nothing written");
        }
        let subtitle = format!(
            "{} · collection {} · asset {} · bbox {}",
            crate::error::redact_urls(&scan.stac_url),
            scan.collection.as_deref().unwrap_or("any"),
            scan.asset,
            scan.bbox
        );
        let (title, written, stop) = (title.to_string(), outputs.clone(), cancel.clone());
        rt.block_on(super::until_signal(&cancel, async {
            tokio::task::spawn_blocking(move || {
                write_series(&batches, &outputs, &title, &subtitle, stop)
            })
            .await
            .map_err(join_err("writing the result"))??;
            anyhow::Ok(())
        }))?;
        for p in [&written.csv, &written.parquet, &written.png]
            .into_iter()
            .flatten()
        {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}
