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
use crate::output::lettering::{line_height, measure, Lettering};
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
    /// (`bytes_per_pixel` each, little-endian). Each row is taken a block's
    /// run of pixels at a time (no division per pixel).
    pub(crate) fn add(&mut self, x: usize, y: usize, w: usize, px: &[u8], bytes_per_pixel: usize) {
        self.bytes_per_pixel = bytes_per_pixel;
        let (k, qw, qh) = (self.k, self.qw, self.qh);
        let nodata = self.meta.nodata.map(u32::from);
        if nodata.is_some() && self.observed.is_none() {
            self.observed = Some(vec![0; qw * qh]);
        }
        let value = |v: &[u8]| match v {
            [a] => *a as u32,
            [a, b] => u16::from_le_bytes([*a, *b]) as u32,
            _ => 0,
        };
        for (r, row) in px.chunks_exact(w * bytes_per_pixel).enumerate() {
            let at = ((y + r) / k) * qw;
            if bytes_per_pixel == 1 {
                // one byte a pixel: branch-free folds the compiler vectorises
                for (qx, (c0, c1)) in runs(x, w, k) {
                    let seg = &row[c0..c1];
                    let i = at + qx;
                    let m = match nodata {
                        Some(n) => {
                            let (m, seen) = seg.iter().fold((0u8, false), |(m, seen), &v| {
                                let valid = v as u32 != n;
                                (m.max(v * valid as u8), seen | valid)
                            });
                            if !seen {
                                continue;
                            }
                            if let Some(o) = self.observed.as_mut() {
                                o[i] = 1;
                            }
                            m
                        }
                        None => seg.iter().fold(0u8, |m, &v| m.max(v)),
                    };
                    self.q[i] = self.q[i].max(m as u32);
                }
                continue;
            }
            for (qx, (c0, c1)) in runs(x, w, k) {
                let seg = row[c0 * bytes_per_pixel..c1 * bytes_per_pixel]
                    .chunks_exact(bytes_per_pixel)
                    .map(value);
                let i = at + qx;
                let m = match nodata {
                    Some(n) => {
                        let Some(m) = seg.filter(|&v| v != n).max() else {
                            continue;
                        };
                        if let Some(o) = self.observed.as_mut() {
                            o[i] = 1;
                        }
                        m
                    }
                    None => seg.max().unwrap_or(0),
                };
                self.q[i] = self.q[i].max(m);
            }
        }
    }

    /// Folds in a chunk's `observed` bytes (0/1 per pixel) at (x, y).
    pub(crate) fn add_observed(&mut self, x: usize, y: usize, w: usize, obs: &[u8]) {
        let (k, qw, qh) = (self.k, self.qw, self.qh);
        let o = self.observed.get_or_insert_with(|| vec![0; qw * qh]);
        for (r, row) in obs.chunks_exact(w).enumerate() {
            let orow = &mut o[((y + r) / k) * qw..][..qw];
            for (qx, (c0, c1)) in runs(x, w, k) {
                let m = row[c0..c1].iter().fold(0u8, |a, &b| a.max(b));
                orow[qx] = orow[qx].max(m);
            }
        }
    }
}

