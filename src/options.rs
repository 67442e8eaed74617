//! Session options, settable in SQL: `SET floodsql.page_size = 50`.
//!
//! Written out rather than with DataFusion's `extensions_options!` macro: the
//! macro's `entries()` yields keys without the `floodsql.` prefix, and Ballista
//! ships a session to the scheduler and executors as exactly those entries
//! (key = value) — unprefixed keys are silently dropped there, so the options
//! (and the version handshake) would never reach the cluster.

use std::any::Any;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ConfigOptions, ExtensionOptions};
use datafusion::common::{config_err, Result};

/// Default catalogue of `floodsql extent`: EODC's STAC API, home of GFM.
pub(crate) const DEFAULT_STAC_URL: &str = "https://stac.eodc.eu/api/v1";
/// Default collection of `floodsql extent`.
pub(crate) const DEFAULT_COLLECTION: &str = "GFM";
/// Default `floodsql.page_size`: items per page asked of a STAC API.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;
/// Default `floodsql.chunk_size`: output chunk side in pixels.
pub(crate) const DEFAULT_CHUNK_SIZE: usize = 1000;
/// Default `floodsql.read_concurrency`: windows in flight per scan partition.
/// Their fetches overlap, which hides an object store's latency (20 ms per
/// response: 3.4 s with 2, 1.15 s with 16, 0.8 s on local files — medium
/// scene); each holds at most one chunk of pixels.
pub(crate) const DEFAULT_READ_CONCURRENCY: usize = 16;
/// Default `floodsql.http_timeout`: seconds a STAC request may take (each
/// attempt; with the retries a silent server is reported in under a minute).
pub(crate) const DEFAULT_HTTP_TIMEOUT_SECS: usize = 15;
/// Default `floodsql.reader`.
pub(crate) const DEFAULT_READER: &str = "native";
/// Values `floodsql.reader` takes.
pub(crate) const READERS: [&str; 2] = ["native", "gdal"];

/// Default `floodsql.max_grid_pixels`: 10 Gpx (a 2000 km square at 20 m;
/// 10 GB per uint8 band uncompressed). The scan streams, so memory does not
/// grow with the grid; time and disk do.
pub(crate) const DEFAULT_MAX_GRID_PIXELS: u64 = 10_000_000_000;
/// Default `floodsql.max_read_bytes`: 1 TB of decoded pixels (some 4 400
/// full 15 000 px Equi7 tiles).
pub(crate) const DEFAULT_MAX_READ_BYTES: u64 = 1_000_000_000_000;

/// `floodsql.nodata` when the catalogue decides (the default).
pub(crate) const NODATA_FROM_CATALOGUE: &str = "catalogue";

/// floodsql's session options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FloodsqlOptions {
    /// Items per page asked of a STAC API (`limit`).
    pub(crate) page_size: usize,
    /// Cap on the number of items a search returns (0 = no cap).
    pub(crate) max_items: usize,
    /// Default chunk side in pixels when `flood_chunks` is given none.
    pub(crate) chunk_size: usize,
    /// Windows read concurrently per scan partition.
    pub(crate) read_concurrency: usize,
    /// Seconds one STAC request may take (connect included).
    pub(crate) http_timeout: usize,
    /// COG reader: `native` (object_store + async-tiff) or `gdal`.
    pub(crate) reader: String,
    /// Nodata of every item's asset, overriding what the catalogue declares
    /// (`None`: the items' `raster:bands[0].nodata`, which must agree).
    pub(crate) nodata: Option<u8>,
    /// Hosts and buckets assets may be read from besides the catalogue's own
    /// host (comma-separated; see `access`).
    pub(crate) allowed_hosts: String,
    /// Directories local assets may be read from besides a local
    /// catalogue's own (comma-separated).
    pub(crate) allowed_paths: String,
    /// Largest output grid a scan may plan, pixels (0 = no limit).
    pub(crate) max_grid_pixels: u64,
    /// Largest volume of decoded pixels a scan may plan to read, bytes (0 = no limit).
    pub(crate) max_read_bytes: u64,
    /// Items `flood_chunks` leaves out because an earlier result already
    /// holds them (comma-separated ids; set by `floodsql extent --update`).
    pub(crate) skip_items: String,
    /// Version tag of the process that made this session (set by the
    /// session factory; schedulers and executors refuse other versions).
    pub(crate) version: String,
}

