//! A STAC item as floodsql uses it: the raw JSON plus accessors for the fields
//! the raster scan needs (projection, asset grid, nodata, href).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A parsed STAC item.
#[derive(Debug, Clone)]
pub(crate) struct StacItem {
    pub id: String,
    pub collection: Option<String>,
    pub datetime: Option<DateTime<Utc>>,
    /// `start_datetime` / `end_datetime`: the item's time range, used when
    /// `datetime` is null.
    pub start_datetime: Option<DateTime<Utc>>,
    pub end_datetime: Option<DateTime<Utc>>,
    pub bbox: Option<[f64; 4]>,
    pub geometry: Option<Value>,
    pub properties: Map<String, Value>,
    pub assets: Map<String, Value>,
    /// Where the item came from, for resolving relative asset hrefs
    /// (its `self` link, else the file or URL it was read from).
    pub base: Option<String>,
}

impl StacItem {
    /// Parses one GeoJSON Feature; `base` is where it was read from.
    pub(crate) fn from_json(v: Value, base: Option<&str>) -> Result<Self> {
        let Value::Object(mut o) = v else {
            return Err(Error::BadItem {
                item: "?".into(),
                message: "not a JSON object".into(),
            });
        };
        let id = match o.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(Error::BadItem {
                    item: "?".into(),
                    message: "missing string 'id'".into(),
                })
            }
        };
        let bad = |m: String| Error::BadItem {
            item: id.clone(),
            message: m,
        };
        if o.get("type").and_then(Value::as_str) != Some("Feature") {
            return Err(bad("'type' is not 'Feature'".into()));
        }
        let properties = match o.remove("properties") {
            Some(Value::Object(p)) => p,
            _ => return Err(bad("missing 'properties' object".into())),
        };
        let time = |key: &str| match properties.get(key) {
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| bad(format!("bad {key} '{s}': {e}"))),
            Some(Value::Null) | None => Ok(None),
            Some(v) => Err(bad(format!("{key} {v} is not an RFC 3339 string"))),
        };
        let datetime = time("datetime")?;
        let start_datetime = time("start_datetime")?;
        let end_datetime = time("end_datetime")?;
        let bbox = match o.get("bbox") {
            Some(Value::Array(a)) if a.len() == 4 || a.len() == 6 => {
                let n: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
                if n.len() != a.len() {
                    return Err(bad("non-numeric bbox".into()));
                }
                if n.len() == 4 {
                    Some([n[0], n[1], n[2], n[3]])
                } else {
                    Some([n[0], n[1], n[3], n[4]])
                }
            }
            _ => None,
        };
        let assets = match o.remove("assets") {
            Some(Value::Object(a)) => a,
            _ => Map::new(),
        };
        let self_link = o.get("links").and_then(Value::as_array).and_then(|links| {
            links.iter().find_map(|l| {
                (l.get("rel").and_then(Value::as_str) == Some("self"))
                    .then(|| l.get("href").and_then(Value::as_str).map(str::to_string))
                    .flatten()
            })
        });
        Ok(StacItem {
            id,
            collection: o
                .get("collection")
                .and_then(Value::as_str)
                .map(str::to_string),
            datetime,
            start_datetime,
            end_datetime,
            bbox,
            geometry: o.remove("geometry").filter(|g| !g.is_null()),
            properties,
            assets,
            base: self_link.or_else(|| base.map(str::to_string)),
        })
    }

    /// The item's time as the tutorial's stack takes it (odc-stac's
    /// `nominal_datetime`): `datetime`, else `start_datetime`, else
    /// `end_datetime`.
    pub(crate) fn nominal_datetime(&self) -> Option<DateTime<Utc>> {
        self.datetime.or(self.start_datetime).or(self.end_datetime)
    }

    /// Whether the item is in a search's time interval: its `datetime`, or
    /// else its range meeting the interval (as STAC APIs match); an item
    /// with neither is kept (and refused when planned).
    pub(crate) fn in_interval(&self, q: &crate::datetime::Interval) -> bool {
        match (self.datetime, self.start_datetime, self.end_datetime) {
            (Some(t), ..) => q.contains(t),
            (None, None, None) => true,
            (None, s, e) => q.meets(s, e),
        }
    }

    fn bad(&self, m: impl Into<String>) -> Error {
        Error::BadItem {
            item: self.id.clone(),
            message: m.into(),
        }
    }

    /// The item as CQL2 sees it: `id`, `collection`, `geometry`, `bbox` and
    /// `properties` (a property is named bare, `flooded_pixels`, or with
    /// its path, `properties.flooded_pixels`).
    pub(crate) fn filter_view(&self) -> Value {
        serde_json::json!({
            "type": "Feature",
            "id": self.id,
            "collection": self.collection,
            "geometry": self.geometry,
            "bbox": self.bbox,
            "properties": self.properties,
        })
    }

    /// What identifies the content the scan reads of this item, as short
    /// hex: a hash of its `updated` and `created` (item and each asset
    /// read), and the assets' `file:checksum`, `file:size` and hrefs — a
    /// reprocessed item republished under its id changes it.
    pub(crate) fn version(&self, assets: &[String]) -> String {
        let mut h = Fnv::default();
        for key in ["updated", "created"] {
            h.add(key, self.properties.get(key));
        }
        for a in assets {
            let Some(Value::Object(o)) = self.assets.get(a) else {
                h.add(a, None);
                continue;
            };
            for key in ["href", "updated", "created", "file:checksum", "file:size"] {
                h.add(key, o.get(key));
            }
        }
        format!("{:016x}", h.0)
    }

    /// The asset object, or a clear error listing the available ones.
    pub(crate) fn asset(&self, name: &str) -> Result<&Map<String, Value>> {
        match self.assets.get(name) {
            Some(Value::Object(a)) => Ok(a),
            _ => {
                let mut names: Vec<&str> = self.assets.keys().map(String::as_str).collect();
                names.sort();
                Err(Error::MissingAsset {
                    asset: name.into(),
                    item: self.id.clone(),
                    available: names.join(", "),
                })
            }
        }
    }

    /// A projection field, from the asset first, then the item properties.
    fn proj_field(&self, asset: Option<&str>, key: &str) -> Option<&Value> {
        asset
            .and_then(|a| self.assets.get(a))
            .and_then(|a| a.get(key))
            .filter(|v| !v.is_null())
            .or_else(|| self.properties.get(key).filter(|v| !v.is_null()))
    }

    /// The CRS as [`crate::crs::spatial_ref`] takes it: `proj:wkt2`, else
    /// `proj:projjson` (as JSON text), else `proj:code` (e.g. `EPSG:27703`),
    /// else `proj:epsg`. Never requires an EPSG code.
    pub(crate) fn crs(&self, asset: Option<&str>) -> Option<String> {
        if let Some(Value::String(w)) = self.proj_field(asset, "proj:wkt2") {
            return Some(w.clone());
        }
        if let Some(j @ Value::Object(_)) = self.proj_field(asset, "proj:projjson") {
            return Some(j.to_string());
        }
        if let Some(Value::String(c)) = self.proj_field(asset, "proj:code") {
            return Some(c.clone());
        }
        if let Some(e) = self.proj_field(asset, "proj:epsg").and_then(Value::as_i64) {
            return Some(format!("EPSG:{e}"));
        }
        None
    }

    /// `proj:shape` as (rows, cols).
    pub(crate) fn proj_shape(&self, asset: Option<&str>) -> Option<(usize, usize)> {
        let a = self.proj_field(asset, "proj:shape")?.as_array()?;
        if a.len() != 2 {
            return None;
        }
        Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize))
    }

    /// `proj:transform` as the first six affine coefficients [a, b, c, d, e, f]
    /// (x = a*col + b*row + c, y = d*col + e*row + f).
    pub(crate) fn proj_transform(&self, asset: Option<&str>) -> Option<[f64; 6]> {
        let a = self.proj_field(asset, "proj:transform")?.as_array()?;
        if a.len() != 6 && a.len() != 9 {
            return None;
        }
        let v: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
        (v.len() == a.len()).then(|| [v[0], v[1], v[2], v[3], v[4], v[5]])
    }

    pub(crate) fn gsd(&self) -> Option<f64> {
        self.properties.get("gsd").and_then(Value::as_f64)
    }

    /// The asset's nodata from `raster:bands[0].nodata` (STAC metadata, not the
    /// COG header), if declared: a number, or one of the strings the raster
    /// extension allows ("nan", "inf", "-inf"); anything else is an `Err`
    /// with the value as written.
    pub(crate) fn asset_nodata(&self, asset: &str) -> Option<std::result::Result<f64, String>> {
        let v = self
            .assets
            .get(asset)?
            .get("raster:bands")?
            .as_array()?
            .first()?
            .get("nodata")?;
        match v {
            Value::Null => None,
            Value::Number(n) => Some(n.as_f64().ok_or_else(|| n.to_string())),
            Value::String(s) => Some(s.trim().parse::<f64>().map_err(|_| format!("'{s}'"))),
            other => Some(Err(other.to_string())),
        }
    }

    /// The asset's href resolved to a location (see [`resolve_href`]).
    pub(crate) fn asset_location(&self, asset: &str) -> Result<String> {
        let a = self.asset(asset)?;
        let href = a
            .get("href")
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad(format!("asset '{asset}' has no href")))?;
        resolve_href(href, self.base.as_deref()).map_err(|m| self.bad(m))
    }

    /// All asset hrefs, as (name, href) sorted by name.
    pub(crate) fn asset_hrefs(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .assets
            .iter()
            .filter_map(|(k, a)| Some((k.clone(), a.get("href")?.as_str()?.to_string())))
            .collect();
        v.sort();
        v
    }

    /// Item bbox, or the bbox of its geometry's coordinates.
    pub(crate) fn lonlat_bbox(&self) -> Option<[f64; 4]> {
        if let Some(b) = self.bbox {
            return Some(b);
        }
        let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        fn walk(v: &Value, b: &mut [f64; 4]) {
            if let Some(a) = v.as_array() {
                if a.len() >= 2 && a[0].is_number() && a[1].is_number() {
                    let (x, y) = (a[0].as_f64().unwrap_or(0.0), a[1].as_f64().unwrap_or(0.0));
                    b[0] = b[0].min(x);
                    b[1] = b[1].min(y);
                    b[2] = b[2].max(x);
                    b[3] = b[3].max(y);
                } else {
                    a.iter().for_each(|x| walk(x, b));
                }
            }
        }
        walk(self.geometry.as_ref()?.get("coordinates")?, &mut b);
        (b[0] <= b[2]).then_some(b)
    }
}

