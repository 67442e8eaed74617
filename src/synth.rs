//! Deterministic synthetic GFM data: COGs + STAC items shaped like the real
//! product. Equi7Grid AS CRS given only as the legacy WKT (no EPSG code), 20 m
//! pixels, tiles aligned to the lattice, several acquisitions (time slices)
//! each made of several tiles sharing one datetime, rotated swaths with 255
//! outside, exclusion holes (255), flood patterns that grow and recede, some
//! overlapping items within a slice (to exercise fusing), and decoy items
//! outside the AOI or the time range.

use std::path::{Path, PathBuf};

use chrono::{Duration, TimeZone, Utc};
use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::DriverManager;
use serde_json::{json, Value};

use crate::error::{io_err, Error, Result};
use crate::output::atomic::write_atomic;
use crate::raster::grid::spatial_ref;

/// Equi7Grid AS as shipped by the equi7grid package up to v0.2 (no EPSG code).
pub const EQUI7_AS_WKT: &str = crate::crs::EQUI7_AS_LEGACY_WKT;

/// Pixel size in metres (GFM's 20 m).
pub const RES: f64 = 20.0;
/// The asset the scene's items carry.
pub const ASSET: &str = "ensemble_flood_extent";
/// GFM's permanent-water asset (1 = reference water, 0 = not; nodata 255).
pub const REFERENCE_WATER: &str = "reference_water_mask";
/// GFM's exclusion asset (1 = excluded from flood mapping, 0 = not; nodata 255).
pub const EXCLUSION: &str = "exclusion_mask";
/// The scene's collection id.
pub const COLLECTION: &str = "GFM";

/// Size presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// ~600 px AOI, 500 px tiles, 5 acquisitions (seconds)
    Tiny,
    /// ~2000 px AOI, 1500 px tiles, 10 acquisitions
    Small,
    /// ~4500 px AOI over 1°, 3000 px tiles, 12 acquisitions
    Medium,
    /// the tutorial's AOI (~9000 px), 15000 px T3 tiles, 40 acquisitions (~150 items)
    Tutorial,
    /// the tutorial's scene with COGs shaped like GFM's own: mostly constant
    /// dry or nodata 512 px blocks, a few percent flooded, every other item
    /// ZSTD instead of DEFLATE
    Gfm,
}

/// How a scene's items state their CRS (all of them Equi7Grid Asia).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CrsForm {
    /// `proj:wkt2` = the legacy WKT1 of GFM's production items, `proj:epsg: null`
    #[default]
    Legacy,
    /// `proj:wkt2` = the WKT2 of EPSG:27703 (method 1125) and `proj:code`, as equi7grid >= 1.0 catalogues
    Wkt2,
    /// `proj:code` = "EPSG:27703" only
    Code,
    /// `proj:projjson` = the PROJJSON of EPSG:27703 only
    Projjson,
}

impl CrsForm {
    /// The `proj:*` CRS properties of an item.
    fn properties(self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        match self {
            CrsForm::Legacy => {
                m.insert("proj:epsg".into(), Value::Null);
                m.insert("proj:wkt2".into(), json!(EQUI7_AS_WKT));
            }
            CrsForm::Wkt2 => {
                m.insert("proj:code".into(), json!("EPSG:27703"));
                m.insert("proj:wkt2".into(), json!(crate::crs::EQUI7_AS_WKT2));
            }
            CrsForm::Code => {
                m.insert("proj:code".into(), json!("EPSG:27703"));
            }
            CrsForm::Projjson => {
                let pj: Value = serde_json::from_str(crate::crs::EQUI7_AS_PROJJSON)
                    .expect("EQUI7_AS_PROJJSON is JSON");
                m.insert("proj:projjson".into(), pj);
            }
        }
        m
    }
}

