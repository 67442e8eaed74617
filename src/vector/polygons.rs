//! Flood polygons: a class raster (a floodsql extent, any single-band
//! integer GeoTIFF) vectorised block by block with GDAL's `GDALPolygonize`
//! (4-connected, as `rasterio.features.shapes`), the pieces of polygons cut
//! by block edges merged with GEOS (`OGR_G_UnionCascaded`), so a polygon
//! crossing a block edge comes out as one polygon and the result does not
//! depend on the block size. Geometry is computed in the raster's pixel
//! coordinates (integers: exact), then taken to its CRS.
//!
//! Each polygon carries its class (pixel value), pixel count, and true area
//! (km², geodesic on the CRS's ellipsoid with GeographicLib, edges densified
//! every 10 pixels); optional simplification (GEOS, topology preserving, in
//! metres) and a minimum pixel count. Memory holds the polygons and the
//! pieces waiting at block edges, never the whole raster. Blocking (GDAL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{
    geometry_type_flatten, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType,
};
use gdal::{Dataset, DriverManager};
use geographiclib_rs::{Geodesic, PolygonArea, Winding};

use crate::error::{Error, Result};
use crate::geo::Window;
use crate::vector::zones::{map_affine, ZoneSet};

/// What to vectorise, and how.
#[derive(Debug, Clone)]
pub(crate) struct PolygonOptions {
    /// Pixel values to vectorise; empty: every value but nodata and 0.
    pub(crate) classes: Vec<i64>,
    /// Simplification tolerance in CRS units (metres); 0: none.
    pub(crate) simplify: f64,
    /// Polygons of fewer pixels are left out.
    pub(crate) min_pixels: u64,
    /// Side of the blocks read and vectorised at a time.
    pub(crate) block: usize,
    /// Date rasters on the same grid (`flood_first_date`, `flood_last_date`
    /// results: u16 days since 1970-01-01, 0 = none): each polygon gets the
    /// earliest first day and the latest last day of its pixels.
    pub(crate) dates: Option<(PathBuf, PathBuf)>,
}

/// One polygon.
#[derive(Debug)]
pub(crate) struct FloodPolygon {
    pub(crate) class: i64,
    pub(crate) pixels: u64,
    pub(crate) area_km2: f64,
    /// In the raster's CRS.
    pub(crate) geometry: Geometry,
    /// Earliest / latest flood day of its pixels (days since 1970-01-01),
    /// from the date rasters given.
    pub(crate) first_day: Option<u16>,
    pub(crate) last_day: Option<u16>,
}

/// The polygons of a raster, with its CRS.
#[derive(Debug)]
pub(crate) struct Polygons {
    pub(crate) polygons: Vec<FloodPolygon>,
    /// The raster's CRS (WKT).
    pub(crate) crs: String,
    /// The raster's CRS as PROJJSON (GeoParquet records it).
    pub(crate) projjson: String,
    /// Blocks read.
    pub(crate) blocks: usize,
    /// Pieces merged across block edges.
    pub(crate) pieces_merged: usize,
    /// Whether the polygons carry flood dates.
    pub(crate) dated: bool,
}

fn gdal_err(what: &str) -> impl Fn(gdal::errors::GdalError) -> Error + '_ {
    move |e| Error::Gdal(format!("{what}: {e}"))
}

/// The polygons of a geometry (a polygon, or a multipolygon's parts).
fn parts(g: &Geometry) -> Vec<Geometry> {
    let t = geometry_type_flatten(g.geometry_type());
    if t == OGRwkbGeometryType::wkbPolygon {
        vec![g.clone()]
    } else {
        (0..g.geometry_count())
            .flat_map(|i| parts(&g.get_geometry(i)))
            .collect()
    }
}

/// The union of `polys` (GEOS cascaded union), as polygons.
fn union_all(polys: Vec<Geometry>) -> Result<Vec<Geometry>> {
    if polys.len() < 2 {
        return Ok(polys);
    }
    let mut mp = Geometry::empty(OGRwkbGeometryType::wkbMultiPolygon)?;
    for p in polys {
        mp.add_geometry(p)?;
    }
    // SAFETY: `mp` outlives the call; the result is a new geometry we own,
    // copied out as WKB and destroyed before returning.
    let wkb = unsafe {
        let h = gdal_sys::OGR_G_UnionCascaded(mp.c_geometry());
        if h.is_null() {
            return Err(Error::Gdal(
                "merging polygons across block edges failed (GEOS union)".into(),
            ));
        }
        let size = gdal_sys::OGR_G_WkbSize(h).max(0) as usize;
        let mut buf = vec![0u8; size];
        let rv =
            gdal_sys::OGR_G_ExportToWkb(h, gdal_sys::OGRwkbByteOrder::wkbNDR, buf.as_mut_ptr());
        gdal_sys::OGR_G_DestroyGeometry(h);
        if rv != gdal_sys::OGRErr::OGRERR_NONE {
            return Err(Error::Gdal(
                "merged polygons cannot be written as WKB".into(),
            ));
        }
        buf
    };
    Ok(parts(&Geometry::from_wkb(&wkb)?))
}

