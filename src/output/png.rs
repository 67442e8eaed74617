//! PNG quicklook with a legend. Large rasters are downsampled to at most
//! 1024 px on the long side, each output pixel the maximum of its block (a
//! small flood stays visible). 0/1 masks: flooded blue, the rest light grey;
//! counts: a blue ramp up to the maximum. Blocking (GDAL).

use std::path::Path;

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::DriverManager;

use crate::error::{Error, Result};
use crate::output::assemble::Raster;
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

/// The quicklook image: (rgb, width, height).
pub(crate) fn render(r: &Raster, title: &str) -> (Vec<u8>, usize, usize) {
    let g = &r.grid;
    let k = g.width.max(g.height).div_ceil(MAX_SIDE).max(1);
    let (qw, qh) = (g.width.div_ceil(k), g.height.div_ceil(k));
    let value = |i: usize| -> u32 {
        if r.bytes_per_pixel == 2 {
            u16::from_le_bytes([r.data[2 * i], r.data[2 * i + 1]]) as u32
        } else {
            r.data[i] as u32
        }
    };
    // block maxima
    let mut q = vec![0u32; qw * qh];
    for y in 0..g.height {
        let qrow = &mut q[(y / k) * qw..][..qw];
        for x in 0..g.width {
            let v = value(y * g.width + x);
            let c = &mut qrow[x / k];
            *c = (*c).max(v);
        }
    }
    let max = q.iter().copied().max().unwrap_or(0);
    let scale = 2;
    let legend_h = 7 * scale * 3 + 16;
    let labels: Vec<(String, [u8; 3])> = if r.bytes_per_pixel == 1 && max <= 1 {
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
            let c = if r.bytes_per_pixel == 1 && max <= 1 {
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
pub(crate) fn write_png(r: &Raster, title: &str, path: &Path) -> Result<()> {
    let (rgb, w, h) = render(r, title);
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