/// The runs of a row of `w` pixels starting at column `x` that fall in one
/// quicklook column each (`k` pixels per column): (column, (first, end)) with
/// `first..end` indices into the row.
fn runs(x: usize, w: usize, k: usize) -> impl Iterator<Item = (usize, (usize, usize))> {
    let first = x / k;
    let last = (x + w).div_ceil(k);
    (first..last).map(move |q| {
        let c0 = (q * k).max(x) - x;
        let c1 = ((q + 1) * k).min(x + w) - x;
        (q, (c0, c1))
    })
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

/// Between a grid's CRS and lon/lat (WGS 84, lon first), both ways.
struct LonLat {
    to: gdal::spatial_ref::CoordTransform,
    from: gdal::spatial_ref::CoordTransform,
}

impl LonLat {
    fn new(grid: &OutputGrid) -> Option<Self> {
        use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
        let mut map = crate::raster::grid::spatial_ref(&grid.crs).ok()?;
        let mut wgs84 = SpatialRef::from_epsg(4326).ok()?;
        wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        map.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        Some(Self {
            to: CoordTransform::new(&map, &wgs84).ok()?,
            from: CoordTransform::new(&wgs84, &map).ok()?,
        })
    }

    /// Map coordinates to lon/lat, in place (`None` when PROJ fails).
    fn lonlat(&self, xs: &mut [f64], ys: &mut [f64]) -> Option<()> {
        let mut zs = vec![0.0; xs.len()];
        self.to.transform_coords(xs, ys, &mut zs).ok()
    }

    /// Lon/lat to map coordinates, in place.
    fn map(&self, xs: &mut [f64], ys: &mut [f64]) -> Option<()> {
        let mut zs = vec![0.0; xs.len()];
        self.from.transform_coords(xs, ys, &mut zs).ok()
    }
}

/// A longitude or latitude as a label: "68.05°E", with the decimals `step`
/// needs.
fn degrees(v: f64, step: f64, east_west: bool) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize + usize::from(step_has_half(step));
    let hemi = match (east_west, v < 0.0) {
        (true, false) => "E",
        (true, true) => "W",
        (false, false) => "N",
        (false, true) => "S",
    };
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v.abs() };
    format!("{v:.decimals$}°{hemi}")
}

/// Whether a step such as 0.25 or 2.5 needs one decimal more than its power
/// of ten.
fn step_has_half(step: f64) -> bool {
    let p = 10f64.powf(step.log10().floor());
    let m = step / p;
    (m - m.round()).abs() > 1e-6
}

/// A graticule step in degrees of about `span / 4`.
fn degree_step(span: f64) -> f64 {
    const STEPS: [f64; 15] = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
    ];
    STEPS
        .into_iter()
        .rev()
        .find(|s| span / s >= 3.0)
        .unwrap_or(0.001)
}

/// The part of the segment a-b inside the rectangle [x0, x1] x [y0, y1]
/// (Liang–Barsky), if any.
type Seg = ((f64, f64), (f64, f64));
fn clip(a: (f64, f64), b: (f64, f64), r: [f64; 4]) -> Option<Seg> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - r[0]),
        (dx, r[2] - a.0),
        (-dy, a.1 - r[1]),
        (dy, r[3] - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
            continue;
        }
        let t = q / p;
        if p < 0.0 {
            t0 = t0.max(t);
        } else {
            t1 = t1.min(t);
        }
        if t0 > t1 {
            return None;
        }
    }
    Some((
        (a.0 + t0 * dx, a.1 + t0 * dy),
        (a.0 + t1 * dx, a.1 + t1 * dy),
    ))
}

/// A lon/lat graticule over the map: its lines as image-pixel segments,
/// and the labels of the meridians (along the top edge) and the parallels
/// (along the right edge).
#[derive(Debug, Default)]
struct Graticule {
    segments: Vec<Seg>,
    /// (label, x) of each meridian crossing the top edge.
    top: Vec<(String, i32)>,
    /// (label, y) of each parallel crossing the right edge.
    right: Vec<(String, i32)>,
}

