//! PNG quicklook, a map a flood analyst can show: the raster framed with
//! projected coordinates, a scale bar, a legend, title and date range, the
//! flooded area, the source catalogue and the corners in lon/lat. Drawn
//! with `plotters` (text in DejaVu Sans from the `dejavu` crate, so no
//! system font is needed) on an RGB buffer, encoded by GDAL's PNG driver.
//!
//! Large rasters are downsampled to at most 1024 px on the long side, each
//! output pixel the maximum of its block (a small flood stays visible); the
//! block maxima are folded chunk by chunk as the result streams in
//! ([`Quicklook`]), so the raster is never held whole. 0/1 masks: flooded
//! blue; with an `observed` column (the extent query has one) pixels never
//! observed are grey and set apart from observed dry land; counts: a blue
//! ramp up to the maximum. Blocking (GDAL).

use std::path::Path;
use std::sync::Once;

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::DriverManager;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{Error, Result};
use crate::output::assemble::{PixelMeta, RasterKind};
use crate::output::Provenance;
use crate::raster::grid::OutputGrid;

const MAX_SIDE: usize = 1024;
const DRY: [u8; 3] = [236, 232, 214];
const WET: [u8; 3] = [20, 90, 200];
const UNSEEN: [u8; 3] = [175, 175, 175];
const PAPER: [u8; 3] = [255, 255, 255];

/// Values min..=max (min ≥ 1) on a light-to-dark blue ramp (ColorBrewer
/// "Blues" ends); 0 is drawn as dry land.
fn ramp(v: u32, min: u32, max: u32) -> [u8; 3] {
    if v == 0 || max == 0 {
        return DRY;
    }
    const LO: [f32; 3] = [158.0, 202.0, 225.0];
    const HI: [f32; 3] = [8.0, 48.0, 107.0];
    let t = if max <= min {
        1.0
    } else {
        (v.clamp(min, max) - min) as f32 / (max - min) as f32
    };
    [0, 1, 2].map(|i| (LO[i] + (HI[i] - LO[i]) * t) as u8)
}

/// The block maxima of a raster, folded chunk by chunk.
#[derive(Debug, Clone)]
pub(crate) struct Quicklook {
    /// Block side in raster pixels.
    k: usize,
    qw: usize,
    qh: usize,
    q: Vec<u32>,
    /// Block maxima of the `observed` column, when the result has one.
    observed: Option<Vec<u8>>,
    /// Bytes per pixel of the raster (1 or 2).
    bytes_per_pixel: usize,
    /// What the pixels are; their nodata is not folded into the maxima but
    /// drawn as "never observed" (or "no flood date").
    meta: PixelMeta,
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
            observed: None,
            bytes_per_pixel: 1,
            meta: PixelMeta::default(),
        }
    }

    /// Sets what the pixels are (before the first chunk).
    pub(crate) fn set_meta(&mut self, meta: PixelMeta) {
        self.meta = meta;
    }

    /// Folds in a chunk at (x, y), `w` pixels wide, its pixels row-major
    /// (`bytes_per_pixel` each, little-endian).
    pub(crate) fn add(&mut self, x: usize, y: usize, w: usize, px: &[u8], bytes_per_pixel: usize) {
        self.bytes_per_pixel = bytes_per_pixel;
        let (k, qw, qh) = (self.k, self.qw, self.qh);
        let nodata = self.meta.nodata.map(u32::from);
        if nodata.is_some() && self.observed.is_none() {
            self.observed = Some(vec![0; qw * qh]);
        }
        for (r, row) in px.chunks_exact(w * bytes_per_pixel).enumerate() {
            let at = ((y + r) / k) * qw;
            for (c, v) in row.chunks_exact(bytes_per_pixel).enumerate() {
                let v = match v {
                    [a] => *a as u32,
                    [a, b] => u16::from_le_bytes([*a, *b]) as u32,
                    _ => 0,
                };
                let i = at + (x + c) / k;
                if nodata.is_some() {
                    if Some(v) == nodata {
                        continue;
                    }
                    if let Some(o) = self.observed.as_mut() {
                        o[i] = 1;
                    }
                }
                self.q[i] = self.q[i].max(v);
            }
        }
    }

    /// Folds in a chunk's `observed` bytes (0/1 per pixel) at (x, y).
    pub(crate) fn add_observed(&mut self, x: usize, y: usize, w: usize, obs: &[u8]) {
        let (k, qw, qh) = (self.k, self.qw, self.qh);
        let o = self.observed.get_or_insert_with(|| vec![0; qw * qh]);
        for (r, row) in obs.chunks_exact(w).enumerate() {
            let orow = &mut o[((y + r) / k) * qw..][..qw];
            for (c, &v) in row.iter().enumerate() {
                let cell = &mut orow[(x + c) / k];
                *cell = (*cell).max(v);
            }
        }
    }
}

