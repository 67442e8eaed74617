//! True pixel areas: the `pixel_areas` column of `flood_chunks` and the
//! functions that use it.
//!
//! On a projected grid a pixel's ground area is not `res²`: the Equi7 grids
//! are equidistant, not equal-area, and 20 m pixels far from the projection
//! centre cover a few percent more or less than 400 m². floodsql computes,
//! when a scan is planned, the **ellipsoidal area of single pixels** (the
//! geodesic polygon of their four corners on the CRS's ellipsoid) on a
//! lattice of node pixels per chunk — every [`NODE_STEP`] pixels and the
//! last row/column — and ships it with every (slice, chunk) row as a small
//! binary value (this module's format). Between nodes the area is linear
//! (bilinear over a cell of nodes): the area of a pixel is a smooth
//! function of its position, so interpolating over 2 km at 20 m is exact to
//! about 1e-8 relative — far below any figure shown.
//!
//! * `area_km2(pixels, pixel_areas [, value = 1])`: km² of the pixels equal
//!   to `value` (1- or 2-byte pixels);
//! * `observed_km2(pixels, pixel_areas [, nodata = 255])`: km² of the pixels
//!   other than `nodata`;
//! * `grid_km2(pixel_areas)`: km² of the whole output grid (the scan's AOI
//!   snapped to pixels), the same in every row of a scan.
//!
//! Format (little-endian): `b"FSPA"`, version u8 = 1, 3 zero bytes; width,
//! height, nx, ny (u32); the grid's area in m² (f64); nx node columns and ny
//! node rows (u32, chunk-local pixel indices, increasing, first 0, last
//! width-1 / height-1); ny·nx node areas in m² (f64, row-major).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::pixel_agg::for_each_binary;

/// Pixels between two node pixels of the lattice.
pub const NODE_STEP: usize = 100;

const MAGIC: &[u8; 4] = b"FSPA";
const HEADER: usize = 4 + 4 + 16 + 8;

/// Node positions along an axis of `n` pixels: 0, step, 2·step, …, n-1.
pub fn node_positions(n: usize, step: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).step_by(step.max(1)).map(|i| i as u32).collect();
    if n > 0 && *v.last().unwrap_or(&0) != (n - 1) as u32 {
        v.push((n - 1) as u32);
    }
    v
}

/// The pixel areas of one chunk window, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelAreas {
    pub width: usize,
    pub height: usize,
    /// Area of the whole output grid, m².
    pub grid_m2: f64,
    pub xs: Vec<u32>,
    pub ys: Vec<u32>,
    /// Node areas, m², row-major (ys.len() rows of xs.len()).
    pub values: Vec<f64>,
}