/// The graticule of `grid` drawn in the map of `at` (`k`: grid pixels per
/// quicklook pixel); empty when the CRS cannot be taken to lon/lat.
fn graticule(grid: &OutputGrid, at: &Layout, k: usize) -> Graticule {
    let Some(t) = LonLat::new(grid) else {
        return Graticule::default();
    };
    let gt = grid.geotransform();
    let px_m = gt[1] * k as f64;
    let ((mx0, my0), (mx1, my1)) = at.map();
    let rect = [mx0 as f64, my0 as f64, mx1 as f64, my1 as f64];
    // the map's edge in lon/lat gives the range to draw over
    let n = 64;
    let (w_m, h_m) = (grid.width as f64 * gt[1], grid.height as f64 * gt[1]);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..=n {
        let f = i as f64 / n as f64;
        for (x, y) in [(f, 0.0), (f, 1.0), (0.0, f), (1.0, f)] {
            xs.push(gt[0] + x * w_m);
            ys.push(gt[3] - y * h_m);
        }
    }
    if t.lonlat(&mut xs, &mut ys).is_none() {
        return Graticule::default();
    }
    let range = |v: &[f64]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            })
    };
    let ((lon0, lon1), (lat0, lat1)) = (range(&xs), range(&ys));
    let step = degree_step((lon1 - lon0).min(lat1 - lat0));
    let to_px = |x: f64, y: f64| {
        (
            mx0 as f64 + (x - gt[0]) / px_m,
            my0 as f64 + (gt[3] - y) / px_m,
        )
    };
    let mut g = Graticule::default();
    // one line per meridian and per parallel, traced through PROJ
    let trace = |lon_const: bool, v: f64| -> Vec<Seg> {
        let (a, b) = if lon_const {
            (lat0, lat1)
        } else {
            (lon0, lon1)
        };
        let (mut lx, mut ly): (Vec<f64>, Vec<f64>) = (0..=n)
            .map(|i| {
                let u = a + (b - a) * i as f64 / n as f64;
                if lon_const {
                    (v, u)
                } else {
                    (u, v)
                }
            })
            .unzip();
        if t.map(&mut lx, &mut ly).is_none() {
            return Vec::new();
        }
        let pts: Vec<(f64, f64)> = lx.iter().zip(&ly).map(|(&x, &y)| to_px(x, y)).collect();
        pts.windows(2)
            .filter_map(|p| clip(p[0], p[1], rect))
            .collect()
    };
    let mut lon = (lon0 / step).ceil() * step;
    while lon <= lon1 {
        let segs = trace(true, lon);
        // the label goes where the meridian meets the top edge
        let top = segs
            .iter()
            .flat_map(|(a, b)| [*a, *b])
            .find(|p| (p.1 - rect[1]).abs() < 1.0);
        if let Some((x, _)) = top {
            g.top.push((degrees(lon, step, true), x.round() as i32));
        }
        g.segments.extend(segs);
        lon += step;
    }
    let mut lat = (lat0 / step).ceil() * step;
    while lat <= lat1 {
        let segs = trace(false, lat);
        let edge = segs
            .iter()
            .flat_map(|(a, b)| [*a, *b])
            .filter(|p| (p.0 - rect[2]).abs() < 1.0)
            .map(|p| p.1)
            .next();
        if let Some(y) = edge {
            g.right.push((degrees(lat, step, false), y.round() as i32));
        }
        g.segments.extend(segs);
        lat += step;
    }
    g
}

