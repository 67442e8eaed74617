//! GeoTIFF out as a Cloud-Optimized GeoTIFF: built chunk by chunk in a tiled
//! GTiff on disk, with its overviews, then `CreateCopy` to the COG driver
//! (tiled 512, DEFLATE), with the items' CRS and the grid's geotransform.
//! No nodata value: 0 is dry land, not missing data.
//!
//! The overviews are filled as the chunks arrive ([`Overviews`]), by GDAL's
//! own NEAREST rule (a 0/1 mask stays 0/1), so the COG driver copies them
//! instead of computing them at the end: the pixels are those `gdaladdo -r
//! nearest` gives, and the run's tail is shorter by that pass and its
//! compressed scratch file.
//! Blocking (GDAL): call from a blocking thread.

use std::path::{Path, PathBuf};

use gdal::raster::{Buffer, RasterBand, RasterCreationOptions};
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
    overviews: Overviews,
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
        let overviews = Overviews::create(&mut ds, w, h)?;
        Ok(Self {
            path,
            ds,
            bytes_per_pixel,
            overviews,
        })
    }

    /// Writes a chunk's pixels (`bytes_per_pixel` each, little-endian), and
    /// the overview pixels they hold.
    pub(crate) fn write(&mut self, w: Window, px: &[u8]) -> Result<()> {
        let k = self.bytes_per_pixel;
        let mut band = self.ds.rasterband(1)?;
        write_window(&mut band, w, px.to_vec(), k)?;
        for (i, level) in self.overviews.levels.iter().enumerate() {
            if let Some((ow, picked)) = level.pick(w, px, k) {
                write_window(&mut band.overview(i)?, ow, picked, k)?;
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
                // the overviews filled as the chunks came (see `Overviews`)
                "OVERVIEWS=FORCE_USE_EXISTING",
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

/// Writes `px` (`k` bytes per pixel, little-endian) at window `w` of `band`.
fn write_window(band: &mut RasterBand, w: Window, px: Vec<u8>, k: usize) -> Result<()> {
    let at = (w.x as isize, w.y as isize);
    let size = (w.width, w.height);
    match k {
        1 => band.write(at, size, &mut Buffer::new(size, px))?,
        _ => {
            let v: Vec<u16> = px
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            band.write(at, size, &mut Buffer::new(size, v))?
        }
    }
    Ok(())
}

/// The overviews of the GeoTIFF being built: as many as the COG driver
/// would make (halving until the image fits one 512 px block), created
/// empty (`NONE`) and filled chunk by chunk.
struct Overviews {
    levels: Vec<Level>,
}

/// One overview: for each of its columns and rows, the base-image column
/// and row whose pixel it shows.
struct Level {
    xs: Vec<usize>,
    ys: Vec<usize>,
}

impl Overviews {
    fn create(ds: &mut Dataset, width: usize, height: usize) -> Result<Self> {
        let factors = overview_factors(width, height);
        if factors.is_empty() {
            return Ok(Self { levels: Vec::new() });
        }
        ds.build_overviews("NONE", &factors, &[])?;
        let band = ds.rasterband(1)?;
        let mut levels: Vec<Level> = Vec::with_capacity(factors.len());
        for i in 0..factors.len() {
            let (w, h) = band.overview(i)?.size();
            let level = match levels.last() {
                None => Level {
                    xs: nearest(&(0..width).collect::<Vec<_>>(), w),
                    ys: nearest(&(0..height).collect::<Vec<_>>(), h),
                },
                Some(up) => Level {
                    xs: nearest(&up.xs, w),
                    ys: nearest(&up.ys, h),
                },
            };
            levels.push(level);
        }
        Ok(Self { levels })
    }
}

impl Level {
    /// The part of this overview that chunk `w` (pixels `px`, `k` bytes
    /// each) holds, and its pixels; `None` when it holds none.
    fn pick(&self, w: Window, px: &[u8], k: usize) -> Option<(Window, Vec<u8>)> {
        let within = |v: &[usize], lo: usize, len: usize| {
            v.partition_point(|&s| s < lo)..v.partition_point(|&s| s < lo + len)
        };
        let cols = within(&self.xs, w.x, w.width);
        let rows = within(&self.ys, w.y, w.height);
        if cols.is_empty() || rows.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(cols.len() * rows.len() * k);
        for &y in &self.ys[rows.clone()] {
            let row = &px[(y - w.y) * w.width * k..][..w.width * k];
            let xs = &self.xs[cols.clone()];
            if k == 1 {
                out.extend(xs.iter().map(|&x| row[x - w.x]));
            } else {
                for &x in xs {
                    out.extend_from_slice(&row[(x - w.x) * k..][..k]);
                }
            }
        }
        let at = Window {
            x: cols.start,
            y: rows.start,
            width: cols.len(),
            height: rows.len(),
        };
        Some((at, out))
    }
}

/// Overview factors 2, 4, 8, ... while the image halved (rounding down, as
/// the COG driver counts) is wider or taller than one 512 px block.
fn overview_factors(width: usize, height: usize) -> Vec<i32> {
    let mut factors = Vec::new();
    let mut f = 1;
    while width / f > 512 || height / f > 512 {
        f *= 2;
        factors.push(f as i32);
    }
    factors
}

/// GDAL's NEAREST resampling of one axis (as in GDAL 3.6, each overview
/// from the one above it): pixel `i` of an overview `n` pixels long shows
/// pixel `floor(0.5 + i * m / n)` of the level above (`up`, `m` long, as
/// the base-image pixels it shows).
fn nearest(up: &[usize], n: usize) -> Vec<usize> {
    let ratio = up.len() as f64 / n as f64;
    (0..n)
        .map(|i| up[((0.5 + i as f64 * ratio) as usize).min(up.len() - 1)])
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::assemble::tests::grid;

    /// Overview `i` of `path`'s band 1, as u16 values.
    fn overview(path: &Path, i: usize) -> (usize, usize, Vec<u16>) {
        let ds = Dataset::open(path).unwrap();
        let o = ds.rasterband(1).unwrap().overview(i).unwrap();
        let (w, h) = o.size();
        let b = o.read_as::<u16>((0, 0), (w, h), (w, h), None).unwrap();
        (w, h, b.data().to_vec())
    }

    /// The overviews filled chunk by chunk are GDAL's own: the COG's
    /// overviews equal those `GDALBuildOverviews(NEAREST)` computes from the
    /// same full-resolution pixels, for odd sizes, chunks that do not align
    /// with the halvings, 1- and 2-byte pixels, and chunks never written.
    #[test]
    fn overviews_filled_per_chunk_are_gdals_nearest() {
        let dir = tempfile::tempdir().unwrap();
        for (k, width, height, chunk) in [(1, 1300, 1111, 333), (2, 1031, 2100, 250)] {
            let g = grid(width, height);
            let mut seed = 7u64;
            let mut full = vec![0u8; width * height * k];
            let scratch = dir.path().join(format!("s{k}.tif"));
            let mut t = TiledTiff::create(&scratch, &g, k, Some(255)).unwrap();
            for y in (0..height).step_by(chunk) {
                for x in (0..width).step_by(chunk) {
                    if (x / chunk + y / chunk) % 5 == 3 {
                        continue; // a chunk no row covered: never written
                    }
                    let w = Window {
                        x,
                        y,
                        width: chunk.min(width - x),
                        height: chunk.min(height - y),
                    };
                    let px: Vec<u8> = (0..w.area() * k)
                        .map(|_| {
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                            (seed >> 59) as u8 // a few values: runs and changes
                        })
                        .collect();
                    for r in 0..w.height {
                        let dst = ((y + r) * width + x) * k;
                        full[dst..][..w.width * k]
                            .copy_from_slice(&px[r * w.width * k..][..w.width * k]);
                    }
                    t.write(w, &px).unwrap();
                }
            }
            let cog = dir.path().join(format!("c{k}.tif"));
            t.into_cog(&cog, &cog, &Provenance::default(), RasterKind::Values)
                .unwrap();
            // the reference: the same pixels (never-written chunks as
            // nodata) in a plain GTiff, overviews computed by GDAL
            let reference = dir.path().join(format!("r{k}.tif"));
            let unwritten = if k == 1 { vec![255u8] } else { vec![255, 0] };
            let mut all = full.clone();
            for y in 0..height {
                for x in 0..width {
                    if (x / chunk + y / chunk) % 5 == 3 {
                        all[(y * width + x) * k..][..k].copy_from_slice(&unwritten);
                    }
                }
            }
            {
                let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
                let mut r = if k == 1 {
                    drv.create_with_band_type::<u8, _>(&reference, width, height, 1)
                } else {
                    drv.create_with_band_type::<u16, _>(&reference, width, height, 1)
                }
                .unwrap();
                let whole = Window {
                    x: 0,
                    y: 0,
                    width,
                    height,
                };
                write_window(&mut r.rasterband(1).unwrap(), whole, all, k).unwrap();
                r.build_overviews("NEAREST", &overview_factors(width, height), &[])
                    .unwrap();
            }
            let n = Dataset::open(&cog)
                .unwrap()
                .rasterband(1)
                .unwrap()
                .overview_count()
                .unwrap();
            assert_eq!(n as usize, overview_factors(width, height).len(), "k={k}");
            assert!(n >= 2, "k={k}: {n} overviews");
            for i in 0..n as usize {
                assert_eq!(
                    overview(&cog, i),
                    overview(&reference, i),
                    "k={k} level {i}"
                );
            }
        }
    }

    /// As many overviews as GDAL's COG driver makes: none for an image
    /// within one 512 px block, then one per halving.
    #[test]
    fn overview_count_follows_the_cog_driver() {
        assert!(overview_factors(512, 512).is_empty());
        assert_eq!(overview_factors(513, 10), vec![2]);
        assert_eq!(overview_factors(1025, 10), vec![2]);
        assert_eq!(overview_factors(9936, 10030), vec![2, 4, 8, 16, 32]);
    }
}
