//! `flood_first_date(pixels, datetime [, nodata])` and
//! `flood_last_date(pixels, datetime [, nodata])`: the day a pixel was first
//! / last seen flooded (a value other than 0 and `nodata`).
//!
//! Encoding: one little-endian u16 per pixel, the UTC day as **days since
//! 1970-01-01** (2022-09-01 is 19236); **0 = never flooded** (the raster's
//! nodata). Slices must lie between 1970-01-02 and 2149-06-05 (an execution
//! error otherwise). Days since the epoch is what `datetime` arithmetic in
//! SQL, numpy (`datetime64[D]`) and GDAL users convert easily, and it fits
//! 16 bits until 2149.

use crate::pixel_agg::{PixelAggregate, PixelKernel, RasterKind, RasterMeta};

const RASTER: RasterMeta = RasterMeta {
    kind: RasterKind::Date,
    nodata: Some(0),
    bytes: 2,
};

/// The earlier of two days where 0 means none (branch-free: 0 wraps to the
/// largest value, so `min` skips it).
#[inline]
fn min_day(a: u16, b: u16) -> u16 {
    a.wrapping_sub(1).min(b.wrapping_sub(1)).wrapping_add(1)
}

/// First (`FIRST = true`) or last flood day: the two kernels differ only in
/// how two days combine.
#[derive(Debug, Default)]
pub struct DateKernel<const FIRST: bool>;

/// `flood_first_date`'s kernel.
pub type FirstDateKernel = DateKernel<true>;
/// `flood_last_date`'s kernel.
pub type LastDateKernel = DateKernel<false>;

impl<const FIRST: bool> DateKernel<FIRST> {
    #[inline]
    fn combine(a: u16, b: u16) -> u16 {
        if FIRST {
            min_day(a, b)
        } else {
            a.max(b)
        }
    }
}

impl<const FIRST: bool> PixelKernel for DateKernel<FIRST> {
    type Cell = u16;
    const NAME: &'static str = if FIRST {
        "flood_first_date"
    } else {
        "flood_last_date"
    };
    const DESCRIPTION: &'static str = if FIRST {
        "The first day a slice saw the pixel flooded (neither 0 nor nodata), as days since 1970-01-01 (UTC); 0 where never flooded."
    } else {
        "The last day a slice saw the pixel flooded (neither 0 nor nodata), as days since 1970-01-01 (UTC); 0 where never flooded."
    };
    const OUTPUT: &'static str = "uint16 days since 1970-01-01 (little-endian; 0 = never flooded)";
    const RASTER: RasterMeta = RASTER;
    const DATED: bool = true;

    /// Dry pixels (0) leave a cell as it was too, as nodata does.
    #[inline]
    fn inert(pixels: &[u8], nodata: u8) -> bool {
        crate::pixel_agg::no_flood(pixels, nodata)
    }

    #[inline]
    fn update(cells: &mut [u16], pixels: &[u8], nodata: u8, day: u16) {
        for (c, &p) in cells.iter_mut().zip(pixels) {
            let d = day * ((p != 0) & (p != nodata)) as u16;
            *c = Self::combine(*c, d);
        }
    }

    fn merge(cells: &mut [u16], other: &[u16]) {
        for (c, &o) in cells.iter_mut().zip(other) {
            *c = Self::combine(*c, o);
        }
    }
}

/// The `flood_first_date` aggregate.
pub type FloodFirstDate = PixelAggregate<FirstDateKernel>;
/// The `flood_last_date` aggregate.
pub type FloodLastDate = PixelAggregate<LastDateKernel>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_flooded_day() {
        // slices on days 19240, 19236 (out of order), 19250
        let slices: [(u16, [u8; 4]); 3] = [
            (19240, [1, 0, 255, 1]),
            (19236, [0, 0, 255, 1]),
            (19250, [1, 255, 255, 0]),
        ];
        let (mut first, mut last) = (vec![0u16; 4], vec![0u16; 4]);
        for (day, px) in slices {
            FirstDateKernel::update(&mut first, &px, 255, day);
            LastDateKernel::update(&mut last, &px, 255, day);
        }
        assert_eq!(first, vec![19240, 0, 0, 19236]);
        assert_eq!(last, vec![19250, 0, 0, 19240]);
        // partial states merge with "0 = none"
        let mut a = vec![0, 19300, 19200];
        FirstDateKernel::merge(&mut a, &[19250, 0, 19100]);
        assert_eq!(a, vec![19250, 19300, 19100]);
    }
}
