//! Finding items: a STAC API search (`POST /search`, every `next` page) or a
//! static catalogue (ItemCollection / NDJSON / item files, local or http).
//!
//! Why not the `stac-api` crate's client: in 0.8 it ignores `merge` on POST
//! `next` links, takes a bare `reqwest::Client` (no retry middleware) and
//! pins an older `stac`; paging is ~60 lines here, with timeouts and bounded
//! retries from `reqwest-retry`.

use std::path::Path;
use std::time::Duration;

use indicatif::ProgressBar;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::{policies::ExponentialBackoff, RetryTransientMiddleware};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::datetime::Interval;
use crate::error::{io_err, Error, Result};
use crate::stac::item::StacItem;

/// A lon/lat bounding box (EPSG:4326, x = longitude).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bbox {
    pub minx: f64,
    pub miny: f64,
    pub maxx: f64,
    pub maxy: f64,
}

impl Bbox {
    /// Parses `MINX,MINY,MAXX,MAXY` (degrees).
    pub fn parse(s: &str) -> Result<Bbox> {
        let bad = |m: &str| Error::BadBbox(s.to_string(), m.to_string());
        let v: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("expected four numbers MINX,MINY,MAXX,MAXY"))?;
        if v.len() != 4 {
            return Err(bad("expected four numbers MINX,MINY,MAXX,MAXY"));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(bad("numbers must be finite"));
        }
        let b = Bbox {
            minx: v[0],
            miny: v[1],
            maxx: v[2],
            maxy: v[3],
        };
        if !(-180.0..=180.0).contains(&b.minx) || !(-180.0..=180.0).contains(&b.maxx) {
            return Err(bad("longitudes must be within -180..180"));
        }
        if !(-90.0..=90.0).contains(&b.miny) || !(-90.0..=90.0).contains(&b.maxy) {
            return Err(bad("latitudes must be within -90..90"));
        }
        if b.minx >= b.maxx || b.miny >= b.maxy {
            return Err(bad("MINX must be < MAXX and MINY < MAXY"));
        }
        Ok(b)
    }

    /// The box as a GeoJSON polygon (the `intersects` pystac-client sends).
    pub fn to_geojson(&self) -> Value {
        let (a, b, c, d) = (self.minx, self.miny, self.maxx, self.maxy);
        json!({"type": "Polygon", "coordinates": [[[c, b], [c, d], [a, d], [a, b], [c, b]]]})
    }

    pub fn intersects(&self, o: &[f64; 4]) -> bool {
        self.minx <= o[2] && o[0] <= self.maxx && self.miny <= o[3] && o[1] <= self.maxy
    }
}

/// What to search for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchParams {
    /// STAC API root or `/search` URL, or a static catalogue (file, directory or URL).
    pub source: String,
    pub collections: Vec<String>,
    pub bbox: Option<Bbox>,
    pub datetime: Interval,
    pub max_items: Option<usize>,
    /// Items per page asked of an API.
    pub page_size: usize,
}

impl SearchParams {
    pub fn describe(&self) -> String {
        format!(
            "source={} collections={:?} bbox={:?} datetime={}",
            self.source,
            self.collections,
            self.bbox.map(|b| [b.minx, b.miny, b.maxx, b.maxy]),
            self.datetime.to_stac().unwrap_or_else(|| "..".into())
        )
    }
}

fn http_client() -> Result<ClientWithMiddleware> {
    let inner = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("floodsql/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Other(format!("HTTP client: {e}")))?;
    let policy = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(200), Duration::from_secs(5))
        .build_with_max_retries(3);
    Ok(ClientBuilder::new(inner)
        .with(RetryTransientMiddleware::new_with_policy(policy))
        .build())
}

async fn send_json(req: reqwest_middleware::RequestBuilder, url: &str) -> Result<Value> {
    let http = |message: String| Error::Http {
        url: url.to_string(),
        message,
    };
    let resp = req.send().await.map_err(|e| http(e.to_string()))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| http(e.to_string()))?;
    if !status.is_success() {
        let snippet: String = text.chars().take(300).collect();
        return Err(http(format!("HTTP {status}: {snippet}")));
    }
    serde_json::from_str(&text).map_err(|e| http(format!("response is not JSON: {e}")))
}

