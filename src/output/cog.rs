//! GeoTIFF out as a Cloud-Optimized GeoTIFF: built chunk by chunk in a tiled
//! GTiff on disk, then `CreateCopy` to the COG driver (tiled 512, DEFLATE, overviews resampled
//! NEAREST so a 0/1 mask stays 0/1), with the items' CRS and the grid's
//! geotransform. No nodata value: 0 is dry land, not missing data.
//! Blocking (GDAL): call from a blocking thread.

use std::path::{Path, PathBuf};

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::raster::{ColorEntry, ColorInterpretation, ColorTable, PaletteInterpretation};
use gdal::{Dataset, DriverManager, Metadata};

use crate::error::{Error, Result};
use crate::geo::Window;
use crate::output::assemble::RasterKind;
use crate::output::Provenance;
use crate::raster::grid::{spatial_ref, OutputGrid};

/// The GeoTIFF being built: a tiled, sparse GTiff on disk (a temp file
/// beside the target) written chunk by chunk — GDAL's block cache bounds the
/// memory — then copied into a COG with its overviews.
pub(crate) struct TiledTiff {
    path: PathBuf,
    ds: Dataset,
    bytes_per_pixel: usize,
}

impl TiledTiff {
    /// Creates the GTiff at `path` (a scratch file of the run's
    /// transaction) on `grid`: 1 (u8) or 2 (u16) bytes per pixel; blocks
    /// never written read as 0.
    /// With a `nodata` value, the band declares it and blocks never
    /// written read as it.
    pub(crate) fn create(
        path: &Path,
        grid: &OutputGrid,
        bytes_per_pixel: usize,
        nodata: Option<u16>,
    ) -> Result<Self> {
        let path = path.to_path_buf();
        let drv = DriverManager::get_driver_by_name("GTiff")?;
        let opts = RasterCreationOptions::from_iter([
            "TILED=YES",
            "BLOCKXSIZE=512",
            "BLOCKYSIZE=512",
            "SPARSE_OK=TRUE",
            "BIGTIFF=IF_SAFER",
        ]);
        let (w, h) = (grid.width, grid.height);
        let made = match bytes_per_pixel {
            1 => drv.create_with_band_type_with_options::<u8, _>(&path, w, h, 1, &opts),
            2 => drv.create_with_band_type_with_options::<u16, _>(&path, w, h, 1, &opts),
            n => {
                return Err(Error::Internal(format!(
                    "a raster of {n} bytes per pixel (the chunk reader allows 1 or 2)"
                )))
            }
        };
        let mut ds =
            made.map_err(|e| Error::Gdal(format!("creating '{}': {e}", path.display())))?;
        ds.set_geo_transform(&grid.geotransform())?;
        ds.set_spatial_ref(&spatial_ref(&grid.crs)?)?;
        if let Some(n) = nodata {
            ds.rasterband(1)?.set_no_data_value(Some(n as f64))?;
        }
        Ok(Self {
            path,
            ds,
            bytes_per_pixel,
        })
    }

    /// Writes a chunk's pixels (`bytes_per_pixel` each, little-endian).
    pub(crate) fn write(&mut self, w: Window, px: &[u8]) -> Result<()> {
        let mut band = self.ds.rasterband(1)?;
        let size = (w.width, w.height);
        match self.bytes_per_pixel {
            1 => band.write(
                (w.x as isize, w.y as isize),
                size,
                &mut Buffer::new(size, px.to_vec()),
            )?,
            _ => {
                let v: Vec<u16> = px
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect();
                band.write(
                    (w.x as isize, w.y as isize),
                    size,
                    &mut Buffer::new(size, v),
                )?
            }
        }
        Ok(())
    }

