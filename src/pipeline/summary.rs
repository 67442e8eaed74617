//! What a raster run did, as the CLI prints it.

use crate::output::assemble::RasterKind;
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
        if self.written.bytes_per_pixel == 1 && matches!(self.kind(), RasterKind::States)
            || self.is_mask()
        {
            self.written.ones as usize
        } else {
            0
        }
    }

    fn kind(&self) -> RasterKind {
        self.written.meta.kind
    }

    /// Whether the result is a 0/1 mask (an extent), not counts or classes.
    pub fn is_mask(&self) -> bool {
        self.written.bytes_per_pixel == 1
            && self.written.max <= 1
            && matches!(
                self.kind(),
                RasterKind::Mask | RasterKind::Count | RasterKind::Values
            )
    }

    /// Ellipsoidal km² of the flooded pixels (a mask or three states), when
    /// the grid's CRS has an ellipsoid.
    pub fn flooded_km2(&self) -> Option<f64> {
        let a = self.written.areas?;
        (self.is_mask() || self.kind() == RasterKind::States).then_some(a.ones / 1e6)
    }

    /// The summary, one fact per line.
    pub fn describe(&self) -> String {
        let g = &self.grid;
        let gt = g.geotransform();
        let w = &self.written;
        let a = w.areas;
        // ellipsoidal km² when known, else pixels x res²
        let res2 = |n: u64| n as f64 * g.res * g.res / 1e6;
        let km2 = |n: u64, m2: Option<f64>| m2.map_or(res2(n), |m| m / 1e6);
        let day = |v: u64| {
            chrono::DateTime::from_timestamp(v as i64 * 86_400, 0)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        let all = (g.width * g.height) as u64;
        let unseen = w.nodata_total(g);
        let unseen_m2 = w.nodata_total_m2();
        let result = if self.is_mask() || self.kind() == RasterKind::States {
            let px = w.ones;
            let flooded = match a {
                Some(a) => format!(
                    "flooded pixels: {px} ({:.3} km² on the ellipsoid; {:.3} km² as {} m x {} m pixels)",
                    a.ones / 1e6,
                    res2(px),
                    g.res,
                    g.res
                ),
                None => format!("flooded pixels: {px} ({:.3} km²)", res2(px)),
            };
            if self.kind() == RasterKind::States {
                // the rest of the grid: observed, never flooded (value 0)
                let dry = all.saturating_sub(px + unseen);
                let dry_m2 = a.zip(unseen_m2).map(|(a, u)| a.grid - a.ones - u);
                format!(
                    "{flooded}; observed, never flooded: {dry} ({:.3} km²); never observed: {unseen} ({:.3} km²)",
                    km2(dry, dry_m2),
                    km2(unseen, unseen_m2)
                )
            } else {
                flooded
            }
        } else if self.kind() == RasterKind::Date && w.nonzero > 0 {
            format!(
                "pixels with a flood date: {} ({:.3} km²); dates {} .. {}",
                w.nonzero,
                km2(w.nonzero, a.map(|a| a.nonzero)),
                day(w.min),
                day(w.max)
            )
        } else if self.kind() == RasterKind::Percent {
            let seen = all - unseen;
            let seen_m2 = a.zip(unseen_m2).map(|(a, u)| a.grid - u);
            format!(
                "pixels observed: {seen} ({:.3} km²); flooded in some observation: {} \
                 ({:.3} km²); highest frequency: {} %",
                km2(seen, seen_m2),
                w.nonzero,
                km2(w.nonzero, a.map(|a| a.nonzero)),
                w.max
            )
        } else {
            format!(
                "pixels above 0: {} ({:.3} km²); largest value: {} ({}-bit values, not a 0/1 mask)",
                w.nonzero,
                km2(w.nonzero, a.map(|a| a.nonzero)),
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
