//! `flood_count(pixels [, nodata])`: in how many time slices each pixel was flooded
//! (value other than 0 and `nodata`, default 255). Output: LargeBinary, one
//! little-endian u16 per pixel (saturating at 65535), row-major over the chunk.

use crate::pixel_agg::{PixelAggregate, PixelKernel, RasterKind, RasterMeta};

#[derive(Debug, Default)]
pub struct FloodCountKernel;

impl PixelKernel for FloodCountKernel {
    type Cell = u16;
    const NAME: &'static str = "flood_count";
    const DESCRIPTION: &'static str =
        "How many slices saw the pixel flooded (neither 0 nor nodata); saturates at 65535.";
    const OUTPUT: &'static str = "uint16 count (little-endian)";
    const RASTER: RasterMeta = RasterMeta {
        kind: RasterKind::Count,
        nodata: None,
        bytes: 2,
    };

    /// Dry pixels (0) leave a cell as it was too, as nodata does.
    #[inline]
    fn inert(pixels: &[u8], nodata: u8) -> bool {
        crate::pixel_agg::no_flood(pixels, nodata)
    }

    #[inline]
    fn update(cells: &mut [u16], pixels: &[u8], nodata: u8, _day: u16) {
        for (c, &p) in cells.iter_mut().zip(pixels) {
            *c = c.saturating_add(((p != 0) & (p != nodata)) as u16);
        }
    }
}

/// The `flood_count` aggregate.
pub type FloodCount = PixelAggregate<FloodCountKernel>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_flooded_slices_only() {
        let mut c = vec![0u16; 4];
        FloodCountKernel::update(&mut c, &[1, 0, 255, 1], 255, 0);
        FloodCountKernel::update(&mut c, &[1, 1, 255, 255], 255, 0);
        assert_eq!(c, vec![2, 1, 0, 1]);
        let mut s = vec![u16::MAX];
        FloodCountKernel::update(&mut s, &[1], 255, 0);
        assert_eq!(s, vec![u16::MAX]);
    }
}
