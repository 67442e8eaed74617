//! From STAC items to a scan plan: the output grid, the time slices (one per
//! exact datetime, items in (datetime, id) order) and where each item's asset
//! sits on the output lattice. Plain serialisable data, so that the plan node
//! can later cross a process boundary (Ballista).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use floodsql_udfs::DEFAULT_NODATA;

use crate::access::ReadPolicy;
use crate::error::{Error, Result};
use crate::geo::{overlap, Bbox, Overlap, Window};
use crate::options::{GroupBy, IfMissing, MissingAssets};
use crate::raster::grid::{output_grid, split_float, OutputGrid};
use crate::raster::warp::Warp;
use crate::stac::item::StacItem;
use crate::vector::zones::ZoneSet;

/// Where a source's asset is read from — or, when its item lacks the
/// asset and `floodsql.missing_assets` allows that, the value standing for
/// it over the item's footprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AssetLoc {
    /// An absolute local path or a URL (see `stac::item::resolve_href`).
    Read(String),
    /// The item lacks the asset: it reads as this value (the column's
    /// nodata: it adds nothing).
    Fill(u8),
}

impl AssetLoc {
    /// The location read, if any.
    pub(crate) fn location(&self) -> Option<&str> {
        match self {
            AssetLoc::Read(p) => Some(p),
            AssetLoc::Fill(_) => None,
        }
    }
}

/// One asset placed on the output lattice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Source {
    pub(crate) item_id: String,
    /// What identifies the item's content ([`StacItem::version`]): an
    /// update notices a reprocessed item by it.
    #[serde(default)]
    pub(crate) version: String,
    /// The asset giving `pixels`.
    pub(crate) loc: AssetLoc,
    /// Position of the asset's top-left pixel in output pixel coordinates.
    pub(crate) col_off: i64,
    pub(crate) row_off: i64,
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// For an item in another CRS (or not pasteable): its own grid, warped
    /// per chunk; the fields above are then its footprint on the output grid.
    #[serde(default)]
    pub(crate) warp: Option<crate::raster::warp::Warp>,
    /// The scan's other assets of this item ([`ScanPlan::columns`], same
    /// order), on the same grid.
    #[serde(default)]
    pub(crate) extra_locs: Vec<AssetLoc>,
}

impl Source {
    /// This source reading its `k`-th extra asset instead.
    pub(crate) fn for_extra(&self, k: usize) -> Result<Source> {
        let loc = self.extra_locs.get(k).cloned().ok_or_else(|| {
            Error::Internal(format!(
                "item '{}' has no location for extra asset {k}",
                self.item_id
            ))
        })?;
        Ok(Source {
            loc,
            extra_locs: Vec::new(),
            ..self.clone()
        })
    }
    /// Where this source meets an output window, if it does.
    pub(crate) fn overlap(&self, w: Window) -> Option<Overlap> {
        overlap(self.col_off, self.row_off, self.width, self.height, w)
    }
}

/// One asset a scan reads, with the nodata it is fused with (also the fill
/// of pixels no source covers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AssetSpec {
    /// The asset's key in the items.
    pub(crate) name: String,
    /// One nodata for every item's asset (see [`scan_nodata`]).
    pub(crate) nodata: u8,
}

/// All items of one exact datetime, in id order (fusing order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TimeSlice {
    /// Microseconds since the epoch, UTC.
    pub(crate) datetime_us: i64,
    pub(crate) sources: Vec<Source>,
}

/// Everything the chunk scan needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanPlan {
    pub(crate) grid: OutputGrid,
    pub(crate) chunk: usize,
    /// The asset that gives the `pixels` column.
    pub(crate) pixels: AssetSpec,
    /// What the scan may read: every source passed it at planning, and the
    /// reader (client or executor) checks it again.
    pub(crate) policy: ReadPolicy,
    pub(crate) slices: Vec<TimeSlice>,
    /// The search that found the items, in words (catalogue and
    /// collections, credentials masked): recorded in the outputs.
    #[serde(default)]
    pub(crate) search: String,
    /// Other assets read with `pixels`, each a column of the scan named
    /// after it (their locations: [`Source::extra_paths`], same order).
    #[serde(default)]
    pub(crate) columns: Vec<AssetSpec>,
    /// Regions on the grid: the scan's `zones` column.
    #[serde(default)]
    pub(crate) zones: Option<Arc<ZoneSet>>,
    /// The chunk index, built once per plan (planning, the chunk assignment,
    /// every scan partition and the progress total all read it); not part of
    /// the plan's value nor of its encoding.
    #[serde(skip)]
    pub(crate) index: IndexCache,
}

/// A lazily built [`ChunkIndex`]: equal to any other, cloned empty-or-shared.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexCache(std::sync::Arc<std::sync::OnceLock<ChunkIndex>>);

impl PartialEq for IndexCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ScanPlan {
    /// Every location the scan reads (each source's assets).
    pub(crate) fn locations(&self) -> Vec<&str> {
        self.slices
            .iter()
            .flat_map(|s| &s.sources)
            .flat_map(|src| std::iter::once(&src.loc).chain(&src.extra_locs))
            .filter_map(AssetLoc::location)
            .collect()
    }

