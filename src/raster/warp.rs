//! Items in another CRS than the output's: warped into each chunk with
//! GDAL's warper, the way the tutorial's stack does it (odc-loader 0.6.5,
//! docs/fidelity.md): per chunk, odc-geo's `_relative_rois` windows — the
//! chunk's boundary taken into the item's pixels, its envelope with one pixel
//! of padding, that envelope's boundary taken back: the chunk's part the item
//! covers — then `rasterio.warp.reproject`'s settings: nearest neighbour, an
//! approximate transformer (0.125 px), the destination initialised to nodata.

use std::ffi::CString;

use gdal::spatial_ref::CoordTransform;
use gdal::{Dataset, DriverManager};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::geo::Window;
use crate::raster::grid::OutputGrid;

/// rasterio's default error threshold of the approximate transformer (px).
const MAX_ERROR: f64 = 0.125;

/// The windows items are warped in: the tutorial's dask chunks (1000 x 1000
/// output pixels from the grid's origin).
pub(crate) const WARP_BLOCK: usize = 1000;

/// An item the output grid cannot paste: its own grid, warped per chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Warp {
    /// The item's CRS, as the item gives it.
    pub(crate) crs: String,
    /// The item's affine, STAC order [a, b, c, d, e, f].
    pub(crate) transform: [f64; 6],
    /// The item's size in pixels.
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// Boundary points per side (odc-geo: 5 across CRSs, 2 within one).
    pub(crate) pts_per_side: usize,
}

/// Pixel ↔ pixel between the output grid (a chunk of it) and an item.
struct PixelMap {
    to_item: CoordTransform,
    to_grid: CoordTransform,
    item: [f64; 6],
    item_inv: [f64; 6],
    /// The chunk's affine (GDAL order is not used: [a, b, c, d, e, f]).
    chunk: [f64; 6],
    chunk_inv: [f64; 6],
}

fn invert([a, b, c, d, e, f]: [f64; 6]) -> Result<[f64; 6]> {
    let det = a * e - b * d;
    if det == 0.0 || !det.is_finite() {
        return Err(Error::Gdal(format!(
            "affine {:?} cannot be inverted",
            [a, b, c, d, e, f]
        )));
    }
    let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
    Ok([ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)])
}

fn apply(t: &[f64; 6], x: f64, y: f64) -> (f64, f64) {
    (t[0] * x + t[1] * y + t[2], t[3] * x + t[4] * y + t[5])
}

impl PixelMap {
    fn new(warp: &Warp, grid: &OutputGrid, window: Window) -> Result<Self> {
        let item_srs = crate::crs::spatial_ref(&warp.crs)?;
        let grid_srs = crate::crs::spatial_ref(&grid.crs)?;
        let chunk = [
            grid.res,
            0.0,
            (grid.col0 + window.x as i64) as f64 * grid.res,
            0.0,
            -grid.res,
            (grid.row0 - window.y as i64) as f64 * grid.res,
        ];
        Ok(Self {
            to_item: CoordTransform::new(&grid_srs, &item_srs)?,
            to_grid: CoordTransform::new(&item_srs, &grid_srs)?,
            item: warp.transform,
            item_inv: invert(warp.transform)?,
            chunk,
            chunk_inv: invert(chunk)?,
        })
    }

    /// Points from one pixel space to the other (non-finite where PROJ fails).
    fn map(&self, pts: &[(f64, f64)], to_item: bool) -> Vec<(f64, f64)> {
        let (from, ct, to) = if to_item {
            (&self.chunk, &self.to_item, &self.item_inv)
        } else {
            (&self.item, &self.to_grid, &self.chunk_inv)
        };
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) =
            pts.iter().map(|&(x, y)| apply(from, x, y)).unzip();
        let mut zs = vec![0.0; xs.len()];
        if ct.transform_coords(&mut xs, &mut ys, &mut zs).is_err() {
            return pts.iter().map(|_| (f64::NAN, f64::NAN)).collect();
        }
        xs.into_iter()
            .zip(ys)
            .map(|(x, y)| apply(to, x, y))
            .collect()
    }
}

