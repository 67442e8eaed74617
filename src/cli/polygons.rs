//! `floodsql polygons`: flood outlines as vectors — a class raster (e.g. the
//! COG of `floodsql extent`) vectorised block by block, polygons merged
//! across block edges, written as GeoParquet 1.1 and GeoJSON (RFC 7946).

use std::path::PathBuf;

use clap::Args;

use crate::context::Cancel;
use crate::error::join_err;
use crate::output::polygons::{write_polygons, PolygonOutputs};
use crate::vector::polygons::{polygonize, PolygonOptions};

/// Vectorising a class raster.
#[derive(Debug, Args, Clone)]
pub(crate) struct PolygonsArgs {
    /// The raster: a single-band integer GeoTIFF (e.g. floodsql extent's output).
    pub(crate) raster: PathBuf,
    /// Write the polygons as GeoParquet 1.1 (WKB, in the raster's CRS).
    #[arg(long)]
    pub(crate) parquet: Option<PathBuf>,
    /// Write the polygons as GeoJSON (RFC 7946: WGS 84 longitude/latitude).
    #[arg(long)]
    pub(crate) geojson: Option<PathBuf>,
    /// Pixel value to vectorise (repeatable; default: every value but 0 and nodata).
    #[arg(long = "class", value_name = "VALUE")]
    pub(crate) classes: Vec<i64>,
    /// Simplify each polygon (GEOS, topology preserving) with this tolerance
    /// in the raster CRS's units (metres for GFM); pixel counts and areas
    /// stay those of the pixels.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) simplify: f64,
    /// Leave out polygons of fewer pixels.
    #[arg(long, default_value_t = 1)]
    pub(crate) min_pixels: u64,
    /// Side of the blocks vectorised at a time (pixels).
    #[arg(long, default_value_t = 1024)]
    pub(crate) block: usize,
    /// A first-flood-date raster on the same grid (flood_first_date's
    /// result): each polygon gets its earliest day (needs --last-date).
    #[arg(long, requires = "last_date")]
    pub(crate) first_date: Option<PathBuf>,
    /// A last-flood-date raster on the same grid (flood_last_date's
    /// result): each polygon gets its latest day (needs --first-date).
    #[arg(long, requires = "first_date")]
    pub(crate) last_date: Option<PathBuf>,
}

pub(crate) fn run(a: PolygonsArgs, _quiet: bool) -> anyhow::Result<()> {
    if a.parquet.is_none() && a.geojson.is_none() {
        anyhow::bail!("nothing to write: give --parquet and/or --geojson");
    }
    if !(a.simplify >= 0.0 && a.simplify.is_finite()) {
        anyhow::bail!("invalid --simplify '{}': a tolerance >= 0", a.simplify);
    }
    if a.block < 16 {
        anyhow::bail!("invalid --block '{}': at least 16 pixels", a.block);
    }
    let outputs = PolygonOutputs {
        parquet: a.parquet.clone(),
        geojson: a.geojson.clone(),
    };
    outputs.transaction(Cancel::default())?; // refused before any work
    let opts = PolygonOptions {
        classes: a.classes.clone(),
        simplify: a.simplify,
        min_pixels: a.min_pixels,
        block: a.block,
        dates: a.first_date.clone().zip(a.last_date.clone()),
    };
    let rt = super::runtime()?;
    let raster = a.raster.clone();
    let cancel = Cancel::default();
    let stop = cancel.clone();
    let (n, pixels, km2, blocks, merged) =
        rt.block_on(super::until_signal(&cancel, async move {
            let r = tokio::task::spawn_blocking(move || -> crate::Result<_> {
                let p = polygonize(&raster, &opts)?;
                write_polygons(&p, &outputs, stop)?;
                let pixels: u64 = p.polygons.iter().map(|f| f.pixels).sum();
                let km2: f64 = p.polygons.iter().map(|f| f.area_km2).sum();
                Ok((p.polygons.len(), pixels, km2, p.blocks, p.pieces_merged))
            })
            .await
            .map_err(join_err("vectorising"))??;
            anyhow::Ok(r)
        }))?;
    for p in [&a.parquet, &a.geojson].into_iter().flatten() {
        println!("wrote {}", p.display());
    }
    println!(
        "polygons: {n} ({pixels} pixels, {km2:.3} km² on the ellipsoid); {blocks} blocks, {merged} pieces merged across block edges"
    );
    Ok(())
}
