//! Object stores: where every remote byte floodsql reads or writes goes
//! through (`object_store`): COG reads (`raster::cog`), results on object
//! storage (`output::remote`), static catalogues on s3/gs/az
//! (`stac::search`). Stores are configured from the environment (the
//! `AWS_*`, `GOOGLE_*`, `AZURE_*` variables object_store reads), with
//! timeouts and bounded retries; HTTP stores follow redirects only where a
//! [`ReadPolicy`] allows.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use crate::access::ReadPolicy;
use crate::error::{Error, Result};

/// Seconds one request to an object store may take, and the retry budget:
/// no retry starts after `RETRY_TIMEOUT`, so a silent store is reported
/// within about 50 s. A request is one coalesced range of a few MB at most.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RETRIES: usize = 3;
pub(crate) const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed per request (each checked against the read policy).
const MAX_REDIRECTS: usize = 10;

/// The cloud schemes (object storage with buckets or containers).
pub(crate) const CLOUD_SCHEMES: [&str; 7] = ["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"];

/// Whether `location` names an object in a cloud store.
pub(crate) fn is_cloud(location: &str) -> bool {
    location
        .split_once("://")
        .is_some_and(|(s, _)| CLOUD_SCHEMES.contains(&s.to_ascii_lowercase().as_str()))
}

fn store_err(location: &str, e: impl std::fmt::Display) -> Error {
    Error::Read {
        location: Some(crate::error::redact(location, location)),
        message: crate::error::redact(location, &format!("cannot read '{location}': {e}")),
    }
}

/// `Name: value` headers from text: one per line, or separated by commas
/// outside double quotes (GDAL's `GDAL_HTTP_HEADERS` form). `what` names the
/// source in errors (never the values: they may be credentials).
pub(crate) fn parse_headers(text: &str, what: &str) -> Result<Vec<(String, String)>> {
    let mut entries = Vec::new();
    let multi_line = text.contains('\n');
    let (mut cur, mut quoted) = (String::new(), false);
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '\r' => {}
            '\n' => entries.push(std::mem::take(&mut cur)),
            ',' if !quoted && !multi_line => entries.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    entries.push(cur);
    entries
        .into_iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| parse_header(&e, what))
        .collect()
}

/// One `Name: value` header (value unquoted).
pub(crate) fn parse_header(entry: &str, what: &str) -> Result<(String, String)> {
    let (name, value) = entry
        .split_once(':')
        .ok_or_else(|| Error::InvalidArgument {
            what: "HTTP header",
            value: format!("in {what}"),
            message: "expected 'Name: value'".into(),
        })?;
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Ok((name.trim().to_string(), value.to_string()))
}

/// Headers as a map, values marked sensitive; a name or value HTTP does not
/// allow is refused naming the header (not its value).
pub(crate) fn header_map(
    pairs: &[(String, String)],
    what: &str,
) -> Result<reqwest::header::HeaderMap> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in pairs {
        let bad = |m: &str| Error::InvalidArgument {
            what: "HTTP header",
            value: format!("{name} (in {what})"),
            message: m.into(),
        };
        let n =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("not a valid header name"))?;
        let mut v =
            HeaderValue::from_str(value).map_err(|_| bad("its value is not valid in HTTP"))?;
        v.set_sensitive(true);
        map.append(n, v);
    }
    Ok(map)
}

/// Headers for every asset read over http(s) by the native reader, from
/// `GDAL_HTTP_HEADERS` (the GDAL reader's own convention, so that one
/// setting serves both readers).
pub(crate) fn asset_headers() -> Result<reqwest::header::HeaderMap> {
    match std::env::var("GDAL_HTTP_HEADERS") {
        Ok(text) => header_map(
            &parse_headers(&text, "GDAL_HTTP_HEADERS")?,
            "GDAL_HTTP_HEADERS",
        ),
        Err(_) => Ok(reqwest::header::HeaderMap::new()),
    }
}

pub(crate) fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_allow_http(true)
}

pub(crate) fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
        ..Default::default()
    }
}