/// odc-geo `roi_boundary`: `n` points per side along the envelope of
/// [x0, x1] x [y0, y1] (order does not matter: only envelopes are taken).
fn boundary(x0: f64, x1: f64, y0: f64, y1: f64, n: usize) -> Vec<(f64, f64)> {
    let n = n.max(2);
    let lin = |a: f64, b: f64, i: usize| a + (b - a) * i as f64 / (n - 1) as f64;
    let mut pts = Vec::with_capacity(4 * n);
    for i in 0..n {
        pts.push((lin(x0, x1, i), y0));
        pts.push((lin(x0, x1, i), y1));
        pts.push((x0, lin(y0, y1, i)));
        pts.push((x1, lin(y0, y1, i)));
    }
    pts
}

/// odc-geo `roi_from_points`: the envelope of the finite points, floored and
/// ceiled, padded, clipped to (0, 0)..(nx, ny); (x0, x1, y0, y1), or None
/// when empty.
fn roi_from_points(pts: &[(f64, f64)], nx: usize, ny: usize, padding: i64) -> Option<[i64; 4]> {
    let ok: Vec<&(f64, f64)> = pts
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if ok.is_empty() {
        return None;
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, k: usize| {
        ok.iter()
            .map(|p| if k == 0 { p.0 } else { p.1 })
            .fold(init, f)
    };
    let x0 = (fold(f64::min, f64::INFINITY, 0).floor() as i64 - padding).clamp(0, nx as i64);
    let x1 = (fold(f64::max, f64::NEG_INFINITY, 0).ceil() as i64 + padding).clamp(0, nx as i64);
    let y0 = (fold(f64::min, f64::INFINITY, 1).floor() as i64 - padding).clamp(0, ny as i64);
    let y1 = (fold(f64::max, f64::NEG_INFINITY, 1).ceil() as i64 + padding).clamp(0, ny as i64);
    (x0 < x1 && y0 < y1).then_some([x0, x1, y0, y1])
}

/// The part of `window` (output pixels) the item covers, as odc-geo's
/// `_relative_rois(…, padding=1)` finds it; None when it covers none.
pub(crate) fn dst_roi(warp: &Warp, grid: &OutputGrid, window: Window) -> Result<Option<Window>> {
    let m = PixelMap::new(warp, grid, window)?;
    let n = warp.pts_per_side;
    let chunk_edge = boundary(0.0, window.width as f64, 0.0, window.height as f64, n);
    let Some([sx0, sx1, sy0, sy1]) =
        roi_from_points(&m.map(&chunk_edge, true), warp.width, warp.height, 1)
    else {
        return Ok(None);
    };
    let src_edge = boundary(sx0 as f64, sx1 as f64, sy0 as f64, sy1 as f64, n);
    Ok(
        roi_from_points(&m.map(&src_edge, false), window.width, window.height, 0).map(
            |[x0, x1, y0, y1]| Window {
                x: window.x + x0 as usize,
                y: window.y + y0 as usize,
                width: (x1 - x0) as usize,
                height: (y1 - y0) as usize,
            },
        ),
    )
}

/// The item's footprint on the output grid in output pixels (its boundary,
/// 16 points per side, taken into the grid; one pixel of margin): where it
/// may contribute. (col_off, row_off, width, height).
pub(crate) fn footprint(warp: &Warp, grid: &OutputGrid) -> Result<(i64, i64, usize, usize)> {
    let whole = Window {
        x: 0,
        y: 0,
        width: grid.width,
        height: grid.height,
    };
    let m = PixelMap::new(warp, grid, whole)?;
    let edge = boundary(0.0, warp.width as f64, 0.0, warp.height as f64, 16);
    let pts: Vec<(f64, f64)> = m
        .map(&edge, false)
        .into_iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return Ok((0, 0, 0, 0));
    }
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let (c0, r0) = (x0.floor() as i64 - 1, y0.floor() as i64 - 1);
    let (c1, r1) = (x1.ceil() as i64 + 1, y1.ceil() as i64 + 1);
    Ok((c0, r0, (c1 - c0).max(0) as usize, (r1 - r0).max(0) as usize))
}