    /// The assets items lack, and what stands for them
    /// (`floodsql.missing_assets`), in column order.
    pub(crate) fn missing(&self) -> Vec<MissingAsset> {
        let specs = std::iter::once(&self.pixels).chain(&self.columns);
        let mut out = Vec::new();
        for (k, spec) in specs.enumerate() {
            let mut items = Vec::new();
            let mut fill = spec.nodata;
            for src in self.slices.iter().flat_map(|s| &s.sources) {
                let loc = if k == 0 {
                    Some(&src.loc)
                } else {
                    src.extra_locs.get(k - 1)
                };
                if let Some(AssetLoc::Fill(v)) = loc {
                    items.push(src.item_id.clone());
                    fill = *v;
                }
            }
            if !items.is_empty() {
                out.push(MissingAsset {
                    asset: spec.name.clone(),
                    fill,
                    nodata: fill == spec.nodata,
                    items,
                });
            }
        }
        out
    }

    /// What this scan will do (see [`ScanEstimate`]).
    pub fn estimate(&self) -> ScanEstimate {
        let index = self.chunk_index();
        let (cols, rows) = self.grid.chunks(self.chunk);
        ScanEstimate {
            items: self.n_items(),
            slices: self.slices.len(),
            width: self.grid.width,
            height: self.grid.height,
            res: self.grid.res,
            chunk: self.chunk,
            chunks: cols * rows,
            chunks_with_data: index.chunks().count(),
            rows: self.rows(),
            missing: self.missing(),
            read_bytes: self
                .slices
                .iter()
                .flat_map(|s| &s.sources)
                .map(|s| self.read_bytes(s))
                .sum(),
        }
    }

    /// The (slice, chunk) rows the scan produces: per chunk, the slices
    /// with a source on it.
    pub(crate) fn rows(&self) -> usize {
        let index = self.chunk_index();
        index
            .chunks()
            .map(|(c, r)| index.sources(c, r).chunk_by(|a, b| a.0 == b.0).count())
            .sum()
    }

    /// Pixels of `src` on the grid, per asset read.
    fn read_bytes(&self, src: &Source) -> u64 {
        let read = std::iter::once(&src.loc)
            .chain(&src.extra_locs)
            .filter(|l| l.location().is_some())
            .count() as u64;
        src.overlap(self.grid.window())
            .map_or(0, |o| o.src.width as u64 * o.src.height as u64)
            * read
    }

    /// Items (sources) in total.
    pub(crate) fn n_items(&self) -> usize {
        self.slices.iter().map(|s| s.sources.len()).sum()
    }

    /// Chunks (col, row) that at least one source overlaps, row-major.
    #[cfg(test)]
    pub(crate) fn chunks_with_data(&self) -> Vec<(usize, usize)> {
        self.chunk_index().chunks().collect()
    }

    /// Which sources touch which chunk, built once, in one pass over the
    /// sources: time and memory linear in sources + the chunks each touches,
    /// never chunks × sources (continent-scale catalogues have 10⁴–10⁵ items).
    pub(crate) fn chunk_index(&self) -> &ChunkIndex {
        self.index.0.get_or_init(|| self.build_index())
    }

    fn build_index(&self) -> ChunkIndex {
        let mut by_chunk: BTreeMap<(usize, usize), Vec<(usize, usize)>> = BTreeMap::new();
        let k = self.chunk.max(1);
        for (si, slice) in self.slices.iter().enumerate() {
            for (ki, src) in slice.sources.iter().enumerate() {
                // the source's pixels on the grid: [x0, x1) x [y0, y1)
                let Some(o) = src.overlap(self.grid.window()) else {
                    continue;
                };
                let (x0, y0) = (o.dst_x, o.dst_y);
                let (x1, y1) = (x0 + o.src.width, y0 + o.src.height);
                for r in y0 / k..=(y1 - 1) / k {
                    for c in x0 / k..=(x1 - 1) / k {
                        by_chunk.entry((r, c)).or_default().push((si, ki));
                    }
                }
            }
        }
        ChunkIndex { by_chunk }
    }
}

/// The sources touching each chunk: (slice, source) indices into the plan,
/// in fusing order (slices in time order, sources in (datetime, id) order).
#[derive(Debug, Default)]
pub(crate) struct ChunkIndex {
    /// Keyed by (row, col), so that iteration is row-major.
    by_chunk: BTreeMap<(usize, usize), Vec<(usize, usize)>>,
}

