//! `flood_extent_states(pixels [, nodata])`: the maximum flood extent in
//! GFM's own three-state coding — 1 flooded in any slice, 0 observed and
//! never flooded, 255 never observed — so that "dry" and "not seen" are no
//! longer the same 0. Output: LargeBinary, one byte per pixel (nodata 255).

use crate::pixel_agg::{PixelAggregate, PixelKernel, RasterKind, RasterMeta};

/// Cell bits while folding: 1 = flooded in some slice, 2 = observed in some slice.
const FLOODED: u8 = 1;
const OBSERVED: u8 = 2;
/// Output per cell state (index: the bits).
const CODE: [u8; 4] = [255, 1, 0, 1];

#[derive(Debug, Default)]
pub struct ExtentStatesKernel;

impl PixelKernel for ExtentStatesKernel {
    type Cell = u8;
    const NAME: &'static str = "flood_extent_states";
    const DESCRIPTION: &'static str = "The maximum flood extent in GFM's coding: 1 where any slice is flooded (neither 0 nor nodata), 0 where some slice observed the pixel and none saw it flooded, 255 where no slice observed it.";
    const OUTPUT: &'static str = "uint8 1/0/255 (255 = never observed, the raster's nodata)";
    const RASTER: RasterMeta = RasterMeta {
        kind: RasterKind::States,
        nodata: Some(255),
        bytes: 1,
    };

    #[inline]
    fn update(cells: &mut [u8], pixels: &[u8], nodata: u8, _day: u16) {
        for (c, &p) in cells.iter_mut().zip(pixels) {
            let observed = (p != nodata) as u8;
            *c |= ((observed & (p != 0) as u8) * FLOODED) | (observed * OBSERVED);
        }
    }

    fn finish(cells: &[u8], out: &mut Vec<u8>) {
        out.extend(cells.iter().map(|&c| CODE[(c & 3) as usize]));
    }
}

/// The `flood_extent_states` aggregate.
pub type FloodExtentStates = PixelAggregate<ExtentStatesKernel>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_states() {
        // flooded once, dry twice, never observed, flooded then nodata
        let mut c = vec![0u8; 4];
        ExtentStatesKernel::update(&mut c, &[1, 0, 255, 1], 255, 0);
        ExtentStatesKernel::update(&mut c, &[0, 0, 255, 255], 255, 0);
        let mut out = Vec::new();
        ExtentStatesKernel::finish(&c, &mut out);
        assert_eq!(out, vec![1, 0, 255, 1]);
        // merging two partial states: observed dry in one, flooded in the other
        let mut a = vec![OBSERVED, 0];
        ExtentStatesKernel::merge(&mut a, &[FLOODED | OBSERVED, 0]);
        let mut out = Vec::new();
        ExtentStatesKernel::finish(&a, &mut out);
        assert_eq!(out, vec![1, 255]);
    }
}
