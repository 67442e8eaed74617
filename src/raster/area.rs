//! Ellipsoidal pixel areas of an output grid: for node pixels of a chunk
//! (see `floodsql_udfs::pixel_areas`), the area of the geodesic polygon of
//! the pixel's four corners, taken to the CRS's own geographic CRS by PROJ
//! (through GDAL) and measured with GeographicLib (`geographiclib-rs`, the
//! Rust port of the library pyproj's `Geod` wraps) on the CRS's ellipsoid;
//! and the area of the whole grid, from its outline densified every
//! [`NODE_STEP`] pixels. Blocking (GDAL): call from a blocking thread.

use arrow::buffer::Buffer;
use std::sync::{Arc, Mutex, OnceLock};

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform};
use geographiclib_rs::{Geodesic, PolygonArea, Winding};

use floodsql_udfs::pixel_areas::{node_positions, PixelAreas, NODE_STEP};

use crate::error::{Error, Result};
use crate::geo::Window;
use crate::raster::grid::{spatial_ref, OutputGrid};
use crate::vector::zones::ZoneSet;

/// Pixel areas on one grid.
pub(crate) struct AreaModel {
    grid: OutputGrid,
    to_geo: CoordTransform,
    geod: Geodesic,
}

impl AreaModel {
    /// The model of `grid`'s CRS and lattice.
    pub(crate) fn new(grid: &OutputGrid) -> Result<Self> {
        let srs = spatial_ref(&grid.crs)?;
        let mut geo = srs.geog_cs()?;
        geo.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let a = srs.semi_major()?;
        let b = srs.semi_minor()?;
        if !(a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0) {
            return Err(Error::Gdal(format!(
                "the CRS {} has no usable ellipsoid ({a}, {b})",
                crate::crs::describe(&grid.crs)
            )));
        }
        Ok(Self {
            grid: grid.clone(),
            to_geo: CoordTransform::new(&srs, &geo)?,
            geod: Geodesic::new(a, (a - b) / a),
        })
    }

    /// Projected points to (lon, lat) of the geographic CRS, in place.
    fn to_lonlat(&self, xs: &mut [f64], ys: &mut [f64]) -> Result<()> {
        let mut zs = vec![0.0; xs.len()];
        self.to_geo
            .transform_coords(xs, ys, &mut zs)
            .map_err(|e| Error::Gdal(format!("pixel corners to longitude/latitude: {e}")))?;
        if xs.iter().chain(ys.iter()).any(|v| !v.is_finite()) {
            return Err(Error::Gdal(
                "a pixel corner of the grid has no longitude/latitude".into(),
            ));
        }
        Ok(())
    }

    /// Area (m²) of the geodesic polygon through lon/lat points.
    fn polygon_m2(&self, lons: &[f64], lats: &[f64]) -> f64 {
        let mut p = PolygonArea::new(&self.geod, Winding::CounterClockwise);
        for (&lon, &lat) in lons.iter().zip(lats) {
            p.add_point(lat, lon);
        }
        p.compute(true).1.abs()
    }

    /// Projected coordinates of the grid's pixel corner (col, row).
    fn corner(&self, col: f64, row: f64) -> (f64, f64) {
        let gt = self.grid.geotransform();
        (gt[0] + col * gt[1], gt[3] + row * gt[5])
    }

    /// Exact areas (m²) of the grid pixels `pixels` (col, row).
    pub(crate) fn pixels_m2(&self, pixels: &[(usize, usize)]) -> Result<Vec<f64>> {
        let mut xs = Vec::with_capacity(pixels.len() * 4);
        let mut ys = Vec::with_capacity(pixels.len() * 4);
        for &(c, r) in pixels {
            let (c, r) = (c as f64, r as f64);
            for (dc, dr) in [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)] {
                let (x, y) = self.corner(c + dc, r + dr);
                xs.push(x);
                ys.push(y);
            }
        }
        self.to_lonlat(&mut xs, &mut ys)?;
        Ok(xs
            .chunks_exact(4)
            .zip(ys.chunks_exact(4))
            .map(|(lons, lats)| self.polygon_m2(lons, lats))
            .collect())
    }

    /// The node areas of a chunk window.
    pub(crate) fn window(&self, w: Window, grid_m2: f64) -> Result<PixelAreas> {
        let xs = node_positions(w.width, NODE_STEP);
        let ys = node_positions(w.height, NODE_STEP);
        let pixels: Vec<(usize, usize)> = ys
            .iter()
            .flat_map(|&y| {
                xs.iter()
                    .map(move |&x| (w.x + x as usize, w.y + y as usize))
            })
            .collect();
        Ok(PixelAreas {
            width: w.width,
            height: w.height,
            grid_m2,
            values: self.pixels_m2(&pixels)?,
            xs,
            ys,
        })
    }

    /// Area (m²) of the whole grid: its outline, every `NODE_STEP` pixels.
    pub(crate) fn grid_m2(&self) -> Result<f64> {
        let (w, h) = (self.grid.width, self.grid.height);
        let along = |n: usize| node_positions(n + 1, NODE_STEP);
        let mut pts: Vec<(f64, f64)> = Vec::new();
        // counter-clockwise in map coordinates: down the left edge, along the
        // bottom, up the right edge, back along the top
        for r in along(h) {
            pts.push((0.0, r as f64));
        }
        for c in along(w).into_iter().skip(1) {
            pts.push((c as f64, h as f64));
        }
        for r in along(h).into_iter().rev().skip(1) {
            pts.push((w as f64, r as f64));
        }
        for c in along(w).into_iter().rev().skip(1) {
            pts.push((c as f64, 0.0));
        }
        pts.pop(); // the first point again
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) =
            pts.iter().map(|&(c, r)| self.corner(c, r)).unzip();
        self.to_lonlat(&mut xs, &mut ys)?;
        Ok(self.polygon_m2(&xs, &ys))
    }
}

