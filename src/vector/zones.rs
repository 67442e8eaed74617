//! Zones: regions rasterised onto a scan's output grid, one chunk window at
//! a time, as `rasterio.features.rasterize` does on the whole grid
//! (`all_touched=False`): a pixel belongs to a region when its centre lies
//! inside the region's polygon (GDAL's scanline fill decides centres on an
//! edge). Regions are burned in layer order, so where regions overlap a
//! pixel belongs to the region listed **last** (as `gdal_rasterize` and
//! rasterio burn shapes in order). A pixel in no region has zone 0.
//!
//! The polygons are taken once to the grid's CRS (PROJ through GDAL, vertex
//! by vertex) and then to the grid's pixel coordinates with GDAL's own
//! inverse geotransform arithmetic; a window is burned in coordinates
//! shifted by its integer offset, which is exact in floating point, so
//! burning chunk by chunk gives the pixels burning the whole grid gives.
//! Blocking (GDAL): call from a blocking thread.

use gdal::raster::rasterize;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{geometry_type_flatten, Geometry, OGRwkbGeometryType};
use gdal::DriverManager;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::geo::Window;
use crate::vector::regions::RegionSet;

/// One region on the grid: its id, polygon(s) in grid pixel coordinates
/// (x right, y down, pixel (0, 0) spans [0, 1] x [0, 1]) and their
/// envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ZoneShape {
    pub(crate) id: u32,
    pub(crate) wkb: Vec<u8>,
    /// minx, miny, maxx, maxy in pixel coordinates.
    pub(crate) envelope: [f64; 4],
}

/// The regions of a scan on its grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ZoneSet {
    /// The regions file, for messages.
    pub(crate) source: String,
    /// Number of regions (ids 1..=regions).
    pub(crate) regions: usize,
    /// The regions touching the grid, in layer order.
    pub(crate) shapes: Vec<ZoneShape>,
}

/// GDAL's inverse of a north-up geotransform (`GDALInvGeoTransform`'s
/// no-rotation case), so that pixel coordinates are computed as GDAL
/// computes them when it burns shapes onto a georeferenced grid.
fn inverse(gt: &[f64; 6]) -> [f64; 6] {
    [
        -gt[0] / gt[1],
        1.0 / gt[1],
        0.0,
        -gt[3] / gt[5],
        0.0,
        1.0 / gt[5],
    ]
}

/// `g` with every vertex mapped by the affine `t` (GDAL's
/// `GDALApplyGeoTransform` arithmetic).
pub(crate) fn map_affine(g: &Geometry, t: &[f64; 6], ring: bool) -> Result<Geometry> {
    let ty = geometry_type_flatten(g.geometry_type());
    let collection = ty == OGRwkbGeometryType::wkbPolygon
        || ty == OGRwkbGeometryType::wkbMultiPolygon
        || ty == OGRwkbGeometryType::wkbGeometryCollection;
    if collection {
        let mut out = Geometry::empty(ty)?;
        for i in 0..g.geometry_count() {
            let child = g.get_geometry(i);
            out.add_geometry(map_affine(&child, t, ty == OGRwkbGeometryType::wkbPolygon)?)?;
        }
        return Ok(out);
    }
    let mut pts = Vec::new();
    g.get_points(&mut pts);
    let mut out = Geometry::empty(if ring {
        OGRwkbGeometryType::wkbLinearRing
    } else {
        ty
    })?;
    for (x, y, _) in pts {
        out.add_point_2d((t[0] + x * t[1] + y * t[2], t[3] + x * t[4] + y * t[5]));
    }
    Ok(out)
}

impl ZoneSet {
    /// The regions of `set` on the grid of CRS `crs` (as
    /// [`crate::crs::spatial_ref`] reads it) and geotransform `gt`, which
    /// is `width` x `height` pixels.
    pub(crate) fn new(
        set: &RegionSet,
        crs: &str,
        gt: [f64; 6],
        width: usize,
        height: usize,
    ) -> Result<Self> {
        let mut src = SpatialRef::from_wkt(&set.crs)?;
        src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let dst = crate::crs::spatial_ref(crs)?;
        let to_grid = CoordTransform::new(&src, &dst)?;
        let inv = inverse(&gt);
        let mut shapes = Vec::new();
        for (i, r) in set.regions.iter().enumerate() {
            let id = i as u32 + 1;
            let mut g = Geometry::from_wkb(&r.wkb)?;
            if g.is_empty() {
                continue;
            }
            g.transform_inplace(&to_grid).map_err(|e| {
                Error::invalid(
                    "regions",
                    set.spec.path.clone(),
                    format!(
                        "region_id {id} cannot be taken to the grid's CRS {}: {e}",
                        crate::crs::describe(crs)
                    ),
                )
            })?;
            let px = map_affine(&g, &inv, false)?;
            let e = px.envelope();
            let env = [e.MinX, e.MinY, e.MaxX, e.MaxY];
            if env.iter().any(|v| !v.is_finite()) {
                return Err(Error::invalid(
                    "regions",
                    set.spec.path.clone(),
                    format!("region_id {id} has a vertex with no position on the grid's CRS"),
                ));
            }
            // no pixel centre of the grid can be inside
            if env[2] <= 0.0 || env[3] <= 0.0 || env[0] >= width as f64 || env[1] >= height as f64 {
                continue;
            }
            shapes.push(ZoneShape {
                id,
                wkb: px.wkb()?,
                envelope: env,
            });
        }
        Ok(Self {
            source: set.spec.path.clone(),
            regions: set.regions.len(),
            shapes,
        })
    }

