//! The result stream into files, chunk by chunk: each batch of aggregated
//! chunks goes to the GeoTIFF being built (its tiles compressed as they complete), the
//! Parquet file and the quicklook's block maxima as it arrives, so the client
//! never holds the raster. [`RasterSink::finish`] writes the
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
use crate::output::assemble::{pixel_meta, ChunkReader, PixelMeta, RasterKind};
use crate::output::cog::TiledTiff;
use crate::output::lineage;
use crate::output::parquet::ParquetSink;
use crate::output::png::{write_png, Quicklook};
use crate::output::transaction::OutputTransaction;
use crate::output::{Outputs, Provenance};
use crate::raster::area::AreaModel;
use crate::raster::grid::OutputGrid;
use floodsql_udfs::ExactSum;

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
    /// Where the GeoTIFF's tiles are kept while it is built (scratch files
    /// of the transaction: compressed tiles, incomplete tiles), when one is
    /// asked for.
    tiff_paths: Option<(PathBuf, PathBuf)>,
    tiff: Option<TiledTiff>,
    /// The quicklook's block maxima, when a PNG is asked for.
    quicklook: Option<Quicklook>,
    /// The figures so far (`areas`: sums so far, the grid's at the end).
    fig: Written,
    /// Pixel areas of the grid (None: no ellipsoid).
    area_model: Option<AreaModel>,
    /// The exact sums behind `fig.areas` (ones, nonzero, nodata, covered):
    /// chunks arrive in any order (partitions, a cluster), the figures do
    /// not depend on it.
    area_sums: [ExactSum; 4],
}