/// What the caption says besides the provenance.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    /// Pixels equal to 1 (flooded, for a mask).
    pub(crate) ones: u64,
    /// Their ellipsoidal area in m², when the grid's CRS gives one.
    pub(crate) ones_m2: Option<f64>,
    /// Smallest value other than 0 and nodata (for the ramp; 0 or u64::MAX: none).
    pub(crate) min: u64,
}

/// A date raster's value (days since 1970-01-01) as YYYY-MM-DD.
pub(crate) fn day_label(v: u32) -> String {
    chrono::DateTime::from_timestamp(v as i64 * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| v.to_string())
}

/// A text style in the bundled font.
pub(crate) fn font(size: f64) -> TextStyle<'static> {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
    ("sans-serif", size).into_font().color(&BLACK)
}

pub(crate) fn bold(size: f64) -> TextStyle<'static> {
    font(size);
    ("sans-serif", size, FontStyle::Bold)
        .into_font()
        .color(&BLACK)
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A "nice" length (1, 2 or 5 x 10^n) of about `target`.
fn nice(target: f64) -> f64 {
    if target <= 0.0 || !target.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(target.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .take_while(|v| *v <= target)
        .last()
        .unwrap_or(p)
}

/// A distance in metres as the scale bar and ticks print it.
fn metres(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{} km", v / 1000.0)
    } else {
        format!("{v} m")
    }
}

/// The corners of `grid` in lon/lat ("NW 68.01°E 27.06°N, SE …"), when the
/// CRS can be transformed.
fn corners_lonlat(grid: &OutputGrid) -> Option<String> {
    use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
    let mut src = crate::raster::grid::spatial_ref(&grid.crs).ok()?;
    let mut dst = SpatialRef::from_epsg(4326).ok()?;
    dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let t = CoordTransform::new(&src, &dst).ok()?;
    let gt = grid.geotransform();
    let (x0, y0) = (gt[0], gt[3]);
    let (x1, y1) = (
        x0 + grid.width as f64 * gt[1],
        y0 + grid.height as f64 * gt[5],
    );
    let mut xs = [x0, x1];
    let mut ys = [y0, y1];
    t.transform_coords(&mut xs, &mut ys, &mut []).ok()?;
    let ll = |lon: f64, lat: f64| {
        format!(
            "{:.3}°{} {:.3}°{}",
            lon.abs(),
            if lon < 0.0 { "W" } else { "E" },
            lat.abs(),
            if lat < 0.0 { "S" } else { "N" }
        )
    };
    Some(format!("NW {}, SE {}", ll(xs[0], ys[0]), ll(xs[1], ys[1])))
}

/// Where things sit in the quicklook image: margins around the map.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Image size.
    w: usize,
    h: usize,
    /// The map's size (quicklook pixels) and its left and top margins.
    qw: usize,
    qh: usize,
    ml: usize,
    mt: usize,
}

impl Layout {
    fn new(qw: usize, qh: usize) -> Self {
        let (ml, mt, mr, mb) = (80usize, 64usize, 24usize, 128usize);
        Self {
            w: (ml + qw + mr).max(760),
            h: mt + qh + mb,
            qw,
            qh,
            ml,
            mt,
        }
    }