/// Runs the search; items in the order the source gives them (maybe none).
pub async fn search(p: &SearchParams, progress: &ProgressBar) -> Result<Vec<StacItem>> {
    let items = if p.source.starts_with("http://") || p.source.starts_with("https://") {
        let client = http_client()?;
        if p.source.trim_end_matches('/').ends_with("/search") {
            api_search(&client, p, p.source.clone(), progress).await?
        } else {
            let root = send_json(client.get(&p.source), &p.source).await?;
            match root.get("type").and_then(Value::as_str) {
                Some("FeatureCollection") | Some("Feature") => {
                    filter_static(p, items_from_value(root, Some(&p.source))?)
                }
                _ => {
                    let href = search_link(&root)
                        .unwrap_or_else(|| format!("{}/search", p.source.trim_end_matches('/')));
                    api_search(&client, p, href, progress).await?
                }
            }
        }
    } else {
        let path = p
            .source
            .strip_prefix("file://")
            .unwrap_or(&p.source)
            .to_string();
        let items = tokio::task::spawn_blocking(move || read_static(Path::new(&path)))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        filter_static(p, items)
    };
    progress.set_position(items.len() as u64);
    Ok(items)
}

fn search_link(root: &Value) -> Option<String> {
    root.get("links")?.as_array()?.iter().find_map(|l| {
        (l.get("rel")?.as_str()? == "search"
            && l.get("method").and_then(Value::as_str).unwrap_or("POST") == "POST")
            .then(|| l.get("href")?.as_str().map(str::to_string))
            .flatten()
    })
}

async fn api_search(
    client: &ClientWithMiddleware,
    p: &SearchParams,
    url: String,
    progress: &ProgressBar,
) -> Result<Vec<StacItem>> {
    let mut body = Map::new();
    if !p.collections.is_empty() {
        body.insert("collections".into(), json!(p.collections));
    }
    if let Some(b) = p.bbox {
        body.insert("intersects".into(), b.to_geojson());
    }
    if let Some(dt) = p.datetime.to_stac() {
        body.insert("datetime".into(), json!(dt));
    }
    body.insert("limit".into(), json!(p.page_size));

    let mut items = Vec::new();
    let mut next: Option<(String, Option<Map<String, Value>>)> = Some((url, Some(body.clone())));
    let mut pages = 0usize;
    while let Some((href, post_body)) = next.take() {
        pages += 1;
        if pages > 100_000 {
            return Err(Error::Http {
                url: href,
                message: "more than 100000 pages: the server's next links loop".into(),
            });
        }
        let req = match &post_body {
            Some(b) => client.post(&href).json(b),
            None => client.get(&href),
        };
        let page = send_json(req, &href).await?;
        let features = page
            .get("features")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Http {
                url: href.clone(),
                message: "search response has no 'features' array".into(),
            })?;
        if features.is_empty() {
            break;
        }
        for f in features {
            items.push(StacItem::from_json(f.clone(), Some(&href))?);
            if p.max_items.is_some_and(|m| items.len() >= m) {
                return Ok(items);
            }
        }
        progress.set_position(items.len() as u64);
        next = next_link(&page, post_body.as_ref().unwrap_or(&body));
    }
    Ok(items)
}

/// The `next` link: plain GET `href`, or POST with `body` (merged into the
/// previous body when `merge` is true).
fn next_link(
    page: &Value,
    prev_body: &Map<String, Value>,
) -> Option<(String, Option<Map<String, Value>>)> {
    let link = page
        .get("links")?
        .as_array()?
        .iter()
        .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))?;
    let href = link.get("href")?.as_str()?.to_string();
    let method = link.get("method").and_then(Value::as_str).unwrap_or("GET");
    if !method.eq_ignore_ascii_case("POST") {
        return Some((href, None));
    }
    let body = link
        .get("body")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let merge = link.get("merge").and_then(Value::as_bool).unwrap_or(false);
    let body = if merge {
        let mut b = prev_body.clone();
        b.extend(body);
        b
    } else if body.is_empty() {
        prev_body.clone()
    } else {
        body
    };
    Some((href, Some(body)))
}