impl ChunkIndex {
    /// Chunks (col, row) with at least one source, row-major.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.by_chunk.keys().map(|&(r, c)| (c, r))
    }

    /// The (slice, source) indices touching chunk (col, row), in fusing order.
    pub(crate) fn sources(&self, col: usize, row: usize) -> &[(usize, usize)] {
        self.by_chunk
            .get(&(row, col))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Smallest chunk side.
pub(crate) const MIN_CHUNK: usize = 16;
/// Largest chunk side: one chunk's pixels stay far below 2 GiB.
pub(crate) const MAX_CHUNK: usize = 16384;

/// The one nodata of a scan: `forced` (`floodsql.nodata`) when given, else
/// the value the items declare for `asset` (`raster:bands[0].nodata`), which
/// must be a uint8 value and the same on every item that declares one;
/// [`DEFAULT_NODATA`] (GFM's 255) when none does.
///
/// Items that disagree are refused rather than fused with the first item's
/// value (odc-stac's rule: the first item of the search sets the fill, so
/// one item declaring nodata 1 turns every pixel no item covers into
/// "flood"); `SET floodsql.nodata = N` reads such a catalogue with N.
pub(crate) fn scan_nodata(items: &[StacItem], asset: &str, forced: Option<u8>) -> Result<u8> {
    if let Some(n) = forced {
        return Ok(n);
    }
    let mut seen: Option<(u8, &str)> = None;
    for it in items {
        let v = match it.asset_nodata(asset) {
            None => continue,
            Some(Ok(v)) if (0.0..=255.0).contains(&v) && v.fract() == 0.0 => v as u8,
            Some(Ok(v)) => {
                return Err(Error::BadItem {
                    item: it.id.clone(),
                    message: format!(
                        "nodata {v} of asset '{asset}' is not a uint8 value \
                         (SET floodsql.nodata = N to read it with nodata N)"
                    ),
                })
            }
            Some(Err(text)) => {
                return Err(Error::BadItem {
                    item: it.id.clone(),
                    message: format!("nodata {text} of asset '{asset}' is not a number"),
                })
            }
        };
        match seen {
            None => seen = Some((v, &it.id)),
            Some((w, first)) if w != v => {
                return Err(Error::BadItem {
                    item: it.id.clone(),
                    message: format!(
                        "it declares nodata {v} for asset '{asset}' but item '{first}' declares \
                         {w}: a scan fuses with one nodata (SET floodsql.nodata = N to read \
                         every item with nodata N)"
                    ),
                })
            }
            Some(_) => {}
        }
    }
    Ok(seen.map_or(DEFAULT_NODATA, |(v, _)| v))
}

/// Bounds on one scan, checked while it is planned, before any pixel is
/// read (`floodsql.max_grid_pixels`, `floodsql.max_read_bytes`; 0 = none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScanLimits {
    /// Largest output grid, in pixels.
    pub(crate) max_grid_pixels: u64,
    /// Largest volume of decoded source pixels (bytes: the assets are uint8).
    pub(crate) max_read_bytes: u64,
}

impl ScanLimits {
    fn check(
        &self,
        what: &str,
        value: u64,
        unit: &str,
        limit: u64,
        key: &str,
        hint: &str,
    ) -> Result<()> {
        if limit == 0 || value <= limit {
            return Ok(());
        }
        Err(Error::TooLarge(format!(
            "{what} is {}{unit} ({value}), over floodsql.{key} = {limit}: {hint}, or \
             `SET floodsql.{key} = N` (0 = no limit); `--dry-run` prints the estimate \
             without reading",
            si(value as f64),
        )))
    }
}

/// A number with a decimal SI prefix: 1.83 G, 99.7 M, 512.
pub(crate) fn si(v: f64) -> String {
    const P: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (f, p) in P {
        if v >= f {
            return format!("{:.3} {p}", v / f)
                .replace(".000 ", " ")
                .trim_end()
                .to_string();
        }
    }
    format!("{v}")
}

/// What a scan will do, known once it is planned (before any pixel is read):
/// `floodsql --dry-run` prints it, and a run prints it before reading.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanEstimate {
    /// Items (sources) on the grid.
    pub items: usize,
    /// Time slices.
    pub slices: usize,
    /// Output grid size, pixels.
    pub width: usize,
    /// Output grid size, pixels.
    pub height: usize,
    /// Output resolution, CRS units.
    pub res: f64,
    /// Chunk side, pixels.
    pub chunk: usize,
    /// Chunks on the grid.
    pub chunks: usize,
    /// Chunks at least one item covers.
    pub chunks_with_data: usize,
    /// (slice, chunk) rows the scan produces.
    pub rows: usize,
    /// Source pixels decoded (bytes; uint8 assets): each item's overlap with
    /// the grid, before compression.
    pub read_bytes: u64,
    /// Assets some items lack (`floodsql.missing_assets`).
    pub missing: Vec<MissingAsset>,
}

/// An asset some items of a scan lack, and what stands for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingAsset {
    /// The asset's name.
    pub asset: String,
    /// The value it reads as over those items' footprints.
    pub fill: u8,
    /// Whether that value is the column's nodata (the items add nothing).
    pub nodata: bool,
    /// The items lacking it, in fusing order.
    pub items: Vec<String>,
}

impl std::fmt::Display for MissingAsset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let read_as = if self.nodata {
            "nodata".to_string()
        } else {
            self.fill.to_string()
        };
        write!(
            f,
            "{} items lack {} (read as {read_as})",
            self.items.len(),
            self.asset
        )
    }
}

impl ScanEstimate {
    /// The estimate in one line, as a run prints it before reading.
    pub fn one_line(&self) -> String {
        let missing: String = self.missing.iter().map(|m| format!("; {m}")).collect();
        format!(
            "{} items in {} slices; grid {} x {} px ({}px); {}B of pixels to read{missing}",
            self.items,
            self.slices,
            self.width,
            self.height,
            si(self.grid_pixels() as f64),
            si(self.read_bytes as f64)
        )
    }