impl PixelAreas {
    /// The binary value (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            HEADER + 4 * (self.xs.len() + self.ys.len()) + 8 * self.values.len(),
        );
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&[1, 0, 0, 0]);
        for v in [self.width, self.height, self.xs.len(), self.ys.len()] {
            b.extend_from_slice(&(v as u32).to_le_bytes());
        }
        b.extend_from_slice(&self.grid_m2.to_le_bytes());
        for v in self.xs.iter().chain(&self.ys) {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in &self.values {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decodes and checks a binary value.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let bad = |what: &str| {
            exec_err!(
                "pixel_areas: not a pixel_areas value ({what}); pass flood_chunks.pixel_areas"
            )
        };
        if b.len() < HEADER || &b[..4] != MAGIC {
            return bad("no header");
        }
        if b[4] != 1 {
            return bad("unknown version");
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let (width, height, nx, ny) = (u32_at(8), u32_at(12), u32_at(16), u32_at(20));
        let grid_m2 = f64::from_le_bytes(b[24..32].try_into().unwrap_or_default());
        if b.len() != HEADER + 4 * (nx + ny) + 8 * nx * ny || nx == 0 || ny == 0 {
            return bad("length");
        }
        let mut at = HEADER;
        let mut u32s = |n: usize| {
            let v: Vec<u32> = (0..n).map(|i| u32_at(at + 4 * i) as u32).collect();
            at += 4 * n;
            v
        };
        let (xs, ys) = (u32s(nx), u32s(ny));
        let values = b[at..]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let axis_ok = |v: &[u32], n: usize| {
            v[0] == 0
                && v.windows(2).all(|w| w[0] < w[1])
                && *v.last().unwrap_or(&0) as usize == n.saturating_sub(1)
        };
        if !axis_ok(&xs, width) || !axis_ok(&ys, height) {
            return bad("node positions");
        }
        Ok(Self {
            width,
            height,
            grid_m2,
            xs,
            ys,
            values,
        })
    }

    /// Calls `f(row, segments)` for each pixel row of the window:
    /// `segments` lists `(x0, end, a0, d)` — pixels `x0..end` of the row have
    /// areas `a0 + d * (x - x0)` m² (bilinear between nodes: linear along x
    /// between two node columns, each node's value interpolated along y).
    fn for_each_row_segments(&self, mut f: impl FnMut(usize, &[(usize, usize, f64, f64)])) {
        let nx = self.xs.len();
        let mut nodes = vec![0.0; nx];
        let mut segments = Vec::with_capacity(nx);
        let mut j = 0;
        for r in 0..self.height {
            while j + 1 < self.ys.len() - 1 && self.ys[j + 1] as usize <= r {
                j += 1;
            }
            let a = &self.values[j * nx..][..nx];
            let b = (j + 1 < self.ys.len()).then(|| &self.values[(j + 1) * nx..][..nx]);
            match b {
                Some(b) => {
                    let (y0, y1) = (self.ys[j] as f64, self.ys[j + 1] as f64);
                    let t = (r as f64 - y0) / (y1 - y0);
                    for i in 0..nx {
                        nodes[i] = a[i] + (b[i] - a[i]) * t;
                    }
                }
                None => nodes.copy_from_slice(a),
            }
            segments.clear();
            if nx == 1 {
                segments.push((0, self.width, nodes[0], 0.0));
            } else {
                for i in 0..nx - 1 {
                    let (x0, x1) = (self.xs[i] as usize, self.xs[i + 1] as usize);
                    let (v0, v1) = (nodes[i], nodes[i + 1]);
                    let d = (v1 - v0) / (x1 - x0) as f64;
                    let end = if i + 2 == nx { x1 + 1 } else { x1 };
                    segments.push((x0, end, v0, d));
                }
            }
            f(r, &segments);
        }
    }

    /// Calls `f(row, areas)` for each pixel row of the window, `areas` the
    /// m² of its `width` pixels (bilinear between nodes).
    pub fn for_each_row(&self, mut f: impl FnMut(usize, &[f64])) {
        let mut row = vec![0.0; self.width];
        self.for_each_row_segments(|r, segments| {
            for &(x0, end, v0, d) in segments {
                for (k, x) in (x0..end).enumerate() {
                    row[x] = v0 + d * k as f64;
                }
            }
            f(r, &row);
        });
    }

    /// m² of the pixels for which `keep(value)` holds; `pixels` holds 1 or 2
    /// bytes (little-endian) per pixel of the window.
    pub fn sum_where(&self, pixels: &[u8], keep: impl Fn(u16) -> bool) -> Result<f64> {
        let mut bins = [0.0; 2];
        self.sum_by(pixels, |v| keep(v) as usize, &mut bins)?;
        Ok(bins[1])
    }

    /// Adds each pixel's m² to `bins[class(value)]`, in one pass (`class`
    /// must return an index of `bins`); `pixels` as for [`Self::sum_where`].
    pub fn sum_by(
        &self,
        pixels: &[u8],
        class: impl Fn(u16) -> usize,
        bins: &mut [f64],
    ) -> Result<()> {
        let nb = bins.len();
        self.for_each_run(pixels, |v, _, m2| bins[class(v).min(nb - 1)] += m2)
    }

    /// Calls `f(value, n, m2)` for each run of one value in `pixels` (1 or
    /// 2 bytes per pixel, little-endian, of the window): `n` pixels of
    /// `value` covering `m2` m², runs in row-major order and cut at the
    /// lattice's node columns.
    ///
    /// Pixel values come in long runs (a chunk is mostly one class), and
    /// areas are linear along a row between node columns, so each run adds
    /// its closed-form sum (`n a0 + d (n k0 + n (n - 1) / 2)`) rather than
    /// `n` areas one by one; a run's end is found eight bytes at a time.
    pub fn for_each_run(&self, pixels: &[u8], mut f: impl FnMut(u16, usize, f64)) -> Result<()> {
        let n = self.width * self.height;
        let k = if pixels.len() == n {
            1
        } else if pixels.len() == 2 * n {
            2
        } else {
            return exec_err!(
                "pixel areas of a {}x{} window do not fit {} pixel bytes: pass the same row's (or chunk's) pixels and pixel_areas",
                self.width,
                self.height,
                pixels.len()
            );
        };
        let w = self.width;
        self.for_each_row_segments(|r, segments| {
            let row = &pixels[r * w * k..][..w * k];
            for &(x0, end, a0, d) in segments {
                let mut x = x0;
                while x < end {
                    // the run of one value starting at x, within the segment
                    let v = if k == 1 {
                        row[x] as u16
                    } else {
                        u16::from_le_bytes([row[2 * x], row[2 * x + 1]])
                    };
                    let e = run_end(row, x + 1, end, v, k);
                    let (n, k0) = ((e - x) as f64, (x - x0) as f64);
                    f(v, e - x, n * a0 + d * (n * k0 + n * (n - 1.0) / 2.0));
                    x = e;
                }
            }
        });
        Ok(())
    }
}

/// The first pixel at or after `x` and before `end` of `row` (`k` bytes per
/// pixel, little-endian) that is not `v`, or `end`: eight bytes compared at
/// once, the first differing byte found from the XOR's trailing zeros.
fn run_end(row: &[u8], mut x: usize, end: usize, v: u16, k: usize) -> usize {
    let pattern = if k == 1 {
        u64::from_le_bytes([v as u8; 8])
    } else {
        let [lo, hi] = v.to_le_bytes();
        u64::from_le_bytes([lo, hi, lo, hi, lo, hi, lo, hi])
    };
    let per_word = 8 / k;
    while x + per_word <= end {
        let bytes: [u8; 8] = row[x * k..][..8].try_into().unwrap_or_default();
        let diff = u64::from_le_bytes(bytes) ^ pattern;
        if diff != 0 {
            return x + diff.trailing_zeros() as usize / (8 * k);
        }
        x += per_word;
    }
    let at = |x: usize| {
        if k == 1 {
            row[x] as u16
        } else {
            u16::from_le_bytes([row[2 * x], row[2 * x + 1]])
        }
    };
    while x < end && at(x) == v {
        x += 1;
    }
    x
}

/// Which of the area functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    /// `area_km2(pixels, pixel_areas [, value])`
    Matching,
    /// `observed_km2(pixels, pixel_areas [, nodata])`
    Observed,
    /// `grid_km2(pixel_areas)`
    Grid,
}

