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

use crate::cql::ItemsFilter;

/// Default catalogue of `floodsql extent`: EODC's STAC API, home of GFM.
pub(crate) const DEFAULT_STAC_URL: &str = "https://stac.eodc.eu/api/v1";
/// Default collection of `floodsql extent`.
pub(crate) const DEFAULT_COLLECTION: &str = "GFM";
/// Default `floodsql.page_size`: items per page asked of a STAC API.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;
/// Default `floodsql.chunk_size`: output chunk side in pixels.
pub(crate) const DEFAULT_CHUNK_SIZE: usize = 1000;
/// Default `floodsql.read_concurrency`: windows decoding at once per scan
/// partition, each holding at most one chunk of pixels. The decode pool has
/// one thread per core, so a few per partition keep it busy; more only
/// hold decoded windows waiting their turn (tutorial-sized scene: peak RSS
/// 226 MB with 16, 199 MB with 4, the same time). The store's latency is
/// hidden by the rows fetched ahead of them (`READ_AHEAD` times this).
pub(crate) const DEFAULT_READ_CONCURRENCY: usize = 4;
/// Default `floodsql.http_timeout`: seconds a STAC request may take (each
/// attempt; with the retries a silent server is reported in under a minute).
pub(crate) const DEFAULT_HTTP_TIMEOUT_SECS: usize = 15;

/// Default `floodsql.max_grid_pixels`: 10 Gpx (a 2000 km square at 20 m;
/// 10 GB per uint8 band uncompressed). The scan streams, so memory does not
/// grow with the grid; time and disk do.
pub(crate) const DEFAULT_MAX_GRID_PIXELS: u64 = 10_000_000_000;
/// Default `floodsql.max_read_bytes`: 1 TB of decoded pixels (some 4 400
/// full 15 000 px Equi7 tiles).
pub(crate) const DEFAULT_MAX_READ_BYTES: u64 = 1_000_000_000_000;

/// `floodsql.nodata` when the catalogue decides (the default).
pub(crate) const NODATA_FROM_CATALOGUE: &str = "catalogue";

/// The COG reader of a scan (`floodsql.reader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Reader {
    /// `object_store` range reads (concurrent, coalesced) + `async-tiff`
    /// decoders: the default.
    #[default]
    Native,
    /// GDAL's drivers and network file systems (`/vsicurl/`, `/vsis3/`, ...)
    /// on blocking threads.
    Gdal,
}

impl Reader {
    /// Every reader, in the order the docs list them.
    pub(crate) const ALL: [Reader; 2] = [Reader::Native, Reader::Gdal];

    /// The option value naming this reader.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reader::Native => "native",
            Reader::Gdal => "gdal",
        }
    }
}

/// What a scan does with an item that lacks one of the assets it reads
/// (`floodsql.missing_assets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum IfMissing {
    /// Stop with an error naming the item and the asset (the default).
    Error,
    /// Read it as nodata: the item adds nothing to that column (odc-stac's
    /// way: a band an item lacks is skipped).
    Nodata,
    /// Read it as this value over the item's footprint (e.g. a missing
    /// `exclusion_mask` as 0: nothing excluded).
    Value(u8),
}

impl IfMissing {
    fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "error" => Some(IfMissing::Error),
            "nodata" => Some(IfMissing::Nodata),
            n => n.parse().ok().map(IfMissing::Value),
        }
    }
}

impl std::fmt::Display for IfMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IfMissing::Error => f.write_str("error"),
            IfMissing::Nodata => f.write_str("nodata"),
            IfMissing::Value(v) => write!(f, "{v}"),
        }
    }
}

/// `floodsql.missing_assets`: a policy per asset name, `*` for any other
/// (`exclusion_mask=0,*=nodata`); an asset named nowhere is an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct MissingAssets(pub(crate) Vec<(String, IfMissing)>);

impl MissingAssets {
    /// The policy for `asset`.
    pub(crate) fn policy(&self, asset: &str) -> IfMissing {
        let find = |name: &str| self.0.iter().find(|(a, _)| a == name).map(|(_, p)| *p);
        find(asset)
            .or_else(|| find("*"))
            .unwrap_or(IfMissing::Error)
    }
}

