//! What a raster run did, as the CLI prints it.

use crate::output::sink::Written;
use crate::raster::grid::OutputGrid;

/// What a raster run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// STAC items scanned.
    pub items: usize,
    /// Time slices scanned.
    pub slices: usize,
    /// (time slice, chunk) rows the scan produced.
    pub scanned_rows: usize,
    /// Rows (aggregated chunks) in the result.
    pub result_chunks: usize,
    /// Wall time of the run.
    pub seconds: f64,
    pub(crate) grid: OutputGrid,
    pub(crate) written: Written,
}

impl Summary {
    /// Pixels equal to 1 in a 1-byte result.
    pub fn flooded_pixels(&self) -> usize {
        if self.written.bytes_per_pixel == 1 {
            self.written.ones as usize
        } else {
            0
        }
    }

    /// The summary, one fact per line.
    pub fn describe(&self) -> String {
        let g = &self.grid;
        let px = self.flooded_pixels();
        let gt = g.geotransform();
        format!(
            "items: {}\ntime slices: {}\n(slice, chunk) rows scanned: {}\nchunks in result: {}\n\
             grid: {} x {} px at {} m, origin ({}, {})\nflooded pixels: {} ({:.3} km²)\nwall time: {:.2} s",
            self.items,
            self.slices,
            self.scanned_rows,
            self.result_chunks,
            g.width,
            g.height,
            g.res,
            gt[0],
            gt[3],
            px,
            px as f64 * g.res * g.res / 1e6,
            self.seconds
        )
    }
}
