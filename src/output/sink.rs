//! The result stream into files, chunk by chunk: each batch of aggregated
//! chunks goes to the GeoTIFF being built (a tiled GTiff on disk), the
//! Parquet file and the quicklook's block maxima as it arrives, so the client
//! never holds the raster. [`RasterSink::finish`] turns the GTiff into the
//! COG and renames every output into place, all or nothing; a sink dropped
//! unfinished (an error, a cancelled query) removes its temp files, and a
//! run that fails while finishing puts back the files it was replacing.
//! With a *base* ([`RasterSink::with_base`], `floodsql extent --update`)
//! each chunk is merged (OR) into the earlier result's pixels and the
//! chunks the result lacks are copied from it, one chunk at a time.
//! Blocking (GDAL): call from a blocking thread.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use gdal::Dataset;

use crate::context::Cancel;
use crate::error::{Error, Result};
use crate::geo::Window;
use crate::output::assemble::{pixel_meta, ChunkReader, PixelKind, PixelMeta};
use crate::output::atomic::temp_path;
use crate::output::cog::TiledTiff;
use crate::output::lineage;
use crate::output::parquet::ParquetSink;
use crate::output::png::{write_png, Quicklook};
use crate::output::{Outputs, Provenance};
use crate::raster::area::AreaModel;
use crate::raster::grid::OutputGrid;

/// Media type of a Cloud-Optimized GeoTIFF.
const COG_TYPE: &str = "image/tiff; application=geotiff; profile=cloud-optimized";

/// What was written.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    /// Bytes per pixel of the raster (1 or 2).
    pub(crate) bytes_per_pixel: usize,
    /// What the pixels are.
    pub(crate) meta: PixelMeta,
    /// Pixels equal to 1 (flooded, for a mask or three states).
    pub(crate) ones: u64,
    /// Pixels other than 0 and nodata.
    pub(crate) nonzero: u64,
    /// Pixels equal to nodata in the chunks of the result (chunks no row
    /// covers are not counted).
    pub(crate) nodata: u64,
    /// Pixels in the result's chunks.
    pub(crate) covered: u64,
    /// Smallest pixel value other than 0 and nodata (u64::MAX if none).
    pub(crate) min: u64,
    /// Largest pixel value other than nodata.
    pub(crate) max: u64,
    /// The same figures as ellipsoidal areas, when the grid's CRS has an
    /// ellipsoid (see [`crate::raster::area`]).
    pub(crate) areas: Option<AreaFigures>,
}

/// Ellipsoidal areas (m²) of what a run wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct AreaFigures {
    /// Pixels equal to 1.
    pub(crate) ones: f64,
    /// Pixels other than 0 and nodata.
    pub(crate) nonzero: f64,
    /// Nodata pixels in the result's chunks.
    pub(crate) nodata: f64,
    /// The result's chunks.
    pub(crate) covered: f64,
    /// The whole grid.
    pub(crate) grid: f64,
}

impl Written {
    /// Pixels of `grid` that are nodata: those counted in the result's
    /// chunks plus every pixel of the chunks no row covered (0 when the
    /// raster has no nodata value).
    pub(crate) fn nodata_total(&self, grid: &OutputGrid) -> u64 {
        if self.meta.nodata.is_none() {
            return 0;
        }
        let all = (grid.width * grid.height) as u64;
        all - (self.covered - self.nodata)
    }

    /// Ellipsoidal m² of the grid's nodata pixels (as [`Self::nodata_total`]).
    pub(crate) fn nodata_total_m2(&self) -> Option<f64> {
        let a = self.areas?;
        Some(if self.meta.nodata.is_none() {
            0.0
        } else {
            a.grid - (a.covered - a.nodata)
        })
    }
}

/// Per-chunk writers: the GeoTIFF, the quicklook and the summary's figures.
struct ChunkWriters {
    grid: OutputGrid,
    outputs: Outputs,
    tiff: Option<TiledTiff>,
    quicklook: Quicklook,
    ones: u64,
    nonzero: u64,
    nodata: u64,
    covered: u64,
    min: u64,
    max: u64,
    meta: PixelMeta,
    /// Pixel areas of the grid and their sums so far (None: no ellipsoid).
    area_model: Option<AreaModel>,
    area: AreaFigures,
    /// Temp files to remove unless the run finishes.
    temps: Vec<PathBuf>,
}