/// A per-chunk column value of one scan partition, kept for the last chunk
/// window only: a partition scans a chunk's slices one after the other, so
/// one chunk is enough and memory does not grow with the grid.
#[derive(Default)]
/// (An Arrow buffer: every row of the chunk shares it, uncopied.)
struct LastWindow(Mutex<Option<(Window, Buffer)>>);

impl LastWindow {
    /// The value of `w`: the kept one, or `make()`'s (then kept).
    fn get_or(&self, w: Window, make: impl FnOnce() -> Result<Vec<u8>>) -> Result<Buffer> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((lw, v)) = last.as_ref() {
            if *lw == w {
                return Ok(v.clone());
            }
        }
        let v = Buffer::from_vec(make()?);
        *last = Some((w, v.clone()));
        Ok(v)
    }
}

/// A column whose value depends on the chunk window only (computed on a
/// blocking thread: GDAL).
pub(crate) trait ChunkValue: Send + Sync {
    /// The encoded value of chunk window `w`.
    fn value(&self, w: Window) -> Result<Buffer>;
}

/// The `pixel_areas` values of one scan partition: the grid's area (shared
/// by the partitions of a scan, computed once) and the last chunk's nodes.
pub(crate) struct AreaColumn {
    grid: OutputGrid,
    grid_m2: Arc<OnceLock<f64>>,
    last: LastWindow,
}

impl AreaColumn {
    pub(crate) fn new(grid: OutputGrid, grid_m2: Arc<OnceLock<f64>>) -> Self {
        Self {
            grid,
            grid_m2,
            last: LastWindow::default(),
        }
    }
}

impl ChunkValue for AreaColumn {
    fn value(&self, w: Window) -> Result<Buffer> {
        self.last.get_or(w, || {
            let model = AreaModel::new(&self.grid)?;
            let grid_m2 = match self.grid_m2.get() {
                Some(v) => *v,
                None => *self
                    .grid_m2
                    .get_or_init(|| model.grid_m2().unwrap_or(f64::NAN)),
            };
            if !grid_m2.is_finite() {
                model.grid_m2()?; // the error, named
            }
            Ok(model.window(w, grid_m2)?.encode())
        })
    }
}

/// The `zones` values of one scan partition: the last chunk's.
pub(crate) struct ZoneColumn {
    zones: Arc<ZoneSet>,
    last: LastWindow,
}

impl ZoneColumn {
    pub(crate) fn new(zones: Arc<ZoneSet>) -> Self {
        Self {
            zones,
            last: LastWindow::default(),
        }
    }
}

impl ChunkValue for ZoneColumn {
    fn value(&self, w: Window) -> Result<Buffer> {
        self.last.get_or(w, || self.zones.window(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(crs: &str, col0: i64, row0: i64, width: usize, height: usize) -> OutputGrid {
        OutputGrid {
            crs: crs.into(),
            res: 20.0,
            col0,
            row0,
            width,
            height,
        }
    }

    #[test]
    fn equal_area_grid_has_res_squared_pixels() {
        // EPSG:6933 (EASE-Grid 2.0, cylindrical equal-area): every pixel is
        // 400 m² up to the geodesic-vs-projected edge difference
        let g = grid("EPSG:6933", 30000, 200000, 500, 400);
        let m = AreaModel::new(&g).unwrap();
        for a in m.pixels_m2(&[(0, 0), (499, 399), (250, 10)]).unwrap() {
            assert!((a - 400.0).abs() < 1e-4, "{a}");
        }
        let total = m.grid_m2().unwrap();
        assert!(
            (total / (500.0 * 400.0 * 400.0) - 1.0).abs() < 1e-7,
            "{total}"
        );
    }

    #[test]
    fn chunk_nodes_sum_to_the_grid_outline() {
        // Equi7 Asia around the tutorial's AOI: pixels ~3 % larger than 400 m²
        let g = grid(crate::crs::EQUI7_AS_LEGACY_WKT, 86750, 149520, 450, 300);
        let m = AreaModel::new(&g).unwrap();
        let total = m.grid_m2().unwrap();
        let mut sum = 0.0;
        for (x, y, w, h) in [(0, 0, 300, 300), (300, 0, 150, 300)] {
            let a = m
                .window(
                    Window {
                        x,
                        y,
                        width: w,
                        height: h,
                    },
                    total,
                )
                .unwrap();
            let px = vec![1u8; w * h];
            sum += a.sum_where(&px, |p| p == 1).unwrap();
        }
        assert!((sum / total - 1.0).abs() < 1e-7, "{sum} vs {total}");
        let ratio = total / (450.0 * 300.0 * 400.0);
        assert!(
            ratio > 0.9 && ratio < 1.1 && (ratio - 1.0).abs() > 1e-3,
            "{ratio}"
        );
    }
}