    /// The map's top-left and bottom-right corners in image pixels.
    fn map(&self) -> ((i32, i32), (i32, i32)) {
        (
            (self.ml as i32, self.mt as i32),
            ((self.ml + self.qw) as i32, (self.mt + self.qh) as i32),
        )
    }
}

/// How the quicklook colours values: the kind, and the range of the ramp.
#[derive(Debug, Clone, Copy)]
struct Colours {
    kind: RasterKind,
    /// Flooded / not flooded / not observed (a mask or three states), or
    /// a ramp from `min` to `max`.
    mask: bool,
    min: u32,
    max: u32,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// A drawing step's error as floodsql's.
fn drawn<E: std::fmt::Display>(r: std::result::Result<(), E>) -> Result<()> {
    r.map_err(|e| Error::Output {
        path: "quicklook".into(),
        message: e.to_string(),
    })
}

/// The quicklook image: (rgb, width, height).
pub(crate) fn render(
    ql: &Quicklook,
    prov: &Provenance,
    grid: &OutputGrid,
    figures: Figures,
) -> Result<(Vec<u8>, usize, usize)> {
    let max = ql.q.iter().copied().max().unwrap_or(0);
    let min = match figures.min {
        0 | u64::MAX => 1,
        m => m.min(u32::MAX as u64) as u32,
    };
    let kind = ql.meta.kind;
    let colours = Colours {
        kind,
        mask: (ql.bytes_per_pixel == 1 && max <= 1 && kind != RasterKind::Percent)
            || kind == RasterKind::States,
        min,
        max,
    };
    let at = Layout::new(ql.qw, ql.qh);
    let mut buf = vec![0u8; at.w * at.h * 3];
    for px in buf.chunks_exact_mut(3) {
        px.copy_from_slice(&PAPER);
    }
    paint_map(ql, &at, colours, &mut buf);
    {
        let area =
            BitMapBackend::with_buffer(&mut buf, (at.w as u32, at.h as u32)).into_drawing_area();
        draw_title(&area, &at, prov)?;
        draw_axes(&area, &at, grid, ql.k)?;
        let ly = at.map().1 .1 + 30;
        draw_legend(&area, &at, ly, ql, colours, figures, grid.geotransform()[1])?;
        draw_caption(&area, &at, ly, grid, ql.k)?;
        drawn(area.present())?;
    }
    Ok((buf, at.w, at.h))
}

/// The map, pixel by pixel.
fn paint_map(ql: &Quicklook, at: &Layout, c: Colours, buf: &mut [u8]) {
    let (qw, q) = (ql.qw, &ql.q);
    for y in 0..ql.qh {
        for x in 0..qw {
            let v = q[y * qw + x];
            let seen = ql.observed.as_ref().is_none_or(|o| o[y * qw + x] > 0);
            let colour = if c.mask {
                match (v > 0, seen) {
                    (true, _) => WET,
                    (false, true) => DRY,
                    (false, false) => UNSEEN,
                }
            } else if (c.kind == RasterKind::Date || v == 0) && !seen {
                UNSEEN
            } else {
                ramp(v, c.min, c.max)
            };
            buf[((at.mt + y) * at.w + at.ml + x) * 3..][..3].copy_from_slice(&colour);
        }
    }
}

/// Title (with the dates) and subtitle (catalogue, asset, items).
fn draw_title(area: &Area, at: &Layout, prov: &Provenance) -> Result<()> {
    let x = at.ml as i32;
    let title = match prov.dates() {
        Some(dates) => format!("{} — {dates}", prov.title),
        None => prov.title.clone(),
    };
    drawn(area.draw_text(&title, &bold(20.0), (x, 10)))?;
    let mut sub = Vec::new();
    if !prov.source.is_empty() {
        sub.push(prov.source.clone());
    }
    if !prov.asset.is_empty() {
        sub.push(format!("asset {}", prov.asset));
    }
    if prov.items > 0 {
        sub.push(format!("{} items", prov.items));
    }
    drawn(area.draw_text(&sub.join(" · "), &font(13.0), (x, 38)))
}

/// The frame, ticks in projected coordinates and the scale bar (`k`:
/// grid pixels per quicklook pixel).
fn draw_axes(area: &Area, at: &Layout, grid: &OutputGrid, k: usize) -> Result<()> {
    let ((mlx, mty), (x1, y1)) = at.map();
    let (qw, qh) = (at.qw, at.qh);
    drawn(area.draw(&Rectangle::new(
        [(mlx - 1, mty - 1), (x1, y1)],
        BLACK.stroke_width(1),
    )))?;
    let gt = grid.geotransform();
    let px_m = gt[1] * k as f64; // metres per quicklook pixel
    let step = nice(qw.max(qh) as f64 * px_m / 5.0);
    let small = font(11.0);
    let mut t = (gt[0] / step).ceil() * step;
    while t <= gt[0] + qw as f64 * px_m {
        let x = mlx + ((t - gt[0]) / px_m) as i32;
        drawn(area.draw(&PathElement::new([(x, y1), (x, y1 + 5)], BLACK)))?;
        drawn(area.draw_text(&format!("{}", t / 1000.0), &small, (x - 18, y1 + 8)))?;
        t += step;
    }
    let mut t = (gt[3] / step).floor() * step;
    while t >= gt[3] - qh as f64 * px_m {
        let y = mty + ((gt[3] - t) / px_m) as i32;
        drawn(area.draw(&PathElement::new([(mlx - 6, y), (mlx - 1, y)], BLACK)))?;
        drawn(area.draw_text(&format!("{}", t / 1000.0), &small, (4, y - 6)))?;
        t -= step;
    }
    drawn(area.draw_text("km (map CRS)", &small, (4, mty - 16)))?;
    // scale bar, bottom left inside the map
    let bar_m = nice(qw as f64 * px_m / 4.0);
    let bar_px = (bar_m / px_m).round() as i32;
    let (bx, by) = (mlx + 12, y1 - 18);
    drawn(area.draw(&Rectangle::new(
        [(bx - 4, by - 18), (bx + bar_px + 4, by + 8)],
        WHITE.mix(0.8).filled(),
    )))?;
    drawn(area.draw(&Rectangle::new(
        [(bx, by), (bx + bar_px, by + 5)],
        BLACK.filled(),
    )))?;
    drawn(area.draw_text(&metres(bar_m), &small, (bx, by - 15)))
}

/// The legend at height `ly`: the classes of a mask (with the flooded km²),
/// or the ramp's range; swatches for 0 and the never observed.
fn draw_legend(
    area: &Area,
    at: &Layout,
    ly: i32,
    ql: &Quicklook,
    c: Colours,
    figures: Figures,
    res: f64,
) -> Result<()> {
    let mut lx = at.ml as i32;
    let km2 = |n: u64| n as f64 * res * res / 1e6;
    let mut entries: Vec<(RGBColor, String)> = Vec::new();
    if c.mask {
        let flooded = figures.ones_m2.map_or(km2(figures.ones), |m2| m2 / 1e6);
        entries.push((rgb(WET), format!("flooded ({flooded:.1} km²)")));
        if ql.observed.is_some() {
            entries.push((rgb(DRY), "observed, not flooded".into()));
        } else {
            entries.push((rgb(DRY), "not flooded or not observed".into()));
        }
    } else {
        // a colour ramp with its range, then swatches for 0 (and the unseen)
        let (min, max) = (c.min, c.max);
        let rw = 160;
        for i in 0..rw {
            let v = min + (i as u32 * max.saturating_sub(min)) / (rw as u32 - 1).max(1);
            drawn(area.draw(&PathElement::new(
                [(lx + i, ly), (lx + i, ly + 12)],
                rgb(ramp(v, min, max)),
            )))?;
        }
        drawn(area.draw(&Rectangle::new(
            [(lx, ly), (lx + rw, ly + 12)],
            BLACK.stroke_width(1),
        )))?;
        let label = match c.kind {
            RasterKind::Date => format!("{} .. {} (flood date)", day_label(min), day_label(max)),
            RasterKind::Percent => format!("{min} .. {max} % of observations flooded"),
            RasterKind::Count => format!("{min} .. {max} slices"),
            RasterKind::Values | RasterKind::Mask | RasterKind::States => {
                format!("{min} .. {max} (value per pixel)")
            }
        };
        drawn(area.draw_text(&label, &font(13.0), (lx + rw + 8, ly - 1)))?;
        lx += rw + 8 + (label.chars().count() as i32) * 7 + 24;
        if c.kind != RasterKind::Date {
            entries.push((rgb(DRY), "0".into()));
        }
    }
    if ql.observed.is_some() {
        let label = if c.kind == RasterKind::Date {
            "never flooded"
        } else {
            "never observed"
        };
        entries.push((rgb(UNSEEN), label.into()));
    }
    for (colour, label) in &entries {
        drawn(area.draw(&Rectangle::new(
            [(lx, ly), (lx + 16, ly + 12)],
            colour.filled(),
        )))?;
        drawn(area.draw(&Rectangle::new(
            [(lx, ly), (lx + 16, ly + 12)],
            BLACK.stroke_width(1),
        )))?;
        drawn(area.draw_text(label, &font(13.0), (lx + 22, ly - 1)))?;
        lx += 22 + (label.chars().count() as i32) * 7 + 24;
    }
    Ok(())
}

/// The caption under the legend: grid, corners in lon/lat, the tool.
fn draw_caption(area: &Area, at: &Layout, ly: i32, grid: &OutputGrid, k: usize) -> Result<()> {
    let x = at.ml as i32;
    let mut cap = format!(
        "grid {} x {} px at {} m",
        grid.width,
        grid.height,
        grid.geotransform()[1]
    );
    if k > 1 {
        cap.push_str(&format!(" (shown 1:{k}, block maxima)"));
    }
    if let Some(c) = corners_lonlat(grid) {
        cap.push_str(&format!(" · {c}"));
    }
    drawn(area.draw_text(&cap, &font(12.0), (x, ly + 26)))?;
    drawn(area.draw_text(
        &format!("made with floodsql {}", env!("CARGO_PKG_VERSION")),
        &font(12.0),
        (x, ly + 46),
    ))
}

/// Writes the quicklook PNG at `out` (a staged file; messages name `named`).
pub(crate) fn write_png(
    ql: &Quicklook,
    prov: &Provenance,
    grid: &OutputGrid,
    figures: Figures,
    out: &Path,
    named: &Path,
) -> Result<()> {
    let (rgb, w, h) = render(ql, prov, grid, figures)?;
    write_rgb(&rgb, w, h, out, named)
}

/// Encodes an RGB buffer (`w` x `h`, row-major) as a PNG at `out` (a staged
/// file; messages name `named`), with GDAL's PNG driver.
pub(crate) fn write_rgb(rgb: &[u8], w: usize, h: usize, out: &Path, named: &Path) -> Result<()> {
    let mem = DriverManager::get_driver_by_name("MEM")?;
    let ds = mem.create_with_band_type::<u8, _>("", w, h, 3)?;
    for b in 0..3 {
        let plane: Vec<u8> = rgb.iter().skip(b).step_by(3).copied().collect();
        ds.rasterband(b + 1)?
            .write((0, 0), (w, h), &mut Buffer::new((w, h), plane))?;
    }
    let png = DriverManager::get_driver_by_name("PNG")?;
    ds.create_copy(&png, out, &RasterCreationOptions::new())
        .map_err(|e| Error::Gdal(format!("writing PNG '{}': {e}", named.display())))?;
    Ok(())
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
        let grid = OutputGrid {
            crs: "EPSG:32642".into(),
            res: 20.0,
            col0: 100,
            row0: 2000,
            width: 4,
            height: 4,
        };
        let (rgb, w, h) = render(&ql, &Provenance::default(), &grid, Figures::default()).unwrap();
        assert_eq!(rgb.len(), w * h * 3);
    }
}