    /// Output grid pixels.
    pub fn grid_pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

impl std::fmt::Display for ScanEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let px = self.grid_pixels();
        writeln!(
            f,
            "items             {} in {} time slices",
            self.items, self.slices
        )?;
        writeln!(
            f,
            "output grid       {} x {} px = {}px at resolution {}",
            self.width,
            self.height,
            si(px as f64),
            self.res
        )?;
        writeln!(
            f,
            "chunks            {} of {} px, {} with data; {} (slice, chunk) rows",
            self.chunks, self.chunk, self.chunks_with_data, self.rows
        )?;
        writeln!(
            f,
            "to read           {}B of decoded pixels",
            si(self.read_bytes as f64)
        )?;
        for m in &self.missing {
            writeln!(f, "missing assets    {m}")?;
        }
        write!(
            f,
            "raster output     {}B per band uncompressed (uint8; x2 for uint16 counts)",
            si(px as f64)
        )
    }
}

/// Largest side of a source raster (TIFF and GDAL sizes are 32-bit).
const MAX_SOURCE_SIDE: usize = i32::MAX as usize;
/// Largest distance (pixels) of a source's origin from the output grid's:
/// beyond it the asset grid is nonsense (and pixel arithmetic would overflow).
const MAX_OFFSET: f64 = (1u64 << 40) as f64;

/// odc-geo's scale tolerance for pasting (`stol`): source pixels within 0.1 %
/// of the output's size are pasted as output pixels.
const PASTE_SCALE_TOL: f64 = 1e-3;

/// What a scan is planned from: the items found, the bbox, the assets, the
/// chunk size, `floodsql.nodata` (see [`scan_nodata`]), the read policy and
/// the limits.
pub(crate) struct ScanRequest<'a> {
    pub(crate) items: &'a [StacItem],
    pub(crate) bbox: &'a Bbox,
    /// The asset giving `pixels`, then each extra column's.
    pub(crate) assets: &'a [String],
    pub(crate) chunk: usize,
    pub(crate) nodata: Option<u8>,
    pub(crate) policy: ReadPolicy,
    pub(crate) limits: ScanLimits,
    /// What an item lacking an asset reads as.
    pub(crate) missing: &'a MissingAssets,
    /// How items make time slices.
    pub(crate) group_by: GroupBy,
}

