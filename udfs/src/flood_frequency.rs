//! `flood_frequency(pixels [, nodata])`: how often a pixel was seen flooded
//! when it was seen: flooded observations / valid observations, as a whole
//! **percent** (u8 0..=100, rounded half up: `(200·f + v) div (2·v)`);
//! **255 = never observed** (the raster's nodata). The two counters behind
//! it saturate at 65535 slices like `flood_count` and `valid_count`.

use crate::pixel_agg::{PixelAggregate, PixelKernel, RasterKind, RasterMeta};

#[derive(Debug, Default)]
pub struct FrequencyKernel;

/// Percent of `flooded` in `valid`, rounded half up; 255 when `valid` is 0.
#[inline]
pub fn percent(flooded: u16, valid: u16) -> u8 {
    if valid == 0 {
        255
    } else {
        ((200 * flooded as u32 + valid as u32) / (2 * valid as u32)) as u8
    }
}

impl PixelKernel for FrequencyKernel {
    /// (flooded observations, valid observations)
    type Cell = [u16; 2];
    const NAME: &'static str = "flood_frequency";
    const DESCRIPTION: &'static str = "Flood frequency: the percentage (0-100, rounded half up) of the slices observing the pixel that saw it flooded; 255 where never observed.";
    const OUTPUT: &'static str =
        "uint8 percent 0..=100 (255 = never observed, the raster's nodata)";
    const RASTER: RasterMeta = RasterMeta {
        kind: RasterKind::Percent,
        nodata: Some(255),
        bytes: 1,
    };

    #[inline]
    fn update(cells: &mut [[u16; 2]], pixels: &[u8], nodata: u8, _day: u16) {
        for (c, &p) in cells.iter_mut().zip(pixels) {
            let valid = (p != nodata) as u16;
            c[0] = c[0].saturating_add(valid & (p != 0) as u16);
            c[1] = c[1].saturating_add(valid);
        }
    }

    fn finish(cells: &[[u16; 2]], out: &mut Vec<u8>) {
        out.extend(cells.iter().map(|c| percent(c[0], c[1])));
    }
}

/// The `flood_frequency` aggregate.
pub type FloodFrequency = PixelAggregate<FrequencyKernel>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_valid_observations() {
        let mut c = vec![[0u16; 2]; 4];
        for px in [[1, 0, 255, 1], [0, 0, 255, 1], [1, 255, 255, 0]] {
            FrequencyKernel::update(&mut c, &px, 255, 0);
        }
        let mut out = Vec::new();
        FrequencyKernel::finish(&c, &mut out);
        // 2/3 -> 66.67 -> 67; 0/2 -> 0; never observed; 2/3
        assert_eq!(out, vec![67, 0, 255, 67]);
        assert_eq!(percent(1, 8), 13); // 12.5 rounds up
        assert_eq!(percent(3, 3), 100);
        assert_eq!(percent(u16::MAX, u16::MAX), 100);
    }
}