/// Geodesic areas on the raster CRS's ellipsoid.
struct Ellipsoid {
    to_geo: CoordTransform,
    geod: Geodesic,
}

impl Ellipsoid {
    fn new(srs: &SpatialRef) -> Result<Self> {
        let mut geo = srs.geog_cs()?;
        geo.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let (a, b) = (srs.semi_major()?, srs.semi_minor()?);
        Ok(Self {
            to_geo: CoordTransform::new(srs, &geo)?,
            geod: Geodesic::new(a, (a - b) / a),
        })
    }

    /// m² of a polygon given in map coordinates: outer ring less holes.
    fn polygon_m2(&self, g: &Geometry) -> Result<f64> {
        let mut total = 0.0;
        for i in 0..g.geometry_count() {
            let ring = g.get_geometry(i);
            let mut pts = Vec::new();
            ring.get_points(&mut pts);
            let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = pts.iter().map(|p| (p.0, p.1)).unzip();
            let mut zs = vec![0.0; xs.len()];
            self.to_geo
                .transform_coords(&mut xs, &mut ys, &mut zs)
                .map_err(gdal_err("polygon vertices to longitude/latitude"))?;
            let mut p = PolygonArea::new(&self.geod, Winding::CounterClockwise);
            for (&lon, &lat) in xs.iter().zip(&ys).take(xs.len().saturating_sub(1)) {
                p.add_point(lat, lon);
            }
            let a = p.compute(true).1.abs();
            total += if i == 0 { a } else { -a };
        }
        Ok(total)
    }
}

/// A class raster opened and checked: integer pixels, a north-up grid, a CRS.
struct ClassRaster {
    ds: Dataset,
    shown: String,
    gt: [f64; 6],
    srs: SpatialRef,
    nodata: Option<f64>,
    size: (usize, usize),
}