    /// Closes the GTiff and copies it into a COG at `out` (a staged file;
    /// messages name `target`); the GTiff is removed. The COG carries `provenance` as metadata
    /// (what QGIS shows under the layer's properties), a band description,
    /// and for a 0/1 mask or three states a colour table (0 light beige, 1
    /// flood blue, 255 grey).
    pub(crate) fn into_cog(
        self,
        out: &Path,
        target: &Path,
        provenance: &Provenance,
        kind: RasterKind,
    ) -> Result<()> {
        let TiledTiff { path, mut ds, .. } = self;
        let result = (|| {
            describe(&mut ds, provenance, kind)?;
            ds.flush_cache()?;
            drop(ds);
            let src = Dataset::open(&path)?;
            let cog = DriverManager::get_driver_by_name("COG")?;
            let opts = RasterCreationOptions::from_iter([
                "COMPRESS=DEFLATE",
                "BLOCKSIZE=512",
                "OVERVIEW_RESAMPLING=NEAREST",
                "BIGTIFF=IF_SAFER",
                "NUM_THREADS=ALL_CPUS",
            ]);
            let mut made = src
                .create_copy(&cog, out, &opts)
                .map_err(|e| Error::Gdal(format!("writing COG '{}': {e}", target.display())))?;
            made.flush_cache()?;
            Ok(())
        })();
        let _ = std::fs::remove_file(&path);
        result
    }
}

/// Metadata items (dataset level) of a floodsql COG.
pub(crate) fn metadata_items(p: &Provenance) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("TIFFTAG_IMAGEDESCRIPTION", p.title.clone()),
        (
            "TIFFTAG_SOFTWARE",
            format!("floodsql {}", env!("CARGO_PKG_VERSION")),
        ),
        ("FLOODSQL_SOURCE", p.source.clone()),
        ("FLOODSQL_ASSET", p.asset.clone()),
        ("FLOODSQL_ITEMS", p.items.to_string()),
        ("FLOODSQL_QUERY", p.query.clone()),
    ];
    if let Some((a, b)) = &p.time_range {
        v.push(("FLOODSQL_TIME_START", a.clone()));
        v.push(("FLOODSQL_TIME_END", b.clone()));
    }
    v.retain(|(_, val)| !val.is_empty());
    v
}

fn describe(ds: &mut Dataset, p: &Provenance, kind: RasterKind) -> Result<()> {
    for (k, v) in metadata_items(p) {
        ds.set_metadata_item(k, &v, "")?;
    }
    let mut band = ds.rasterband(1)?;
    let what = if p.title.is_empty() {
        "floodsql result"
    } else {
        p.title.as_str()
    };
    band.set_description(&match kind {
        RasterKind::Mask => format!("{what}: 1 = flooded, 0 = not flooded or not observed"),
        RasterKind::States => {
            format!("{what}: 1 = flooded, 0 = observed, not flooded, 255 = never observed")
        }
        RasterKind::Date => {
            format!("{what}: days since 1970-01-01 (UTC), 0 = never flooded")
        }
        RasterKind::Percent => {
            format!("{what}: percent of observations flooded, 255 = never observed")
        }
        RasterKind::Count => format!("{what}: number of time slices"),
        RasterKind::Values => format!("{what} (values per pixel)"),
    })?;
    if matches!(kind, RasterKind::Mask | RasterKind::States) {
        let mut ct = ColorTable::new(PaletteInterpretation::Rgba);
        let rgba = |r, g, b, a| ColorEntry::rgba(r, g, b, a);
        // TIFF palettes are RGB (no alpha): 0 is drawn light, as in the PNG
        ct.set_color_entry(0, &rgba(236, 232, 214, 255));
        ct.set_color_entry(1, &rgba(20, 90, 200, 255));
        if kind == RasterKind::States {
            for v in 2..255 {
                ct.set_color_entry(v, &rgba(0, 0, 0, 255));
            }
            ct.set_color_entry(255, &rgba(175, 175, 175, 255));
        }
        band.set_color_table(&ct);
        band.set_color_interpretation(ColorInterpretation::PaletteIndex)?;
    }
    Ok(())
}