impl ChunkWriters {
    /// The GeoTIFF being built, created with the first chunk's pixel size.
    fn tiff(&mut self, bytes_per_pixel: usize) -> Result<Option<&mut TiledTiff>> {
        if self.tiff.is_none() {
            if let Some(target) = &self.outputs.tif {
                let t = TiledTiff::create(target, &self.grid, bytes_per_pixel, self.meta.nodata)?;
                self.temps.push(t.path().to_path_buf());
                self.tiff = Some(t);
            }
        }
        Ok(self.tiff.as_mut())
    }

    /// One chunk of the result: `k` bytes per pixel.
    fn put(&mut self, w: Window, px: &[u8], k: usize, observed: Option<&[u8]>) -> Result<()> {
        if let Some(t) = self.tiff(k)? {
            t.write(w, px)?;
        }
        self.quicklook.add(w.x, w.y, w.width, px, k);
        if let Some(o) = observed {
            self.quicklook.add_observed(w.x, w.y, w.width, o);
        }
        self.covered += w.area() as u64;
        let nd = self.meta.nodata;
        if let Some(m) = self.area_model.as_ref() {
            // one pass: bins other / 1 / other non-zero / nodata
            let mut bins = [0.0; 4];
            m.window(w, 0.0)?
                .sum_by(
                    px,
                    |v| match v {
                        v if Some(v) == nd => 3,
                        1 => 1,
                        0 => 0,
                        _ => 2,
                    },
                    &mut bins,
                )
                .map_err(|e| Error::Internal(format!("pixel areas: {e}")))?;
            self.area.ones += bins[1];
            self.area.nonzero += bins[1] + bins[2];
            self.area.nodata += bins[3];
            self.area.covered += bins.iter().sum::<f64>();
        }
        // one pass over the chunk: the summary's figures
        let nd = nd.map(u64::from);
        let mut fold = |v: u64| {
            if Some(v) == nd {
                self.nodata += 1;
                return;
            }
            self.ones += (v == 1) as u64;
            self.nonzero += (v != 0) as u64;
            if v != 0 {
                self.min = self.min.min(v);
            }
            self.max = self.max.max(v);
        };
        if k == 1 {
            px.iter().for_each(|&v| fold(v as u64));
        } else {
            px.chunks_exact(2)
                .for_each(|c| fold(u16::from_le_bytes([c[0], c[1]]) as u64));
        }
        Ok(())
    }
}

/// An earlier result the run merges into (`floodsql extent --update`): its
/// GeoTIFF, read one chunk window at a time.
struct Base {
    ds: Dataset,
    chunk: usize,
    /// Chunk windows the result has written (the others are copied).
    written: HashSet<(usize, usize)>,
}

impl Base {
    fn open(path: &Path, grid: &OutputGrid, chunk: usize) -> Result<Self> {
        let bad = |m: String| Error::Output {
            path: path.display().to_string(),
            message: m,
        };
        let ds = Dataset::open(path)
            .map_err(|e| bad(format!("cannot open the result to update: {e}")))?;
        if ds.raster_size() != (grid.width, grid.height) {
            return Err(bad(format!(
                "its grid is {:?} px, this run's {} x {}: not the same query",
                ds.raster_size(),
                grid.width,
                grid.height
            )));
        }
        let gt = ds.geo_transform()?;
        if gt
            .iter()
            .zip(grid.geotransform())
            .any(|(a, b)| (a - b).abs() > 1e-6)
        {
            return Err(bad(format!(
                "its geotransform {gt:?} is not this run's {:?}: not the same query",
                grid.geotransform()
            )));
        }
        let t = ds.rasterband(1)?.band_type();
        if t != gdal::raster::GdalDataType::UInt8 {
            return Err(bad(format!("its pixels are {t:?}, not an extent (uint8)")));
        }
        Ok(Self {
            ds,
            chunk,
            written: HashSet::new(),
        })
    }

    fn read(&self, w: Window) -> Result<Vec<u8>> {
        let b = self.ds.rasterband(1)?.read_as::<u8>(
            (w.x as isize, w.y as isize),
            (w.width, w.height),
            (w.width, w.height),
            None,
        )?;
        Ok(b.data().to_vec())
    }

    /// The earlier pixels of `w` OR `px` (a 0/1 extent chunk).
    fn merge(&mut self, w: Window, px: &[u8], k: usize) -> Result<Vec<u8>> {
        if k != 1 {
            return Err(Error::NotRasterisable(
                "an update merges 0/1 extents: this result has 16-bit pixels".into(),
            ));
        }
        if !w.x.is_multiple_of(self.chunk) || !w.y.is_multiple_of(self.chunk) {
            return Err(Error::Internal(format!(
                "an update's result chunk at {},{} is not on the {} px chunk grid",
                w.x, w.y, self.chunk
            )));
        }
        self.written.insert((w.x, w.y));
        let mut old = self.read(w)?;
        for (o, &n) in old.iter_mut().zip(px) {
            *o |= n;
        }
        Ok(old)
    }
}

