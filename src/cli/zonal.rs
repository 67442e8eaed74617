//! `floodsql zonal`: flood statistics per region of a vector file — per
//! region, flooded and observed km² (ellipsoidal), the share observed, the
//! first and last day flooded, and the region's attributes. It binds
//! `sql/zonal_stats.sql` (the same engine path as any SQL, locally or on a
//! cluster), prints the table and writes it as CSV and Parquet.

use std::path::PathBuf;

use clap::Args;

use super::extent::ScanArgs;
use crate::output::series::SeriesOutputs;
use crate::template::Param;

/// Zonal statistics as one command.
#[derive(Debug, Args, Clone)]
pub(crate) struct ZonalArgs {
    #[command(flatten)]
    pub(crate) scan: ScanArgs,
    /// The regions: a vector file of polygons (GeoJSON, GeoPackage,
    /// Shapefile, ...; first layer; any CRS).
    #[arg(long)]
    pub(crate) regions: PathBuf,
    /// Write the table as CSV.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    /// Write the table as Parquet.
    #[arg(long)]
    pub(crate) parquet: Option<PathBuf>,
}

impl ZonalArgs {
    /// The bound SQL.
    pub(crate) fn sql(&self) -> anyhow::Result<String> {
        self.scan.sql_with(crate::ZONAL_STATS_SQL, &self.params()?)
    }

    fn params(&self) -> anyhow::Result<std::collections::BTreeMap<String, Param>> {
        let mut params = self.scan.params()?;
        params.insert(
            "regions".into(),
            Param::Str(self.regions.display().to_string()),
        );
        Ok(params)
    }

    /// The bound SQL's main columns only, rounded (what the demo prints).
    fn brief_sql(&self) -> anyhow::Result<String> {
        let query = crate::template::bind(crate::ZONAL_STATS_SQL, &self.params()?)?;
        let query = query.trim_end().trim_end_matches(';');
        let brief = format!(
            "SELECT name, on_grid, round(flooded_km2, 3) AS flooded_km2, round(observed_km2, 3) AS observed_km2, \
             round(share_observed, 3) AS share_observed, first_flooded, last_flooded\nFROM (\n{query}\n)\nORDER BY region_id"
        );
        Ok(brief)
    }
}

pub(crate) fn run(a: ZonalArgs, quiet: bool) -> anyhow::Result<()> {
    run_as(a, false, quiet)
}

/// The demo's table: name, km², share observed and dates, rounded.
pub(crate) fn run_brief(a: ZonalArgs, quiet: bool) -> anyhow::Result<()> {
    run_as(a, true, quiet)
}

fn run_as(a: ZonalArgs, brief: bool, quiet: bool) -> anyhow::Result<()> {
    let sql = if brief { a.brief_sql()? } else { a.sql()? };
    let outputs = SeriesOutputs {
        csv: a.csv.clone(),
        parquet: a.parquet.clone(),
        png: None,
    };
    super::series::run_table(&a.scan, &sql, outputs, "regions", "", quiet)
}