/// The corners of `grid` in lon/lat ("NW 68.010°E 27.060°N, SE …"), when
/// the CRS can be transformed.
fn corners_lonlat(grid: &OutputGrid) -> Option<String> {
    let t = LonLat::new(grid)?;
    let gt = grid.geotransform();
    let (x0, y0) = (gt[0], gt[3]);
    let (x1, y1) = (
        x0 + grid.width as f64 * gt[1],
        y0 + grid.height as f64 * gt[5],
    );
    let mut xs = [x0, x1];
    let mut ys = [y0, y1];
    t.lonlat(&mut xs, &mut ys)?;
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

/// Text sizes (px) of the quicklook.
const TITLE: f64 = 20.0;
const BODY: f64 = 13.0;
const SMALL: f64 = 11.0;
const CAPTION: f64 = 12.0;

/// Where things sit in the quicklook image: margins around the map, sized
/// to what they hold (no empty band).
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

/// Gap between blocks of text and the map.
const GAP: usize = 8;

impl Layout {
    /// The layout of a `qw` x `qh` map whose caption has `caption_lines`.
    fn new(qw: usize, qh: usize, caption_lines: usize) -> Self {
        let line = |size: f64| line_height(size, false) as usize;
        let ml = 64usize;
        // title, subtitle, the meridians' labels, the ticks
        let mt = 8 + line(TITLE) + 4 + line(BODY) + GAP + line(SMALL) + 6;
        // the tick labels, the legend, the caption
        let mb =
            6 + line(SMALL) + GAP + line(BODY) + GAP + caption_lines * (line(CAPTION) + 4) + GAP;
        Self {
            w: Self::width(qw),
            h: mt + qh + mb,
            qw,
            qh,
            ml,
            mt,
        }
    }

    /// The image width for a map `qw` wide.
    fn width(qw: usize) -> usize {
        (64 + qw + 64).max(760)
    }

    /// The map's top-left and bottom-right corners in image pixels.
    fn map(&self) -> ((i32, i32), (i32, i32)) {
        (
            (self.ml as i32, self.mt as i32),
            ((self.ml + self.qw) as i32, (self.mt + self.qh) as i32),
        )
    }

    /// Where the legend's row starts (y).
    fn legend_y(&self) -> i32 {
        self.map().1 .1 + (6 + line_height(SMALL, false) as usize + GAP) as i32
    }

    /// Where the caption starts (y).
    fn caption_y(&self) -> i32 {
        self.legend_y() + (line_height(BODY, false) as usize + GAP) as i32
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

type Area<'a> = DrawingArea<Lettering<BitMapBackend<'a>>, Shift>;

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
    let caption = wrap(&caption(grid, ql.k), Layout::width(ql.qw) as u32 - 64 - 16);
    let at = Layout::new(ql.qw, ql.qh, caption.len());
    let mut buf = vec![0u8; at.w * at.h * 3];
    for px in buf.chunks_exact_mut(3) {
        px.copy_from_slice(&PAPER);
    }
    paint_map(ql, &at, colours, &mut buf);
    {
        let area = Lettering(BitMapBackend::with_buffer(
            &mut buf,
            (at.w as u32, at.h as u32),
        ))
        .into_drawing_area();
        draw_title(&area, &at, prov)?;
        draw_graticule(&area, &at, &graticule(grid, &at, ql.k))?;
        draw_axes(&area, &at, grid, ql.k)?;
        draw_legend(&area, &at, ql, colours, figures, grid.geotransform()[1])?;
        let mut y = at.caption_y();
        for line in &caption {
            drawn(area.draw_text(line, &font(CAPTION), (at.ml as i32, y)))?;
            y += line_height(CAPTION, false) as i32 + 4;
        }
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
    drawn(area.draw_text(&title, &bold(TITLE), (x, 8)))?;
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
    let y = 8 + line_height(TITLE, true) as i32 + 4;
    drawn(area.draw_text(&sub.join(" · "), &font(BODY), (x, y)))
}

/// The graticule's lines (thin, translucent) and its labels outside the
/// frame: meridians above it, parallels right of it, none overlapping.
fn draw_graticule(area: &Area, at: &Layout, g: &Graticule) -> Result<()> {
    let line = RGBColor(40, 40, 40).mix(0.45);
    let p = |q: (f64, f64)| (q.0.round() as i32, q.1.round() as i32);
    for &(a, b) in &g.segments {
        drawn(area.draw(&PathElement::new([p(a), p(b)], line)))?;
    }
    let ((_, top), (right, _)) = at.map();
    let small = font(SMALL);
    let label_h = line_height(SMALL, false) as i32;
    let mut free_from = i32::MIN;
    for (label, x) in &g.top {
        let w = measure(label, SMALL, false).0 as i32;
        if x - w / 2 < free_from {
            continue;
        }
        free_from = x + w / 2 + 8;
        drawn(area.draw(&PathElement::new([(*x, top - 5), (*x, top - 1)], BLACK)))?;
        drawn(area.draw_text(label, &small, (x - w / 2, top - 6 - label_h)))?;
    }
    let mut free_from = i32::MIN;
    for (label, y) in g.right.iter().rev() {
        if y - label_h / 2 < free_from {
            continue;
        }
        free_from = y + label_h / 2 + 4;
        drawn(area.draw(&PathElement::new([(right, *y), (right + 4, *y)], BLACK)))?;
        drawn(area.draw_text(label, &small, (right + 6, y - label_h / 2)))?;
    }
    Ok(())
}

/// The frame, ticks in projected km along the left and bottom edges, and
/// the scale bar (`k`: grid pixels per quicklook pixel).
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
    let small = font(SMALL);
    let label_h = line_height(SMALL, false) as i32;
    let km = |t: f64| {
        let v = t / 1000.0;
        if (v - v.round()).abs() < 1e-9 {
            format!("{}", v.round() as i64)
        } else {
            format!("{v}")
        }
    };
    let mut t = (gt[0] / step).ceil() * step;
    while t <= gt[0] + qw as f64 * px_m {
        let x = mlx + ((t - gt[0]) / px_m) as i32;
        let label = km(t);
        let w = measure(&label, SMALL, false).0 as i32;
        drawn(area.draw(&PathElement::new([(x, y1), (x, y1 + 5)], BLACK)))?;
        drawn(area.draw_text(&label, &small, (x - w / 2, y1 + 6)))?;
        t += step;
    }
    let mut t = (gt[3] / step).floor() * step;
    while t >= gt[3] - qh as f64 * px_m {
        let y = mty + ((gt[3] - t) / px_m) as i32;
        let label = km(t);
        let w = measure(&label, SMALL, false).0 as i32;
        drawn(area.draw(&PathElement::new([(mlx - 6, y), (mlx - 1, y)], BLACK)))?;
        drawn(area.draw_text(&label, &small, (mlx - 8 - w, y - label_h / 2)))?;
        t -= step;
    }
    drawn(area.draw_text(
        "km",
        &small,
        (
            mlx - 8 - measure("km", SMALL, false).0 as i32,
            mty - 6 - label_h,
        ),
    ))?;
    // scale bar, bottom left inside the map
    let bar_m = nice(qw as f64 * px_m / 4.0);
    let bar_px = (bar_m / px_m).round() as i32;
    let (bx, by) = (mlx + 12, y1 - 18);
    drawn(area.draw(&Rectangle::new(
        [(bx - 4, by - label_h - 4), (bx + bar_px + 4, by + 8)],
        WHITE.mix(0.8).filled(),
    )))?;
    drawn(area.draw(&Rectangle::new(
        [(bx, by), (bx + bar_px, by + 5)],
        BLACK.filled(),
    )))?;
    drawn(area.draw_text(&metres(bar_m), &small, (bx, by - label_h - 2)))
}

/// The legend's row: the classes of a mask (with the flooded km²), or the
/// ramp's range; swatches for 0 and the never observed.
fn draw_legend(
    area: &Area,
    at: &Layout,
    ql: &Quicklook,
    c: Colours,
    figures: Figures,
    res: f64,
) -> Result<()> {
    let ly = at.legend_y();
    let text_y = ly - 2;
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
        drawn(area.draw_text(&label, &font(BODY), (lx + rw + 8, text_y)))?;
        lx += rw + 8 + measure(&label, BODY, false).0 as i32 + 24;
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
        drawn(area.draw_text(label, &font(BODY), (lx + 22, text_y)))?;
        lx += 22 + measure(label, BODY, false).0 as i32 + 24;
    }
    Ok(())
}

/// The caption's parts: the grid, its CRS and what the axes are in, the
/// corners in lon/lat, the tool.
fn caption(grid: &OutputGrid, k: usize) -> Vec<String> {
    let mut parts = vec![format!(
        "grid {} x {} px at {} m{}",
        grid.width,
        grid.height,
        grid.geotransform()[1],
        if k > 1 {
            format!(" (shown 1:{k}, block maxima)")
        } else {
            String::new()
        }
    )];
    parts.push(format!(
        "CRS {}, axes in km; graticule in degrees (WGS 84)",
        crate::crs::map_name(&grid.crs)
    ));
    if let Some(c) = corners_lonlat(grid) {
        parts.push(c);
    }
    parts.push(format!("made with floodsql {}", env!("CARGO_PKG_VERSION")));
    parts
}

/// `parts` joined by " · " into lines at most `width` px wide (a part
/// wider than that gets a line of its own).
fn wrap(parts: &[String], width: u32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for p in parts {
        match lines.last_mut() {
            Some(l) if measure(&format!("{l} · {p}"), CAPTION, false).0 <= width => {
                l.push_str(" · ");
                l.push_str(p);
            }
            _ => lines.push(p.clone()),
        }
    }
    lines
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

    /// A chunk to fold: x, y, width, pixels, observed bytes.
    type Chunk = (usize, usize, usize, Vec<u8>, Option<Vec<u8>>);

    /// The quicklook as a per-pixel loop would fold it: (maxima, observed).
    fn naive(
        dims: (usize, usize),
        chunks: &[Chunk],
        bpp: usize,
        nodata: Option<u32>,
    ) -> (Vec<u32>, Vec<u8>) {
        let k = dims.0.max(dims.1).div_ceil(MAX_SIDE).max(1);
        let qw = dims.0.div_ceil(k);
        let qh = dims.1.div_ceil(k);
        let (mut q, mut o) = (vec![0u32; qw * qh], vec![0u8; qw * qh]);
        for (x, y, w, px, obs) in chunks {
            for (i, v) in px.chunks_exact(bpp).enumerate() {
                let (c, r) = (i % w, i / w);
                let cell = ((y + r) / k) * qw + (x + c) / k;
                let v = if bpp == 1 {
                    v[0] as u32
                } else {
                    u16::from_le_bytes([v[0], v[1]]) as u32
                };
                if Some(v) == nodata {
                    continue;
                }
                if nodata.is_some() {
                    o[cell] = 1;
                }
                q[cell] = q[cell].max(v);
            }
            for (i, &b) in obs.iter().flatten().enumerate() {
                let (c, r) = (i % w, i / w);
                let cell = ((y + r) / k) * qw + (x + c) / k;
                o[cell] = o[cell].max(b);
            }
        }
        (q, o)
    }

    #[test]
    fn block_runs_fold_as_pixel_by_pixel() {
        // chunks at offsets that do not fall on block edges, 1- and 2-byte
        // pixels, with and without nodata, with an observed column
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        };
        for (bpp, nodata) in [(1, None), (1, Some(255u32)), (2, None), (2, Some(0))] {
            let dims = (3100, 1234); // k = 4
            let mut chunks = Vec::new();
            for (x, y, w, h) in [(0, 0, 1000, 7), (1001, 5, 333, 9), (2999, 1230, 101, 4)] {
                let px: Vec<u8> = (0..w * h * bpp).map(|_| next() % 4 * 85).collect();
                let obs: Vec<u8> = (0..w * h).map(|_| next() % 2).collect();
                chunks.push((x, y, w, px, Some(obs)));
            }
            let mut ql = Quicklook::new(dims.0, dims.1);
            ql.set_meta(PixelMeta {
                nodata: nodata.map(|n| n as u16),
                ..PixelMeta::default()
            });
            for (x, y, w, px, obs) in &chunks {
                ql.add(*x, *y, *w, px, bpp);
                if let Some(o) = obs {
                    ql.add_observed(*x, *y, *w, o);
                }
            }
            let (q, o) = naive(dims, &chunks, bpp, nodata);
            assert_eq!(ql.q, q, "{bpp} {nodata:?}");
            assert_eq!(ql.observed.unwrap(), o, "{bpp} {nodata:?}");
        }
    }

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

    /// A 600 x 600 px UTM 42N grid at 50 m centred on easting 500 000, the
    /// zone's central meridian (69°E), near 27°N.
    fn utm_grid() -> OutputGrid {
        OutputGrid {
            crs: "EPSG:32642".into(),
            res: 50.0,
            col0: (500_000 - 15_000) / 50,
            row0: 3_000_000 / 50,
            width: 600,
            height: 600,
        }
    }

    #[test]
    fn graticule_meridians_meet_the_top_where_proj_says() {
        // UTM's central meridian is the grid line of easting 500 000: its
        // label sits over that column, whatever the rest of the layout
        let grid = utm_grid();
        let at = Layout::new(600, 600, 2);
        let g = graticule(&grid, &at, 1);
        assert!(g.top.len() >= 2 && g.right.len() >= 2, "{g:?}");
        let x_69 = at.ml as i32 + (500_000 - grid.col0 as i32 * 50) / 50;
        let (label, x) = g
            .top
            .iter()
            .find(|(l, _)| l.starts_with("69.0"))
            .unwrap_or_else(|| panic!("no 69°E meridian in {:?}", g.top));
        assert!(label.ends_with("°E"), "{label}");
        assert!(
            (x - x_69).abs() <= 1,
            "69°E at x {x}, easting 500 000 at {x_69}"
        );
        // parallels are labelled from north to south down the right edge,
        // each a different latitude
        let ys: Vec<i32> = g.right.iter().map(|(_, y)| *y).collect();
        assert!(ys.windows(2).all(|p| p[0] > p[1]), "{:?}", g.right);
        assert!(g.right.iter().all(|(l, _)| l.ends_with("°N")));
        // every segment lies inside the map's frame
        let ((x0, y0), (x1, y1)) = at.map();
        for (a, b) in &g.segments {
            for p in [a, b] {
                assert!(p.0 >= x0 as f64 - 0.01 && p.0 <= x1 as f64 + 0.01);
                assert!(p.1 >= y0 as f64 - 0.01 && p.1 <= y1 as f64 + 0.01);
            }
        }
    }

    #[test]
    fn no_empty_band_and_the_crs_named() {
        let grid = utm_grid();
        let mut ql = Quicklook::new(600, 600);
        ql.add(0, 0, 2, &[1, 0, 0, 1], 1);
        let (rgb, w, h) = render(&ql, &Provenance::default(), &grid, Figures::default()).unwrap();
        // the last row with anything on it is within a margin of the bottom
        let last = (0..h)
            .rev()
            .find(|y| rgb[y * w * 3..][..w * 3].iter().any(|&v| v != 255))
            .unwrap();
        assert!(
            h - last <= 2 * GAP,
            "{} empty rows at the bottom",
            h - last - 1
        );
        let cap = caption(&grid, 1).join(" · ");
        assert!(
            cap.contains("CRS WGS 84 / UTM zone 42N (EPSG:32642)"),
            "{cap}"
        );
        // lines wrap to the width they are given, and keep every part
        let lines = wrap(&caption(&grid, 1), 300);
        assert!(lines.len() >= 3);
        assert!(lines
            .iter()
            .all(|l| measure(l, CAPTION, false).0 <= 300 || !l.contains(" · ")));
        assert_eq!(lines.join(" · "), cap);
    }

    #[test]
    fn degree_labels() {
        assert_eq!(degrees(68.1, 0.1, true), "68.1°E");
        assert_eq!(degrees(-0.25, 0.25, true), "0.25°W");
        assert_eq!(degrees(27.0, 0.05, false), "27.00°N");
        assert_eq!(degrees(-12.0, 2.0, false), "12°S");
        assert_eq!(degree_step(0.35), 0.1);
        assert_eq!(degree_step(4.0), 1.0);
    }
}
