//! From STAC items to a scan plan: the output grid, the time slices (one per
//! exact datetime, items in (datetime, id) order) and where each item's asset
//! sits on the output lattice. Plain serialisable data, so that the plan node
//! can later cross a process boundary (Ballista).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::raster::grid::{output_grid, OutputGrid};
use crate::stac::item::StacItem;
use crate::stac::search::Bbox;

/// Default fill/nodata value when an asset declares none (GFM's).
pub const DEFAULT_NODATA: u8 = 255;

/// One asset placed on the output lattice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub item_id: String,
    /// GDAL path of the asset.
    pub path: String,
    /// Position of the asset's top-left pixel in output pixel coordinates.
    pub col_off: i64,
    pub row_off: i64,
    pub width: usize,
    pub height: usize,
    pub nodata: u8,
}

impl Source {
    /// The intersection of this source with an output window, as
    /// (window-relative x, y, source x, y, w, h), if any.
    pub fn overlap(
        &self,
        (wx, wy, ww, wh): (usize, usize, usize, usize),
    ) -> Option<(usize, usize, usize, usize, usize, usize)> {
        let x0 = (wx as i64).max(self.col_off);
        let y0 = (wy as i64).max(self.row_off);
        let x1 = ((wx + ww) as i64).min(self.col_off + self.width as i64);
        let y1 = ((wy + wh) as i64).min(self.row_off + self.height as i64);
        (x0 < x1 && y0 < y1).then(|| {
            (
                (x0 - wx as i64) as usize,
                (y0 - wy as i64) as usize,
                (x0 - self.col_off) as usize,
                (y0 - self.row_off) as usize,
                (x1 - x0) as usize,
                (y1 - y0) as usize,
            )
        })
    }
}

/// All items of one exact datetime, in id order (fusing order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeSlice {
    /// Microseconds since the epoch, UTC.
    pub datetime_us: i64,
    pub sources: Vec<Source>,
}

/// Everything the chunk scan needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanPlan {
    pub grid: OutputGrid,
    pub chunk: usize,
    pub asset: String,
    pub slices: Vec<TimeSlice>,
}

impl ScanPlan {
    /// Items (sources) in total.
    pub fn n_items(&self) -> usize {
        self.slices.iter().map(|s| s.sources.len()).sum()
    }

    /// Chunks (col, row) that at least one source overlaps, row-major.
    pub fn chunks_with_data(&self) -> Vec<(usize, usize)> {
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

/// Largest chunk side: one chunk's pixels stay far below 2 GiB.
pub const MAX_CHUNK: usize = 16384;

/// Builds the scan plan; GDAL (CRS maths) is used, so call it off the runtime.
pub fn plan_scan(items: &[StacItem], bbox: &Bbox, asset: &str, chunk: usize) -> Result<ScanPlan> {
    if !(16..=MAX_CHUNK).contains(&chunk) {
        return Err(Error::Other(format!(
            "chunk size must be within 16..={MAX_CHUNK}, got {chunk}"
        )));
    }
    let first = items
        .first()
        .ok_or_else(|| Error::NoItems("the scan".into()))?;
    // the tutorial: CRS and resolution from the first item
    let crs = first.crs(Some(asset)).ok_or_else(|| Error::BadItem {
        item: first.id.clone(),
        message: "no CRS (proj:wkt2, proj:code or proj:epsg)".into(),
    })?;
    let res = first.gsd().ok_or_else(|| Error::BadItem {
        item: first.id.clone(),
        message: "no 'gsd' property".into(),
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
        if src.overlap((0, 0, grid.width, grid.height)).is_none() {
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
