//! Finding items: a STAC API search (`POST /search`, every `next` page) or a
//! static catalogue (ItemCollection / NDJSON / item files, local or http).
//!
//! Why not the `stac-api` crate's client: in 0.8 it ignores `merge` on POST
//! `next` links, takes a bare `reqwest::Client` (no retry middleware) and
//! pins an older `stac`; paging is ~60 lines here, with timeouts and bounded
//! retries from `reqwest-retry`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use object_store::ObjectStoreExt;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::cql::ItemsFilter;
use crate::datetime::Interval;
use crate::error::{chain_message, io_err, join_err, Error, Result};
use crate::geo::Bbox;
use crate::stac::item::StacItem;

/// What to search for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SearchParams {
    /// STAC API root or `/search` URL, or a static catalogue (file, directory or URL).
    pub source: String,
    pub collections: Vec<String>,
    pub bbox: Option<Bbox>,
    pub datetime: Interval,
    pub max_items: Option<usize>,
    /// Items per page asked of an API.
    pub page_size: usize,
    /// Seconds one request may take (each attempt).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// A CQL2 filter on the items (`floodsql.filter`): sent to an API
    /// (filter extension), evaluated here on static catalogues.
    #[serde(default)]
    pub(crate) filter: Option<ItemsFilter>,
}

fn default_timeout() -> u64 {
    crate::options::DEFAULT_HTTP_TIMEOUT_SECS as u64
}

impl SearchParams {
    /// The search in plain words (credentials masked), for messages.
    pub(crate) fn describe(&self) -> String {
        let collections = match self.collections.as_slice() {
            [] => "any collection".to_string(),
            [c] => format!("collection {c}"),
            cs => format!("collections {}", cs.join(", ")),
        };
        let bbox = self.bbox.map_or("any place".to_string(), |b| {
            format!("bbox {b} (degrees: west,south,east,north)")
        });
        let datetime = self
            .datetime
            .to_stac()
            .map_or("any time".to_string(), |d| format!("datetime {d}"));
        let filter = self
            .filter
            .as_ref()
            .map_or(String::new(), |f| format!(", filter {}", f.text()));
        crate::error::redact_urls(&format!(
            "source {}, {collections}, {bbox}, {datetime}{filter}",
            self.source
        ))
    }

    /// The catalogue and collections, in words (credentials masked).
    pub(crate) fn source_and_collections(&self) -> String {
        let c = if self.collections.is_empty() {
            String::new()
        } else {
            format!(", collection {}", self.collections.join(", "))
        };
        crate::error::redact_urls(&format!("{}{c}", self.source))
    }

