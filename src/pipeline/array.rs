//! A raster result in memory: the last statement's chunks pasted onto the
//! grid of its `flood_chunks` scan, for hosts that want the array itself
//! (the Python package's `xarray.DataArray`) rather than files.
//!
//! The array holds what the GeoTIFF of the same query holds, pixel for
//! pixel: chunks no result row covers read as the kind's nodata (0 when the
//! kind has none, as in the tutorial's extent), values little-endian.

use futures::StreamExt;

use datafusion::execution::context::SessionContext;

use crate::context::QueryProgress;
use crate::error::{Error, Result};
use crate::output::assemble::{pixel_meta, ChunkReader};
use crate::pipeline::statement::StatementStream;
use crate::pipeline::{start_last, the_grid_scan};

/// A raster result on its grid.
#[derive(Debug, Clone)]
pub struct RasterArray {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// GDAL's geotransform of the grid (top-left corner, pixel size; north up).
    pub geotransform: [f64; 6],
    /// The grid's CRS as the items give it (WKT2, PROJJSON or a code).
    pub crs: String,
    /// What the pixels are (`floodsql_udfs::RasterKind::name`: mask, count,
    /// states, date, percent, values).
    pub kind: &'static str,
    /// The nodata value the kind declares (None: every value is data).
    pub nodata: Option<u16>,
    /// 1 (uint8) or 2 (uint16, little-endian).
    pub bytes_per_pixel: usize,
    /// The pixels, row-major, `width * height * bytes_per_pixel` bytes.
    pub data: Vec<u8>,
    /// STAC items scanned.
    pub items: usize,
    /// Time slices scanned.
    pub slices: usize,
    /// Rows (aggregated chunks) in the result.
    pub result_chunks: usize,
}

/// Runs SQL text; the last statement's result is pasted, chunk by chunk,
/// onto the grid of its `flood_chunks` scan. Memory: the array, plus the
/// batches in flight.
pub async fn run_to_array(
    ctx: &SessionContext,
    sql: &str,
    progress: &QueryProgress,
) -> datafusion::error::Result<RasterArray> {
    let StatementStream {
        mut stream,
        scans,
        job,
    } = start_last(ctx, sql, progress, &["observed"]).await?; // the array is `pixels` only
    let scan = the_grid_scan(scans.into_iter().map(|(s, _)| s).collect())?;
    progress.plan(&scan.estimate().one_line());
    let grid = scan.grid.clone();
    // what the pixels are is in the result's schema, rows or none
    let meta = pixel_meta(&arrow::array::RecordBatch::new_empty(stream.schema()))?;
    let mut reader = ChunkReader::new(&grid);
    let mut canvas = Canvas::new(grid.width, grid.height, meta.nodata.unwrap_or(0));
    let mut rows = 0;
    while let Some(b) = stream.next().await {
        let b = b?;
        if progress.cancel.is_cancelled() {
            return Err(Error::Cancelled.into());
        }
        rows += b.num_rows();
        reader.read(&b, |w, px, k, _| canvas.paste(w, px, k))?;
    }
    drop(job);
    progress.scan.finish_and_clear();
    let bytes_per_pixel = canvas.bytes_per_pixel();
    Ok(RasterArray {
        width: grid.width,
        height: grid.height,
        geotransform: grid.geotransform(),
        crs: grid.crs.clone(),
        kind: meta.kind.name(),
        nodata: meta.nodata,
        bytes_per_pixel,
        data: canvas.finish(),
        items: scan.n_items(),
        slices: scan.slices.len(),
        result_chunks: rows,
    })
}

/// The array being filled: allocated at the first chunk's pixel size.
struct Canvas {
    width: usize,
    height: usize,
    fill: u16,
    bytes_per_pixel: Option<usize>,
    data: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize, fill: u16) -> Self {
        Self {
            width,
            height,
            fill,
            bytes_per_pixel: None,
            data: Vec::new(),
        }
    }

    fn bytes_per_pixel(&self) -> usize {
        self.bytes_per_pixel.unwrap_or(1)
    }

    fn allocate(&mut self, k: usize) -> Result<()> {
        let n = self
            .width
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(k))
            .ok_or_else(|| {
                Error::TooLarge(format!(
                    "a {} x {} raster of {k} bytes per pixel",
                    self.width, self.height
                ))
            })?;
        let fill = self.fill.to_le_bytes();
        self.data = match k {
            1 => vec![fill[0]; n],
            _ => fill.iter().copied().cycle().take(n).collect(),
        };
        self.bytes_per_pixel = Some(k);
        Ok(())
    }

    /// Pastes a checked chunk (`ChunkReader` checked it against the grid).
    fn paste(&mut self, w: crate::geo::Window, px: &[u8], k: usize) -> Result<()> {
        if self.bytes_per_pixel.is_none() {
            self.allocate(k)?;
        }
        let row = w.width * k;
        for r in 0..w.height {
            let dst = ((w.y + r) * self.width + w.x) * k;
            self.data[dst..dst + row].copy_from_slice(&px[r * row..][..row]);
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bytes_per_pixel.is_none() {
            // no row at all: the whole grid is the fill value
            let _ = self.allocate(1);
        }
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Window;

    #[test]
    fn pastes_chunks_and_fills_the_rest() {
        let mut c = Canvas::new(4, 3, 255);
        let w = Window {
            x: 1,
            y: 1,
            width: 2,
            height: 2,
        };
        c.paste(w, &[1, 2, 3, 4], 1).unwrap();
        assert_eq!(
            c.finish(),
            vec![255, 255, 255, 255, 255, 1, 2, 255, 255, 3, 4, 255]
        );
        let mut c = Canvas::new(2, 1, 0x0102);
        c.paste(
            Window {
                x: 1,
                y: 0,
                width: 1,
                height: 1,
            },
            &[9, 0],
            2,
        )
        .unwrap();
        assert_eq!(c.finish(), vec![2, 1, 9, 0]);
        assert_eq!(Canvas::new(2, 2, 7).finish(), vec![7; 4]);
    }
}