/// Files a run replaces, kept (as hard links, or copies) until it finishes:
/// put back when it fails.
#[derive(Default)]
struct Backups(Vec<(PathBuf, PathBuf)>);

impl Backups {
    fn keep(&mut self, target: &Path) -> Result<()> {
        if !target.is_file() {
            return Ok(());
        }
        let bak = temp_path(target, ".bak")?;
        let _ = std::fs::remove_file(&bak);
        std::fs::hard_link(target, &bak)
            .or_else(|_| std::fs::copy(target, &bak).map(|_| ()))
            .map_err(crate::error::io_err(&bak))?;
        self.0.push((bak, target.to_path_buf()));
        Ok(())
    }

    fn restore(&mut self) {
        for (bak, target) in self.0.drain(..) {
            // the target may still be the very file (a hard link to it):
            // rename would then do nothing and leave the backup behind
            let _ = std::fs::remove_file(&target);
            let _ = std::fs::rename(&bak, &target);
        }
    }
}

impl Drop for Backups {
    fn drop(&mut self) {
        for (bak, _) in &self.0 {
            let _ = std::fs::remove_file(bak);
        }
    }
}

/// Writes a stream of result batches to the outputs asked for.
pub(crate) struct RasterSink {
    outputs: Outputs,
    provenance: Provenance,
    reader: ChunkReader,
    parquet: Option<ParquetSink>,
    w: ChunkWriters,
    base: Option<Base>,
    /// When set, the sink stops and removes this run's files, finished
    /// outputs included.
    cancel: Cancel,
}

impl RasterSink {
    /// A sink for results on `grid`; fails when an output's directory is
    /// missing. Temp files that killed runs left beside the outputs go.
    pub(crate) fn new(
        grid: &OutputGrid,
        outputs: &Outputs,
        provenance: &Provenance,
    ) -> Result<Self> {
        outputs.check_dirs()?;
        outputs
            .paths()
            .for_each(|p| crate::output::atomic::remove_stale_temps(p));
        let parquet = match &outputs.parquet {
            Some(p) => Some(ParquetSink::new(p, grid)?),
            None => None,
        };
        let temps = parquet.iter().map(|p| p.tmp().to_path_buf()).collect();
        Ok(Self {
            outputs: outputs.clone(),
            provenance: provenance.clone(),
            reader: ChunkReader::new(grid),
            parquet,
            w: ChunkWriters {
                grid: grid.clone(),
                outputs: outputs.clone(),
                tiff: None,
                quicklook: Quicklook::new(grid.width, grid.height),
                ones: 0,
                nonzero: 0,
                nodata: 0,
                covered: 0,
                min: u64::MAX,
                max: 0,
                meta: PixelMeta::default(),
                area_model: AreaModel::new(grid).ok(),
                area: AreaFigures::default(),
                temps,
            },
            base: None,
            cancel: Cancel::default(),
        })
    }