/// `area_km2`, `observed_km2` or `grid_km2` (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AreaFunction {
    mode: Mode,
    signature: Signature,
    doc: Documentation,
}

impl AreaFunction {
    fn new(mode: Mode) -> Self {
        let (desc, syntax, example) = match mode {
            Mode::Matching => (
                "Ellipsoidal area in km² of the pixels equal to value (default 1: flooded), each pixel's true area on the CRS's ellipsoid, not res².",
                "area_km2(pixels, pixel_areas [, value])",
                "SELECT sum(area_km2(e, a)) AS flooded_km2 FROM (SELECT flood_max_extent(pixels) AS e, first_value(pixel_areas) AS a FROM flood_chunks(...) GROUP BY chunk_row, chunk_col)",
            ),
            Mode::Observed => (
                "Ellipsoidal area in km² of the pixels other than nodata (default 255): what a slice observed.",
                "observed_km2(pixels, pixel_areas [, nodata])",
                "SELECT date_trunc('day', datetime) AS day, sum(observed_km2(pixels, pixel_areas)) FROM flood_chunks(...) GROUP BY 1",
            ),
            Mode::Grid => (
                "Ellipsoidal area in km² of the scan's whole output grid (the same in every row of a scan).",
                "grid_km2(pixel_areas)",
                "SELECT max(grid_km2(pixel_areas)) FROM flood_chunks(...)",
            ),
        };
        let b = Documentation::builder(
            DocSection {
                include: true,
                label: "floodsql pixel functions",
                description: None,
            },
            desc,
            syntax,
        );
        let b = if mode == Mode::Grid {
            b
        } else {
            b.with_argument("pixels", "a chunk's pixels (1 or 2 bytes each), e.g. flood_chunks.pixels or an aggregate of them")
        };
        let b = b.with_argument("pixel_areas", "flood_chunks.pixel_areas of the same chunk");
        let b = match mode {
            Mode::Matching => b.with_argument(
                "value",
                "integer constant: the pixel value to measure (default 1)",
            ),
            Mode::Observed => b.with_argument(
                "nodata",
                "integer constant: the value that is not observed (default 255)",
            ),
            Mode::Grid => b,
        };
        Self {
            mode,
            signature: Signature::user_defined(Volatility::Immutable),
            doc: b.with_sql_example(example).build(),
        }
    }