impl ChunkWriters {
    /// The GeoTIFF being built, created with the first chunk's pixel size.
    fn tiff(&mut self, bytes_per_pixel: usize) -> Result<Option<&mut TiledTiff>> {
        if self.tiff.is_none() {
            if let Some((tiles, spill)) = &self.tiff_paths {
                let nodata = self.fig.meta.nodata;
                let t = TiledTiff::create(tiles, spill, &self.grid, bytes_per_pixel, nodata)?;
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
        if let Some(q) = self.quicklook.as_mut() {
            q.add(w.x, w.y, w.width, px, k);
            if let Some(o) = observed {
                q.add_observed(w.x, w.y, w.width, o);
            }
        }
        let f = &mut self.fig;
        f.covered += w.area() as u64;
        let nd = f.meta.nodata;
        // the histogram of 1-byte pixels, counted from the area pass's runs
        // when there is one (one pass over the chunk, not two)
        let mut counts: Option<[u64; 256]> = None;
        if let Some(m) = self.area_model.as_ref() {
            // one pass: bins other / 1 / other non-zero / nodata
            let mut bins = [0.0; 4];
            let class = |v: u16| match v {
                v if Some(v) == nd => 3,
                1 => 1,
                0 => 0,
                _ => 2,
            };
            let mut h = [0u64; 256];
            m.window(w, 0.0)?
                .for_each_run(px, |v, n, m2| {
                    bins[class(v)] += m2;
                    if k == 1 {
                        h[v as usize] += n as u64;
                    }
                })
                .map_err(|e| Error::Internal(format!("pixel areas: {e}")))?;
            counts = (k == 1).then_some(h);
            let [ones, nonzero, nodata, covered] = &mut self.area_sums;
            ones.add(bins[1]);
            nonzero.add(bins[1]);
            nonzero.add(bins[2]);
            nodata.add(bins[3]);
            bins.iter().for_each(|&b| covered.add(b));
            let value = |s: &ExactSum| {
                s.value()
                    .map_err(|e| Error::Internal(format!("pixel areas: {e}")))
            };
            f.areas = Some(AreaFigures {
                ones: value(ones)?,
                nonzero: value(nonzero)?,
                nodata: value(nodata)?,
                covered: value(covered)?,
                grid: 0.0,
            });
        }
        // the summary's figures, from the chunk's histogram
        let nd = nd.map(u64::from);
        let mut fold = |v: u64, n: u64| {
            if Some(v) == nd {
                f.nodata += n;
                return;
            }
            if v == 1 {
                f.ones += n;
            }
            if v != 0 {
                f.nonzero += n;
                f.min = f.min.min(v);
            }
            f.max = f.max.max(v);
        };
        if k == 1 {
            for (v, &n) in counts.unwrap_or_else(|| histogram(px)).iter().enumerate() {
                if n > 0 {
                    fold(v as u64, n);
                }
            }
        } else {
            px.chunks_exact(2)
                .for_each(|c| fold(u16::from_le_bytes([c[0], c[1]]) as u64, 1));
        }
        Ok(())
    }
}

/// How many of `px` hold each byte value (four interleaved tables, so that
/// a run of one value does not wait on its own last increment). A chunk of
/// 0s and 1s only (the extent's mask) is counted by a maximum and a sum,
/// loops that vectorise, where the tables take a load and a store a byte.
fn histogram(px: &[u8]) -> [u64; 256] {
    if px.iter().fold(0u8, |m, &v| m.max(v)) <= 1 {
        // sums of at most 2^16 bytes fit a u32
        let ones: u64 = px
            .chunks(1 << 16)
            .map(|c| c.iter().map(|&v| u32::from(v)).sum::<u32>() as u64)
            .sum();
        let mut h = [0u64; 256];
        h[1] = ones;
        h[0] = px.len() as u64 - ones;
        return h;
    }
    let mut t = [[0u64; 256]; 4];
    let mut quads = px.chunks_exact(4);
    for q in &mut quads {
        t[0][q[0] as usize] += 1;
        t[1][q[1] as usize] += 1;
        t[2][q[2] as usize] += 1;
        t[3][q[3] as usize] += 1;
    }
    for &v in quads.remainder() {
        t[0][v as usize] += 1;
    }
    std::array::from_fn(|v| t.iter().map(|h| h[v]).sum())
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

/// Writes a stream of result batches to the outputs asked for.
pub(crate) struct RasterSink {
    outputs: Outputs,
    provenance: Provenance,
    reader: ChunkReader,
    parquet: Option<ParquetSink>,
    w: ChunkWriters,
    base: Option<Base>,
    /// The run's outputs, staged until every one is complete. Declared
    /// last: dropped after the writers, it removes their files.
    tx: OutputTransaction,
}

impl RasterSink {
    /// A sink for results on `grid`; fails when an output's directory is
    /// missing or two outputs are one file. Temp files that killed runs
    /// left beside the outputs go. Once `cancel` is set, writing fails and
    /// nothing of the run is kept.
    pub(crate) fn new(
        grid: &OutputGrid,
        outputs: &Outputs,
        provenance: &Provenance,
        cancel: Cancel,
    ) -> Result<Self> {
        let mut tx = OutputTransaction::new(outputs.paths().map(PathBuf::as_path), cancel)?;
        let parquet = match &outputs.parquet {
            Some(p) => Some(ParquetSink::new(p, tx.scratch(p, "")?, grid)),
            None => None,
        };
        let tiff_paths = match &outputs.tif {
            Some(p) => Some((tx.scratch(p, ".tiles")?, tx.scratch(p, ".spill")?)),
            None => None,
        };
        Ok(Self {
            outputs: outputs.clone(),
            provenance: provenance.clone(),
            reader: ChunkReader::new(grid),
            parquet,
            w: ChunkWriters {
                grid: grid.clone(),
                tiff_paths,
                tiff: None,
                quicklook: outputs
                    .png
                    .is_some()
                    .then(|| Quicklook::new(grid.width, grid.height)),
                fig: Written {
                    bytes_per_pixel: 1,
                    meta: PixelMeta::default(),
                    ones: 0,
                    nonzero: 0,
                    nodata: 0,
                    covered: 0,
                    min: u64::MAX,
                    max: 0,
                    areas: None,
                },
                area_model: AreaModel::new(grid).ok(),
                area_sums: Default::default(),
            },
            base: None,
            tx,
        })
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
        self.tx.check_cancel()
    }

    /// Writes one batch of result rows.
    pub(crate) fn write(&mut self, b: &RecordBatch) -> Result<()> {
        self.check_cancel()?;
        if b.num_rows() == 0 {
            return Ok(());
        }
        self.w.fig.meta = pixel_meta(b)?;
        if let Some(q) = self.w.quicklook.as_mut() {
            q.set_meta(self.w.fig.meta);
        }
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

    /// Finishes every output — Parquet, the COG, PNG, the lineage item —
    /// and commits them in one transaction: when one fails, or the query
    /// is cancelled meanwhile, no output of the run stays and the files
    /// they replaced are put back.
    pub(crate) fn finish(mut self) -> Result<Written> {
        self.copy_base()?;
        let bytes_per_pixel = self.reader.bytes_per_pixel().unwrap_or(1);
        // an all-0 result still makes a GeoTIFF
        self.w.tiff(bytes_per_pixel)?;
        // committed in this order: the lineage item, which describes the
        // others, last
        self.stage_parquet(bytes_per_pixel)?;
        self.stage_cog(bytes_per_pixel)?;
        self.stage_png()?;
        self.stage_lineage(bytes_per_pixel)?;
        self.tx.commit()?;
        Ok(self.w.written(bytes_per_pixel))
    }

    fn stage_parquet(&mut self, bytes_per_pixel: usize) -> Result<()> {
        if let (Some(p), Some(target)) = (self.parquet.take(), &self.outputs.parquet) {
            let tmp = p.tmp().to_path_buf();
            p.finish(bytes_per_pixel)?;
            self.tx.stage_file(&tmp, target)?;
        }
        Ok(())
    }

    fn stage_png(&mut self) -> Result<()> {
        let (Some(target), Some(quicklook)) = (&self.outputs.png, &self.w.quicklook) else {
            return Ok(());
        };
        let w = &self.w;
        let figures = crate::output::png::Figures {
            ones: w.fig.ones,
            ones_m2: w
                .area_model
                .as_ref()
                .map(|_| w.fig.areas.unwrap_or_default().ones),
            min: w.fig.min,
        };
        self.tx.stage(target, |tmp| {
            write_png(quicklook, &self.provenance, &w.grid, figures, tmp, target)
        })
    }

    fn stage_cog(&mut self, bytes_per_pixel: usize) -> Result<()> {
        let (Some(t), Some(target)) = (self.w.tiff.take(), &self.outputs.tif) else {
            return Ok(());
        };
        // a 0/1 result of a count or of values is written as a mask
        let kind = match self.w.fig.meta.kind {
            RasterKind::Values | RasterKind::Count
                if bytes_per_pixel == 1 && self.w.fig.max <= 1 =>
            {
                RasterKind::Mask
            }
            k => k,
        };
        let provenance = &self.provenance;
        self.tx
            .stage(target, |tmp| t.into_cog(tmp, target, provenance, kind))
    }

    fn stage_lineage(&mut self, bytes_per_pixel: usize) -> Result<()> {
        let Some(target) = &self.outputs.lineage else {
            return Ok(());
        };
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
            grid: &self.w.grid,
            provenance: &self.provenance,
            pixels: self.w.fig.meta,
            bytes_per_pixel,
            assets,
        };
        let named = o.lineage.clone().unwrap_or_else(|| target.clone());
        self.tx
            .stage(target, |tmp| lineage::write(&run, tmp, &named))
    }
}

impl ChunkWriters {
    /// What was written: the figures summed over every chunk, the grid's
    /// area when the CRS has an ellipsoid.
    fn written(&self, bytes_per_pixel: usize) -> Written {
        let areas = match self.area_model.as_ref().map(|m| m.grid_m2()) {
            Some(Ok(grid)) => Some(AreaFigures {
                grid,
                ..self.fig.areas.unwrap_or_default()
            }),
            _ => None,
        };
        Written {
            areas,
            bytes_per_pixel,
            ..self.fig.clone()
        }
    }
}

impl Drop for RasterSink {
    fn drop(&mut self) {
        // close the GeoTIFF's scratch files and the Parquet before the transaction removes them
        self.w.tiff = None;
        self.parquet = None;
    }
}

#[cfg(test)]
mod tests {
    /// The histogram counts every byte once, whatever the length's
    /// remainder by 4 and however long the runs.
    #[test]
    fn histogram_counts_each_byte() {
        // values 0, 127, 254 (the tables) and 0, 1 (a mask: the sum), with
        // masks longer than one partial sum
        for len in [0, 1, 3, 4, 7, 1000, 4099, 70_000, 200_003] {
            for values in [[0u8, 127, 254], [0, 1, 1]] {
                let px: Vec<u8> = (0..len).map(|i| values[(i / 97) % 3]).collect();
                let h = super::histogram(&px);
                let mut want = [0u64; 256];
                px.iter().for_each(|&v| want[v as usize] += 1);
                assert_eq!(h, want, "{len} bytes of {values:?}");
            }
        }
    }
}