/// Items of a FeatureCollection, a single Feature, or an array of features.
fn items_from_value(v: Value, base: Option<&str>) -> Result<Vec<StacItem>> {
    match v.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => {
            let Some(Value::Array(fs)) = v.get("features") else {
                return Err(Error::BadSource(
                    base.unwrap_or("?").into(),
                    "FeatureCollection without 'features'".into(),
                ));
            };
            fs.iter()
                .map(|f| StacItem::from_json(f.clone(), base))
                .collect()
        }
        Some("Feature") => Ok(vec![StacItem::from_json(v, base)?]),
        _ => Ok(vec![]),
    }
}

/// Reads a static catalogue: an ItemCollection or item JSON, NDJSON, or a
/// directory (searched recursively) of item JSON files.
pub fn read_static(path: &Path) -> Result<Vec<StacItem>> {
    let shown = path.display().to_string();
    if path.is_dir() {
        let mut files = Vec::new();
        collect_json(path, &mut files)?;
        files.sort();
        let mut items = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(io_err(&f))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| Error::BadSource(f.display().to_string(), e.to_string()))?;
            if v.get("type").and_then(Value::as_str) == Some("Feature") {
                items.push(StacItem::from_json(v, Some(&f.display().to_string()))?);
            }
        }
        return Ok(items);
    }
    if !path.exists() {
        return Err(Error::BadSource(
            shown,
            "no such file or directory (and not an http(s) URL)".into(),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => {
            let items = items_from_value(v, Some(&shown))?;
            if items.is_empty() {
                return Err(Error::BadSource(
                    shown,
                    "not a STAC ItemCollection, Item or NDJSON of items".into(),
                ));
            }
            Ok(items)
        }
        Err(first_err) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                let v: Value = serde_json::from_str(l).map_err(|e| {
                    Error::BadSource(
                        shown.clone(),
                        format!(
                            "neither JSON ({first_err}) nor NDJSON (line {}: {e})",
                            i + 1
                        ),
                    )
                })?;
                StacItem::from_json(v, Some(&shown))
            })
            .collect(),
    }
}

fn collect_json(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let p = e.map_err(io_err(dir))?.path();
        if p.is_dir() {
            collect_json(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// Applies the search's filters to a static catalogue (bbox against the item
/// bbox; datetime inclusive; collection by id), then the `max_items` cap.
fn filter_static(p: &SearchParams, items: Vec<StacItem>) -> Vec<StacItem> {
    let mut out: Vec<StacItem> = items
        .into_iter()
        .filter(|it| {
            (p.collections.is_empty()
                || it
                    .collection
                    .as_ref()
                    .is_some_and(|c| p.collections.contains(c)))
                && p.bbox
                    .is_none_or(|b| it.lonlat_bbox().is_some_and(|ib| b.intersects(&ib)))
                && it.datetime.is_none_or(|t| p.datetime.contains(t))
        })
        .collect();
    if let Some(m) = p.max_items {
        out.truncate(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_parse() {
        let b = Bbox::parse("67.398376,26.197341,69.027100,27.591066").unwrap();
        assert_eq!(b.maxx, 69.0271);
        for bad in [
            "1,2,3",
            "a,b,c,d",
            "10,0,5,1",
            "0,0,200,1",
            "0,-95,1,1",
            "1,2,3,4,5",
        ] {
            assert!(Bbox::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_link_merge() {
        let prev: Map<String, Value> = json!({"collections": ["GFM"], "limit": 10})
            .as_object()
            .cloned()
            .unwrap();
        let page = json!({"links": [{"rel": "next", "href": "http://h/search", "method": "POST",
            "body": {"token": "abc"}, "merge": true}]});
        let (h, b) = next_link(&page, &prev).unwrap();
        assert_eq!(h, "http://h/search");
        let b = b.unwrap();
        assert_eq!(b["token"], "abc");
        assert_eq!(b["limit"], 10);
        let page = json!({"links": [{"rel": "next", "href": "http://h/search?page=2"}]});
        assert_eq!(next_link(&page, &prev).unwrap().1, None);
    }
}