/// The store key of a location (scheme and authority) and the object's path.
pub(crate) fn split(location: &str) -> Result<(Url, ObjectPath)> {
    if location.starts_with('/') {
        let path = ObjectPath::from_absolute_path(location).map_err(|e| store_err(location, e))?;
        let key = Url::parse("file:///").map_err(|e| store_err(location, e))?;
        return Ok((key, path));
    }
    let url = Url::parse(location).map_err(|e| store_err(location, e))?;
    match url.scheme() {
        "http" | "https" | "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure" => {}
        other => {
            return Err(store_err(
                location,
                format!("unsupported URL scheme '{other}' (local paths, http(s), s3, gs, az)"),
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(store_err(location, "the URL names no host or bucket"));
    }
    let path = ObjectPath::from_url_path(url.path()).map_err(|e| store_err(location, e))?;
    let mut key = url.clone();
    key.set_path("");
    key.set_fragment(None);
    // a signed http(s) URL keeps its query: object_store's HTTP store puts the
    // object's path before its base URL's query, so a store per signature
    // requests exactly the href (cloud URLs take no query)
    if !matches!(url.scheme(), "http" | "https") {
        key.set_query(None);
    }
    Ok((key, path))
}

/// A cloud object store (s3, gs, az; configured from the environment like
/// the readers' stores) and the object's path, for static catalogues.
pub(crate) fn cloud_object(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    object_of(
        url,
        &CLOUD_SCHEMES,
        "expected an s3://, gs:// or az:// object",
    )
}

/// A store results can be written to — a cloud object store, or an HTTP(S)
/// server that accepts `PUT` (WebDAV-like) — and the object's path.
pub(crate) fn writable_object(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    const WRITABLE: [&str; 9] = [
        "s3", "s3a", "gs", "az", "abfs", "abfss", "azure", "http", "https",
    ];
    object_of(
        url,
        &WRITABLE,
        "results go to local files or to s3://, gs://, az://, http(s):// objects",
    )
}

/// The store and path of `url`, when its scheme is one of `schemes`. No
/// read policy applies (the user named the object); an HTTP store built
/// here follows no redirect.
fn object_of(
    url: &str,
    schemes: &[&str],
    refusal: &str,
) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let (key, path) = split(url)?;
    if !schemes.contains(&key.scheme()) {
        return Err(Error::invalid("object URL", url, refusal));
    }
    let store = build_store(&key, &Arc::new(ReadPolicy::default()))
        .map_err(|e| store_err(url, crate::error::chain_message(&e)))?;
    Ok((store, path))
}

/// object_store's HTTP client for one scan's reads: redirects are followed
/// only to locations the scan's read policy allows (a catalogue's host must
/// not bounce a read to an internal address).
#[derive(Debug)]
struct PolicyConnector(Arc<ReadPolicy>);

impl object_store::client::HttpConnector for PolicyConnector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        let policy = self.0.clone();
        let headers = asset_headers().map_err(|e| object_store::Error::Generic {
            store: "HTTP",
            source: Box::new(e),
        })?;
        // reqwest drops Authorization and cookies on a redirect to another host
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::custom(move |a| {
                if a.previous().len() >= MAX_REDIRECTS {
                    return a.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match policy.check_url(a.url()) {
                    Ok(()) => a.follow(),
                    Err(e) => a.error(format!("redirect refused: {e}")),
                }
            }))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "HTTP",
                source: Box::new(e),
            })?;
        Ok(object_store::client::HttpClient::new(client))
    }
}

/// A new store for `key` (scheme://authority), configured from the
/// environment for the cloud stores; HTTP stores follow `policy` on redirects.
pub(crate) fn build_store(
    key: &Url,
    policy: &Arc<ReadPolicy>,
) -> std::result::Result<Arc<dyn ObjectStore>, object_store::Error> {
    let started = std::time::Instant::now();
    let store = new_store(key, policy);
    tracing::debug!("{} store built in {:?}", key.scheme(), started.elapsed());
    store
}

fn new_store(
    key: &Url,
    policy: &Arc<ReadPolicy>,
) -> std::result::Result<Arc<dyn ObjectStore>, object_store::Error> {
    let trimmed = key.as_str().trim_end_matches('/');
    let url = if key.query().is_some() {
        key.as_str()
    } else {
        trimmed
    };
    Ok(match key.scheme() {
        "http" | "https" => Arc::new(
            object_store::http::HttpBuilder::new()
                .with_url(url)
                .with_client_options(client_options())
                .with_retry(retry())
                .with_http_connector(PolicyConnector(policy.clone()))
                .build()?,
        ),
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_client_options(client_options())
                .with_retry(retry())
                .build()?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_client_options(client_options())
                .with_retry(retry())
                .build()?,
        ),
        _ => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_client_options(client_options())
                .with_retry(retry())
                .build()?,
        ),
    })
}