    /// The sink with the query's cancellation: once it is set, writing fails
    /// and finishing removes the outputs already in place.
    pub(crate) fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// The sink merging into the earlier extent at `base` (its GeoTIFF, on
    /// this grid, in chunks of `chunk` px): result chunks are ORed into it,
    /// the others copied. No Parquet chunk table: it would hold only the
    /// new items' chunks.
    pub(crate) fn with_base(mut self, base: &Path, chunk: usize) -> Result<Self> {
        if self.outputs.parquet.is_some() {
            return Err(Error::invalid(
                "--parquet",
                "with --update",
                "an update rewrites the GeoTIFF (and PNG); write the chunk table with a full run",
            ));
        }
        self.base = Some(Base::open(base, &self.w.grid, chunk)?);
        Ok(self)
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Writes one batch of result rows.
    pub(crate) fn write(&mut self, b: &RecordBatch) -> Result<()> {
        self.check_cancel()?;
        if b.num_rows() == 0 {
            return Ok(());
        }
        self.w.meta = pixel_meta(b)?;
        self.w.quicklook.set_meta(self.w.meta);
        let (reader, w, base) = (&mut self.reader, &mut self.w, &mut self.base);
        reader.read(b, |win, px, k, observed| match base.as_mut() {
            Some(base) => {
                let merged = base.merge(win, px, k)?;
                w.put(win, &merged, k, None)
            }
            None => w.put(win, px, k, observed),
        })?;
        if let Some(p) = self.parquet.as_mut() {
            p.write(b)?;
        }
        Ok(())
    }

    /// Copies the earlier result's chunks this run's result lacks.
    fn copy_base(&mut self) -> Result<()> {
        let Some(base) = self.base.as_ref() else {
            return Ok(());
        };
        let g = self.w.grid.clone();
        let (cols, rows) = g.chunks(base.chunk);
        for r in 0..rows {
            for c in 0..cols {
                let win = g.chunk_window(base.chunk, c, r);
                if base.written.contains(&(win.x, win.y)) {
                    continue;
                }
                self.check_cancel()?;
                let px = base.read(win)?;
                self.w.put(win, &px, 1, None)?;
            }
        }
        Ok(())
    }

    /// Finishes every output: Parquet, PNG, the COG, then the lineage item;
    /// when one fails, or the query is cancelled meanwhile, those already in
    /// place are removed and the files they replaced put back.
    pub(crate) fn finish(mut self) -> Result<Written> {
        self.copy_base()?;
        let bytes_per_pixel = self.reader.bytes_per_pixel().unwrap_or(1);
        // an all-0 result still makes a GeoTIFF
        self.w.tiff(bytes_per_pixel)?;
        let mut done: Vec<PathBuf> = Vec::new();
        let mut backups = Backups::default();
        let cancel = self.cancel.clone();
        let stop = || {
            if cancel.is_cancelled() {
                Err(Error::Cancelled)
            } else {
                Ok(())
            }
        };
        let w = &mut self.w;
        let result = (|| -> Result<()> {
            for p in self.outputs.paths() {
                backups.keep(p)?;
            }
            stop()?;
            if let (Some(p), Some(target)) = (self.parquet.take(), &self.outputs.parquet) {
                p.finish(bytes_per_pixel)?;
                done.push(target.clone());
            }
            stop()?;
            if let Some(target) = &self.outputs.png {
                let figures = crate::output::png::Figures {
                    ones: w.ones,
                    ones_m2: w.area_model.as_ref().map(|_| w.area.ones),
                    min: w.min,
                };
                write_png(&w.quicklook, &self.provenance, &w.grid, figures, target)?;
                done.push(target.clone());
            }
            stop()?;
            if let (Some(t), Some(target)) = (w.tiff.take(), &self.outputs.tif) {
                let kind = match w.meta.kind {
                    PixelKind::Values | PixelKind::Count if bytes_per_pixel == 1 && w.max <= 1 => {
                        PixelKind::Mask
                    }
                    k => k,
                };
                t.into_cog(target, &self.provenance, kind)?;
                done.push(target.clone());
            }
            stop()?;
            if let Some(target) = &self.outputs.lineage {
                let o = &self.provenance.outputs;
                let assets = [
                    (&o.tif, "data", COG_TYPE, "data"),
                    (
                        &o.parquet,
                        "chunks",
                        "application/vnd.apache.parquet",
                        "data",
                    ),
                    (&o.png, "quicklook", "image/png", "overview"),
                ]
                .into_iter()
                .filter_map(|(p, k, t, r)| p.clone().map(|p| (k, p, t, r)))
                .collect();
                let run = lineage::Run {
                    grid: &w.grid,
                    provenance: &self.provenance,
                    pixels: w.meta,
                    bytes_per_pixel,
                    assets,
                };
                let named = o.lineage.clone().unwrap_or_else(|| target.clone());
                lineage::write(&run, target, &named)?;
                done.push(target.clone());
            }
            // a signal during the last step still takes the run back
            stop()
        })();
        if let Err(e) = result {
            for p in done {
                let _ = std::fs::remove_file(p);
            }
            backups.restore();
            return Err(e);
        }
        let w = &mut self.w;
        w.temps.clear();
        let areas = match w.area_model.as_ref().map(|m| m.grid_m2()) {
            Some(Ok(grid)) => Some(AreaFigures { grid, ..w.area }),
            _ => None,
        };
        Ok(Written {
            areas,
            bytes_per_pixel,
            meta: w.meta,
            ones: w.ones,
            nonzero: w.nonzero,
            nodata: w.nodata,
            covered: w.covered,
            min: w.min,
            max: w.max,
        })
    }
}

impl Drop for RasterSink {
    fn drop(&mut self) {
        // close the GTiff before removing it
        self.w.tiff = None;
        self.parquet = None;
        for p in &self.w.temps {
            let _ = std::fs::remove_file(p);
        }
    }
}
