//! `valid_count(pixels [, nodata])`: in how many time slices each pixel was
//! observed (value other than `nodata`, default 255). Output: LargeBinary, one
//! little-endian u16 per pixel (saturating at 65535), row-major over the chunk.
//! With `flood_count` it gives a flood frequency: flood_count / valid_count.

use crate::pixel_agg::{PixelAggregate, PixelKernel, RasterKind, RasterMeta};

#[derive(Debug, Default)]
pub struct ValidCountKernel;

impl PixelKernel for ValidCountKernel {
    type Cell = u16;
    const NAME: &'static str = "valid_count";
    const DESCRIPTION: &'static str =
        "How many slices observed the pixel (a value other than nodata); saturates at 65535.";
    const OUTPUT: &'static str = "uint16 count (little-endian)";
    const RASTER: RasterMeta = RasterMeta {
        kind: RasterKind::Count,
        nodata: None,
        bytes: 2,
    };

    #[inline]
    fn update(cells: &mut [u16], pixels: &[u8], nodata: u8, _day: u16) {
        for (c, &p) in cells.iter_mut().zip(pixels) {
            *c = c.saturating_add((p != nodata) as u16);
        }
    }
}

/// The `valid_count` aggregate.
pub type ValidCount = PixelAggregate<ValidCountKernel>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_observed_slices() {
        let mut c = vec![0u16; 3];
        ValidCountKernel::update(&mut c, &[1, 0, 255], 255, 0);
        ValidCountKernel::update(&mut c, &[255, 0, 255], 255, 0);
        assert_eq!(c, vec![1, 2, 0]);
    }
}
