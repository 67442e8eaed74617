//! `flood_observed(pixels [, nodata])`: where the time slices saw the ground.
//!
//! Per pixel: 1 if any slice holds a value other than `nodata` (default
//! 255), else 0 (never observed). Beside `flood_max_extent` it tells "not
//! flooded" (observed, never flooded) from "no observation" — the 0 of the
//! tutorial's extent means either. Output: LargeBinary, one byte (0/1) per
//! pixel, row-major over the chunk window.

use crate::pixel_agg::{PixelAggregate, PixelKernel, RasterKind, RasterMeta};

#[derive(Debug, Default)]
pub struct ObservedKernel;

impl PixelKernel for ObservedKernel {
    type Cell = u8;
    const NAME: &'static str = "flood_observed";
    const DESCRIPTION: &'static str = "Where any slice observed the pixel: 1 where a slice holds a value other than nodata, else 0 (never observed).";
    const OUTPUT: &'static str = "uint8 0/1";
    const RASTER: RasterMeta = RasterMeta {
        kind: RasterKind::Mask,
        nodata: None,
        bytes: 1,
    };

    #[inline]
    fn update(cells: &mut [u8], pixels: &[u8], nodata: u8, _day: u16) {
        for (c, &p) in cells.iter_mut().zip(pixels) {
            *c |= (p != nodata) as u8;
        }
    }
}

/// The `flood_observed` aggregate.
pub type FloodObserved = PixelAggregate<ObservedKernel>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_is_any_value_but_nodata() {
        let mut c = vec![0u8; 4];
        ObservedKernel::update(&mut c, &[0, 255, 255, 1], 255, 0);
        ObservedKernel::update(&mut c, &[255, 255, 0, 255], 255, 0);
        assert_eq!(c, vec![1, 0, 1, 1]);
    }
}
