//! PNG quicklook with a legend. Large rasters are downsampled to at most
//! 1024 px on the long side, each output pixel the maximum of its block (a
//! small flood stays visible); the block maxima are folded chunk by chunk as
//! the result streams in ([`Quicklook`]), so the raster is never held whole.
//! 0/1 masks: flooded blue, the rest light grey; counts: a blue ramp up to
//! the maximum. Blocking (GDAL).

use std::path::Path;

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::DriverManager;

use crate::error::{Error, Result};
use crate::output::atomic::write_atomic;
use crate::output::font::{draw_text, text_width};

const MAX_SIDE: usize = 1024;
const DRY: [u8; 3] = [235, 235, 230];
const WET: [u8; 3] = [20, 90, 200];
const INK: [u8; 3] = [20, 20, 20];
const PAPER: [u8; 3] = [255, 255, 255];

fn ramp(v: u32, max: u32) -> [u8; 3] {
    if v == 0 || max == 0 {
        return DRY;
    }
    let t = v as f32 / max as f32;
    let lerp = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * (0.25 + 0.75 * t)) as u8;
    [lerp(DRY[0], 8), lerp(DRY[1], 40), lerp(DRY[2], 120)]
}

/// The block maxima of a raster, folded chunk by chunk.
#[derive(Debug, Clone)]
pub(crate) struct Quicklook {
    /// Block side in raster pixels.
    k: usize,
    qw: usize,
    qh: usize,
    q: Vec<u32>,
    /// Bytes per pixel of the raster (1 or 2).
    bytes_per_pixel: usize,
}

impl Quicklook {
    /// An empty (all-0) quicklook of a `width` x `height` raster.
    pub(crate) fn new(width: usize, height: usize) -> Self {
        let k = width.max(height).div_ceil(MAX_SIDE).max(1);
        let (qw, qh) = (width.div_ceil(k), height.div_ceil(k));
        Self {
            k,
            qw,
            qh,
            q: vec![0; qw * qh],
            bytes_per_pixel: 1,
        }
    }

    /// Folds in a chunk at (x, y), `w` pixels wide, its pixels row-major
    /// (`bytes_per_pixel` each, little-endian).
    pub(crate) fn add(&mut self, x: usize, y: usize, w: usize, px: &[u8], bytes_per_pixel: usize) {
        self.bytes_per_pixel = bytes_per_pixel;
        let k = self.k;
        for (r, row) in px.chunks_exact(w * bytes_per_pixel).enumerate() {
            let qrow = &mut self.q[((y + r) / k) * self.qw..][..self.qw];
            for (c, v) in row.chunks_exact(bytes_per_pixel).enumerate() {
                let v = match v {
                    [a] => *a as u32,
                    [a, b] => u16::from_le_bytes([*a, *b]) as u32,
                    _ => 0,
                };
                let cell = &mut qrow[(x + c) / k];
                *cell = (*cell).max(v);
            }
        }
    }
}

/// The quicklook image: (rgb, width, height).
pub(crate) fn render(ql: &Quicklook, title: &str) -> (Vec<u8>, usize, usize) {
    let (qw, qh, q) = (ql.qw, ql.qh, &ql.q);
    let max = q.iter().copied().max().unwrap_or(0);
    let scale = 2;
    let legend_h = 7 * scale * 3 + 16;
    let mask = ql.bytes_per_pixel == 1 && max <= 1;
    let labels: Vec<(String, [u8; 3])> = if mask {
        vec![
            ("1 FLOODED".into(), WET),
            ("0 NOT FLOODED OR NO DATA".into(), DRY),
        ]
    } else {
        vec![(format!("MAX {max}"), ramp(max, max)), ("0".into(), DRY)]
    };
    let text_w = 16
        + labels
            .iter()
            .map(|(t, _)| 24 + text_width(t, scale) + 24)
            .sum::<usize>();
    let w = qw.max(text_w).max(text_width(title, scale) + 16);
    let h = qh + legend_h;
    let mut rgb = vec![0u8; w * h * 3];
    for px in rgb.chunks_exact_mut(3) {
        px.copy_from_slice(&PAPER);
    }
    for y in 0..qh {
        for x in 0..qw {
            let v = q[y * qw + x];
            let c = if mask {
                if v > 0 {
                    WET
                } else {
                    DRY
                }
            } else {
                ramp(v, max)
            };
            rgb[(y * w + x) * 3..][..3].copy_from_slice(&c);
        }
    }
    // legend: title line, then swatches with labels
    let y0 = qh + 6;
    draw_text(&mut rgb, w, 8, y0, title, scale, INK);
    let sy = y0 + 7 * scale + 6;
    let mut x = 8;
    for (label, colour) in &labels {
        for yy in sy..(sy + 7 * scale).min(h) {
            for xx in x..x + 16 {
                if xx < w {
                    let p = &mut rgb[(yy * w + xx) * 3..][..3];
                    let edge = yy == sy || yy + 1 == sy + 7 * scale || xx == x || xx == x + 15;
                    p.copy_from_slice(if edge { &INK } else { colour });
                }
            }
        }
        draw_text(&mut rgb, w, x + 22, sy, label, scale, INK);
        x += 24 + text_width(label, scale) + 24;
    }
    (rgb, w, h)
}

/// Writes the quicklook PNG (atomically).
pub(crate) fn write_png(ql: &Quicklook, title: &str, path: &Path) -> Result<()> {
    let (rgb, w, h) = render(ql, title);
    let mem = DriverManager::get_driver_by_name("MEM")?;
    let ds = mem.create_with_band_type::<u8, _>("", w, h, 3)?;
    for b in 0..3 {
        let plane: Vec<u8> = rgb.iter().skip(b).step_by(3).copied().collect();
        ds.rasterband(b + 1)?
            .write((0, 0), (w, h), &mut Buffer::new((w, h), plane))?;
    }
    let png = DriverManager::get_driver_by_name("PNG")?;
    write_atomic(path, |tmp| {
        ds.create_copy(&png, tmp, &RasterCreationOptions::new())
            .map_err(|e| Error::Gdal(format!("writing PNG '{}': {e}", path.display())))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_maxima_fold_chunk_by_chunk() {
        // 3000 x 10 px: blocks of 3 px (1024 px on the long side at most)
        let mut ql = Quicklook::new(3000, 10);
        assert_eq!((ql.k, ql.qw, ql.qh), (3, 1000, 4));
        // one flooded pixel at (1501, 7) in a chunk at (1500, 5)
        let mut px = vec![0u8; 10 * 5];
        px[2 * 10 + 1] = 1;
        ql.add(1500, 5, 10, &px, 1);
        assert_eq!(ql.q.iter().filter(|&&v| v == 1).count(), 1);
        assert_eq!(ql.q[2 * 1000 + 500], 1);
        // 2-byte counts keep their value
        let mut ql = Quicklook::new(4, 4);
        ql.add(2, 2, 2, &[1, 0, 9, 1, 0, 0, 3, 0], 2);
        assert_eq!(ql.q[2 * 4 + 3], 265);
        let (rgb, w, h) = render(&ql, "T");
        assert_eq!(rgb.len(), w * h * 3);
    }
}