impl ClassRaster {
    fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let bad = |m: String| Error::invalid("raster", shown.clone(), m);
        let ds = Dataset::open(path).map_err(|e| bad(format!("GDAL cannot open it: {e}")))?;
        let band = ds.rasterband(1).map_err(|_| bad("it has no band".into()))?;
        let dt = band.band_type();
        if !dt.is_integer() {
            return Err(bad(format!(
                "a class raster has integer pixels, this one is {dt}"
            )));
        }
        let nodata = band.no_data_value();
        let gt = ds
            .geo_transform()
            .map_err(|_| bad("it has no geotransform".into()))?;
        if gt[2] != 0.0 || gt[4] != 0.0 {
            return Err(bad("its grid is rotated".into()));
        }
        let srs = ds.spatial_ref().map_err(|_| bad("it has no CRS".into()))?;
        let size = ds.raster_size();
        Ok(Self {
            ds,
            shown,
            gt,
            srs,
            nodata,
            size,
        })
    }

    /// Whether a pixel value is vectorised.
    fn keeps(&self, opts: &PolygonOptions, v: i32) -> bool {
        if self.nodata.is_some_and(|n| n == v as f64) {
            return false;
        }
        if opts.classes.is_empty() {
            v != 0
        } else {
            opts.classes.contains(&(v as i64))
        }
    }

    /// The polygons of one block (pixel coordinates of the whole raster),
    /// each with its class and whether it touches an inner block edge (a
    /// piece to merge with its neighbours').
    fn block_polygons(
        &self,
        opts: &PolygonOptions,
        b: Window,
    ) -> Result<Vec<(i64, Geometry, bool)>> {
        let (x0, y0, bw, bh) = (b.x, b.y, b.width, b.height);
        let vals = self
            .ds
            .rasterband(1)?
            .read_as::<i32>((x0 as isize, y0 as isize), (bw, bh), (bw, bh), None)
            .map_err(gdal_err("reading the raster"))?;
        let mask: Vec<u8> = vals
            .data()
            .iter()
            .map(|&v| self.keeps(opts, v) as u8)
            .collect();
        if !mask.contains(&1) {
            return Ok(Vec::new());
        }
        let mem = DriverManager::get_driver_by_name("MEM")?;
        let mut vds = mem.create_with_band_type::<i32, _>("", bw, bh, 1)?;
        vds.set_geo_transform(&[x0 as f64, 1.0, 0.0, y0 as f64, 0.0, 1.0])?;
        let mut vb = vds.rasterband(1)?;
        let mut buf = gdal::raster::Buffer::new((bw, bh), vals.data().to_vec());
        vb.write((0, 0), (bw, bh), &mut buf)?;
        let mds = mem.create_with_band_type::<u8, _>("", bw, bh, 1)?;
        let mut mb = mds.rasterband(1)?;
        let mut mbuf = gdal::raster::Buffer::new((bw, bh), mask);
        mb.write((0, 0), (bw, bh), &mut mbuf)?;
        let mut out = DriverManager::get_driver_by_name("Memory")?.create_vector_only("")?;
        let layer = out.create_layer(LayerOptions {
            name: "polygons",
            ty: OGRwkbGeometryType::wkbPolygon,
            ..Default::default()
        })?;
        layer.create_defn_fields(&[("class", OGRFieldType::OFTInteger64)])?;
        // SAFETY: every handle belongs to a dataset alive for the call.
        let rv = unsafe {
            gdal_sys::GDALPolygonize(
                vb.c_rasterband(),
                mb.c_rasterband(),
                layer.c_layer(),
                0,
                std::ptr::null_mut(),
                None,
                std::ptr::null_mut(),
            )
        };
        if rv != gdal_sys::CPLErr::CE_None {
            return Err(Error::Gdal(format!(
                "vectorising block ({x0}, {y0}) of '{}' failed",
                self.shown
            )));
        }
        let (w, h) = self.size;
        let inner_x = |x: f64| x > 0.0 && x < w as f64;
        let inner_y = |y: f64| y > 0.0 && y < h as f64;
        let (bx1, by1) = ((x0 + bw) as f64, (y0 + bh) as f64);
        let mut found = Vec::new();
        for f in out.layer(0)?.features() {
            let class = f.field_as_integer64(0)?.unwrap_or_default();
            let Some(g) = f.geometry() else { continue };
            let e = g.envelope();
            let at_edge = (e.MinX == x0 as f64 && inner_x(e.MinX))
                || (e.MaxX == bx1 && inner_x(e.MaxX))
                || (e.MinY == y0 as f64 && inner_y(e.MinY))
                || (e.MaxY == by1 && inner_y(e.MaxY));
            found.push((class, g.clone(), at_edge));
        }
        Ok(found)
    }
}

/// Vectorises the raster at `path` (band 1).
pub(crate) fn polygonize(path: &Path, opts: &PolygonOptions) -> Result<Polygons> {
    let raster = ClassRaster::open(path)?;
    let (w, h) = raster.size;
    let block = opts.block.max(16);
    // finished polygons in pixel coordinates; pieces at block edges by class
    let mut done: Vec<(i64, Geometry)> = Vec::new();
    let mut pending: BTreeMap<i64, Vec<Geometry>> = BTreeMap::new();
    let mut blocks = 0;
    for y0 in (0..h).step_by(block) {
        for x0 in (0..w).step_by(block) {
            blocks += 1;
            let b = Window {
                x: x0,
                y: y0,
                width: block.min(w - x0),
                height: block.min(h - y0),
            };
            for (class, g, at_edge) in raster.block_polygons(opts, b)? {
                if at_edge {
                    pending.entry(class).or_default().push(g);
                } else {
                    done.push((class, g));
                }
            }
        }
    }
    let mut pieces_merged = 0;
    for (class, pieces) in pending {
        pieces_merged += pieces.len();
        for g in union_all(pieces)? {
            done.push((class, g));
        }
    }
    done.retain(|(_, px)| px.area().round() as u64 >= opts.min_pixels.max(1));
    let dates = match &opts.dates {
        Some(paths) => Some(polygon_dates(&done, paths, (w, h), &raster.gt, block)?),
        None => None,
    };
    let mut srs_gis = raster.srs.clone();
    srs_gis.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ellipsoid = Ellipsoid::new(&srs_gis)?;
    let mut polygons = done
        .into_iter()
        .enumerate()
        .map(|(k, (class, px))| {
            let days = dates.as_ref().map(|d| d[k]).unwrap_or_default();
            flood_polygon(class, &px, days, &raster.gt, &ellipsoid, opts)
        })
        .collect::<Result<Vec<_>>>()?;
    // a stable order: top to bottom, left to right
    polygons.sort_by(|a, b| {
        let (ea, eb) = (a.geometry.envelope(), b.geometry.envelope());
        eb.MaxY
            .total_cmp(&ea.MaxY)
            .then(ea.MinX.total_cmp(&eb.MinX))
            .then(a.class.cmp(&b.class))
    });
    Ok(Polygons {
        polygons,
        crs: raster.srs.to_wkt()?,
        projjson: raster.srs.to_projjson()?,
        blocks,
        pieces_merged,
        dated: opts.dates.is_some(),
    })
}