impl OptionValue for MissingAssets {
    fn parse(key: &str, value: &str) -> Result<Self> {
        let mut out = Vec::new();
        for entry in crate::access::list(value) {
            let parsed = entry
                .split_once('=')
                .and_then(|(a, p)| Some((a.trim().to_string(), IfMissing::parse(p)?)))
                .filter(|(a, _)| !a.is_empty());
            match parsed {
                Some(e) => out.push(e),
                None => {
                    return config_err!(
                        "floodsql.{key}: '{entry}' is not ASSET=POLICY (POLICY: error, nodata \
                         or a value 0..=255; ASSET '*' for any asset), e.g. \
                         'exclusion_mask=0,*=nodata'"
                    )
                }
            }
        }
        Ok(MissingAssets(out))
    }
    fn show(&self) -> String {
        self.0
            .iter()
            .map(|(a, p)| format!("{a}={p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How a scan makes time slices of its items (`floodsql.group_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) enum GroupBy {
    /// One slice per exact datetime (the tutorial's, odc-stac's default).
    #[default]
    Time,
    /// One slice per day in local solar time at the grid's centre
    /// longitude: the frames of one pass fused (odc-stac's
    /// `groupby="solar_day"`).
    SolarDay,
}

impl OptionValue for GroupBy {
    fn parse(key: &str, value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "time" => Ok(GroupBy::Time),
            "solar_day" => Ok(GroupBy::SolarDay),
            _ => config_err!("floodsql.{key} must be 'time' or 'solar_day', got '{value}'"),
        }
    }
    fn show(&self) -> String {
        match self {
            GroupBy::Time => "time",
            GroupBy::SolarDay => "solar_day",
        }
        .to_string()
    }
}

/// `floodsql.filter`: a CQL2 filter (text or JSON) on the items' fields,
/// parsed and checked when set; empty = none. Shown as written.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ItemFilter {
    written: String,
    filter: Option<ItemsFilter>,
}

impl ItemFilter {
    /// The filter, or `None` when empty.
    pub(crate) fn filter(&self) -> Option<&ItemsFilter> {
        self.filter.as_ref()
    }
}

impl OptionValue for ItemFilter {
    fn parse(key: &str, value: &str) -> Result<Self> {
        match ItemsFilter::parse(value) {
            Ok(filter) => Ok(ItemFilter {
                written: value.trim().to_string(),
                filter,
            }),
            Err(e) => config_err!(
                "{}",
                e.to_string()
                    .replace("floodsql.filter", &format!("floodsql.{key}"))
            ),
        }
    }
    fn show(&self) -> String {
        self.written.clone()
    }
}

/// A value of a session option: how `SET` parses it and `SHOW` prints it
/// (printing then parsing gives the value back: Ballista ships options to
/// the cluster as that text).
pub(crate) trait OptionValue: Sized {
    /// Parses the text of `SET floodsql.KEY = value`.
    fn parse(key: &str, value: &str) -> Result<Self>;
    /// The text `SHOW` prints (and [`OptionValue::parse`] reads back).
    fn show(&self) -> String;
}

impl OptionValue for usize {
    fn parse(key: &str, value: &str) -> Result<Self> {
        value.trim().parse().or_else(|_| {
            config_err!("floodsql.{key} must be a non-negative integer, got '{value}'")
        })
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// An integer with an optional decimal suffix: `10G` = 10^10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Count(pub(crate) u64);

impl OptionValue for Count {
    fn parse(key: &str, value: &str) -> Result<Self> {
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
                |n| Ok(Count(n)),
            ),
            None => config_err!(
                "floodsql.{key} must be a non-negative integer, optionally with a suffix k, M, G or T, got '{value}'"
            ),
        }
    }
    fn show(&self) -> String {
        self.0.to_string()
    }
}

impl OptionValue for Reader {
    fn parse(key: &str, value: &str) -> Result<Self> {
        let v = value.trim();
        match Reader::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(v))
        {
            Some(r) => Ok(r),
            None => config_err!(
                "floodsql.{key} must be one of {}, got '{value}'",
                Reader::ALL.map(Reader::name).join(", ")
            ),
        }
    }
    fn show(&self) -> String {
        self.name().to_string()
    }
}