/// A generated scene's parameters.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// AOI (lon/lat) the scene is built around.
    pub bbox: [f64; 4],
    /// Tile side in pixels.
    pub tile_px: usize,
    /// Acquisitions (time slices).
    pub acquisitions: usize,
    /// Seed of the pseudo-random layout.
    pub seed: u64,
    /// How the items state their CRS.
    pub crs_form: CrsForm,
    /// Also write each item's `reference_water_mask` and `exclusion_mask`
    /// (static: the river's core, the 48 px exclusion blocks).
    pub masks: bool,
    /// Content shaped like GFM's COGs (see [`Scale::Gfm`]) rather than the
    /// dense test pattern.
    pub gfm_shaped: bool,
}

impl SynthSpec {
    /// The preset of a size, with a seed.
    pub fn preset(scale: Scale, seed: u64) -> SynthSpec {
        let (half_w, half_h, tile_px, acquisitions) = match scale {
            Scale::Tiny => (0.06, 0.05, 500, 5),
            Scale::Small => (0.2, 0.17, 1500, 10),
            Scale::Medium => (0.5, 0.4, 3000, 12),
            Scale::Tutorial | Scale::Gfm => {
                return SynthSpec {
                    bbox: [67.398376, 26.197341, 69.027100, 27.591066],
                    tile_px: 15000,
                    acquisitions: 40,
                    seed,
                    crs_form: CrsForm::Legacy,
                    masks: false,
                    gfm_shaped: scale == Scale::Gfm,
                }
            }
        };
        let (cx, cy) = (68.2127, 26.8942);
        let r6 = |v: f64| (v * 1e6).round() / 1e6;
        SynthSpec {
            bbox: [
                r6(cx - half_w),
                r6(cy - half_h),
                r6(cx + half_w),
                r6(cy + half_h),
            ],
            tile_px,
            acquisitions,
            seed,
            crs_form: CrsForm::Legacy,
            masks: false,
            gfm_shaped: false,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct SynthOutput {
    /// The scene's directory.
    pub dir: PathBuf,
    /// Its items as one ItemCollection JSON file.
    pub items_file: PathBuf,
    /// Region polygons over the scene (GeoJSON, lon/lat), for zonal
    /// statistics.
    pub regions_file: PathBuf,
    /// Items written (decoys included).
    pub n_items: usize,
    /// The AOI (lon/lat) to query it with.
    pub bbox: [f64; 4],
    /// The time range to query it with.
    pub datetime: String,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

fn unit(seed: u64, k: u64) -> f64 {
    (mix(seed.wrapping_mul(0x9E3779B97F4A7C15) ^ k) >> 11) as f64 / (1u64 << 53) as f64
}

/// One acquisition: a rotated swath and a flood level.
#[derive(Debug, Clone)]
struct Acq {
    datetime: chrono::DateTime<Utc>,
    /// swath: points with |(x - cx) * cos a + (y - cy) * sin a| < half_width (metres)
    cx: f64,
    cy: f64,
    cos: f64,
    sin: f64,
    half_width: f64,
    /// flood level 0..1 (grows then recedes)
    level: f64,
}

/// The terrain-like field f(x, y) = sin(x/97) + sin(y/131) + sin((x+y)/211) +
/// 0.5 sin((x-2y)/53), written separably (sin(a+b) = sin a cos b + cos a sin b)
/// so a tile costs a few multiply-adds per pixel.
struct ColTables {
    s97: Vec<f64>,
    s211: Vec<f64>,
    c211: Vec<f64>,
    s53: Vec<f64>,
    c53: Vec<f64>,
}

impl ColTables {
    fn new(col0: i64, n: usize) -> Self {
        let xs: Vec<f64> = (0..n).map(|c| (col0 + c as i64) as f64).collect();
        let t = |f: fn(f64) -> f64, d: f64| xs.iter().map(|&x| f(x / d)).collect();
        ColTables {
            s97: t(f64::sin, 97.0),
            s211: t(f64::sin, 211.0),
            c211: t(f64::cos, 211.0),
            s53: t(f64::sin, 53.0),
            c53: t(f64::cos, 53.0),
        }
    }
}

/// Whether pixel (gx, gy) is in an exclusion block: fixed 48 px blocks, ~1 in 23.
fn excluded(seed: u64, gx: i64, gy: i64) -> bool {
    let (bx, by) = (gx.div_euclid(48), gy.div_euclid(48));
    mix(seed ^ (bx as u64).wrapping_mul(31) ^ (by as u64).wrapping_mul(1_000_003))
        .is_multiple_of(23)
}

/// The river's position across its period at (gx, gy): permanent water
/// where it is below 1 (every acquisition floods it).
fn river(gx: i64, gy: i64) -> f64 {
    ((gy as f64 - 0.3 * gx as f64) / 40.0).rem_euclid(60.0)
}

/// The row terms of the smooth flood field at tile row `gy`.
struct RowField {
    s131: f64,
    s211y: f64,
    c211y: f64,
    s53y: f64,
    c53y: f64,
}

impl RowField {
    fn new(gy: i64) -> Self {
        let fy = gy as f64;
        Self {
            s131: (fy / 131.0).sin(),
            s211y: (fy / 211.0).sin(),
            c211y: (fy / 211.0).cos(),
            s53y: (2.0 * fy / 53.0).sin(),
            c53y: (2.0 * fy / 53.0).cos(),
        }
    }

    /// The field at column `c` of the tile (flooded where above a threshold).
    fn at(&self, t: &ColTables, c: usize) -> f64 {
        t.s97[c]
            + self.s131
            + (t.s211[c] * self.c211y + t.c211[c] * self.s211y)
            + 0.5 * (t.s53[c] * self.c53y - t.c53[c] * self.s53y)
    }
}

/// One tile row of the static masks: reference water (the river's core and
/// the deepest parts of the flood field, which most acquisitions flood) and
/// exclusion (the exclusion blocks), 0/1 each.
fn fill_mask_rows(t: &ColTables, col0: i64, gy: i64, seed: u64, water: &mut [u8], excl: &mut [u8]) {
    let field = RowField::new(gy);
    for (c, (w, x)) in water.iter_mut().zip(excl.iter_mut()).enumerate() {
        let gx = col0 + c as i64;
        *w = (river(gx, gy) < 1.0 || field.at(t, c) > 2.6) as u8;
        *x = excluded(seed, gx, gy) as u8;
    }
}

/// Whether pixel (gx, gy) lies in one of the GFM-shaped scene's exclusion
/// patches (towns, radar shadow): 2048 px squares, ~1 in 9 — elsewhere no
/// pixel is excluded, so dry land makes whole constant blocks.
fn in_exclusion_patch(seed: u64, gx: i64, gy: i64) -> bool {
    let (px, py) = (gx.div_euclid(2048), gy.div_euclid(2048));
    mix(seed ^ 0x5EED ^ (px as u64).wrapping_mul(7919) ^ (py as u64).wrapping_mul(104_729))
        .is_multiple_of(9)
}

/// Flood (1) / dry (0) / outside swath or excluded (255) for one tile row.
/// GFM-shaped (`gfm`): flooding only where the field peaks and along a
/// narrow river (a few percent of the land), exclusion holes only in
/// patches.
fn fill_row(a: &Acq, t: &ColTables, col0: i64, gy: i64, seed: u64, gfm: bool, row: &mut [u8]) {
    let field = RowField::new(gy);
    let y = (gy as f64 - 0.5) * RES;
    let (thr, river_w) = if gfm {
        (3.45 - 0.35 * a.level, 0.3 + 0.9 * a.level)
    } else {
        (3.2 - 1.6 * a.level, 1.0 + 6.0 * a.level)
    };
    for (c, v) in row.iter_mut().enumerate() {
        let gx = col0 + c as i64;
        // swath (pixel centre)
        let x = (gx as f64 + 0.5) * RES;
        let d = (x - a.cx) * a.cos + (y - a.cy) * a.sin;
        if d.abs() >= a.half_width {
            *v = 255;
            continue;
        }
        // exclusion holes: fixed 48 px blocks, ~1 in 23
        if excluded(seed, gx, gy) && (!gfm || in_exclusion_patch(seed, gx, gy)) {
            *v = 255;
            continue;
        }
        *v = (field.at(t, c) > thr || river(gx, gy) < river_w) as u8;
    }
}

fn acquisitions(spec: &SynthSpec, centre: (f64, f64), span: f64) -> Vec<Acq> {
    let t0 = Utc
        .with_ymd_and_hms(2022, 9, 1, 1, 3, 17)
        .single()
        .expect("valid date");
    (0..spec.acquisitions)
        .map(|k| {
            let u = |j: u64| unit(spec.seed, k as u64 * 16 + j);
            // ascending / descending passes tilt the swath either way (~±12° off north)
            let ang = (if k % 2 == 0 { 12.0f64 } else { -12.0 }).to_radians() + (u(1) - 0.5) * 0.1;
            let days = (k as f64 * 29.0 / spec.acquisitions as f64).floor() as i64;
            let secs = (u(2) * 86000.0) as i64;
            let phase = k as f64 / (spec.acquisitions.max(2) - 1) as f64;
            Acq {
                datetime: t0 + Duration::days(days) + Duration::seconds(secs),
                cx: centre.0 + (u(3) - 0.5) * span * 0.8,
                cy: centre.1,
                cos: ang.cos(),
                sin: ang.sin(),
                half_width: span * (0.25 + 0.2 * u(4)),
                level: (std::f64::consts::PI * phase).sin(),
            }
        })
        .collect()
}

fn lonlat_polygon(
    t: &CoordTransform,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
) -> Result<(Value, [f64; 4])> {
    let mut xs = [x0, x1, x1, x0, x0];
    let mut ys = [y1, y1, y0, y0, y1];
    let mut zs = [0.0; 5];
    t.transform_coords(&mut xs, &mut ys, &mut zs)?;
    let ring: Vec<Value> = xs
        .iter()
        .zip(ys.iter())
        .map(|(x, y)| json!([x, y]))
        .collect();
    let bbox = [
        xs.iter().cloned().fold(f64::MAX, f64::min),
        ys.iter().cloned().fold(f64::MAX, f64::min),
        xs.iter().cloned().fold(f64::MIN, f64::max),
        ys.iter().cloned().fold(f64::MIN, f64::max),
    ];
    Ok((json!({"type": "Polygon", "coordinates": [ring]}), bbox))
}

struct ItemSpec {
    id: String,
    acq: usize,
    /// tile origin in lattice units (top-left)
    col0: i64,
    row0: i64,
    /// decoys: shifted datetime
    time_shift_days: i64,
    /// a second item for the same tile and datetime with its swath shifted
    swath_shift: f64,
}

/// Generates the scene into `dir` (created). Deterministic for a given spec.
pub fn generate(
    spec: &SynthSpec,
    dir: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<SynthOutput> {
    crate::raster::read::configure_gdal();
    std::fs::create_dir_all(dir.join("items")).map_err(io_err(dir))?;
    std::fs::create_dir_all(dir.join("cogs")).map_err(io_err(dir))?;
    let dir = dir.canonicalize().map_err(io_err(dir))?;
    let srs = spatial_ref(EQUI7_AS_WKT)?;
    let mut wgs = SpatialRef::from_epsg(4326)?;
    wgs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let to_proj = CoordTransform::new(&wgs, &srs)?;
    let to_ll = CoordTransform::new(&srs, &wgs)?;
    let aoi = projected_aoi(&spec.bbox, &to_proj)?;
    let centre = ((aoi[0] + aoi[2]) / 2.0, (aoi[1] + aoi[3]) / 2.0);
    let span = (aoi[2] - aoi[0]).max(aoi[3] - aoi[1]);
    let acqs = acquisitions(spec, centre, span);
    let items = item_specs(spec, &acqs, &aoi);
    progress.set_length(items.len() as u64);
    let features = items
        .iter()
        .map(|it| item_json(spec, it, &acqs, &to_ll, &dir))
        .collect::<Result<Vec<Value>>>()?;
    write_cogs(spec, &items, &acqs, &dir, progress)?;
    let (items_file, regions_file) = write_catalogue(spec, &features, &dir)?;
    progress.finish_and_clear();
    Ok(SynthOutput {
        dir,
        items_file,
        regions_file,
        n_items: features.len(),
        bbox: spec.bbox,
        datetime: "2022-09-01T00:00:00Z/2022-10-01T00:00:00Z".into(),
    })
}

/// The AOI `b` (lon/lat) in the scene's CRS: [x0, y0, x1, y1].
fn projected_aoi(b: &[f64; 4], to_proj: &CoordTransform) -> Result<[f64; 4]> {
    let mut xs = [b[0], b[0], b[2], b[2]];
    let mut ys = [b[1], b[3], b[1], b[3]];
    to_proj.transform_coords(&mut xs, &mut ys, &mut [0.0; 4])?;
    Ok([
        xs.iter().cloned().fold(f64::MAX, f64::min),
        ys.iter().cloned().fold(f64::MAX, f64::min),
        xs.iter().cloned().fold(f64::MIN, f64::max),
        ys.iter().cloned().fold(f64::MIN, f64::max),
    ])
}

/// The scene's items: a tile per acquisition whose swath crosses it, on the
/// tile lattice over the projected AOI (plus a margin), some overlapping
/// second items of the same datetime, and decoys (outside the time range,
/// far outside the AOI).
fn item_specs(spec: &SynthSpec, acqs: &[Acq], aoi: &[f64; 4]) -> Vec<ItemSpec> {
    let [px0, py0, px1, py1] = *aoi;
    let tile_m = spec.tile_px as f64 * RES;
    let (tx0, tx1) = (
        ((px0 - tile_m * 0.1) / tile_m).floor() as i64,
        ((px1 + tile_m * 0.1) / tile_m).floor() as i64,
    );
    let (ty0, ty1) = (
        ((py0 - tile_m * 0.1) / tile_m).floor() as i64,
        ((py1 + tile_m * 0.1) / tile_m).floor() as i64,
    );
    let tp = spec.tile_px as i64;
    let mut items: Vec<ItemSpec> = Vec::new();
    // Equi7-like tile names: lower-left corner in km, tile side in km
    let tile_km = tp * 20 / 1000;
    let tile_name =
        |tx: i64, ty: i64| format!("E{:05}N{:05}T{tile_km}K", tx * tile_km, ty * tile_km);
    for (k, a) in acqs.iter().enumerate() {
        for tx in tx0..=tx1 {
            for ty in ty0..=ty1 {
                // does the swath cross this tile? (corner distances straddle or lie inside)
                let corners = [(tx, ty), (tx + 1, ty), (tx, ty + 1), (tx + 1, ty + 1)];
                let ds: Vec<f64> = corners
                    .iter()
                    .map(|&(cx, cy)| {
                        (cx as f64 * tile_m - a.cx) * a.cos + (cy as f64 * tile_m - a.cy) * a.sin
                    })
                    .collect();
                let (lo, hi) = (
                    ds.iter().cloned().fold(f64::MAX, f64::min),
                    ds.iter().cloned().fold(f64::MIN, f64::max),
                );
                if hi <= -a.half_width || lo >= a.half_width {
                    continue;
                }
                let stamp = a.datetime.format("%Y%m%dT%H%M%S");
                items.push(ItemSpec {
                    id: format!("ENSEMBLE_FLOOD_{stamp}_AS020M_{}", tile_name(tx, ty)),
                    acq: k,
                    col0: tx * tp,
                    row0: (ty + 1) * tp,
                    time_shift_days: 0,
                    swath_shift: 0.0,
                });
                // every third acquisition: a second, overlapping item of the same
                // datetime (id sorts after), whose swath is shifted
                if k % 3 == 1 && tx == tx0 && ty == ty0 {
                    items.push(ItemSpec {
                        id: format!("ENSEMBLE_FLOOD_{stamp}_AS020M_{}_B", tile_name(tx, ty)),
                        acq: k,
                        col0: tx * tp,
                        row0: (ty + 1) * tp,
                        time_shift_days: 0,
                        swath_shift: a.half_width * 0.8,
                    });
                }
            }
        }
    }
    // decoys: same tiles outside the time range; a tile far outside the AOI
    for (shift, tag) in [(-20i64, "EARLY"), (40, "LATE")] {
        items.push(ItemSpec {
            id: format!("ENSEMBLE_FLOOD_DECOY_{tag}_AS020M_{}", tile_name(tx0, ty0)),
            acq: 0,
            col0: tx0 * tp,
            row0: (ty0 + 1) * tp,
            time_shift_days: shift,
            swath_shift: 0.0,
        });
    }
    let far = (tx1 + 6, ty1 + 6);
    items.push(ItemSpec {
        id: format!(
            "ENSEMBLE_FLOOD_DECOY_FAR_AS020M_{}",
            tile_name(far.0, far.1)
        ),
        acq: 0,
        col0: far.0 * tp,
        row0: (far.1 + 1) * tp,
        time_shift_days: 0,
        swath_shift: 0.0,
    });
    items
}

/// The STAC item of `it` (its assets' COGs under `dir/cogs`).
fn item_json(
    spec: &SynthSpec,
    it: &ItemSpec,
    acqs: &[Acq],
    to_ll: &CoordTransform,
    dir: &Path,
) -> Result<Value> {
    let tile_m = spec.tile_px as f64 * RES;
    let tile_px = spec.tile_px;
    let x0 = it.col0 as f64 * RES;
    let y1 = it.row0 as f64 * RES;
    let (geometry, bbox) = lonlat_polygon(to_ll, x0, y1 - tile_m, x0 + tile_m, y1)?;
    let a = &acqs[it.acq];
    let dt = a.datetime + Duration::days(it.time_shift_days);
    let cog = dir.join("cogs").join(format!("{}_{ASSET}.tif", it.id));
    let href = url::Url::from_file_path(&cog)
        .map_err(|_| {
            Error::invalid(
                "scene directory",
                cog.display().to_string(),
                "not an absolute path",
            )
        })?
        .to_string();
    let mut feature = json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
        ],
        "id": it.id,
        "collection": COLLECTION,
        "geometry": geometry,
        "bbox": bbox,
        "properties": {
            "datetime": dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "gsd": RES,
            "proj:shape": [tile_px, tile_px],
            "proj:transform": [RES, 0.0, x0, 0.0, -RES, y1, 0.0, 0.0, 1.0],
            "platform": "sentinel-1",
            "constellation": "sentinel-1"
        },
        "links": [],
        "assets": {
            ASSET: {
                "href": href,
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "raster:bands": [{"nodata": 255, "data_type": "uint8", "spatial_resolution": RES}]
            }
        }
    });
    if let Some(props) = feature["properties"].as_object_mut() {
        props.extend(spec.crs_form.properties());
    }
    if spec.masks {
        for (name, title) in [
            (REFERENCE_WATER, "Reference water mask"),
            (EXCLUSION, "Exclusion mask"),
        ] {
            let cog = dir.join("cogs").join(format!("{}_{name}.tif", it.id));
            let href = url::Url::from_file_path(&cog)
                .map(|u| u.to_string())
                .unwrap_or_default();
            feature["assets"][name] = json!({
                "href": href,
                "title": title,
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "raster:bands": [{"nodata": 255, "data_type": "uint8", "spatial_resolution": RES}]
            });
        }
    }
    Ok(feature)
}

/// Every item's COGs, on two writer threads.
fn write_cogs(
    spec: &SynthSpec,
    items: &[ItemSpec],
    acqs: &[Acq],
    dir: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let (seed, tile_px, masks, gfm) = (spec.seed, spec.tile_px, spec.masks, spec.gfm_shaped);
    let jobs: Vec<(usize, &ItemSpec)> = items.iter().enumerate().collect();
    let errors: std::sync::Mutex<Vec<Error>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..2 {
            let jobs = &jobs;
            let errors = &errors;
            s.spawn(move || {
                for (i, it) in jobs.iter().filter(|(i, _)| i % 2 == w) {
                    // GFM-shaped: every other item ZSTD, as catalogues mix
                    let codec = if gfm && i % 4 >= 2 { "ZSTD" } else { "DEFLATE" };
                    let mut a = acqs[it.acq].clone();
                    a.cx += it.swath_shift;
                    let mut data = vec![0u8; tile_px * tile_px];
                    let tables = ColTables::new(it.col0, tile_px);
                    for (r, row) in data.chunks_exact_mut(tile_px).enumerate() {
                        fill_row(&a, &tables, it.col0, it.row0 - r as i64, seed, gfm, row);
                    }
                    let path = dir.join("cogs").join(format!("{}_{ASSET}.tif", it.id));
                    let mut tiles = vec![(path, data)];
                    if masks {
                        let mut water = vec![0u8; tile_px * tile_px];
                        let mut excl = vec![0u8; tile_px * tile_px];
                        for (r, (w, x)) in water
                            .chunks_exact_mut(tile_px)
                            .zip(excl.chunks_exact_mut(tile_px))
                            .enumerate()
                        {
                            fill_mask_rows(&tables, it.col0, it.row0 - r as i64, seed, w, x);
                        }
                        for (name, px) in [(REFERENCE_WATER, water), (EXCLUSION, excl)] {
                            tiles
                                .push((dir.join("cogs").join(format!("{}_{name}.tif", it.id)), px));
                        }
                    }
                    for (path, px) in tiles {
                        if let Err(e) = write_tile(&path, it.col0, it.row0, tile_px, codec, px) {
                            if let Ok(mut v) = errors.lock() {
                                v.push(e);
                            }
                        }
                    }
                    progress.inc(1);
                }
            });
        }
    });
    match errors.into_inner().ok().and_then(|mut v| v.pop()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The catalogue files: one file per item, an ItemCollection, NDJSON, a
/// collection and the regions: (items file, regions file).
fn write_catalogue(spec: &SynthSpec, features: &[Value], dir: &Path) -> Result<(PathBuf, PathBuf)> {
    for f in features {
        let id = f["id"].as_str().unwrap_or("item");
        let p = dir.join("items").join(format!("{id}.json"));
        write_text(&p, &serde_json::to_string_pretty(f).unwrap_or_default())?;
    }
    let items_file = dir.join("items.json");
    write_text(
        &items_file,
        &json!({"type": "FeatureCollection", "features": features}).to_string(),
    )?;
    let nd: String = features.iter().map(|f| f.to_string() + "\n").collect();
    write_text(&dir.join("items.ndjson"), &nd)?;
    // the collection's extent is the scene's: union of the item bboxes,
    // first and last datetime (RFC 3339 UTC strings sort as times)
    let mut ext = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for b in features.iter().filter_map(|f| f["bbox"].as_array()) {
        let v: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
        if let [x0, y0, x1, y1] = v[..] {
            ext = [
                ext[0].min(x0),
                ext[1].min(y0),
                ext[2].max(x1),
                ext[3].max(y1),
            ];
        }
    }
    let times: Vec<&str> = features
        .iter()
        .filter_map(|f| f["properties"]["datetime"].as_str())
        .collect();
    let collection = json!({
        "type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
        "description": "Synthetic GFM (Global Flood Monitoring) data made by floodsql synth",
        "license": "proprietary", "links": [],
        "extent": {"spatial": {"bbox": [ext]},
                   "temporal": {"interval": [[times.iter().min(), times.iter().max()]]}}
    });
    write_text(
        &dir.join("collection.json"),
        &serde_json::to_string_pretty(&collection).unwrap_or_default(),
    )?;
    let regions_file = dir.join("regions.geojson");
    write_text(&regions_file, &regions(&spec.bbox).to_string())?;
    Ok((items_file, regions_file))
}

/// Named regions over the AOI `b` (lon/lat), as a GeoJSON
/// FeatureCollection: two districts splitting it along a crooked line, a
/// ward overlapping both (listed after them), a two-part district reaching
/// outside the AOI, and one wholly outside it.
fn regions(b: &[f64; 4]) -> Value {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    // a point at fractions (fx, fy) of the AOI
    let p = |fx: f64, fy: f64| json!([b[0] + fx * w, b[1] + fy * h]);
    let ring = |pts: &[(f64, f64)]| {
        let mut r: Vec<Value> = pts.iter().map(|&(x, y)| p(x, y)).collect();
        r.push(r[0].clone());
        Value::Array(r)
    };
    let divide = [(1.03, 0.47), (0.71, 0.553), (0.38, 0.4137), (-0.02, 0.5291)];
    let mut north = vec![(-0.02, 1.03), (1.03, 1.03)];
    north.extend(divide);
    let mut south: Vec<(f64, f64)> = divide.iter().rev().copied().collect();
    south.extend([(1.03, -0.04), (-0.02, -0.04)]);
    let feature = |name: &str, code: i64, geometry: Value| json!({"type": "Feature", "properties": {"name": name, "code": code}, "geometry": geometry});
    json!({"type": "FeatureCollection", "features": [
        feature("North district", 11, json!({"type": "Polygon", "coordinates": [ring(&north)]})),
        feature("South district", 12, json!({"type": "Polygon", "coordinates": [ring(&south)]})),
        feature("River ward", 21, json!({"type": "Polygon", "coordinates": [
            ring(&[(0.4113, 0.3021), (0.6527, 0.4419), (0.5871, 0.7213), (0.3392, 0.6188)]),
            ring(&[(0.4713, 0.4421), (0.5117, 0.4603), (0.4987, 0.5211)])]})),
        feature("Delta islands", 31, json!({"type": "MultiPolygon", "coordinates": [
            [ring(&[(0.8512, 0.0813), (1.1207, 0.1009), (1.0911, 0.2488), (0.8731, 0.2202)])],
            [ring(&[(0.0712, 0.8233), (0.1893, 0.8517), (0.1538, 0.9402)])]]})),
        feature("Upland district", 41, json!({"type": "Polygon", "coordinates": [
            ring(&[(1.5, 1.5), (1.8, 1.5), (1.8, 1.8)])]})),
    ]})
}

fn write_text(p: &Path, s: &str) -> Result<()> {
    write_atomic(p, |tmp| std::fs::write(tmp, s).map_err(io_err(tmp)))
}

fn write_tile(
    path: &Path,
    col0: i64,
    row0: i64,
    size: usize,
    codec: &str,
    data: Vec<u8>,
) -> Result<()> {
    let mem = DriverManager::get_driver_by_name("MEM")?;
    let mut ds = mem.create_with_band_type::<u8, _>("", size, size, 1)?;
    ds.set_geo_transform(&[col0 as f64 * RES, RES, 0.0, row0 as f64 * RES, 0.0, -RES])?;
    ds.set_spatial_ref(&spatial_ref(EQUI7_AS_WKT)?)?;
    {
        let mut band = ds.rasterband(1)?;
        band.set_no_data_value(Some(255.0))?;
        band.write((0, 0), (size, size), &mut Buffer::new((size, size), data))?;
    }
    let cog = DriverManager::get_driver_by_name("COG")?;
    let compress = format!("COMPRESS={codec}");
    let opts =
        RasterCreationOptions::from_iter([compress.as_str(), "BLOCKSIZE=512", "OVERVIEWS=NONE"]);
    write_atomic(path, |tmp| {
        ds.create_copy(&cog, tmp, &opts)?;
        Ok(())
    })
}