/// Builds the scan plan; GDAL (CRS maths) is used, so call it off the runtime.
/// A grid or read volume over the request's limits is refused here, before
/// anything is allocated or read.
pub(crate) fn plan_scan(req: ScanRequest<'_>) -> Result<ScanPlan> {
    tracing::debug!("scan plan: {} items", req.items.len());
    let ScanRequest {
        items,
        bbox,
        assets,
        chunk,
        nodata,
        policy,
        limits,
        missing,
        group_by,
    } = req;
    let (asset, extra) = match assets {
        [first, rest @ ..] => (first.as_str(), rest),
        [] => return Err(Error::Internal("a scan without an asset".into())),
    };
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
        return Err(Error::invalid(
            "chunk size",
            chunk.to_string(),
            format!("must be within {MIN_CHUNK}..={MAX_CHUNK} pixels"),
        ));
    }
    // a name no item has is a misspelling, whatever the missing-asset policy
    for a in assets {
        if !items.iter().any(|it| it.assets.contains_key(a)) {
            let mut names: Vec<&str> = items
                .iter()
                .flat_map(|it| it.assets.keys().map(String::as_str))
                .collect();
            names.sort();
            names.dedup();
            return Err(Error::invalid(
                "asset",
                a,
                format!(
                    "no item of the search has asset '{a}' (their assets: {})",
                    names.join(", ")
                ),
            ));
        }
    }
    let grid = scan_grid(items, bbox, asset, &limits)?;
    let pixels = AssetSpec {
        name: asset.to_string(),
        nodata: scan_nodata(items, asset, nodata)?,
    };
    let columns = extra
        .iter()
        .map(|e| {
            Ok(AssetSpec {
                name: e.clone(),
                nodata: scan_nodata(items, e, None)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut sorted: Vec<&StacItem> = items.iter().collect();
    sorted.sort_by(|a, b| (a.nominal_datetime(), &a.id).cmp(&(b.nominal_datetime(), &b.id)));
    let probed = header_grids(&sorted, assets, missing, &policy)?;
    let fills: Vec<(IfMissing, u8)> = std::iter::once(&pixels)
        .chain(&columns)
        .map(|c| (missing.policy(&c.name), c.nodata))
        .collect();
    let solar_lon = match group_by {
        GroupBy::Time => None,
        GroupBy::SolarDay => Some(grid.centre_lon()?),
    };
    // slices keyed by exact time, or by solar day; each slice's time is its
    // first item's (odc-stac's), its items in (datetime, id) order
    let mut slices: BTreeMap<i64, TimeSlice> = BTreeMap::new();
    for (k, it) in sorted.into_iter().enumerate() {
        let placed = Placing {
            item: it,
            asset,
            extra,
            fills: &fills,
            grid: &grid,
            policy: &policy,
            header: probed.get(&k),
        }
        .place()?;
        // items outside the output grid never contribute
        let Some((dt, src)) = placed.filter(|(_, s)| s.overlap(grid.window()).is_some()) else {
            continue;
        };
        let key = solar_lon.map_or(dt, |lon| solar_day(dt, lon));
        slices
            .entry(key)
            .or_insert_with(|| TimeSlice {
                datetime_us: dt,
                sources: Vec::new(),
            })
            .sources
            .push(src);
    }
    let plan = ScanPlan {
        search: String::new(),
        index: IndexCache::default(),
        grid,
        chunk,
        pixels,
        columns,
        zones: None,
        policy,
        slices: slices.into_values().collect(),
    };
    let read: u64 = plan
        .slices
        .iter()
        .flat_map(|s| &s.sources)
        .map(|s| plan.read_bytes(s))
        .sum();
    limits.check(
        &format!("the volume to read ({} items)", plan.n_items()),
        read,
        "B of decoded pixels",
        limits.max_read_bytes,
        "max_read_bytes",
        "narrow the bbox or the datetime range",
    )?;
    Ok(plan)
}

/// The solar day (days since 1970-01-01) of a time (µs, UTC) at longitude
/// `lon`: odc-stac's rule — the time shifted by `int(lon / 15)` whole hours
/// (truncated towards 0), then its date.
pub(crate) fn solar_day(datetime_us: i64, lon: f64) -> i64 {
    const HOUR_US: i64 = 3_600_000_000;
    const DAY_US: i64 = 24 * HOUR_US;
    let shifted = datetime_us + (lon / 15.0).trunc() as i64 * HOUR_US;
    shifted.div_euclid(DAY_US)
}

/// The output grid, as the tutorial makes it: CRS and resolution from the
/// first item, the bbox snapped to it; refused over `limits`.
fn scan_grid(
    items: &[StacItem],
    bbox: &Bbox,
    asset: &str,
    limits: &ScanLimits,
) -> Result<OutputGrid> {
    let first = items
        .first()
        .ok_or_else(|| Error::NoItems("the scan".into()))?;
    let crs = first.crs(Some(asset)).ok_or_else(|| Error::BadItem {
        item: first.id.clone(),
        message: "no CRS (proj:wkt2, proj:projjson, proj:code or proj:epsg)".into(),
    })?;
    let res = first
        .gsd()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| Error::BadItem {
            item: first.id.clone(),
            message: "no positive 'gsd' property".into(),
        })?;
    let grid = output_grid(bbox, &crs, res)?;
    limits.check(
        &format!(
            "the output grid of bbox {bbox} ({} x {} px at resolution {res})",
            grid.width, grid.height
        ),
        (grid.width as u64).saturating_mul(grid.height as u64),
        "px",
        limits.max_grid_pixels,
        "max_grid_pixels",
        "narrow the bbox",
    )?;
    Ok(grid)
}

/// One item being placed on the output grid.
struct Placing<'a> {
    item: &'a StacItem,
    asset: &'a str,
    extra: &'a [String],
    /// Per asset (`asset`, then `extra`): what stands for it when the item
    /// lacks it, and the column's nodata.
    fills: &'a [(IfMissing, u8)],
    grid: &'a OutputGrid,
    policy: &'a ReadPolicy,
    /// Its COG header's grid, when its STAC metadata lacks one.
    header: Option<&'a HeaderGrid>,
}

impl Placing<'_> {
    fn bad(&self, message: String) -> Error {
        Error::BadItem {
            item: self.item.id.clone(),
            message,
        }
    }

    /// The item as a source at its time (µs), wherever it lands; `None`
    /// when it lacks every asset of the scan and they read as nodata
    /// (nothing to place).
    fn place(&self) -> Result<Option<(i64, Source)>> {
        let it = self.item;
        // like the tutorial's stack: datetime, else start_datetime, else end_datetime
        let dt = it.nominal_datetime().ok_or_else(|| {
            self.bad(
                "no 'datetime', 'start_datetime' or 'end_datetime': no time to place it at".into(),
            )
        })?;
        let (loc, extra_locs) = self.locations()?;
        // the content read of it: one version whether it is read or filled
        let version = it.version(
            &std::iter::once(self.asset.to_string())
                .chain(self.extra.iter().cloned())
                .collect::<Vec<_>>(),
        );
        // the item's grid is its first present asset's (they share one)
        let Some(gridded) = self.gridded_asset() else {
            if std::iter::once(&loc)
                .chain(&extra_locs)
                .zip(self.fills)
                .all(|(l, (_, nodata))| *l == AssetLoc::Fill(*nodata))
            {
                // it reads as nodata throughout: placed over its bbox, it
                // still makes its time slice (as odc-stac does) and is
                // counted among the items lacking the asset
                return Ok(self
                    .bbox_footprint()?
                    .map(|(col_off, row_off, width, height)| {
                        (
                            dt.timestamp_micros(),
                            Source {
                                item_id: it.id.clone(),
                                version,
                                loc,
                                col_off,
                                row_off,
                                width,
                                height,
                                warp: None,
                                extra_locs,
                            },
                        )
                    }));
            }
            return Err(self.bad(format!(
                "it has none of the assets {}, so no grid to place its fill values on",
                std::iter::once(self.asset)
                    .chain(self.extra.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let (shape, t) = self.item_grid(gridded)?;
        let grid = self.grid;
        let icrs = it
            .crs(Some(gridded))
            .ok_or_else(|| self.bad("no CRS".into()))?;
        let other_crs = icrs != grid.crs && !crate::crs::same(&icrs, &grid.crs)?;
        let [a, b, c, d, e, f] = t;
        // odc-loader's rule for nearest resampling in the output's CRS: a
        // source whose pixels are the output's size (within 0.1 %), north-up,
        // is pasted at its offset rounded to whole pixels (any sub-pixel
        // shift: translation tolerance 0.9 px), not resampled
        let res = grid.res;
        let (sx, sy) = (res / a, -res / e);
        let eps = 1e-9 * res.max(1.0);
        let pasteable = !other_crs
            && b.abs() <= eps
            && d.abs() <= eps
            && (sx - 1.0).abs() <= PASTE_SCALE_TOL
            && (sy - 1.0).abs() <= PASTE_SCALE_TOL;
        let (rows, cols) = shape;
        let (col_off, row_off, width, height, warp) = if pasteable {
            // the output → source pixel translation, as odc-geo computes it
            let (gx, gy) = (grid.col0 as f64 * res, grid.row0 as f64 * res);
            let (tx, ty) = ((gx - c) / a, (gy - f) / e);
            if tx.abs() > MAX_OFFSET || ty.abs() > MAX_OFFSET {
                return Err(self.bad(format!(
                    "asset origin ({c}, {f}) is {:.0}, {:.0} px from the output grid: not a \
                     position on Earth at {res} m",
                    -tx, -ty
                )));
            }
            let (cf, rf) = (-split_float(tx).0, -split_float(ty).0);
            (cf as i64, rf as i64, cols, rows, None)
        } else {
            // warped per chunk with GDAL, as odc-loader reprojects it
            let warp = Warp {
                crs: icrs.clone(),
                transform: t,
                width: cols,
                height: rows,
                pts_per_side: if other_crs { 5 } else { 2 },
            };
            let (col_off, row_off, width, height) = crate::raster::warp::footprint(&warp, grid)
                .map_err(|e| self.bad(format!("cannot place it on the output grid: {e}")))?;
            (col_off, row_off, width, height, Some(warp))
        };
        if warp.is_some() {
            let filled = std::iter::once(&loc)
                .chain(&extra_locs)
                .zip(self.fills)
                .find(|(l, (_, nodata))| matches!(l, AssetLoc::Fill(v) if v != nodata));
            if filled.is_some() {
                return Err(self.bad(
                    "it lacks an asset whose policy is a value, and is not on the output \
                     lattice (another CRS or resolution): a value can stand for a missing \
                     asset only on items pasted as they are (use 'nodata' for it)"
                        .into(),
                ));
            }
        }
        Ok(Some((
            dt.timestamp_micros(),
            Source {
                item_id: it.id.clone(),
                version,
                loc,
                col_off,
                row_off,
                width,
                height,
                warp,
                extra_locs,
            },
        )))
    }

    /// The item's lon/lat bbox on the output grid, in whole pixels
    /// (outwards): (col_off, row_off, width, height); `None` without one.
    fn bbox_footprint(&self) -> Result<Option<(i64, i64, usize, usize)>> {
        let Some([minx, miny, maxx, maxy]) = self.item.lonlat_bbox() else {
            return Ok(None);
        };
        let Ok(b) = Bbox::parse(&format!("{minx},{miny},{maxx},{maxy}")) else {
            return Ok(None);
        };
        let [x0, y0, x1, y1] = crate::raster::grid::project_bbox(&b, &self.grid.crs)?;
        let res = self.grid.res;
        let col = |x: f64| x / res - self.grid.col0 as f64;
        let row = |y: f64| self.grid.row0 as f64 - y / res;
        let (c0, c1) = (col(x0).floor(), col(x1).ceil());
        let (r0, r1) = (row(y1).floor(), row(y0).ceil());
        if ![c0, c1, r0, r1].iter().all(|v| v.abs() < MAX_OFFSET) {
            return Ok(None);
        }
        Ok(Some((
            c0 as i64,
            r0 as i64,
            (c1 - c0).max(1.0) as usize,
            (r1 - r0).max(1.0) as usize,
        )))
    }

    /// The first of the scan's assets the item has (its grid is the item's
    /// for every asset of the scan).
    fn gridded_asset(&self) -> Option<&str> {
        std::iter::once(self.asset)
            .chain(self.extra.iter().map(String::as_str))
            .find(|a| self.item.assets.contains_key(*a))
    }

    /// Where asset `k` (0: `asset`, then `extra`) is read from, or what
    /// stands for it when the item lacks it (its policy permitting).
    fn location(&self, k: usize, name: &str) -> Result<AssetLoc> {
        let it = self.item;
        if !it.assets.contains_key(name) {
            let (policy, nodata) = self.fills[k];
            match policy {
                IfMissing::Error => {}
                IfMissing::Nodata => return Ok(AssetLoc::Fill(nodata)),
                IfMissing::Value(v) => return Ok(AssetLoc::Fill(v)),
            }
        }
        let path = it.asset_location(name)?;
        self.policy.allow(&path).map_err(|e| Error::InItem {
            item: it.id.clone(),
            context: "asset unreadable".into(),
            source: Box::new(e),
        })?;
        Ok(AssetLoc::Read(path))
    }

    /// The locations of the item's assets (checked against the read
    /// policy; the extra ones on the grid of the first).
    fn locations(&self) -> Result<(AssetLoc, Vec<AssetLoc>)> {
        let it = self.item;
        let loc = self.location(0, self.asset)?;
        let mut extra_locs = Vec::with_capacity(self.extra.len());
        for (k, e) in self.extra.iter().enumerate() {
            let l = self.location(k + 1, e)?;
            if let (AssetLoc::Read(_), AssetLoc::Read(_)) = (&loc, &l) {
                if it.proj_shape(Some(e)) != it.proj_shape(Some(self.asset))
                    || it.proj_transform(Some(e)) != it.proj_transform(Some(self.asset))
                {
                    return Err(self.bad(format!(
                        "asset '{e}' is not on the grid of '{}' (the assets of one scan are read on one grid per item)",
                        self.asset
                    )));
                }
            }
            extra_locs.push(l);
        }
        Ok((loc, extra_locs))
    }

    /// The item's own grid: (rows, cols) and its affine, from its STAC
    /// metadata or its COG header; checked.
    fn item_grid(&self, asset: &str) -> Result<HeaderGrid> {
        let it = self.item;
        let (rows, cols) = it
            .proj_shape(Some(asset))
            .or(self.header.map(|h| h.0))
            .ok_or_else(|| self.bad("no proj:shape".into()))?;
        if !(1..=MAX_SOURCE_SIDE).contains(&rows) || !(1..=MAX_SOURCE_SIDE).contains(&cols) {
            return Err(self.bad(format!(
                "proj:shape [{rows}, {cols}] is not a raster size (1..={MAX_SOURCE_SIDE} per side)"
            )));
        }
        let t = it
            .proj_transform(Some(asset))
            .or(self.header.map(|h| h.1))
            .ok_or_else(|| self.bad("no proj:transform".into()))?;
        if t.iter().any(|v| !v.is_finite()) {
            return Err(self.bad(format!("proj:transform {t:?} has a non-finite coefficient")));
        }
        Ok(((rows, cols), t))
    }
}

/// A COG header's grid: (rows, cols) and the affine in STAC order.
type HeaderGrid = ((usize, usize), [f64; 6]);

/// The COG headers of the items (by index in `items`) whose STAC metadata
/// lacks `proj:shape` or `proj:transform` for `asset`: the tutorial's stack
/// then takes the grid from the file. Read with GDAL, up to 8 at once, each
/// location checked against the read policy first. Blocking: planning runs
/// off the async runtime.
fn header_grids(
    items: &[&StacItem],
    assets: &[String],
    if_missing: &MissingAssets,
    policy: &ReadPolicy,
) -> Result<HashMap<usize, HeaderGrid>> {
    let mut missing = Vec::new();
    for (k, it) in items.iter().enumerate() {
        // the grid is the first present asset's (see `Placing::gridded_asset`)
        let asset = match assets.iter().find(|a| it.assets.contains_key(*a)) {
            Some(a) => a.as_str(),
            // lacking all: placed as fill, or refused, by `Placing`
            None if assets
                .iter()
                .all(|a| if_missing.policy(a) != IfMissing::Error) =>
            {
                continue
            }
            None => &assets[0],
        };
        if assets[0] != asset && if_missing.policy(&assets[0]) == IfMissing::Error {
            // refused by `Placing`, naming the item and asset
            continue;
        }
        if it.proj_shape(Some(asset)).is_some() && it.proj_transform(Some(asset)).is_some() {
            continue;
        }
        let path = it.asset_location(asset)?;
        policy.allow(&path).map_err(|e| Error::InItem {
            item: it.id.clone(),
            context: "asset unreadable".into(),
            source: Box::new(e),
        })?;
        missing.push((k, path));
    }
    let next = AtomicUsize::new(0);
    let found: Mutex<Vec<Result<(usize, HeaderGrid)>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..missing.len().min(8) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((k, path)) = missing.get(i) else {
                    break;
                };
                let r = crate::raster::read::header_grid(path)
                    .map(|g| (*k, g))
                    .map_err(|e| Error::BadItem {
                        item: items[*k].id.clone(),
                        message: format!(
                            "no proj:shape/proj:transform, and its COG's header cannot be read: {e}"
                        ),
                    });
                let failed = r.is_err();
                if let Ok(mut f) = found.lock() {
                    f.push(r);
                }
                if failed {
                    // the others stop after their current header
                    next.store(missing.len(), Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    let found = found
        .into_inner()
        .map_err(|_| Error::Internal("reading COG headers: a reader panicked".into()))?;
    found.into_iter().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic pseudo-random plan: `n` sources of mixed sizes and
    /// offsets (some off the grid, some straddling its edges) over a few slices.
    pub(crate) fn random_plan(seed: u64, n: usize, chunk: usize) -> ScanPlan {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let (width, height) = (900 + next(300) as usize, 700 + next(300) as usize);
        let mut slices: Vec<TimeSlice> = (0..4)
            .map(|t| TimeSlice {
                datetime_us: t,
                sources: vec![],
            })
            .collect();
        for i in 0..n {
            let t = next(4) as usize;
            slices[t].sources.push(Source {
                item_id: format!("i{i}"),
                version: String::new(),
                loc: AssetLoc::Read(format!("/x/{i}.tif")),
                col_off: next(1400) as i64 - 300,
                row_off: next(1200) as i64 - 300,
                width: 1 + next(400) as usize,
                height: 1 + next(400) as usize,
                warp: None,
                extra_locs: Vec::new(),
            });
        }
        ScanPlan {
            search: String::new(),
            index: IndexCache::default(),
            grid: OutputGrid {
                crs: "EPSG:3857".into(),
                res: 20.0,
                col0: 0,
                row0: 0,
                width,
                height,
            },
            chunk,
            pixels: AssetSpec {
                name: "a".into(),
                nodata: 255,
            },
            columns: Vec::new(),
            zones: None,
            policy: ReadPolicy::allow_all(),
            slices,
        }
    }

    #[test]
    fn the_chunk_index_equals_testing_every_chunk_against_every_source() {
        for seed in 0..30 {
            for chunk in [16, 97, 256, 1000, 4096] {
                let p = random_plan(seed, 40, chunk);
                let index = p.chunk_index();
                let (nc, nr) = p.grid.chunks(chunk);
                let mut brute_chunks = vec![];
                for r in 0..nr {
                    for c in 0..nc {
                        let w = p.grid.chunk_window(chunk, c, r);
                        let brute: Vec<(usize, usize)> = p
                            .slices
                            .iter()
                            .enumerate()
                            .flat_map(|(si, s)| {
                                s.sources
                                    .iter()
                                    .enumerate()
                                    .filter(move |(_, src)| src.overlap(w).is_some())
                                    .map(move |(ki, _)| (si, ki))
                            })
                            .collect();
                        assert_eq!(
                            index.sources(c, r),
                            brute.as_slice(),
                            "seed {seed} chunk {chunk} ({c},{r})"
                        );
                        if !brute.is_empty() {
                            brute_chunks.push((c, r));
                        }
                    }
                }
                assert_eq!(
                    p.chunks_with_data(),
                    brute_chunks,
                    "seed {seed} chunk {chunk}"
                );
            }
        }
    }

    fn item(id: &str, nodata: Option<serde_json::Value>) -> StacItem {
        let mut band = serde_json::json!({"data_type": "uint8"});
        if let Some(n) = nodata {
            band["nodata"] = n;
        }
        let v = serde_json::json!({
            "type": "Feature", "id": id, "properties": {"datetime": "2022-09-01T00:00:00Z"},
            "geometry": null,
            "assets": {"a": {"href": "/x.tif", "raster:bands": [band]}},
        });
        StacItem::from_json(v, None).unwrap()
    }

    /// odc-stac's solar day: the UTC time shifted by int(lon / 15) whole
    /// hours (truncated towards 0), then its date.
    #[test]
    fn solar_days_as_odc_stac() {
        let us = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        let day = |s: &str| us(&format!("{s}T00:00:00Z")) / 86_400_000_000;
        // 68.2 E: +4 h; 19:59:40 UTC is 23:59:40 local, 20:00:10 is next day
        assert_eq!(
            solar_day(us("2022-09-03T19:59:40Z"), 68.2),
            day("2022-09-03")
        );
        assert_eq!(
            solar_day(us("2022-09-03T20:00:10Z"), 68.2),
            day("2022-09-04")
        );
        // 23:59:50 and 00:00:20 UTC: two UTC days, one solar day
        assert_eq!(
            solar_day(us("2022-09-03T23:59:50Z"), 68.2),
            solar_day(us("2022-09-04T00:00:20Z"), 68.2)
        );
        // 14.99 E: no shift; -16 W: -1 h (truncation towards 0, not floor)
        assert_eq!(
            solar_day(us("2022-09-03T23:30:00Z"), 14.99),
            day("2022-09-03")
        );
        assert_eq!(
            solar_day(us("2022-09-04T00:30:00Z"), -16.0),
            day("2022-09-03")
        );
        assert_eq!(
            solar_day(us("2022-09-04T00:30:00Z"), -14.9),
            day("2022-09-04")
        );
        // before 1970: days floor, not truncate
        assert_eq!(solar_day(us("1969-12-31T12:00:00Z"), 0.0), -1);
    }

    #[test]
    fn one_nodata_per_scan() {
        use serde_json::json;
        let n = |items: &[StacItem], forced| scan_nodata(items, "a", forced);
        // none declared: GFM's 255; the first declaration that exists wins
        // only when every other one agrees
        assert_eq!(n(&[item("i", None)], None).unwrap(), 255);
        assert_eq!(
            n(&[item("i", None), item("j", Some(json!(0)))], None).unwrap(),
            0
        );
        assert_eq!(
            n(
                &[item("i", Some(json!(7.0))), item("j", Some(json!(7)))],
                None
            )
            .unwrap(),
            7
        );
        let e = n(
            &[item("i", Some(json!(255))), item("j", Some(json!(1)))],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'j'") && e.contains("'i' declares 255"), "{e}");
        assert!(e.contains("floodsql.nodata"), "{e}");
        for bad in [
            json!("nan"),
            json!(-1),
            json!(256),
            json!(1.5),
            json!("x"),
            json!([1]),
        ] {
            let e = n(&[item("i", Some(bad.clone()))], None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("'i'") && e.contains("nodata"), "{bad}: {e}");
        }
        // null is "not declared"; an override ignores every declaration
        assert_eq!(n(&[item("i", Some(json!(null)))], None).unwrap(), 255);
        assert_eq!(
            n(
                &[item("i", Some(json!("nan"))), item("j", Some(json!(1)))],
                Some(255)
            )
            .unwrap(),
            255
        );
    }
}
