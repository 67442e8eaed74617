//! Lineage: every raster run writes a STAC Item (v1.1.0, with the
//! projection v2.0.0 and raster v1.1.0 extensions) beside its outputs,
//! `NAME.stac.json` for the first output `NAME.tif` (or `.parquet`, `.png`;
//! its own suffix, so that it never lands on a catalogue's `NAME.json`). It
//! says what the files are and where they come from: the grid's footprint
//! (geometry and bbox in lon/lat), `proj:*` of the grid, `raster:bands` of
//! the GeoTIFF, the time range of the slices fused, the SQL as run and its
//! parameters, the catalogue searched, the id of every item read, and
//! floodsql's version. `floodsql extent --update` reads it back to know
//! which items a result already holds. Blocking (GDAL).

use std::path::{Path, PathBuf};

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{io_err, Error, Result};
use crate::output::assemble::PixelMeta;
use crate::output::Provenance;
use crate::raster::grid::{spatial_ref, OutputGrid};

/// STAC extensions the item uses.
const PROJECTION: &str = "https://stac-extensions.github.io/projection/v2.0.0/schema.json";
const RASTER: &str = "https://stac-extensions.github.io/raster/v1.1.0/schema.json";

/// The lineage file of a run whose first output is `first`: `NAME.stac.json`
/// beside it (a URL keeps its scheme and bucket).
pub(crate) fn lineage_path(first: &Path) -> PathBuf {
    let s = first.to_string_lossy();
    let name_at = s.rfind('/').map_or(0, |i| i + 1);
    let stem_end = s[name_at..]
        .rfind('.')
        .filter(|&i| i > 0)
        .map_or(s.len(), |i| name_at + i);
    PathBuf::from(format!("{}.stac.json", &s[..stem_end]))
}

/// How an output is named in the item: an href relative to the item when
/// both are local files in one directory, else the path or URL as given.
fn href(output: &Path, item: &Path) -> String {
    let same_dir = output.parent() == item.parent() && !output.to_string_lossy().contains("://");
    match output.file_name() {
        Some(n) if same_dir => format!("./{}", n.to_string_lossy()),
        _ => output.to_string_lossy().to_string(),
    }
}

/// The grid's outline in lon/lat (WGS 84), 8 points per edge, closed.
fn footprint(grid: &OutputGrid) -> Result<Vec<[f64; 2]>> {
    let src = spatial_ref(&grid.crs)?;
    let mut wgs = SpatialRef::from_epsg(4326)?;
    wgs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let t = CoordTransform::new(&src, &wgs)?;
    let gt = grid.geotransform();
    let (w, h) = (grid.width as f64, grid.height as f64);
    let n = 8;
    let mut pts = Vec::new();
    for i in 0..n {
        pts.push((0.0, h * i as f64 / n as f64));
    }
    for i in 0..n {
        pts.push((w * i as f64 / n as f64, h));
    }
    for i in 0..n {
        pts.push((w, h - h * i as f64 / n as f64));
    }
    for i in 0..n {
        pts.push((w - w * i as f64 / n as f64, 0.0));
    }
    let mut xs: Vec<f64> = pts.iter().map(|p| gt[0] + p.0 * gt[1]).collect();
    let mut ys: Vec<f64> = pts.iter().map(|p| gt[3] + p.1 * gt[5]).collect();
    let mut zs = vec![0.0; xs.len()];
    t.transform_coords(&mut xs, &mut ys, &mut zs)
        .map_err(|e| Error::Gdal(format!("the grid's outline to lon/lat: {e}")))?;
    let mut ring: Vec<[f64; 2]> = xs.into_iter().zip(ys).map(|(x, y)| [x, y]).collect();
    if ring.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::Gdal("the grid's outline has no lon/lat".into()));
    }
    // GeoJSON's exterior rings are counter-clockwise
    let area2: f64 = ring
        .iter()
        .zip(ring.iter().cycle().skip(1))
        .map(|(a, b)| a[0] * b[1] - b[0] * a[1])
        .sum();
    if area2 < 0.0 {
        ring.reverse();
    }
    ring.push(ring[0]);
    Ok(ring)
}

/// `proj:code`, `proj:projjson` of a CRS.
fn projection(crs: &str) -> Result<(Value, Value)> {
    let srs = spatial_ref(crs)?;
    let code = match (srs.auth_name(), srs.auth_code()) {
        (Some(a), Ok(c)) => json!(format!("{a}:{c}")),
        _ => Value::Null,
    };
    let pj = srs
        .to_projjson()
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .unwrap_or(Value::Null);
    Ok((code, pj))
}

/// What the item records about a run.
pub(crate) struct Run<'a> {
    pub(crate) grid: &'a OutputGrid,
    pub(crate) provenance: &'a Provenance,
    pub(crate) pixels: PixelMeta,
    pub(crate) bytes_per_pixel: usize,
    /// (asset key, output path as given, media type, role)
    pub(crate) assets: Vec<(&'static str, PathBuf, &'static str, &'static str)>,
}

