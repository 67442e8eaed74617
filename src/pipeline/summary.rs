//! What a raster run did, as the CLI prints it.

use crate::output::assemble::PixelKind;
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
    /// Pixels equal to 1 in a 1-byte mask or three-state result.
    pub fn flooded_pixels(&self) -> usize {
        if self.written.bytes_per_pixel == 1 && matches!(self.kind(), PixelKind::States)
            || self.is_mask()
        {
            self.written.ones as usize
        } else {
            0
        }
    }

    fn kind(&self) -> PixelKind {
        self.written.meta.kind
    }

    /// Whether the result is a 0/1 mask (an extent), not counts or classes.
    pub fn is_mask(&self) -> bool {
        self.written.bytes_per_pixel == 1
            && self.written.max <= 1
            && matches!(
                self.kind(),
                PixelKind::Mask | PixelKind::Count | PixelKind::Values
            )
    }

    /// The summary, one fact per line.
    pub fn describe(&self) -> String {
        let g = &self.grid;
        let gt = g.geotransform();
        let km2 = |n: u64| n as f64 * g.res * g.res / 1e6;
        let w = &self.written;
        let day = |v: u64| {
            chrono::DateTime::from_timestamp(v as i64 * 86_400, 0)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        let result = if self.is_mask() {
            let px = self.flooded_pixels() as u64;
            format!("flooded pixels: {px} ({:.3} km²)", km2(px))
        } else if self.kind() == PixelKind::States {
            // the rest of the grid: observed, never flooded (value 0)
            let dry = ((g.width * g.height) as u64).saturating_sub(w.ones + w.nodata_total(g));
            format!(
                "flooded pixels: {} ({:.3} km²); observed, never flooded: {dry} ({:.3} km²); \
                 never observed: {} ({:.3} km²)",
                w.ones,
                km2(w.ones),
                km2(dry),
                w.nodata_total(g),
                km2(w.nodata_total(g))
            )
        } else if self.kind() == PixelKind::Date && w.nonzero > 0 {
            format!(
                "pixels with a flood date: {} ({:.3} km²); dates {} .. {}",
                w.nonzero,
                km2(w.nonzero),
                day(w.min),
                day(w.max)
            )
        } else if self.kind() == PixelKind::Percent {
            let seen = (g.width * g.height) as u64 - w.nodata_total(g);
            format!(
                "pixels observed: {seen} ({:.3} km²); flooded in some observation: {} \
                 ({:.3} km²); highest frequency: {} %",
                km2(seen),
                w.nonzero,
                km2(w.nonzero),
                w.max
            )
        } else {
            format!(
                "pixels above 0: {} ({:.3} km²); largest value: {} ({}-bit values, not a 0/1 mask)",
                w.nonzero,
                km2(w.nonzero),
                w.max,
                8 * w.bytes_per_pixel
            )
        };
        format!(
            "items: {}\ntime slices: {}\n(slice, chunk) rows scanned: {}\nchunks in result: {}\n\
             grid: {} x {} px at {} m, origin ({}, {})\n{result}\nwall time: {:.2} s",
            self.items,
            self.slices,
            self.scanned_rows,
            self.result_chunks,
            g.width,
            g.height,
            g.res,
            gt[0],
            gt[3],
            self.seconds
        )
    }
}