/// `floodsql.nodata`: forced, or (None) as the catalogue declares.
impl OptionValue for Option<u8> {
    fn parse(key: &str, value: &str) -> Result<Self> {
        let v = value.trim();
        if v.eq_ignore_ascii_case(NODATA_FROM_CATALOGUE) {
            return Ok(None);
        }
        match v.parse::<u8>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => config_err!(
                "floodsql.{key} must be '{NODATA_FROM_CATALOGUE}' or an integer 0..=255, got '{value}'"
            ),
        }
    }
    fn show(&self) -> String {
        self.map_or(NODATA_FROM_CATALOGUE.to_string(), |n| n.to_string())
    }
}

/// A comma-separated list (hosts, directories, item ids); entries are
/// trimmed, empty ones dropped.
impl OptionValue for Vec<String> {
    fn parse(_key: &str, value: &str) -> Result<Self> {
        Ok(crate::access::list(value))
    }
    fn show(&self) -> String {
        self.join(",")
    }
}

impl OptionValue for String {
    fn parse(_key: &str, value: &str) -> Result<Self> {
        Ok(value.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

/// Declares floodsql's session options once — field, type, default, an
/// example value other than the default (the tests set it), and the doc —
/// and derives the struct, its defaults, `SET` (parse) and `SHOW` (entries,
/// with the doc as description) from that one list.
macro_rules! floodsql_options {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $ty:ty = $default:expr, e.g. $example:literal;
    )*) => {
        /// floodsql's session options (`SET floodsql.KEY = value`).
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct FloodsqlOptions {
            $( $(#[doc = $doc])+ pub(crate) $field: $ty, )*
        }

        impl Default for FloodsqlOptions {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl FloodsqlOptions {
            /// Every option: (key without prefix, example value, doc).
            pub(crate) const DECLARED: &'static [(&'static str, &'static str, &'static str)] = &[
                $( (stringify!($field), $example, concat!($($doc),+)), )*
            ];

            fn set_one(&mut self, key: &str, value: &str) -> Result<()> {
                match key {
                    $( stringify!($field) => self.$field = OptionValue::parse(key, value)?, )*
                    _ => return config_err!("{}", unknown_option(key)),
                }
                Ok(())
            }

            fn values(&self) -> Vec<String> {
                vec![ $( self.$field.show(), )* ]
            }
        }
    };
}

floodsql_options! {
    /// Items per page asked of a STAC API (`limit`).
    page_size: usize = DEFAULT_PAGE_SIZE, e.g. "7";
    /// Cap on the number of items a search returns (0 = no cap).
    max_items: usize = 0, e.g. "40";
    /// Default chunk side in pixels when `flood_chunks` is given none.
    chunk_size: usize = DEFAULT_CHUNK_SIZE, e.g. "500";
    /// (slice, chunk) windows decoding at once per scan partition (each
    /// holds one chunk); 32 times as many rows have their blocks fetched.
    read_concurrency: usize = DEFAULT_READ_CONCURRENCY, e.g. "2";
    /// Seconds one STAC request may take (each attempt of up to 3).
    http_timeout: usize = DEFAULT_HTTP_TIMEOUT_SECS, e.g. "60";
    /// COG reader: 'native' (object_store range reads, concurrent and
    /// coalesced; async-tiff decoders) or 'gdal'.
    reader: Reader = Reader::Native, e.g. "gdal";
    /// Nodata of every item's asset: 'catalogue' (the items' raster:bands
    /// nodata, which must agree; 255 when none is declared) or 0..=255
    /// (ignores what the items declare).
    nodata: Option<u8> = None, e.g. "0";
    /// Hosts ('host' or 'host:port') and buckets ('s3://b', 'gs://b',
    /// 'az://c') assets may be read from, besides the catalogue's own host
    /// (comma-separated; '*' allows any).
    allowed_hosts: Vec<String> = vec![crate::access::DEFAULT_ALLOWED_HOSTS.to_string()], e.g. "data.eodc.eu,s3://b";
    /// Directories local assets may be read from, besides a local
    /// catalogue's own directory (comma-separated).
    allowed_paths: Vec<String> = Vec::new(), e.g. "/data,/mnt/gfm";
    /// Largest output grid a scan may plan, in pixels (suffixes k, M, G, T =
    /// 10^3..10^12; 0 = no limit).
    max_grid_pixels: Count = Count(DEFAULT_MAX_GRID_PIXELS), e.g. "10M";
    /// Largest volume of decoded source pixels a scan may plan to read, in
    /// bytes (suffixes k, M, G, T; 0 = no limit).
    max_read_bytes: Count = Count(DEFAULT_MAX_READ_BYTES), e.g. "0";
    /// Item ids flood_chunks leaves out, comma-separated: an earlier result
    /// holds them (set by `floodsql extent --update`; a run that cannot be
    /// incremental fails with 'not incremental').
    skip_items: Vec<String> = Vec::new(), e.g. "A,B";
    /// What a scan does with an item lacking an asset it reads, per asset:
    /// ASSET=error|nodata|VALUE, comma-separated, '*' for any asset (e.g.
    /// 'exclusion_mask=0': a missing mask excludes nothing); empty: error.
    missing_assets: MissingAssets = MissingAssets::default(), e.g. "exclusion_mask=0,*=nodata";
    /// Time slices: 'time' (one per exact datetime, the tutorial's) or
    /// 'solar_day' (one per local solar day: the frames of a pass fused, as
    /// odc-stac's groupby="solar_day").
    group_by: GroupBy = GroupBy::Time, e.g. "solar_day";
    /// CQL2 filter on the items (cql2-text or cql2-json): sent to STAC APIs
    /// (filter extension), evaluated by floodsql on static catalogues.
    filter: ItemFilter = ItemFilter::default(), e.g. "flooded_pixels > 0";
    /// floodsql version tag of the session's client (checked by schedulers
    /// and executors).
    version: String = String::new(), e.g. "0.0.0+fn.x";
}

/// "unknown option floodsql.KEY", with the nearest declared key when one is
/// close and the list otherwise.
fn unknown_option(key: &str) -> String {
    let keys = FloodsqlOptions::DECLARED.iter().map(|(k, _, _)| *k);
    let near = keys
        .clone()
        .map(|k| (crate::error::edit_distance(k, key), k))
        .min()
        .filter(|(d, _)| *d <= 2 || (*d <= 3 && key.len() > 8));
    match near {
        Some((_, k)) => format!("unknown option floodsql.{key}: did you mean floodsql.{k}?"),
        None => format!(
            "unknown option floodsql.{key} (options: {})",
            keys.collect::<Vec<_>>().join(", ")
        ),
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

    /// The options of a session, to change them through its config (the
    /// CLI's flags): `None` when the session has no floodsql namespace.
    pub(crate) fn of_config_mut(options: &mut ConfigOptions) -> Option<&mut Self> {
        options.extensions.get_mut::<FloodsqlOptions>()
    }
}

impl ConfigExtension for FloodsqlOptions {
    const PREFIX: &'static str = "floodsql";
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
        self.set_one(key.strip_prefix("floodsql.").unwrap_or(key), value)
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Self::DECLARED
            .iter()
            .zip(self.values())
            .map(|((k, _, doc), v)| ConfigEntry {
                key: format!("{}.{k}", Self::PREFIX),
                value: Some(v),
                description: doc.trim(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared option: its example moves it off the default, SHOW
    /// prints it, and SET reads that back (as the cluster receives it).
    #[test]
    fn every_option_moves_off_its_default_and_round_trips() {
        let defaults = FloodsqlOptions::default();
        let mut a = FloodsqlOptions::default();
        let entries = defaults.entries();
        assert_eq!(entries.len(), FloodsqlOptions::DECLARED.len());
        for (e, (key, example, doc)) in entries.iter().zip(FloodsqlOptions::DECLARED) {
            assert_eq!(e.key, format!("floodsql.{key}"));
            assert!(!doc.trim().is_empty() && e.description == doc.trim());
            a.set(key, example).unwrap();
            let shown = a.entries().into_iter().find(|x| x.key == e.key).unwrap();
            assert_ne!(shown.value, e.value, "{key} = {example} is its default");
        }
        assert!(a
            .entries()
            .iter()
            .zip(defaults.entries())
            .all(|(x, d)| x.value != d.value));
        let mut b = FloodsqlOptions::default();
        for e in a.entries() {
            b.set(&e.key, e.value.as_deref().unwrap()).unwrap();
        }
        assert_eq!(a, b);
    }

    /// The README's list of session options names every declared option.
    #[test]
    fn the_readme_lists_every_option() {
        let readme = include_str!("../README.md");
        let start = readme.find("Session options (`SET floodsql.x").unwrap();
        let list = &readme[start..start + 1200];
        for (key, _, _) in FloodsqlOptions::DECLARED {
            assert!(list.contains(&format!("`{key}`")), "README lacks `{key}`");
        }
    }

    #[test]
    fn missing_asset_policies() {
        let mut a = FloodsqlOptions::default();
        assert_eq!(a.missing_assets.policy("x"), IfMissing::Error);
        a.set("missing_assets", "exclusion_mask=0, *=nodata")
            .unwrap();
        assert_eq!(
            a.missing_assets.policy("exclusion_mask"),
            IfMissing::Value(0)
        );
        assert_eq!(a.missing_assets.policy("other"), IfMissing::Nodata);
        a.set("missing_assets", "a=ERROR").unwrap();
        assert_eq!(a.missing_assets.policy("a"), IfMissing::Error);
        assert_eq!(a.missing_assets.policy("b"), IfMissing::Error);
        for bad in ["a", "a=256", "=0", "a=maybe"] {
            let e = a.set("missing_assets", bad).unwrap_err().to_string();
            assert!(e.contains("ASSET=POLICY") && e.contains(bad), "{bad}: {e}");
        }
        a.set("group_by", "Solar_Day").unwrap();
        assert_eq!(a.group_by, GroupBy::SolarDay);
        assert!(a.set("group_by", "week").is_err());
        // a filter is checked when set, and kept as written
        a.set(
            "filter",
            "flooded_pixels > 0 AND \"Equi7Tile\" = 'E051N015T3'",
        )
        .unwrap();
        let j = a.filter.filter().unwrap().json();
        assert_eq!(j["op"], "and", "{j}");
        let e = a.set("filter", "flooded_pixels >").unwrap_err().to_string();
        assert!(e.contains("floodsql.filter") && e.contains("CQL2"), "{e}");
        a.set("filter", "").unwrap();
        assert_eq!(a.filter.filter(), None);
    }

    #[test]
    fn values_are_checked() {
        let mut a = FloodsqlOptions::default();
        a.set("reader", "GDAL").unwrap();
        assert_eq!(a.reader, Reader::Gdal);
        a.set("nodata", "Catalogue").unwrap();
        assert_eq!(a.nodata, None);
        a.set("max_grid_pixels", "10G").unwrap();
        assert_eq!(a.max_grid_pixels, Count(10_000_000_000));
        a.set("max_read_bytes", " 7k ").unwrap();
        assert_eq!(a.max_read_bytes, Count(7_000));
        a.set("allowed_hosts", " a , ,b:8 ").unwrap();
        assert_eq!(a.allowed_hosts, ["a", "b:8"]);
        assert!(a.set("page_size", "-1").is_err());
        assert!(a.set("reader", "rasterio").is_err());
        assert!(a.set("nodata", "256").is_err());
        assert!(a.set("nodata", "nan").is_err());
        for bad in ["10X", "G", "-1", "1.5G", "99999999999T"] {
            assert!(a.set("max_grid_pixels", bad).is_err(), "{bad}");
        }
        let e = a.set("page_sise", "1").unwrap_err().to_string();
        assert!(e.contains("did you mean floodsql.page_size?"), "{e}");
        let e = a.set("nope", "1").unwrap_err().to_string();
        assert!(e.contains("options: page_size, max_items"), "{e}");
    }
}