/// The STAC Item of a run, to be published at `item_path` (as the user
/// named it: hrefs are relative to it).
pub(crate) fn item(run: &Run, item_path: &Path) -> Result<Value> {
    let g = run.grid;
    let p = run.provenance;
    let ring = footprint(g)?;
    let (mut minx, mut miny, mut maxx, mut maxy) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for [x, y] in &ring {
        minx = minx.min(*x);
        miny = miny.min(*y);
        maxx = maxx.max(*x);
        maxy = maxy.max(*y);
    }
    let (code, projjson) = projection(&g.crs)?;
    let gt = g.geotransform();
    let id = item_path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "floodsql-result".into());
    let mut props = serde_json::Map::new();
    let (start, end) = p.time_range.clone().unwrap_or_default();
    props.insert("datetime".into(), Value::Null);
    props.insert("start_datetime".into(), json!(start));
    props.insert("end_datetime".into(), json!(end));
    props.insert(
        "created".into(),
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    props.insert("title".into(), json!(p.title));
    props.insert("proj:code".into(), code);
    props.insert("proj:projjson".into(), projjson);
    props.insert("proj:shape".into(), json!([g.height, g.width]));
    props.insert(
        "proj:transform".into(),
        json!([gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]]),
    );
    props.insert("gsd".into(), json!(g.res));
    props.insert("floodsql:version".into(), json!(p.version));
    props.insert("floodsql:sql".into(), json!(p.query));
    props.insert(
        "floodsql:parameters".into(),
        Value::Object(
            p.parameters
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        ),
    );
    props.insert("floodsql:source".into(), json!(p.source));
    props.insert("floodsql:asset".into(), json!(p.asset));
    props.insert("floodsql:items".into(), json!(p.item_ids));
    props.insert("floodsql:item_versions".into(), json!(p.item_versions));
    if !p.missing.is_empty() {
        let missing: serde_json::Map<String, Value> = p
            .missing
            .iter()
            .map(|m| {
                let read_as = if m.nodata {
                    json!("nodata")
                } else {
                    json!(m.fill)
                };
                (
                    m.asset.clone(),
                    json!({"read_as": read_as, "items": m.items}),
                )
            })
            .collect();
        props.insert("floodsql:missing_assets".into(), Value::Object(missing));
    }
    let mut assets = serde_json::Map::new();
    for (key, path, media, role) in &run.assets {
        let mut a = json!({
            "href": href(path, item_path),
            "type": media,
            "roles": [role],
        });
        if *key == "data" {
            let mut band = json!({
                "data_type": if run.bytes_per_pixel == 2 { "uint16" } else { "uint8" },
                "spatial_resolution": g.res,
            });
            if let Some(n) = run.pixels.nodata {
                band["nodata"] = json!(n);
            }
            a["raster:bands"] = json!([band]);
        }
        assets.insert(key.to_string(), a);
    }
    Ok(json!({
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [PROJECTION, RASTER],
        "id": id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [minx, miny, maxx, maxy],
        "properties": props,
        "links": [],
        "assets": assets,
    }))
}

/// Writes the item of `run` at `out` (a staged file) for an item that will
/// be at `named`.
pub(crate) fn write(run: &Run, out: &Path, named: &Path) -> Result<()> {
    let v = item(run, named)?;
    let text = serde_json::to_string_pretty(&v)
        .map_err(|e| Error::Internal(format!("lineage item: {e}")))?;
    std::fs::write(out, text.as_bytes()).map_err(io_err(out))
}

/// Fails when a local file is at the lineage path `path` and is not a
/// floodsql lineage item: a run never overwrites a JSON file of the user's.
pub(crate) fn check_replaceable(path: &Path) -> Result<()> {
    if path.to_string_lossy().contains("://") || !path.exists() {
        return Ok(());
    }
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| v["properties"]["floodsql:version"].is_string());
    if ours {
        Ok(())
    } else {
        Err(Error::invalid(
            "output path",
            path.display().to_string(),
            "the run's lineage item goes there (NAME.stac.json beside NAME.tif), but that file exists and is not a floodsql lineage item: move it or name the outputs otherwise",
        ))
    }
}

/// What `--update` needs from an earlier run's item.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Recorded {
    pub(crate) properties: RecordedProps,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RecordedProps {
    #[serde(rename = "floodsql:items", default)]
    pub(crate) items: Vec<String>,
    #[serde(rename = "floodsql:item_versions", default)]
    pub(crate) item_versions: std::collections::BTreeMap<String, String>,
    #[serde(rename = "floodsql:parameters", default)]
    pub(crate) parameters: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) start_datetime: Option<String>,
    #[serde(default)]
    pub(crate) end_datetime: Option<String>,
}

/// Reads the lineage item at `path`.
pub(crate) fn read(path: &Path) -> Result<Recorded> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| Error::Output {
        path: path.display().to_string(),
        message: format!("not a floodsql lineage item: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_sits_beside_the_first_output() {
        assert_eq!(
            lineage_path(Path::new("out/x.tif")),
            PathBuf::from("out/x.stac.json")
        );
        assert_eq!(
            lineage_path(Path::new("x.y.parquet")),
            PathBuf::from("x.y.stac.json")
        );
        assert_eq!(
            lineage_path(Path::new("noext")),
            PathBuf::from("noext.stac.json")
        );
        assert_eq!(
            lineage_path(Path::new("s3://b.c/dir/r.tif")),
            PathBuf::from("s3://b.c/dir/r.stac.json")
        );
        assert_eq!(
            href(Path::new("out/x.tif"), Path::new("out/x.stac.json")),
            "./x.tif"
        );
        assert_eq!(
            href(Path::new("a/x.png"), Path::new("out/x.stac.json")),
            "a/x.png"
        );
    }
}