impl Default for FloodsqlOptions {
    fn default() -> Self {
        Self {
            page_size: DEFAULT_PAGE_SIZE,
            max_items: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            read_concurrency: DEFAULT_READ_CONCURRENCY,
            http_timeout: DEFAULT_HTTP_TIMEOUT_SECS,
            reader: DEFAULT_READER.to_string(),
            nodata: None,
            allowed_hosts: crate::access::DEFAULT_ALLOWED_HOSTS.to_string(),
            allowed_paths: String::new(),
            max_grid_pixels: DEFAULT_MAX_GRID_PIXELS,
            max_read_bytes: DEFAULT_MAX_READ_BYTES,
            skip_items: String::new(),
            version: String::new(),
        }
    }
}

impl FloodsqlOptions {
    /// The options a session carries (defaults when it carries none).
    pub(crate) fn from_config(options: &ConfigOptions) -> Self {
        options
            .extensions
            .get::<FloodsqlOptions>()
            .cloned()
            .unwrap_or_default()
    }
}

impl ConfigExtension for FloodsqlOptions {
    const PREFIX: &'static str = "floodsql";
}

const DOCS: [(&str, &str); 13] = [
    ("page_size", "Items per page asked of a STAC API (`limit`)."),
    (
        "max_items",
        "Cap on the number of items a search returns (0 = no cap).",
    ),
    (
        "chunk_size",
        "Default chunk side in pixels when `flood_chunks` is given none.",
    ),
    (
        "read_concurrency",
        "(slice, chunk) windows in flight per scan partition (their reads overlap; each holds one chunk).",
    ),
    (
        "http_timeout",
        "Seconds one STAC request may take (each attempt of up to 3).",
    ),
    (
        "reader",
        "COG reader: 'native' (object_store range reads, concurrent and coalesced; async-tiff decoders) or 'gdal'.",
    ),
    (
        "nodata",
        "Nodata of every item's asset: 'catalogue' (the items' raster:bands nodata, which must agree; 255 when none is declared) or 0..=255 (ignores what the items declare).",
    ),
    (
        "allowed_hosts",
        "Hosts ('host' or 'host:port') and buckets ('s3://b', 'gs://b', 'az://c') assets may be read from, besides the catalogue's own host (comma-separated; '*' allows any).",
    ),
    (
        "allowed_paths",
        "Directories local assets may be read from, besides a local catalogue's own directory (comma-separated).",
    ),
    (
        "max_grid_pixels",
        "Largest output grid a scan may plan, in pixels (suffixes k, M, G, T = 10^3..10^12; 0 = no limit).",
    ),
    (
        "max_read_bytes",
        "Largest volume of decoded source pixels a scan may plan to read, in bytes (suffixes k, M, G, T; 0 = no limit).",
    ),
    (
        "skip_items",
        "Item ids flood_chunks leaves out, comma-separated: an earlier result holds them (set by `floodsql extent --update`; a run that cannot be incremental fails with 'not incremental').",
    ),
    (
        "version",
        "floodsql version tag of the session's client (checked by schedulers and executors).",
    ),
];

/// An integer with an optional decimal suffix: `10G` = 10^10.
fn parse_count(key: &str, value: &str) -> Result<u64> {
    let v = value.trim();
    let (digits, mult) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1_000,
                'M' => 1_000_000,
                'G' => 1_000_000_000,
                'T' => 1_000_000_000_000,
                _ => 0,
            };
            (&v[..i], m)
        }
        _ => (v, 1),
    };
    match digits.trim().parse::<u64>().ok().filter(|_| mult > 0) {
        Some(n) => n.checked_mul(mult).map_or_else(
            || config_err!("floodsql.{key} = '{value}' is too large"),
            Ok,
        ),
        None => config_err!(
            "floodsql.{key} must be a non-negative integer, optionally with a suffix k, M, G or T, got '{value}'"
        ),
    }
}

fn parse_usize(key: &str, value: &str) -> Result<usize> {
    value
        .trim()
        .parse()
        .or_else(|_| config_err!("floodsql.{key} must be a non-negative integer, got '{value}'"))
}

