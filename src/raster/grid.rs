//! The output grid, computed exactly as odc-stac's `load(bbox=…, crs=…,
//! resolution=gsd)` does (odc-geo `GeoBox.from_bbox`, `tol=0.01`):
//! project the 4 corners of the lon/lat bbox (no densification) into the items'
//! CRS, take their bounding box, snap it outwards to multiples of the
//! resolution from the CRS origin (an edge within 0.01 px of a grid line snaps to
//! that line). Items are then placed on this lattice at integer offsets.

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::geo::{Bbox, Window};

/// odc-geo's snapping tolerance, in pixels.
pub(crate) const SNAP_TOL: f64 = 0.01;

/// A north-up grid on the `res` lattice of `crs`: pixel (0, 0) has its top-left
/// corner at (`col0 * res`, `row0 * res`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutputGrid {
    /// The CRS as the items give it (WKT, or `EPSG:n`).
    pub(crate) crs: String,
    pub(crate) res: f64,
    /// Left edge in lattice units (x = col0 * res).
    pub(crate) col0: i64,
    /// Top edge in lattice units (y = row0 * res).
    pub(crate) row0: i64,
    pub(crate) width: usize,
    pub(crate) height: usize,
}

impl OutputGrid {
    /// GDAL geotransform.
    pub(crate) fn geotransform(&self) -> [f64; 6] {
        [
            self.col0 as f64 * self.res,
            self.res,
            0.0,
            self.row0 as f64 * self.res,
            0.0,
            -self.res,
        ]
    }

    /// Chunks (columns, rows) of side `chunk` covering the grid.
    pub(crate) fn chunks(&self, chunk: usize) -> (usize, usize) {
        (self.width.div_ceil(chunk), self.height.div_ceil(chunk))
    }

    /// Pixel window of chunk (col, row).
    pub(crate) fn chunk_window(&self, chunk: usize, col: usize, row: usize) -> Window {
        let (x, y) = (col * chunk, row * chunk);
        Window {
            x,
            y,
            width: chunk.min(self.width - x),
            height: chunk.min(self.height - y),
        }
    }

    /// The longitude of the grid's centre (odc-stac's `mid_lon`: the
    /// centroid of the grid's extent, in its CRS, taken to EPSG:4326).
    pub(crate) fn centre_lon(&self) -> Result<f64> {
        let mut wgs84 = SpatialRef::from_epsg(4326)?;
        wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let t = CoordTransform::new(&spatial_ref(&self.crs)?, &wgs84)?;
        let mut xs = [(self.col0 as f64 + self.width as f64 / 2.0) * self.res];
        let mut ys = [self.row0 as f64 * self.res - self.height as f64 / 2.0 * self.res];
        t.transform_coords(&mut xs, &mut ys, &mut [0.0])
            .map_err(|e| Error::Gdal(format!("the grid's centre in lon/lat: {e}")))?;
        Ok(xs[0])
    }

    /// The whole grid as a window.
    pub(crate) fn window(&self) -> Window {
        Window {
            x: 0,
            y: 0,
            width: self.width,
            height: self.height,
        }
    }
}

/// `odc.geo.math.split_float`: (whole, fraction) with the fraction in
/// [-0.5, 0.5]; an exact half rounds toward zero (C's `fmod`, as in Python).
pub(crate) fn split_float(x: f64) -> (f64, f64) {
    if !x.is_finite() {
        return (x, 0.0);
    }
    let mut part = x % 1.0;
    let mut whole = x - part;
    if part > 0.5 {
        part -= 1.0;
        whole += 1.0;
    } else if part < -0.5 {
        part += 1.0;
        whole -= 1.0;
    }
    (whole, part)
}

/// `odc.geo.math.maybe_int`: v rounded when within `tol` of an integer.
fn maybe_int(v: f64, tol: f64) -> f64 {
    let (whole, part) = split_float(v);
    if part.abs() < tol {
        whole
    } else {
        v
    }
}

/// Outward snap of [lo, hi] to the `res` lattice: (first index, count >= 1).
pub(crate) fn snap_outwards(lo: f64, hi: f64, res: f64) -> (i64, usize) {
    let a = maybe_int(lo / res, SNAP_TOL).floor() as i64;
    let b = maybe_int(hi / res, SNAP_TOL).ceil() as i64;
    (a, (b - a).max(1) as usize)
}

