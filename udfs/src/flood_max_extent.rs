//! `flood_max_extent(pixels [, nodata])`: the tutorial's maximum flood extent.
//!
//! Per pixel: 1 if any time slice holds a value other than 0 (no flood) and
//! `nodata` (default 255), else 0. This is exactly
//! `xr.where(data.where((data != 255) & (data != 0)).sum("time") > 0, 1, 0)`:
//! dry, nodata, excluded and never-observed pixels are all 0.
//! Output: LargeBinary, one byte (0/1) per pixel, row-major over the chunk window.

use crate::pixel_agg::{PixelAggregate, PixelKernel, RasterKind, RasterMeta};

#[derive(Debug, Default)]
pub struct MaxExtentKernel;

impl PixelKernel for MaxExtentKernel {
    type Cell = u8;
    const NAME: &'static str = "flood_max_extent";
    const DESCRIPTION: &'static str = "The maximum flood extent (the tutorial): 1 where any slice is flooded (neither 0 nor nodata), else 0 (dry, excluded and never observed alike).";
    const OUTPUT: &'static str = "uint8 0/1";
    const RASTER: RasterMeta = RasterMeta {
        kind: RasterKind::Mask,
        nodata: None,
        bytes: 1,
    };

    /// Dry pixels (0) leave a cell as it was too, as nodata does.
    #[inline]
    fn inert(pixels: &[u8], nodata: u8) -> bool {
        crate::pixel_agg::no_flood(pixels, nodata)
    }

    #[inline]
    fn update(cells: &mut [u8], pixels: &[u8], nodata: u8, _day: u16) {
        for (c, &p) in cells.iter_mut().zip(pixels) {
            *c |= ((p != 0) & (p != nodata)) as u8;
        }
    }
}

/// The `flood_max_extent` aggregate.
pub type FloodMaxExtent = PixelAggregate<MaxExtentKernel>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_matches_tutorial_semantics() {
        // slices: flood, dry, nodata, other non-zero value
        let mut c = vec![0u8; 6];
        MaxExtentKernel::update(&mut c, &[1, 0, 255, 0, 2, 255], 255, 0);
        MaxExtentKernel::update(&mut c, &[0, 0, 255, 1, 0, 255], 255, 0);
        assert_eq!(c, vec![1, 0, 0, 1, 1, 0]);
        // a different nodata value makes 255 a flooded value
        let mut c = vec![0u8; 2];
        MaxExtentKernel::update(&mut c, &[255, 7], 7, 0);
        assert_eq!(c, vec![1, 0]);
    }
}