impl ExtensionOptions for FloodsqlOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = key.strip_prefix("floodsql.").unwrap_or(key);
        match key {
            "page_size" => self.page_size = parse_usize(key, value)?,
            "max_items" => self.max_items = parse_usize(key, value)?,
            "chunk_size" => self.chunk_size = parse_usize(key, value)?,
            "read_concurrency" => self.read_concurrency = parse_usize(key, value)?,
            "http_timeout" => self.http_timeout = parse_usize(key, value)?,
            "reader" => {
                let v = value.trim().to_ascii_lowercase();
                if !READERS.contains(&v.as_str()) {
                    return config_err!(
                        "floodsql.reader must be one of {}, got '{value}'",
                        READERS.join(", ")
                    );
                }
                self.reader = v
            }
            "nodata" => {
                let v = value.trim();
                self.nodata = if v.eq_ignore_ascii_case(NODATA_FROM_CATALOGUE) {
                    None
                } else {
                    match v.parse::<u8>() {
                        Ok(n) => Some(n),
                        Err(_) => {
                            return config_err!(
                            "floodsql.nodata must be '{NODATA_FROM_CATALOGUE}' or an integer 0..=255, got '{value}'"
                        )
                        }
                    }
                }
            }
            "allowed_hosts" => self.allowed_hosts = value.trim().to_string(),
            "allowed_paths" => self.allowed_paths = value.trim().to_string(),
            "max_grid_pixels" => self.max_grid_pixels = parse_count(key, value)?,
            "max_read_bytes" => self.max_read_bytes = parse_count(key, value)?,
            "skip_items" => self.skip_items = value.trim().to_string(),
            "version" => self.version = value.to_string(),
            _ => return config_err!("unknown option floodsql.{key}"),
        }
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        let values = [
            self.page_size.to_string(),
            self.max_items.to_string(),
            self.chunk_size.to_string(),
            self.read_concurrency.to_string(),
            self.http_timeout.to_string(),
            self.reader.clone(),
            self.nodata
                .map_or(NODATA_FROM_CATALOGUE.to_string(), |n| n.to_string()),
            self.allowed_hosts.clone(),
            self.allowed_paths.clone(),
            self.max_grid_pixels.to_string(),
            self.max_read_bytes.to_string(),
            self.skip_items.clone(),
            self.version.clone(),
        ];
        DOCS.iter()
            .zip(values)
            .map(|((k, doc), v)| ConfigEntry {
                key: format!("{}.{k}", Self::PREFIX),
                value: Some(v),
                description: doc,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_set() {
        let mut a = FloodsqlOptions::default();
        a.set("page_size", "7").unwrap();
        a.set("version", "x").unwrap();
        a.set("reader", "GDAL").unwrap();
        assert_eq!(a.reader, "gdal");
        a.set("nodata", "0").unwrap();
        assert_eq!(a.nodata, Some(0));
        let mut b = FloodsqlOptions::default();
        for e in a.entries() {
            assert!(e.key.starts_with("floodsql."), "{}", e.key);
            b.set(
                e.key.strip_prefix("floodsql.").unwrap(),
                e.value.as_deref().unwrap(),
            )
            .unwrap();
        }
        assert_eq!(a, b);
        assert!(a.set("page_size", "-1").is_err());
        assert!(a.set("nope", "1").is_err());
        assert!(a.set("reader", "rasterio").is_err());
        assert!(a.set("nodata", "256").is_err());
        assert!(a.set("nodata", "nan").is_err());
        a.set("nodata", "Catalogue").unwrap();
        assert_eq!(a.nodata, None);
        a.set("max_grid_pixels", "10G").unwrap();
        assert_eq!(a.max_grid_pixels, 10_000_000_000);
        a.set("max_read_bytes", " 7k ").unwrap();
        assert_eq!(a.max_read_bytes, 7_000);
        a.set("max_read_bytes", "0").unwrap();
        assert_eq!(a.max_read_bytes, 0);
        for bad in ["10X", "G", "-1", "1.5G", "99999999999T"] {
            assert!(a.set("max_grid_pixels", bad).is_err(), "{bad}");
        }
    }
}
