//! From STAC items to a scan plan: the output grid, the time slices (one per
//! exact datetime, items in (datetime, id) order) and where each item's asset
//! sits on the output lattice. Plain serialisable data, so that the plan node
//! can later cross a process boundary (Ballista).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use floodsql_udfs::DEFAULT_NODATA;

use crate::error::{Error, Result};
use crate::geo::{overlap, Bbox, Overlap, Window};
use crate::raster::grid::{output_grid, OutputGrid};
use crate::stac::item::StacItem;

/// One asset placed on the output lattice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Source {
    pub(crate) item_id: String,
    /// GDAL path of the asset.
    pub(crate) path: String,
    /// Position of the asset's top-left pixel in output pixel coordinates.
    pub(crate) col_off: i64,
    pub(crate) row_off: i64,
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) nodata: u8,
}

impl Source {
    /// Where this source meets an output window, if it does.
    pub(crate) fn overlap(&self, w: Window) -> Option<Overlap> {
        overlap(self.col_off, self.row_off, self.width, self.height, w)
    }
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
    pub(crate) asset: String,
    pub(crate) slices: Vec<TimeSlice>,
}

impl ScanPlan {
    /// Items (sources) in total.
    pub(crate) fn n_items(&self) -> usize {
        self.slices.iter().map(|s| s.sources.len()).sum()
    }

    /// Chunks (col, row) that at least one source overlaps, row-major.
    pub(crate) fn chunks_with_data(&self) -> Vec<(usize, usize)> {
        let (nc, nr) = self.grid.chunks(self.chunk);
        let mut out = Vec::new();
        for r in 0..nr {
            for c in 0..nc {
                let w = self.grid.chunk_window(self.chunk, c, r);
                if self
                    .slices
                    .iter()
                    .any(|s| s.sources.iter().any(|src| src.overlap(w).is_some()))
                {
                    out.push((c, r));
                }
            }
        }
        out
    }
}

/// Smallest chunk side.
pub(crate) const MIN_CHUNK: usize = 16;
/// Largest chunk side: one chunk's pixels stay far below 2 GiB.
pub(crate) const MAX_CHUNK: usize = 16384;

/// Builds the scan plan; GDAL (CRS maths) is used, so call it off the runtime.
pub(crate) fn plan_scan(
    items: &[StacItem],
    bbox: &Bbox,
    asset: &str,
    chunk: usize,
) -> Result<ScanPlan> {
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
        return Err(Error::invalid(
            "chunk size",
            chunk.to_string(),
            format!("must be within {MIN_CHUNK}..={MAX_CHUNK} pixels"),
        ));
    }
    let first = items
        .first()
        .ok_or_else(|| Error::NoItems("the scan".into()))?;
    // the tutorial: CRS and resolution from the first item
    let crs = first.crs(Some(asset)).ok_or_else(|| Error::BadItem {
        item: first.id.clone(),
        message: "no CRS (proj:wkt2, proj:code or proj:epsg)".into(),
    })?;
    let res = first
        .gsd()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| Error::BadItem {
            item: first.id.clone(),
            message: "no positive 'gsd' property".into(),
        })?;
    let grid = output_grid(bbox, &crs, res)?;
    let (gx, gy) = (grid.col0 as f64 * res, grid.row0 as f64 * res);

    let mut by_time: BTreeMap<i64, Vec<Source>> = BTreeMap::new();
    let mut sorted: Vec<&StacItem> = items.iter().collect();
    sorted.sort_by(|a, b| (a.datetime, &a.id).cmp(&(b.datetime, &b.id)));
    for it in sorted {
        let bad = |m: String| Error::BadItem {
            item: it.id.clone(),
            message: m,
        };
        let dt = it
            .datetime
            .ok_or_else(|| bad("no 'datetime' (ranges are not supported)".into()))?;
        let path = it.asset_gdal_path(asset)?;
        let icrs = it.crs(Some(asset)).ok_or_else(|| bad("no CRS".into()))?;
        if icrs != crs && !same_crs(&icrs, &crs)? {
            return Err(bad(format!(
                "its CRS differs from the first item's ({}); reprojection is not supported",
                first.id
            )));
        }
        let (rows, cols) = it
            .proj_shape(Some(asset))
            .ok_or_else(|| bad("no proj:shape".into()))?;
        let t = it
            .proj_transform(Some(asset))
            .ok_or_else(|| bad("no proj:transform".into()))?;
        let [a, b, c, d, e, f] = t;
        let eps = 1e-9 * res.max(1.0);
        if b.abs() > eps || d.abs() > eps || (a - res).abs() > eps || (e + res).abs() > eps {
            return Err(bad(format!(
                "asset grid {t:?} is not north-up at the output resolution {res}: \
                 resampling is not supported"
            )));
        }
        let cf = (c - gx) / res;
        let rf = (gy - f) / res;
        if (cf - cf.round()).abs() > 1e-6 || (rf - rf.round()).abs() > 1e-6 {
            return Err(bad(format!(
                "asset origin ({c}, {f}) is not on the output's {res} m lattice \
                 (offset {cf:.4}, {rf:.4} px): resampling is not supported"
            )));
        }
        let nodata = match it.asset_nodata(asset) {
            None => DEFAULT_NODATA,
            Some(v) if (0.0..=255.0).contains(&v) && v.fract() == 0.0 => v as u8,
            Some(v) => return Err(bad(format!("nodata {v} is not a uint8 value"))),
        };
        let src = Source {
            item_id: it.id.clone(),
            path,
            col_off: cf.round() as i64,
            row_off: rf.round() as i64,
            width: cols,
            height: rows,
            nodata,
        };
        // items outside the output grid never contribute
        if src.overlap(grid.window()).is_none() {
            continue;
        }
        by_time.entry(dt.timestamp_micros()).or_default().push(src);
    }
    Ok(ScanPlan {
        grid,
        chunk,
        asset: asset.to_string(),
        slices: by_time
            .into_iter()
            .map(|(datetime_us, sources)| TimeSlice {
                datetime_us,
                sources,
            })
            .collect(),
    })
}

fn same_crs(a: &str, b: &str) -> Result<bool> {
    let (a, b) = (
        crate::raster::grid::spatial_ref(a)?,
        crate::raster::grid::spatial_ref(b)?,
    );
    Ok(a == b)
}