/// HTTP(S) stores built ahead of a scan's first read ([`prepare_http_stores`]).
static PREPARED: Mutex<Vec<Prepared>> = Mutex::new(Vec::new());

/// At most this many stores wait to be taken, and each for at most
/// [`PREPARED_FOR`]: one not taken (a query that failed before reading, or a
/// cluster client, whose executors read) is dropped.
const MAX_PREPARED: usize = 8;
const PREPARED_FOR: Duration = Duration::from_secs(60);

/// A store being built (or built) for one key and read policy.
struct Prepared {
    key: Url,
    policy: Arc<ReadPolicy>,
    at: Instant,
    /// Filled by whoever builds first: the preparing thread, or a reader
    /// that takes the entry before it is done (which then waits for it).
    store: Arc<OnceLock<Option<Arc<dyn ObjectStore>>>>,
}

fn prepared() -> std::sync::MutexGuard<'static, Vec<Prepared>> {
    // a panic while holding it leaves a plain list: still usable
    PREPARED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts building, on a thread of its own, the HTTP(S) store a scan under
/// `policy` will read `locations` (COG hrefs, as the scan plan has them)
/// through: the hosts of the first 64 locations, at most 4. An HTTP store loads the
/// system's root certificates when it is built, 6-20 ms of one core: built
/// while the scan is being planned (after the search), that time is off
/// the critical path of its first read. The reader takes it
/// ([`take_prepared`]); an error here is left for the reader's own build
/// to report.
pub(crate) fn prepare_http_stores(
    locations: impl IntoIterator<Item = impl AsRef<str>>,
    policy: &ReadPolicy,
) {
    let policy = &Arc::new(policy.clone());
    let mut keys: Vec<Url> = Vec::new();
    for loc in locations.into_iter().take(64) {
        let loc = loc.as_ref();
        if !(loc.starts_with("http://") || loc.starts_with("https://")) {
            continue;
        }
        if let Ok((key, _)) = split(loc) {
            if !keys.contains(&key) {
                keys.push(key);
                if keys.len() == 4 {
                    break;
                }
            }
        }
    }
    let mut list = prepared();
    list.retain(|p| p.at.elapsed() < PREPARED_FOR);
    for key in keys {
        if list.iter().any(|p| p.key == key && *p.policy == **policy) {
            continue;
        }
        let store: Arc<OnceLock<Option<Arc<dyn ObjectStore>>>> = Arc::default();
        let (slot, k, pol) = (store.clone(), key.clone(), policy.clone());
        let spawned = std::thread::Builder::new()
            .name("floodsql-store".into())
            .spawn(move || {
                slot.get_or_init(|| build_store(&k, &pol).ok());
            });
        if spawned.is_err() {
            continue;
        }
        if list.len() == MAX_PREPARED {
            list.remove(0);
        }
        list.push(Prepared {
            key,
            policy: policy.clone(),
            at: Instant::now(),
            store,
        });
    }
}

/// The store prepared for `key` under `policy`, if one is (taken: a second
/// call finds none), waiting for its build to end; `None` when none was
/// prepared or its build failed (the caller builds one and reports why).
pub(crate) fn take_prepared(key: &Url, policy: &Arc<ReadPolicy>) -> Option<Arc<dyn ObjectStore>> {
    let entry = {
        let mut list = prepared();
        list.retain(|p| p.at.elapsed() < PREPARED_FOR);
        let i = list
            .iter()
            .position(|p| p.key == *key && *p.policy == **policy)?;
        list.remove(i)
    };
    entry
        .store
        .get_or_init(|| build_store(key, policy).ok())
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store prepared for a key and policy is taken once, by a reader with
    /// the same key and policy only; other hosts and local files are not
    /// prepared.
    #[test]
    fn a_prepared_store_is_taken_once_by_its_key_and_policy() {
        // a host no other test uses: the list is process-wide
        let loc = "http://prepared-store.invalid:8123/cogs/a.tif";
        let (key, _) = split(loc).unwrap();
        let policy = Arc::new(ReadPolicy::allow_all());
        let other = Arc::new(ReadPolicy::default());
        assert!(policy != other);
        prepare_http_stores(["/tmp/a.tif", loc, loc], &policy);
        assert!(take_prepared(&key, &other).is_none());
        assert!(take_prepared(&key, &policy).is_some());
        assert!(take_prepared(&key, &policy).is_none());
        let (local, _) = split("/tmp/a.tif").unwrap();
        assert!(take_prepared(&local, &policy).is_none());
    }
}