/// Warps the item (`ds`, its COG opened with GDAL) into `roi` (output
/// pixels, from [`dst_roi`]): nearest neighbour, approximate transformer
/// (0.125 px), nodata in and out, destination initialised to nodata.
/// Blocking (GDAL).
pub(crate) fn warp_roi(
    ds: &Dataset,
    grid: &OutputGrid,
    roi: Window,
    nodata: u8,
) -> Result<Vec<u8>> {
    let driver = DriverManager::get_driver_by_name("MEM")?;
    let mut dst = driver.create_with_band_type::<u8, _>("", roi.width, roi.height, 1)?;
    dst.set_geo_transform(&[
        (grid.col0 + roi.x as i64) as f64 * grid.res,
        grid.res,
        0.0,
        (grid.row0 - roi.y as i64) as f64 * grid.res,
        0.0,
        -grid.res,
    ])?;
    dst.set_spatial_ref(&crate::crs::spatial_ref(&grid.crs)?)?;
    let init = CString::new("INIT_DEST").map_err(|e| Error::Internal(e.to_string()))?;
    let no_data = CString::new("NO_DATA").map_err(|e| Error::Internal(e.to_string()))?;
    // SAFETY: the options are GDAL's own (GDALCreateWarpOptions), their arrays
    // allocated with CPLMalloc as GDALDestroyWarpOptions frees them; both
    // datasets outlive the call; GDALReprojectImage copies the options.
    let rv = unsafe {
        let o = gdal_sys::GDALCreateWarpOptions();
        (*o).nBandCount = 1;
        let bands = |v: i32| {
            let p = gdal_sys::CPLMalloc(std::mem::size_of::<i32>()) as *mut i32;
            *p = v;
            p
        };
        (*o).panSrcBands = bands(1);
        (*o).panDstBands = bands(1);
        let value = |v: f64| {
            let p = gdal_sys::CPLMalloc(std::mem::size_of::<f64>()) as *mut f64;
            *p = v;
            p
        };
        (*o).padfSrcNoDataReal = value(nodata as f64);
        (*o).padfDstNoDataReal = value(nodata as f64);
        (*o).papszWarpOptions =
            gdal_sys::CSLSetNameValue((*o).papszWarpOptions, init.as_ptr(), no_data.as_ptr());
        let rv = gdal_sys::GDALReprojectImage(
            ds.c_dataset(),
            std::ptr::null(),
            dst.c_dataset(),
            std::ptr::null(),
            gdal_sys::GDALResampleAlg::GRA_NearestNeighbour,
            0.0,
            MAX_ERROR,
            None,
            std::ptr::null_mut(),
            o,
        );
        gdal_sys::GDALDestroyWarpOptions(o);
        rv
    };
    if rv != gdal_sys::CPLErr::CE_None {
        return Err(Error::Gdal(format!(
            "warping into the output grid failed (GDAL error {rv})"
        )));
    }
    let buf = dst.rasterband(1)?.read_as::<u8>(
        (0, 0),
        (roi.width, roi.height),
        (roi.width, roi.height),
        None,
    )?;
    Ok(buf.data().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_inverse_round_trips() {
        let t = [20.0, 0.0, 1000.0, 0.0, -20.0, 5000.0];
        let i = invert(t).unwrap();
        let (x, y) = apply(&t, 3.0, 4.0);
        let (c, r) = apply(&i, x, y);
        assert!((c - 3.0).abs() < 1e-12 && (r - 4.0).abs() < 1e-12);
    }

    #[test]
    fn roi_from_points_floors_ceils_pads_and_clips() {
        let pts = [(1.2, 3.7), (5.5, 0.1), (f64::NAN, 2.0)];
        assert_eq!(roi_from_points(&pts, 100, 100, 1), Some([0, 7, 0, 5]));
        assert_eq!(roi_from_points(&pts, 4, 100, 0), Some([1, 4, 0, 4]));
        assert_eq!(roi_from_points(&[(200.0, 200.0)], 100, 100, 1), None);
    }
}