/// A CRS from what the items give (WKT1/WKT2, PROJJSON, `EPSG:27703`), in
/// traditional GIS axis order ([`crate::crs`]).
pub(crate) fn spatial_ref(crs: &str) -> Result<SpatialRef> {
    crate::crs::spatial_ref(crs)
}

/// Projects the 4 corners of a lon/lat bbox into `crs`: (minx, miny, maxx, maxy).
pub(crate) fn project_bbox(b: &Bbox, crs: &str) -> Result<[f64; 4]> {
    let mut wgs84 = SpatialRef::from_epsg(4326)?;
    wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let dst = spatial_ref(crs)?;
    let t = CoordTransform::new(&wgs84, &dst)?;
    let mut xs = [b.minx, b.minx, b.maxx, b.maxx];
    let mut ys = [b.miny, b.maxy, b.miny, b.maxy];
    let mut zs = [0.0; 4];
    t.transform_coords(&mut xs, &mut ys, &mut zs).map_err(|e| {
        Error::Gdal(format!(
            "projecting the bbox corners into the CRS {}: {e}",
            crate::crs::describe(crs)
        ))
    })?;
    if xs.iter().chain(ys.iter()).any(|v| !v.is_finite()) {
        return Err(Error::Gdal(
            "the bbox does not project into the items' CRS".into(),
        ));
    }
    let fold = |v: &[f64; 4], f: fn(f64, f64) -> f64| v[1..].iter().fold(v[0], |a, &x| f(a, x));
    Ok([
        fold(&xs, f64::min),
        fold(&ys, f64::min),
        fold(&xs, f64::max),
        fold(&ys, f64::max),
    ])
}

/// The output grid for a lon/lat bbox, in `crs`, at resolution `res`.
pub(crate) fn output_grid(b: &Bbox, crs: &str, res: f64) -> Result<OutputGrid> {
    if !(res.is_finite() && res > 0.0) {
        return Err(Error::Internal(format!(
            "output grid resolution must be > 0, got {res} (callers check the items' gsd)"
        )));
    }
    let [x0, y0, x1, y1] = project_bbox(b, crs)?;
    let (col0, width) = snap_outwards(x0, x1, res);
    let (ybot, height) = snap_outwards(y0, y1, res);
    Ok(OutputGrid {
        crs: crs.to_string(),
        res,
        col0,
        row0: ybot + height as i64,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapping_matches_odc_geo() {
        // plain outward snap
        assert_eq!(snap_outwards(10.5, 30.5, 20.0), (0, 2));
        // an edge within 0.01 px of a grid line snaps to it
        assert_eq!(
            snap_outwards(40.0 * 20.0 - 0.19, 60.0 * 20.0 + 0.19, 20.0),
            (40, 20)
        );
        // ... but not beyond
        assert_eq!(
            snap_outwards(40.0 * 20.0 - 0.21, 60.0 * 20.0 + 0.21, 20.0),
            (39, 22)
        );
        // negative coordinates
        assert_eq!(snap_outwards(-45.0, -5.0, 20.0), (-3, 3));
    }

    #[test]
    fn chunk_windows_tile_the_grid_exactly() {
        let g = OutputGrid {
            crs: "EPSG:3857".into(),
            res: 20.0,
            col0: 0,
            row0: 0,
            width: 1001,
            height: 250,
        };
        for chunk in [16, 97, 250, 1000, 5000] {
            let (nc, nr) = g.chunks(chunk);
            let mut covered = vec![0u8; g.width * g.height];
            for r in 0..nr {
                for c in 0..nc {
                    let w = g.chunk_window(chunk, c, r);
                    assert!(w.width > 0 && w.height > 0 && w.width <= chunk && w.height <= chunk);
                    for y in w.y..w.y + w.height {
                        for x in w.x..w.x + w.width {
                            covered[y * g.width + x] += 1;
                        }
                    }
                }
            }
            assert!(covered.iter().all(|&n| n == 1), "chunk {chunk}");
        }
    }
}