    /// `area_km2(pixels, pixel_areas [, value])`
    pub fn area_km2() -> Self {
        Self::new(Mode::Matching)
    }

    /// `observed_km2(pixels, pixel_areas [, nodata])`
    pub fn observed_km2() -> Self {
        Self::new(Mode::Observed)
    }

    /// `grid_km2(pixel_areas)`
    pub fn grid_km2() -> Self {
        Self::new(Mode::Grid)
    }

    fn binaries(&self) -> usize {
        if self.mode == Mode::Grid {
            1
        } else {
            2
        }
    }
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

impl ScalarUDFImpl for AreaFunction {
    fn name(&self) -> &str {
        match self.mode {
            Mode::Matching => "area_km2",
            Mode::Observed => "observed_km2",
            Mode::Grid => "grid_km2",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.doc)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let n = self.binaries();
        let max = if self.mode == Mode::Grid { 1 } else { 3 };
        if arg_types.len() < n || arg_types.len() > max || !arg_types[..n].iter().all(is_binary) {
            return plan_err!(
                "{name} takes {}, got {arg_types:?}",
                self.doc.syntax_example
            );
        }
        let mut v = arg_types[..n].to_vec();
        if let Some(t) = arg_types.get(n) {
            if !t.is_integer() {
                return plan_err!("{name}: the 3rd argument must be an integer constant, got {t}");
            }
            v.push(DataType::Int64);
        }
        Ok(v)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let n = self.binaries();
        let value: i64 = match args.args.get(n) {
            None => match self.mode {
                Mode::Observed => 255,
                _ => 1,
            },
            Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))) if (0..=65535).contains(v) => {
                *v
            }
            Some(_) => {
                return exec_err!("{name}: the 3rd argument must be a constant integer 0..=65535")
            }
        };
        let value = value as u16;
        let areas: ArrayRef = args.args[n - 1].clone().into_array(args.number_rows)?;
        let mut decoded: Vec<Option<PixelAreas>> = vec![None; areas.len()];
        for_each_binary(&areas, |row, b| {
            decoded[row] = Some(PixelAreas::decode(b)?);
            Ok(())
        })?;
        let mut out: Vec<Option<f64>> = vec![None; decoded.len()];
        if self.mode == Mode::Grid {
            for (o, a) in out.iter_mut().zip(&decoded) {
                *o = a.as_ref().map(|a| a.grid_m2 / 1e6);
            }
        } else {
            let pixels: ArrayRef = args.args[0].clone().into_array(args.number_rows)?;
            let mode = self.mode;
            for_each_binary(&pixels, |row, px| {
                if let Some(a) = &decoded[row] {
                    let m2 = match mode {
                        Mode::Observed => a.sum_where(px, |p| p != value)?,
                        _ => a.sum_where(px, |p| p == value)?,
                    };
                    out[row] = Some(m2 / 1e6);
                }
                Ok(())
            })?;
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn areas(w: usize, h: usize, f: impl Fn(f64, f64) -> f64) -> PixelAreas {
        areas_every(w, h, 3, f)
    }

    /// Areas `f(x, y)` at nodes every `step` pixels.
    fn areas_every(w: usize, h: usize, step: usize, f: impl Fn(f64, f64) -> f64) -> PixelAreas {
        let (xs, ys) = (node_positions(w, step), node_positions(h, step));
        let values = ys
            .iter()
            .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
            .map(|(x, y)| f(x as f64, y as f64))
            .collect();
        PixelAreas {
            width: w,
            height: h,
            grid_m2: 1e9,
            xs,
            ys,
            values,
        }
    }

    #[test]
    fn nodes_cover_the_axis() {
        assert_eq!(node_positions(1, 100), vec![0]);
        assert_eq!(node_positions(250, 100), vec![0, 100, 200, 249]);
        assert_eq!(node_positions(201, 100), vec![0, 100, 200]);
    }

    #[test]
    fn bilinear_is_exact_for_bilinear_areas_and_roundtrips() {
        // an area field linear in x and y (and in xy): interpolation is exact
        let f = |x: f64, y: f64| 400.0 + 0.5 * x - 0.25 * y + 0.01 * x * y;
        let a = areas(8, 7, f);
        let back = PixelAreas::decode(&a.encode()).unwrap();
        assert_eq!(back, a);
        back.for_each_row(|r, row| {
            for (c, v) in row.iter().enumerate() {
                assert!((v - f(c as f64, r as f64)).abs() < 1e-9, "{r} {c}");
            }
        });
        let px: Vec<u8> = (0..56).map(|i| (i % 3 == 0) as u8).collect();
        let want: f64 = (0..56)
            .filter(|i| i % 3 == 0)
            .map(|i| f((i % 8) as f64, (i / 8) as f64))
            .sum();
        assert!((back.sum_where(&px, |p| p == 1).unwrap() - want).abs() < 1e-6);
        assert!(PixelAreas::decode(&[1, 2, 3]).is_err());
        // a single row / column of nodes
        let one = areas(1, 1, f);
        assert_eq!(one.sum_where(&[1], |p| p == 1).unwrap(), f(0.0, 0.0));
        assert!(back.sum_where(&px[1..], |p| p == 1).is_err());
    }

    /// The run-wise sums equal each pixel's area added one by one (within
    /// rounding), for runs of every length, 1- and 2-byte pixels, and
    /// segments that cut runs.
    #[test]
    fn run_sums_equal_pixel_by_pixel() {
        let f = |x: f64, y: f64| 400.0 + 0.37 * x - 0.21 * y + 0.003 * x * y;
        let (w, h) = (250, 130);
        let a = areas_every(w, h, 100, f);
        // runs of growing length, values 0, 1, 255, 7
        let mut px16 = Vec::with_capacity(w * h);
        let mut x: u64 = 1;
        while px16.len() < w * h {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = [0u16, 1, 255, 7, 300][(x >> 40) as usize % 5];
            let n = 1 + (x >> 20) as usize % 180;
            px16.extend(std::iter::repeat_n(v, n.min(w * h - px16.len())));
        }
        let class = |v: u16| match v {
            255 => 3,
            1 => 1,
            0 => 0,
            _ => 2,
        };
        let mut want = [0.0; 4];
        a.for_each_row(|r, row| {
            for (c, area) in row.iter().enumerate() {
                want[class(px16[r * w + c])] += area;
            }
        });
        let px8: Vec<u8> = px16.iter().map(|&v| v.min(255) as u8).collect();
        let mut want8 = [0.0; 4];
        a.for_each_row(|r, row| {
            for (c, area) in row.iter().enumerate() {
                want8[class(px8[r * w + c] as u16)] += area;
            }
        });
        let bytes16: Vec<u8> = px16.iter().flat_map(|v| v.to_le_bytes()).collect();
        for (px, want) in [(px8.clone(), want8), (bytes16, want)] {
            let mut got = [0.0; 4];
            a.sum_by(&px, class, &mut got).unwrap();
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 1e-9 * w.max(1.0), "{got:?} vs {want:?}");
            }
        }
    }

    /// A run's end found a word at a time is the naive scan's, for runs
    /// ending at every offset of a word, both pixel sizes, and values whose
    /// bytes differ only in the high byte; and the runs of a window count
    /// every pixel once.
    #[test]
    fn runs_end_where_the_value_changes() {
        for k in [1usize, 2] {
            for len in 0..40 {
                for stop in 0..=len {
                    // `stop` pixels of v, then one that differs (in its high
                    // byte only, for 2-byte pixels), then v again
                    let v: u16 = if k == 1 { 7 } else { 0x0107 };
                    let other: u16 = if k == 1 { 8 } else { 0x0207 };
                    let px: Vec<u16> = (0..len)
                        .map(|i| if i == stop { other } else { v })
                        .collect();
                    let row: Vec<u8> = if k == 1 {
                        px.iter().map(|&p| p as u8).collect()
                    } else {
                        px.iter().flat_map(|p| p.to_le_bytes()).collect()
                    };
                    for from in 0..=stop.min(len) {
                        let naive = (from..len).find(|&x| px[x] != v).unwrap_or(len);
                        assert_eq!(
                            super::run_end(&row, from, len, v, k),
                            naive,
                            "{k} {len} {stop} {from}"
                        );
                    }
                }
            }
        }
        let f = |x: f64, y: f64| 400.0 + 0.1 * x + 0.2 * y;
        let a = areas_every(37, 11, 10, f);
        let px: Vec<u8> = (0..37 * 11).map(|i| ((i / 13) % 3) as u8).collect();
        let mut counts = [0usize; 3];
        a.for_each_run(&px, |v, n, _| counts[v as usize] += n)
            .unwrap();
        let mut want = [0usize; 3];
        px.iter().for_each(|&v| want[v as usize] += 1);
        assert_eq!(counts, want);
    }
}