/// URL schemes an asset href may use (besides local paths): the stores the
/// native reader opens through `object_store`.
pub(crate) const REMOTE_SCHEMES: [&str; 9] = [
    "http://", "https://", "s3://", "s3a://", "gs://", "az://", "azure://", "abfs://", "abfss://",
];

/// Resolves an asset href against the item's location into a *location*:
/// an absolute local path or a URL of one of [`REMOTE_SCHEMES`]. GDAL's
/// virtual file systems (`/vsi…`) are refused: a catalogue names files, not
/// GDAL drivers and archives.
/// A local path without `.` and `..` components (object stores refuse them):
/// resolved by the file system when the file exists (a `..` after a symbolic
/// link goes where the OS would go), else lexically.
fn without_dots(p: &Path) -> String {
    use std::path::Component;
    if !p
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return p.display().to_string();
    }
    if let Ok(real) = std::fs::canonicalize(p) {
        return real.display().to_string();
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

pub(crate) fn resolve_href(href: &str, base: Option<&str>) -> std::result::Result<String, String> {
    if let Some(rest) = href.strip_prefix("file://") {
        let u = url::Url::parse(href).map_err(|e| format!("bad file URI '{href}': {e}"))?;
        return u
            .to_file_path()
            .map(|p| p.display().to_string())
            .map_err(|_| format!("bad file URI '{href}' ({rest})"));
    }
    if REMOTE_SCHEMES.iter().any(|s| href.starts_with(s)) {
        return url::Url::parse(href)
            .map(|u| u.to_string())
            .map_err(|e| format!("bad asset URL '{href}': {e}"));
    }
    if href.starts_with("/vsi") {
        return Err(format!(
            "asset href '{href}' is a GDAL virtual file system path; give a path or an http(s)/s3/gs/az URL"
        ));
    }
    if Path::new(href).is_absolute() {
        return Ok(without_dots(Path::new(href)));
    }
    if let Some((scheme, _)) = href.split_once("://") {
        return Err(format!(
            "asset href '{href}': unsupported scheme '{scheme}' (local paths, http(s), s3, gs, az)"
        ));
    }
    // relative href: against the item's own location
    match base {
        Some(b) if REMOTE_SCHEMES.iter().any(|s| b.starts_with(s)) => {
            let u = url::Url::parse(b)
                .and_then(|u| u.join(href))
                .map_err(|e| format!("cannot resolve '{href}' against '{b}': {e}"))?;
            Ok(u.to_string())
        }
        Some(b) => {
            let bp = if let Some(p) = b.strip_prefix("file://") {
                PathBuf::from(p)
            } else {
                PathBuf::from(b)
            };
            let dir = if bp.is_dir() {
                bp
            } else {
                bp.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            Ok(without_dots(&dir.join(href)))
        }
        None => Err(format!(
            "relative asset href '{href}' and no item location to resolve it against"
        )),
    }
}

/// FNV-1a over (key, JSON value) pairs: a stable hash (the same on every
/// build and platform, unlike `std`'s), for [`StacItem::version`].
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, key: &str, v: Option<&Value>) {
        let text = v.map_or_else(|| "-".to_string(), Value::to_string);
        for b in key.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs() {
        assert_eq!(resolve_href("file:///a/b.tif", None).unwrap(), "/a/b.tif");
        assert_eq!(
            resolve_href("https://x/y.tif", None).unwrap(),
            "https://x/y.tif"
        );
        assert_eq!(
            resolve_href("t/a.tif", Some("/data/items/i.json")).unwrap(),
            "/data/items/t/a.tif"
        );
        assert_eq!(
            resolve_href("../a.tif", Some("https://h/c/items/i.json")).unwrap(),
            "https://h/c/a.tif"
        );
        assert_eq!(
            resolve_href("s3://bucket/k/a.tif", None).unwrap(),
            "s3://bucket/k/a.tif"
        );
        assert!(resolve_href("a.tif", None).is_err());
        for bad in [
            "/vsizip//etc/x.zip/a.tif",
            "/vsicurl/http://h/a.tif",
            "ftp://h/a.tif",
        ] {
            let e = resolve_href(bad, Some("/data/i.json")).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