/// A polygon found in pixel coordinates (`px`) as the result gives it: in
/// the raster's CRS (simplified when asked), its pixel count, its geodesic
/// km² and its (first, last) flood days (0: none).
fn flood_polygon(
    class: i64,
    px: &Geometry,
    (first, last): (u16, u16),
    gt: &[f64; 6],
    ellipsoid: &Ellipsoid,
    opts: &PolygonOptions,
) -> Result<FloodPolygon> {
    let pixels = px.area().round() as u64;
    let dense = px.clone();
    // SAFETY: `dense` is a geometry we own.
    unsafe { gdal_sys::OGR_G_Segmentize(dense.c_geometry(), 10.0) };
    let area_km2 = ellipsoid.polygon_m2(&map_affine(&dense, gt, false)?)? / 1e6;
    let mut geometry = map_affine(px, gt, false)?;
    if opts.simplify > 0.0 {
        geometry = geometry
            .simplify_preserve_topology(opts.simplify)
            .map_err(gdal_err("simplifying a polygon"))?;
    }
    Ok(FloodPolygon {
        class,
        pixels,
        area_km2,
        geometry,
        first_day: (first != 0).then_some(first),
        last_day: (last != 0).then_some(last),
    })
}

/// A date raster on the class raster's grid, band 1 (u16).
fn open_dates(path: &Path, size: (usize, usize), gt: &[f64; 6]) -> Result<Dataset> {
    let shown = path.display().to_string();
    let ds = Dataset::open(path).map_err(|e| {
        Error::invalid(
            "date raster",
            shown.clone(),
            format!("GDAL cannot open it: {e}"),
        )
    })?;
    let same_grid = ds.raster_size() == size && ds.geo_transform().ok().as_ref() == Some(gt);
    if !same_grid {
        return Err(Error::invalid(
            "date raster",
            shown,
            "it is not on the class raster's grid (same size and geotransform)",
        ));
    }
    let t = ds.rasterband(1)?.band_type();
    if t != gdal::raster::GdalDataType::UInt16 {
        return Err(Error::invalid(
            "date raster",
            shown,
            format!("flood dates are 16-bit (days since 1970, as flood_first_date writes), this one is {t}"),
        ));
    }
    Ok(ds)
}

/// Per polygon (`polys`, in pixel coordinates), the earliest non-zero day of
/// the first-date raster and the latest of the last-date raster over its
/// pixels: the polygons burned back block by block (their edges lie on
/// pixel edges, so the pixel-centre rule gives exactly their pixels).
fn polygon_dates(
    polys: &[(i64, Geometry)],
    paths: &(PathBuf, PathBuf),
    size: (usize, usize),
    gt: &[f64; 6],
    block: usize,
) -> Result<Vec<(u16, u16)>> {
    let first = open_dates(&paths.0, size, gt)?;
    let last = open_dates(&paths.1, size, gt)?;
    let zones = ZoneSet::from_pixel_shapes(
        "flood polygons",
        polys.iter().map(|(_, g)| g).collect::<Vec<_>>().as_slice(),
    )?;
    let mut out = vec![(0u16, 0u16); polys.len()];
    let (w, h) = size;
    for y in (0..h).step_by(block) {
        for x in (0..w).step_by(block) {
            let win = Window {
                x,
                y,
                width: block.min(w - x),
                height: block.min(h - y),
            };
            let ids = zones.window(win)?;
            let read = |ds: &Dataset| -> Result<Vec<u16>> {
                let b = ds.rasterband(1)?.read_as::<u16>(
                    (x as isize, y as isize),
                    (win.width, win.height),
                    (win.width, win.height),
                    None,
                )?;
                Ok(b.data().to_vec())
            };
            let (f, l) = (read(&first)?, read(&last)?);
            for (i, id) in ids.chunks_exact(4).enumerate() {
                let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]) as usize;
                let Some(acc) = id.checked_sub(1).and_then(|k| out.get_mut(k)) else {
                    continue;
                };
                if f[i] != 0 && (acc.0 == 0 || f[i] < acc.0) {
                    acc.0 = f[i];
                }
                acc.1 = acc.1.max(l[i]);
            }
        }
    }
    Ok(out)
}