    /// Shapes already in grid pixel coordinates, ids 1, 2, … in order.
    pub(crate) fn from_pixel_shapes(source: &str, shapes: &[&Geometry]) -> Result<Self> {
        let shapes = shapes
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let e = g.envelope();
                Ok(ZoneShape {
                    id: i as u32 + 1,
                    wkb: g.wkb()?,
                    envelope: [e.MinX, e.MinY, e.MaxX, e.MaxY],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            source: source.to_string(),
            regions: shapes.len(),
            shapes,
        })
    }

    /// The zone of every pixel of window `w`, row-major, as little-endian
    /// u32 (0: no region).
    pub(crate) fn window(&self, w: Window) -> Result<Vec<u8>> {
        let (x0, y0) = (w.x as f64, w.y as f64);
        let (x1, y1) = (x0 + w.width as f64, y0 + w.height as f64);
        let mut geoms = Vec::new();
        let mut burn = Vec::new();
        for s in &self.shapes {
            let e = s.envelope;
            if e[2] <= x0 || e[0] >= x1 || e[3] <= y0 || e[1] >= y1 {
                continue;
            }
            geoms.push(Geometry::from_wkb(&s.wkb)?);
            burn.push(s.id as f64);
        }
        if geoms.is_empty() {
            return Ok(vec![0; 4 * w.area()]);
        }
        let mem = DriverManager::get_driver_by_name("MEM")?;
        let mut ds = mem.create_with_band_type::<u32, _>("", w.width, w.height, 1)?;
        // pixel coordinates of the grid, shifted by the window's offset
        ds.set_geo_transform(&[x0, 1.0, 0.0, y0, 0.0, 1.0])?;
        rasterize(&mut ds, &[1], &geoms, &burn, None).map_err(|e| {
            Error::Gdal(format!("rasterising the regions of '{}': {e}", self.source))
        })?;
        let buf = ds.rasterband(1)?.read_as::<u32>(
            (0, 0),
            (w.width, w.height),
            (w.width, w.height),
            None,
        )?;
        Ok(buf.data().iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::regions::{Region, RegionsSpec};

    fn set(polys: &[&str]) -> RegionSet {
        let mut srs = SpatialRef::from_epsg(3857).unwrap();
        srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        RegionSet {
            spec: RegionsSpec::new("test.geojson", None).unwrap(),
            layer: "test".into(),
            crs: srs.to_wkt().unwrap(),
            fields: vec![],
            regions: polys
                .iter()
                .map(|p| Region {
                    values: vec![],
                    wkb: Geometry::from_wkt(p).unwrap().wkb().unwrap(),
                })
                .collect(),
        }
    }

    fn zones(b: &[u8]) -> Vec<u32> {
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    #[test]
    fn chunks_burn_what_the_whole_grid_burns_and_the_last_region_wins() {
        // a 10 x 8 grid of 10 m pixels; region 2 overlaps region 1
        let s = set(&[
            "POLYGON ((1003 1996, 1071 1991, 1064 1921, 1009 1931, 1003 1996))",
            "POLYGON ((1040 1980, 1120 1980, 1120 1900, 1040 1900, 1040 1980))",
            "POLYGON ((5000 5000, 5010 5000, 5010 5010, 5000 5000))",
        ]);
        let gt = [1000.0, 10.0, 0.0, 2000.0, 0.0, -10.0];
        let z = ZoneSet::new(&s, "EPSG:3857", gt, 10, 8).unwrap();
        assert_eq!(z.shapes.len(), 2, "the third region is off the grid");
        let whole = zones(
            &z.window(Window {
                x: 0,
                y: 0,
                width: 10,
                height: 8,
            })
            .unwrap(),
        );
        assert!(whole.contains(&1) && whole.contains(&2) && whole.contains(&0));
        // pixel (4, 2): centre (1045, 1975) is in both: region 2 wins
        assert_eq!(whole[2 * 10 + 4], 2);
        // pixel (0, 0): centre (1005, 1995) is in region 1 only
        assert_eq!(whole[0], 1);
        let mut pasted = vec![0u32; 80];
        for (x, y, w, h) in [(0, 0, 3, 3), (3, 0, 7, 3), (0, 3, 3, 5), (3, 3, 7, 5)] {
            let part = zones(
                &z.window(Window {
                    x,
                    y,
                    width: w,
                    height: h,
                })
                .unwrap(),
            );
            for r in 0..h {
                pasted[(y + r) * 10 + x..][..w].copy_from_slice(&part[r * w..][..w]);
            }
        }
        assert_eq!(pasted, whole);
    }
}
