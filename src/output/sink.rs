//! The result stream into files, chunk by chunk: each batch of aggregated
//! chunks goes to the GeoTIFF being built (a tiled GTiff on disk), the
//! Parquet file and the quicklook's block maxima as it arrives, so the client
//! never holds the raster. [`RasterSink::finish`] turns the GTiff into the
//! COG and renames every output into place, all or nothing; a sink dropped
//! unfinished (an error, a cancelled query) removes its temp files.
//! Blocking (GDAL): call from a blocking thread.

use std::path::PathBuf;

use arrow::array::RecordBatch;

use crate::context::Cancel;
use crate::error::{Error, Result};
use crate::output::assemble::{pixel_meta, ChunkReader, PixelKind, PixelMeta};
use crate::output::cog::TiledTiff;
use crate::output::parquet::ParquetSink;
use crate::output::png::{write_png, Quicklook};
use crate::output::{Outputs, Provenance};
use crate::raster::area::AreaModel;
use crate::raster::grid::OutputGrid;

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

/// Writes a stream of result batches to the outputs asked for.
pub(crate) struct RasterSink {
    grid: OutputGrid,
    outputs: Outputs,
    provenance: Provenance,
    reader: ChunkReader,
    tiff: Option<TiledTiff>,
    parquet: Option<ParquetSink>,
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
            grid: grid.clone(),
            outputs: outputs.clone(),
            provenance: provenance.clone(),
            reader: ChunkReader::new(grid),
            tiff: None,
            parquet,
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
            cancel: Cancel::default(),
        })
    }

    /// The sink with the query's cancellation: once it is set, writing fails
    /// and finishing removes the outputs already in place.
    pub(crate) fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The GeoTIFF being built, created with the first chunk's pixel size.
    fn tiff<'a>(
        slot: &'a mut Option<TiledTiff>,
        outputs: &Outputs,
        grid: &OutputGrid,
        temps: &mut Vec<PathBuf>,
        bytes_per_pixel: usize,
        nodata: Option<u16>,
    ) -> Result<Option<&'a mut TiledTiff>> {
        if slot.is_none() {
            if let Some(target) = &outputs.tif {
                let t = TiledTiff::create(target, grid, bytes_per_pixel, nodata)?;
                temps.push(t.path().to_path_buf());
                *slot = Some(t);
            }
        }
        Ok(slot.as_mut())
    }

    /// Writes one batch of result rows.
    pub(crate) fn write(&mut self, b: &RecordBatch) -> Result<()> {
        self.check_cancel()?;
        if b.num_rows() == 0 {
            return Ok(());
        }
        self.meta = pixel_meta(b)?;
        self.quicklook.set_meta(self.meta);
        let RasterSink {
            grid,
            outputs,
            reader,
            tiff,
            parquet,
            quicklook,
            ones,
            nonzero,
            nodata,
            covered,
            min,
            max,
            temps,
            meta,
            area_model,
            area,
            ..
        } = self;
        let nd = meta.nodata.map(u64::from);
        reader.read(b, |w, px, k, observed| {
            if let Some(t) = Self::tiff(tiff, outputs, grid, temps, k, meta.nodata)? {
                t.write(w, px)?;
            }
            quicklook.add(w.x, w.y, w.width, px, k);
            if let Some(o) = observed {
                quicklook.add_observed(w.x, w.y, w.width, o);
            }
            *covered += w.area() as u64;
            if let Some(m) = area_model.as_ref() {
                // one pass: bins other / 1 / other non-zero / nodata
                let nd = meta.nodata;
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
                area.ones += bins[1];
                area.nonzero += bins[1] + bins[2];
                area.nodata += bins[3];
                area.covered += bins.iter().sum::<f64>();
            }
            // one pass over the chunk: the summary's figures
            let mut fold = |v: u64| {
                if Some(v) == nd {
                    *nodata += 1;
                    return;
                }
                *ones += (v == 1) as u64;
                *nonzero += (v != 0) as u64;
                if v != 0 {
                    *min = (*min).min(v);
                }
                *max = (*max).max(v);
            };
            if k == 1 {
                px.iter().for_each(|&v| fold(v as u64));
            } else {
                px.chunks_exact(2)
                    .for_each(|c| fold(u16::from_le_bytes([c[0], c[1]]) as u64));
            }
            Ok(())
        })?;
        if let Some(p) = parquet.as_mut() {
            p.write(b)?;
        }
        Ok(())
    }

    /// Finishes every output: Parquet, PNG, then the COG; when one fails, or
    /// the query is cancelled meanwhile, those already in place are removed.
    pub(crate) fn finish(mut self) -> Result<Written> {
        let bytes_per_pixel = self.reader.bytes_per_pixel().unwrap_or(1);
        // an all-0 result still makes a GeoTIFF
        Self::tiff(
            &mut self.tiff,
            &self.outputs,
            &self.grid,
            &mut self.temps,
            bytes_per_pixel,
            self.meta.nodata,
        )?;
        let mut done: Vec<PathBuf> = Vec::new();
        let cancel = self.cancel.clone();
        let stop = || {
            if cancel.is_cancelled() {
                Err(Error::Cancelled)
            } else {
                Ok(())
            }
        };
        let result = (|| -> Result<()> {
            stop()?;
            if let (Some(p), Some(target)) = (self.parquet.take(), &self.outputs.parquet) {
                p.finish(bytes_per_pixel)?;
                done.push(target.clone());
            }
            stop()?;
            if let Some(target) = &self.outputs.png {
                let figures = crate::output::png::Figures {
                    ones: self.ones,
                    ones_m2: self.area_model.as_ref().map(|_| self.area.ones),
                    min: self.min,
                };
                write_png(
                    &self.quicklook,
                    &self.provenance,
                    &self.grid,
                    figures,
                    target,
                )?;
                done.push(target.clone());
            }
            stop()?;
            if let (Some(t), Some(target)) = (self.tiff.take(), &self.outputs.tif) {
                let kind = match self.meta.kind {
                    PixelKind::Values | PixelKind::Count
                        if bytes_per_pixel == 1 && self.max <= 1 =>
                    {
                        PixelKind::Mask
                    }
                    k => k,
                };
                t.into_cog(target, &self.provenance, kind)?;
                done.push(target.clone());
            }
            // a signal during the last step still takes the run back
            stop()
        })();
        if let Err(e) = result {
            for p in done {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        self.temps.clear();
        let areas = match self.area_model.as_ref().map(|m| m.grid_m2()) {
            Some(Ok(grid)) => Some(AreaFigures { grid, ..self.area }),
            _ => None,
        };
        Ok(Written {
            areas,
            bytes_per_pixel,
            meta: self.meta,
            ones: self.ones,
            nonzero: self.nonzero,
            nodata: self.nodata,
            covered: self.covered,
            min: self.min,
            max: self.max,
        })
    }
}

impl Drop for RasterSink {
    fn drop(&mut self) {
        // close the GTiff before removing it
        self.tiff = None;
        self.parquet = None;
        for p in &self.temps {
            let _ = std::fs::remove_file(p);
        }
    }
}