    /// Why a search may have found nothing, as hints: the catalogue's
    /// collections when the search named others, and the bbox in lon/lat
    /// order when it looks given as lat/lon.
    pub(crate) async fn no_items_hints(&self) -> String {
        let mut hints = String::new();
        if let Some(cs) = catalogue_collections(self).await {
            if !cs.is_empty() && !self.collections.iter().all(|c| cs.contains(c)) {
                hints.push_str(&format!(
                    "; the catalogue's collections: {}",
                    cs.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        // a lat,lon bbox read as lon,lat: the same search with the axes
        // swapped finds items
        if let Some(b) = self.bbox {
            let swapped = format!("{},{},{},{}", b.miny, b.minx, b.maxy, b.maxx);
            if let Ok(sb) = Bbox::parse(&swapped) {
                let q = SearchParams {
                    bbox: Some(sb),
                    max_items: Some(1),
                    page_size: 1,
                    ..self.clone()
                };
                let hidden = ProgressBar::hidden();
                if matches!(Box::pin(search(&q, &hidden)).await, Ok(v) if !v.is_empty()) {
                    hints.push_str(&format!(
                        "; the bbox looks given as lat,lon: in lon,lat order ({swapped}) \
                         the search finds items"
                    ));
                }
            }
        }
        hints
    }
}

/// The collection ids of a catalogue, best effort: an API's `/collections`,
/// or the collections of a static catalogue's items.
async fn catalogue_collections(p: &SearchParams) -> Option<Vec<String>> {
    let mut ids: Vec<String> =
        if p.source.starts_with("http://") || p.source.starts_with("https://") {
            let root = p.source.trim_end_matches('/').trim_end_matches("/search");
            let url = format!("{root}/collections");
            let client = http_client(p.timeout_secs.min(5)).ok()?;
            let headers = catalogue_headers().ok()?;
            let req = authorised(client.get(&url), &url, p, &headers);
            let v = send_json(req, &url, p.timeout_secs.min(5)).await.ok()?;
            v.get("collections")?
                .as_array()?
                .iter()
                .filter_map(|c| c.get("id")?.as_str().map(str::to_string))
                .collect()
        } else {
            let items = read_local_static(&p.source).await.ok()?;
            items.into_iter().filter_map(|i| i.collection).collect()
        };
    ids.sort();
    ids.dedup();
    Some(ids)
}

/// Retries after a failed request (a transient error, a timeout, or a
/// rate limit: HTTP 429 or 503).
const MAX_RETRIES: u32 = 2;

/// The longest `Retry-After` floodsql waits out (per answer): a server that
/// asks for more is reported at once, naming what it asked.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The wait before retry `n` (0-based) when the server says nothing:
/// exponential from 200 ms, at most 5 s, with jitter (`reqwest-retry`'s
/// policy).
fn backoff(n: u32) -> Duration {
    use reqwest_retry::{RetryDecision, RetryPolicy};
    let policy = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(200), Duration::from_secs(5))
        .build_with_max_retries(MAX_RETRIES);
    match policy.should_retry(std::time::SystemTime::now(), n) {
        RetryDecision::Retry { execute_after } => execute_after
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
        RetryDecision::DoNotRetry => Duration::from_millis(200),
    }
}

/// A response's `Retry-After` (delay-seconds or an HTTP date), as a wait
/// from now; `None` when absent or unreadable.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or_default())
}

/// Headers for a private STAC API given on the command line (`--header`).
static CLI_HEADERS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Environment variable with headers for the STAC API: `Name: value` lines.
pub(crate) const HEADERS_ENV: &str = "FLOODSQL_STAC_HEADERS";

/// Sets the command line's `--header`s for every STAC API request of this
/// process (once; they come on top of [`HEADERS_ENV`]).
pub(crate) fn set_cli_headers(headers: Vec<(String, String)>) {
    let _ = CLI_HEADERS.set(headers);
}

/// The headers sent to the catalogue: `FLOODSQL_STAC_HEADERS`, then
/// `--header`s; values are marked sensitive (never in `Debug` output).
fn catalogue_headers() -> Result<reqwest::header::HeaderMap> {
    let mut pairs = match std::env::var(HEADERS_ENV) {
        Ok(text) => crate::store::parse_headers(&text, HEADERS_ENV)?,
        Err(_) => Vec::new(),
    };
    pairs.extend(CLI_HEADERS.get().cloned().unwrap_or_default());
    crate::store::header_map(&pairs, "--header")
}

/// `req` with the catalogue's headers when `url` is on the catalogue's own
/// origin: a `next` or `search` link elsewhere never receives them.
fn authorised(
    req: reqwest_middleware::RequestBuilder,
    url: &str,
    p: &SearchParams,
    headers: &reqwest::header::HeaderMap,
) -> reqwest_middleware::RequestBuilder {
    let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
    if !headers.is_empty() && origin(url).is_some() && origin(url) == origin(&p.source) {
        req.headers(headers.clone())
    } else {
        req
    }
}

fn http_client(timeout_secs: u64) -> Result<ClientWithMiddleware> {
    let timeout = Duration::from_secs(timeout_secs.max(1));
    let inner = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("floodsql/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
    // retries are `send_json`'s: it reads the answers' Retry-After
    Ok(ClientBuilder::new(inner).build())
}

/// The error of a failed request to `url`: [`Error::Timeout`] when it timed
/// out, else [`Error::Http`] with its causes.
fn request_failure(url: &str, e: &(dyn std::error::Error + 'static), timeout_secs: u64) -> Error {
    // reqwest-middleware's error is transparent over reqwest's: ask both
    let timed_out = crate::error::causes(e).any(|c| {
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || c.downcast_ref::<reqwest_middleware::Error>()
                .is_some_and(reqwest_middleware::Error::is_timeout)
    });
    if timed_out {
        let location = crate::error::redact_urls(url);
        return Error::Timeout {
            message: format!(
                "STAC request to {location} failed: no answer within the {timeout_secs} s \
                 timeout ({} attempts; `SET floodsql.http_timeout = N` to wait longer)",
                MAX_RETRIES + 1
            ),
            location,
            seconds: timeout_secs,
        };
    }
    Error::Http {
        url: url.to_string(),
        message: chain_message(e),
    }
}

/// Sends `req` and reads its JSON answer. Transient failures (connection
/// errors, timeouts, 5xx, 408) are retried up to [`MAX_RETRIES`] times after
/// a backoff; a rate limit (429, or 503 with `Retry-After`) is waited out as
/// the server asks, within the same budget and at most [`MAX_RETRY_AFTER`]
/// per answer — never sooner than asked.
async fn send_json(
    req: reqwest_middleware::RequestBuilder,
    url: &str,
    timeout_secs: u64,
) -> Result<Value> {
    let http = |message: String| Error::Http {
        url: url.to_string(),
        message,
    };
    let mut attempt = 0u32;
    let resp = loop {
        let this = req
            .try_clone()
            .ok_or_else(|| Error::Internal("a STAC request that cannot be retried".into()))?;
        let wait = match this.send().await {
            Ok(resp) => {
                let status = resp.status();
                let limited = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || (status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                        && resp.headers().contains_key(reqwest::header::RETRY_AFTER));
                let transient = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || limited;
                if !transient {
                    break resp;
                }
                let asked = retry_after(&resp);
                if let Some(a) = asked.filter(|a| *a > MAX_RETRY_AFTER) {
                    return Err(http(format!(
                        "HTTP {status}: rate-limited: the server asks to wait {} s \
                         (Retry-After), more than floodsql waits ({} s); try again later",
                        a.as_secs(),
                        MAX_RETRY_AFTER.as_secs()
                    )));
                }
                if attempt >= MAX_RETRIES {
                    if limited {
                        return Err(http(format!(
                            "HTTP {status}: still rate-limited after {} attempts \
                             (waited as its Retry-After asked); try again later",
                            attempt + 1
                        )));
                    }
                    break resp;
                }
                asked
                    .unwrap_or_else(|| backoff(attempt))
                    .max(backoff(attempt))
            }
            Err(e) => {
                let transient = matches!(
                    reqwest_retry::default_on_request_failure(&e),
                    Some(reqwest_retry::Retryable::Transient)
                );
                if !transient || attempt >= MAX_RETRIES {
                    return Err(request_failure(url, &e, timeout_secs));
                }
                backoff(attempt)
            }
        };
        tokio::time::sleep(wait).await;
        attempt += 1;
    };
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| request_failure(url, &e, timeout_secs))?;
    if !status.is_success() {
        let snippet: String = text.chars().take(300).collect();
        return Err(http(format!("HTTP {status}: {snippet}")));
    }
    serde_json::from_str(&text).map_err(|e| http(format!("response is not JSON: {e}")))
}

/// Runs the search; items in the order the source gives them (maybe none).
pub(crate) async fn search(p: &SearchParams, progress: &ProgressBar) -> Result<Vec<StacItem>> {
    let items = if p.source.starts_with("http://") || p.source.starts_with("https://") {
        let client = http_client(p.timeout_secs)?;
        let headers = catalogue_headers()?;
        let search_url = p.source.trim_end_matches('/').ends_with("/search");
        let root_url = if search_url {
            p.source
                .trim_end_matches('/')
                .trim_end_matches("/search")
                .to_string()
        } else {
            p.source.clone()
        };
        let root = if !search_url {
            let req = authorised(client.get(&p.source), &p.source, p, &headers);
            Some(send_json(req, &p.source, p.timeout_secs).await?)
        } else {
            None
        };
        match root {
            Some(root)
                if matches!(
                    root.get("type").and_then(Value::as_str),
                    Some("FeatureCollection") | Some("Feature")
                ) =>
            {
                filter_static(p, items_from_value(root, Some(&p.source))?)?
            }
            root => {
                let href = if search_url {
                    p.source.clone()
                } else {
                    root.as_ref()
                        .and_then(search_link)
                        .unwrap_or_else(|| format!("{}/search", p.source.trim_end_matches('/')))
                };
                let filters = match &root {
                    Some(root) => filters_items(root),
                    None if p.filter.is_some() => {
                        api_filters(&client, &headers, p, &root_url).await
                    }
                    None => false,
                };
                if p.filter.is_some() && !filters {
                    // an API without the filter extension ignores a filter
                    // or answers nothing: search without it, filter here
                    let unfiltered = SearchParams {
                        filter: None,
                        max_items: None,
                        ..p.clone()
                    };
                    let items = api_search(&client, &headers, &unfiltered, href, progress).await?;
                    cql_filter(p, items)?
                } else {
                    api_search(&client, &headers, p, href, progress).await?
                }
            }
        }
    } else if crate::store::is_cloud(&p.source) {
        // a static catalogue file on object storage
        let (store, path) = crate::store::cloud_object(&p.source)?;
        let failed = |e: object_store::Error| Error::Http {
            url: crate::error::redact_urls(&p.source),
            message: crate::error::chain_message(&e),
        };
        let bytes = store
            .get(&path)
            .await
            .map_err(failed)?
            .bytes()
            .await
            .map_err(failed)?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::BadSource(p.source.clone(), format!("not UTF-8 text: {e}")))?;
        filter_static(p, items_from_text(&text, &p.source)?)?
    } else {
        filter_static(p, read_local_static(&p.source).await?)?
    };
    progress.set_position(items.len() as u64);
    Ok(items)
}

/// A local static catalogue (a path or file:// URL), read off the runtime.
async fn read_local_static(source: &str) -> Result<Vec<StacItem>> {
    let path = source.strip_prefix("file://").unwrap_or(source).to_string();
    tokio::task::spawn_blocking(move || read_static(Path::new(&path)))
        .await
        .map_err(join_err("reading the static catalogue"))?
}

/// Whether the API whose landing page is `root_url` evaluates filters
/// ([`filters_items`]), for a search sent straight to its `/search` URL:
/// the landing page is asked once per API in a process (a session's
/// searches would otherwise cost one more request each); an API that
/// cannot say is taken as not filtering (the filter is then evaluated
/// here) and asked again next time.
async fn api_filters(
    client: &ClientWithMiddleware,
    headers: &reqwest::header::HeaderMap,
    p: &SearchParams,
    root_url: &str,
) -> bool {
    static KNOWN: LazyLock<Mutex<HashMap<String, bool>>> = LazyLock::new(Mutex::default);
    let known = KNOWN.lock().ok().and_then(|m| m.get(root_url).copied());
    if let Some(known) = known {
        return known;
    }
    let req = authorised(client.get(root_url), root_url, p, headers);
    match send_json(req, root_url, p.timeout_secs).await {
        Ok(root) => {
            let filters = filters_items(&root);
            if let Ok(mut m) = KNOWN.lock() {
                m.insert(root_url.to_string(), filters);
            }
            filters
        }
        Err(_) => false,
    }
}

/// Whether an API's landing page declares the filter extension with
/// cql2-json (`conformsTo`).
fn filters_items(root: &Value) -> bool {
    let classes: Vec<&str> = root
        .get("conformsTo")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    classes.iter().any(|c| c.contains("item-search#filter"))
        && classes.iter().any(|c| c.ends_with("/cql2-json"))
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
    headers: &reqwest::header::HeaderMap,
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
    if let Some(f) = &p.filter {
        body.insert("filter".into(), f.json().clone());
        body.insert("filter-lang".into(), json!("cql2-json"));
    }

    let mut items = Vec::new();
    let mut next: Option<(String, Option<Map<String, Value>>)> = Some((url, Some(body.clone())));
    // a server whose paging loops (the same next link or token again, or an
    // item again) is refused rather than followed until memory runs out
    let mut pages_seen: HashSet<String> = HashSet::new();
    let mut ids_seen: HashSet<(Option<String>, String)> = HashSet::new();
    while let Some((href, post_body)) = next.take() {
        let page_key = format!(
            "{href} {}",
            post_body.clone().map(Value::Object).unwrap_or_default()
        );
        if !pages_seen.insert(page_key) {
            return Err(Error::Http {
                url: href,
                message: format!(
                    "the API's paging loops: page {} links back to an earlier page",
                    pages_seen.len()
                ),
            });
        }
        let req = match &post_body {
            Some(b) => client.post(&href).json(b),
            None => client.get(&href),
        };
        let req = authorised(req, &href, p, headers);
        let page = send_json(req, &href, p.timeout_secs).await?;
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
            let item = StacItem::from_json(f.clone(), Some(&href))?;
            if !ids_seen.insert((item.collection.clone(), item.id.clone())) {
                return Err(Error::Http {
                    url: href,
                    message: format!(
                        "the API returned item '{}' twice: its paging loops or overlaps",
                        item.id
                    ),
                });
            }
            items.push(item);
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
pub(crate) fn read_static(path: &Path) -> Result<Vec<StacItem>> {
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
    items_from_text(&text, &shown)
}

/// The items of a static catalogue file's text (`shown`: where it was
/// read, the base of relative hrefs): an ItemCollection, an Item or NDJSON.
fn items_from_text(text: &str, shown: &str) -> Result<Vec<StacItem>> {
    let shown = shown.to_string();
    match serde_json::from_str::<Value>(text) {
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
fn filter_static(p: &SearchParams, items: Vec<StacItem>) -> Result<Vec<StacItem>> {
    let found = items.into_iter().filter(|it| {
        (p.collections.is_empty()
            || it
                .collection
                .as_ref()
                .is_some_and(|c| p.collections.contains(c)))
            && p.bbox
                .is_none_or(|b| it.lonlat_bbox().is_some_and(|ib| b.intersects(&ib)))
            && it.in_interval(&p.datetime)
    });
    cql_filter(p, found.collect())
}

/// The items `p`'s CQL2 filter keeps (all without one), then the
/// `max_items` cap. A filter naming a property an item lacks does not match
/// it (as an API answers), and is no error.
fn cql_filter(p: &SearchParams, items: Vec<StacItem>) -> Result<Vec<StacItem>> {
    let mut out = Vec::new();
    for it in items {
        if let Some(f) = &p.filter {
            if !f.matches(&it.id, &it.filter_view())? {
                continue;
            }
        }
        out.push(it);
        if p.max_items.is_some_and(|m| out.len() >= m) {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items with a time range and a null datetime are matched by their
    /// range, as STAC APIs do (once: refused even outside the query).
    #[test]
    fn static_filter_matches_time_ranges() {
        let item = |id: &str, props: Value| {
            StacItem::from_json(
                json!({"type": "Feature", "id": id, "collection": "GFM", "properties": props, "assets": {}}),
                None,
            )
            .unwrap()
        };
        let items = vec![
            item("instant-in", json!({"datetime": "2022-09-10T00:00:00Z"})),
            item("instant-out", json!({"datetime": "2022-08-10T00:00:00Z"})),
            item(
                "range-overlaps-start",
                json!({"datetime": null,
                "start_datetime": "2022-08-20T00:00:00Z", "end_datetime": "2022-09-02T00:00:00Z"}),
            ),
            item(
                "range-before",
                json!({"datetime": null,
                "start_datetime": "2022-07-01T00:00:00Z", "end_datetime": "2022-08-31T23:59:59Z"}),
            ),
            item(
                "range-after",
                json!({"datetime": null,
                "start_datetime": "2022-10-01T00:00:01Z", "end_datetime": "2022-11-01T00:00:00Z"}),
            ),
            item(
                "range-open-end",
                json!({"datetime": null, "start_datetime": "2022-09-30T00:00:00Z"}),
            ),
            item("no-time", json!({"datetime": null})),
        ];
        let p = SearchParams {
            datetime: crate::datetime::parse_interval("2022-09-01T00:00:00Z/2022-10-01T00:00:00Z")
                .unwrap(),
            bbox: None,
            ..params("x".into(), 10, None)
        };
        let kept: Vec<String> = filter_static(&p, items)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(
            kept,
            [
                "instant-in",
                "range-overlaps-start",
                "range-open-end",
                "no-time"
            ]
        );
        let bad = StacItem::from_json(
            json!({"type": "Feature", "id": "b", "properties": {"datetime": null,
                "start_datetime": "yesterday"}}),
            None,
        );
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("bad start_datetime 'yesterday'"));
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

    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>;

    /// A tiny HTTP/1.1 server on a free loopback port: `make(url)` gives the
    /// handler, which answers each request from (method, path, JSON body);
    /// every request is recorded.
    fn serve<H>(make: impl FnOnce(String) -> H) -> (String, Seen)
    where
        H: Fn(&str, &str, &Value) -> (u16, String) + Send + 'static,
    {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handler = make(url.clone());
        let seen: Seen = Default::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let (status, text) = handler(&method, &path, &body);
                log.lock().unwrap().push((method, path, body));
                // a reply "Retry-After: V\n…" sends that header and the rest
                let (extra, text) = match text.strip_prefix("Retry-After: ") {
                    Some(rest) => {
                        let (v, t) = rest.split_once('\n').unwrap_or((rest, ""));
                        (format!("Retry-After: {v}\r\n"), t.to_string())
                    }
                    None => (String::new(), text),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        (url, seen)
    }

    fn item(i: usize) -> Value {
        json!({"type": "Feature", "id": format!("it{i}"), "collection": "GFM",
               "properties": {"datetime": "2022-09-01T00:00:00Z"}, "assets": {}})
    }

    #[test]
    fn headers_go_to_the_catalogues_origin_only() {
        use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
        let client = http_client(5).unwrap();
        let p = params("http://127.0.0.1:9/api".into(), 10, None);
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        let built = |url: &str| {
            authorised(client.get(url), url, &p, &h)
                .build()
                .unwrap()
                .headers()
                .contains_key(AUTHORIZATION)
        };
        assert!(built("http://127.0.0.1:9/api/search?token=2"));
        // a next link on another host, port or scheme: no token
        assert!(!built("http://127.0.0.2:9/api/search"));
        assert!(!built("http://127.0.0.1:10/api/search"));
        assert!(!built("https://127.0.0.1:9/api/search"));
    }

    fn params(source: String, page_size: usize, max_items: Option<usize>) -> SearchParams {
        SearchParams {
            source,
            collections: vec!["GFM".into()],
            bbox: Some(Bbox::parse("67,26,69,27").unwrap()),
            datetime: crate::datetime::parse_interval("2022-09").unwrap(),
            max_items,
            page_size,
            timeout_secs: 15,
            filter: None,
        }
    }

    /// The `N` of a `…?page=N` path (0 without one).
    fn page_no(path: &str) -> usize {
        path.rsplit('=')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn ids(items: &[StacItem]) -> Vec<String> {
        items.iter().map(|i| i.id.clone()).collect()
    }

    fn page(url: &str, feats: Vec<Value>, next: Option<Value>) -> String {
        let links: Vec<Value> = next.into_iter().collect();
        let _ = url;
        json!({"type": "FeatureCollection", "features": feats, "links": links}).to_string()
    }

    /// POST paging with token bodies merged into the first body (what
    /// stac-fastapi servers send), found from the API root's `search` link:
    /// every page followed, the filters kept on every page.
    #[tokio::test]
    async fn pages_post_with_merged_token_bodies() {
        let (url, seen) = serve(|url| {
            move |method: &str, path: &str, body: &Value| {
                if method == "GET" && path == "/" {
                    let root = json!({"type": "Catalog", "links": [
                        {"rel": "search", "href": format!("{url}/api/search"), "method": "POST"}]});
                    return (200, root.to_string());
                }
                let n = body.get("token").and_then(Value::as_u64).unwrap_or(0) as usize;
                let limit = body["limit"].as_u64().unwrap() as usize;
                let feats: Vec<Value> = (0..7).skip(n * limit).take(limit).map(item).collect();
                let next = ((n + 1) * limit < 7).then(|| {
                    json!({"rel": "next", "href": format!("{url}/api/search"), "method": "POST",
                           "body": {"token": n + 1}, "merge": true})
                });
                (200, page(&url, feats, next))
            }
        });
        let items = search(&params(format!("{url}/"), 3, None), &ProgressBar::hidden())
            .await
            .unwrap();
        assert_eq!(
            ids(&items),
            (0..7).map(|i| format!("it{i}")).collect::<Vec<_>>()
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "root + 3 pages: {seen:?}");
        for (method, path, body) in &seen[1..] {
            assert_eq!((method.as_str(), path.as_str()), ("POST", "/api/search"));
            assert_eq!(body["collections"], json!(["GFM"]));
            assert_eq!(body["limit"], 3);
            assert_eq!(body["intersects"]["type"], "Polygon");
            assert_eq!(
                body["datetime"],
                "2022-09-01T00:00:00Z/2022-09-30T23:59:59Z"
            );
        }
        assert_eq!(seen[3].2["token"], 2);
    }

    /// GET `next` hrefs (no body); `max_items` stops the paging early.
    #[tokio::test]
    async fn pages_get_links_and_stops_at_max_items() {
        let (url, seen) = serve(|url| {
            move |_: &str, path: &str, _: &Value| {
                let n = page_no(path);
                let feats = (n * 2..n * 2 + 2).map(item).collect();
                let next = json!({"rel": "next", "href": format!("{url}/search?page={}", n + 1)});
                (200, page(&url, feats, Some(next)))
            }
        });
        let items = search(
            &params(format!("{url}/search"), 2, Some(5)),
            &ProgressBar::hidden(),
        )
        .await
        .unwrap();
        assert_eq!(ids(&items), ["it0", "it1", "it2", "it3", "it4"]);
        let seen = seen.lock().unwrap().clone();
        let asked: Vec<(&str, &str)> = seen
            .iter()
            .map(|(m, p, _)| (m.as_str(), p.as_str()))
            .collect();
        assert_eq!(
            asked,
            [
                ("POST", "/search"),
                ("GET", "/search?page=1"),
                ("GET", "/search?page=2")
            ]
        );
    }

    /// An empty page ends the search even when it links a next one.
    #[tokio::test]
    async fn an_empty_page_ends_the_search() {
        let (url, seen) = serve(|url| {
            move |_: &str, _: &str, _: &Value| {
                let next = json!({"rel": "next", "href": format!("{url}/search?again")});
                (200, page(&url, vec![], Some(next)))
            }
        });
        let items = search(
            &params(format!("{url}/search"), 2, None),
            &ProgressBar::hidden(),
        )
        .await
        .unwrap();
        assert!(items.is_empty());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    async fn search_err(url: &str) -> String {
        let p = params(format!("{url}/search"), 2, None);
        search(&p, &ProgressBar::hidden())
            .await
            .unwrap_err()
            .to_string()
    }

    /// Server errors and non-STAC answers name the URL and the cause.
    #[tokio::test]
    async fn bad_answers_are_errors_naming_the_url() {
        let (url, seen) = serve(|_| |_: &str, _: &str, _: &Value| (503, "down".to_string()));
        let e = search_err(&url).await;
        assert!(
            e.contains(&format!("{url}/search")) && e.contains("503") && e.contains("down"),
            "{e}"
        );
        let n = seen.lock().unwrap().len();
        assert!((2..=5).contains(&n), "retried, boundedly: {n}");
        let (url, _) = serve(|_| {
            |_: &str, _: &str, _: &Value| (200, "{\"type\": \"FeatureCollection\"}".to_string())
        });
        let e = search_err(&url).await;
        assert!(e.contains("no 'features' array"), "{e}");
    }

    /// A `next` link that returns the same token forever is refused on the
    /// second visit, not followed until memory runs out.
    #[tokio::test]
    async fn a_looping_next_link_is_refused() {
        let (url, seen) = serve(|url| {
            move |_: &str, _: &str, body: &Value| {
                let n = body.get("token").and_then(Value::as_u64).unwrap_or(0) as usize;
                let next = json!({"rel": "next", "href": format!("{url}/search"), "method": "POST",
                                  "body": {"token": 1}, "merge": true});
                (200, page(&url, vec![item(n)], Some(next)))
            }
        });
        let e = search_err(&url).await;
        assert!(e.contains("paging loops") && e.contains("page 2"), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    /// An item returned twice (overlapping pages) is an error naming it.
    #[tokio::test]
    async fn an_item_seen_twice_is_refused() {
        let (url, _) = serve(|url| {
            move |_: &str, path: &str, _: &Value| {
                let n = page_no(path);
                let feats = vec![item(n), item(n + 1)];
                let next = json!({"rel": "next", "href": format!("{url}/search?page={}", n + 1)});
                (200, page(&url, feats, Some(next)))
            }
        });
        let e = search_err(&url).await;
        assert!(e.contains("returned item 'it1' twice"), "{e}");
    }

    /// A server that accepts and never answers: a clear error naming the
    /// timeout, after the bounded retries.
    #[tokio::test]
    async fn a_silent_server_is_reported_with_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let hold = held.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                hold.lock().unwrap().push(s);
            }
        });
        let mut p = params(format!("{url}/search"), 2, None);
        p.timeout_secs = 1;
        let e = search(&p, &ProgressBar::hidden())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&url) && e.contains("no answer within the 1 s timeout"),
            "{e}"
        );
        assert_eq!(held.lock().unwrap().len(), 1 + MAX_RETRIES as usize);
    }

    /// A CQL2 filter on a static catalogue: what an API's filter extension
    /// answers — a property the item lacks does not match; text and JSON
    /// forms agree.
    #[test]
    fn static_catalogues_are_filtered_with_cql2() {
        let it = |id: &str, props: Value| {
            let mut p = json!({"datetime": "2022-09-01T00:00:00Z"});
            p.as_object_mut()
                .unwrap()
                .extend(props.as_object().unwrap().clone());
            StacItem::from_json(
                json!({"type": "Feature", "id": id, "collection": "GFM", "properties": p, "assets": {}}),
                None,
            )
            .unwrap()
        };
        let items = vec![
            it(
                "wet",
                json!({"flooded_pixels": 12, "Equi7Tile": "E051N015T3"}),
            ),
            it(
                "dry",
                json!({"flooded_pixels": 0, "Equi7Tile": "E051N015T3"}),
            ),
            it(
                "other",
                json!({"flooded_pixels": 5, "Equi7Tile": "E054N018T3"}),
            ),
            it("unknown", json!({})),
        ];
        let kept = |filter: &str| {
            use datafusion::config::ExtensionOptions;
            let mut o = crate::options::FloodsqlOptions::default();
            o.set("filter", filter).unwrap();
            let p = SearchParams {
                bbox: None,
                filter: o.filter.filter().cloned(),
                ..params("x".into(), 10, None)
            };
            ids(&filter_static(&p, items.clone()).unwrap())
        };
        assert_eq!(kept("flooded_pixels > 0"), ["wet", "other"]);
        assert_eq!(
            kept("flooded_pixels > 0 AND \"Equi7Tile\" = 'E051N015T3'"),
            ["wet"]
        );
        assert_eq!(kept("NOT flooded_pixels > 0"), ["dry"]);
        assert_eq!(kept("id IN ('dry', 'unknown')"), ["dry", "unknown"]);
        assert_eq!(
            kept(r#"{"op": ">", "args": [{"property": "flooded_pixels"}, 10]}"#),
            ["wet"]
        );
    }

    /// A filter goes to an API that declares the filter extension
    /// (cql2-json); another API is searched without it and the items are
    /// filtered here — the same items either way.
    #[tokio::test]
    async fn filters_go_to_apis_that_declare_them() {
        for declares in [true, false] {
            let (url, seen) = serve(move |url| {
                move |method: &str, path: &str, body: &Value| {
                    if method == "GET" && path == "/" {
                        let mut conf = vec!["https://api.stacspec.org/v1.0.0/item-search"];
                        if declares {
                            conf.push("https://api.stacspec.org/v1.0.0-rc.2/item-search#filter");
                            conf.push("http://www.opengis.net/spec/cql2/1.0/conf/cql2-json");
                        }
                        let root = json!({"type": "Catalog", "conformsTo": conf, "links": [
                            {"rel": "search", "href": format!("{url}/search"), "method": "POST"}]});
                        return (200, root.to_string());
                    }
                    let feats: Vec<Value> = (0..4)
                        .map(|i| {
                            let mut it = item(i);
                            it["properties"]["flooded_pixels"] = json!(i);
                            it
                        })
                        .filter(|it| {
                            body.get("filter").is_none()
                                || it["properties"]["flooded_pixels"].as_u64() > Some(1)
                        })
                        .collect();
                    (200, page("", feats, None))
                }
            });
            let mut o = crate::options::FloodsqlOptions::default();
            datafusion::config::ExtensionOptions::set(&mut o, "filter", "flooded_pixels > 1")
                .unwrap();
            let p = SearchParams {
                filter: o.filter.filter().cloned(),
                ..params(format!("{url}/"), 10, None)
            };
            let items = search(&p, &ProgressBar::hidden()).await.unwrap();
            assert_eq!(ids(&items), ["it2", "it3"], "declares: {declares}");
            let seen = seen.lock().unwrap().clone();
            let sent = &seen.last().unwrap().2;
            assert_eq!(sent.get("filter").is_some(), declares, "{sent}");
            if declares {
                assert_eq!(sent["filter-lang"], "cql2-json");
                assert_eq!(sent["filter"]["op"], ">");
            }
        }
    }

    /// A search sent straight to an API's `/search` URL with a filter asks
    /// the landing page whether the API filters once per process: a second
    /// search does not ask again, and both send the filter.
    #[tokio::test]
    async fn a_search_url_asks_the_landing_page_once() {
        let (url, seen) = serve(move |url| {
            move |method: &str, path: &str, body: &Value| {
                if method == "GET" && path == "/" {
                    let conf = [
                        "https://api.stacspec.org/v1.0.0/item-search",
                        "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
                        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
                    ];
                    let root = json!({"type": "Catalog", "conformsTo": conf, "links": [
                        {"rel": "search", "href": format!("{url}/search"), "method": "POST"}]});
                    return (200, root.to_string());
                }
                let feats: Vec<Value> = (0..4)
                    .filter(|&i| body.get("filter").is_none() || i > 1)
                    .map(|i| {
                        let mut it = item(i);
                        it["properties"]["flooded_pixels"] = json!(i);
                        it
                    })
                    .collect();
                (200, page("", feats, None))
            }
        });
        let mut o = crate::options::FloodsqlOptions::default();
        datafusion::config::ExtensionOptions::set(&mut o, "filter", "flooded_pixels > 1").unwrap();
        let p = SearchParams {
            filter: o.filter.filter().cloned(),
            ..params(format!("{url}/search"), 10, None)
        };
        for _ in 0..2 {
            let items = search(&p, &ProgressBar::hidden()).await.unwrap();
            assert_eq!(ids(&items), ["it2", "it3"]);
        }
        let seen = seen.lock().unwrap().clone();
        let landing = seen.iter().filter(|r| r.0 == "GET" && r.1 == "/").count();
        let searches: Vec<_> = seen.iter().filter(|r| r.1.ends_with("/search")).collect();
        assert_eq!(landing, 1, "{seen:?}");
        assert_eq!(searches.len(), 2, "{seen:?}");
        assert!(
            searches.iter().all(|r| r.2.get("filter").is_some()),
            "{seen:?}"
        );
    }

    /// A rate limit is waited out as the server asks (never sooner), within
    /// the retry budget; a server asking for more than floodsql waits is
    /// reported at once, naming what it asked.
    #[tokio::test]
    async fn rate_limits_are_waited_out_as_asked() {
        let stamps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = stamps.clone();
        let (url, _) = serve(move |_| {
            let s2 = s2.clone();
            move |_: &str, _: &str, _: &Value| {
                let mut st = s2.lock().unwrap();
                st.push(std::time::Instant::now());
                if st.len() <= 2 {
                    (429, "Retry-After: 1\n{}".to_string())
                } else {
                    (200, page("", vec![item(0)], None))
                }
            }
        });
        let items = search(
            &params(format!("{url}/search"), 2, None),
            &ProgressBar::hidden(),
        )
        .await
        .unwrap();
        assert_eq!(ids(&items), ["it0"]);
        let st = stamps.lock().unwrap().clone();
        assert_eq!(st.len(), 3);
        for w in st.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_secs(1),
                "asked 1 s: {:?}",
                w[1] - w[0]
            );
        }
        // asks for an hour: reported without waiting, after one request
        let (url, seen) =
            serve(|_| |_: &str, _: &str, _: &Value| (429, "Retry-After: 3600\n{}".to_string()));
        let e = search_err(&url).await;
        assert!(
            e.contains("429") && e.contains("3600 s") && e.contains("30 s"),
            "{e}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
        // rate-limited on every attempt: the budget ends it, named
        let (url, seen) =
            serve(|_| |_: &str, _: &str, _: &Value| (503, "Retry-After: 0\n{}".to_string()));
        let e = search_err(&url).await;
        assert!(e.contains("still rate-limited after 3 attempts"), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let resp = |v: &str| {
            reqwest::Response::from(
                http::Response::builder()
                    .header("Retry-After", v)
                    .body("")
                    .unwrap(),
            )
        };
        assert_eq!(retry_after(&resp("7")), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(20)).to_rfc2822();
        let d = retry_after(&resp(&later)).unwrap();
        assert!(
            (Duration::from_secs(18)..=Duration::from_secs(20)).contains(&d),
            "{d:?}"
        );
        assert_eq!(retry_after(&resp("soon")), None);
    }
}
