//! Aggregated chunks (x_off, y_off, width, height, pixels) → one raster.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};

use crate::error::{Error, Result};
use crate::raster::grid::OutputGrid;

/// A single-band raster on an output grid; 1 or 2 bytes per pixel (u8 / u16 LE).
#[derive(Debug, Clone)]
pub struct Raster {
    pub grid: OutputGrid,
    pub bytes_per_pixel: usize,
    /// Row-major, `width * height * bytes_per_pixel` bytes; pixels no chunk
    /// covers are 0.
    pub data: Vec<u8>,
}

impl Raster {
    pub fn u8_count(&self, value: u8) -> usize {
        if self.bytes_per_pixel == 1 {
            self.data.iter().filter(|&&v| v == value).count()
        } else {
            0
        }
    }
}

fn int_col(b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let c = b.column_by_name(name).ok_or_else(|| {
        Error::Other(format!(
            "the query result has no '{name}' column: a raster output needs \
             x_off, y_off, width, height and a binary pixels column"
        ))
    })?;
    let c = arrow::compute::cast(c, &DataType::Int64)
        .map_err(|e| Error::Other(format!("column '{name}': {e}")))?;
    let a = c.as_primitive::<Int64Type>();
    if a.null_count() > 0 {
        return Err(Error::Other(format!("column '{name}' has NULLs")));
    }
    Ok(a.values().to_vec())
}

/// The pixel column: `pixels` if present, else the only binary column.
fn pixel_col(b: &RecordBatch) -> Result<usize> {
    let s = b.schema();
    if let Ok(i) = s.index_of("pixels") {
        return Ok(i);
    }
    let bin: Vec<usize> = s
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            matches!(
                f.data_type(),
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            )
        })
        .map(|(i, _)| i)
        .collect();
    match bin.as_slice() {
        [i] => Ok(*i),
        [] => Err(Error::Other(
            "the query result has no binary pixels column".into(),
        )),
        _ => Err(Error::Other(
            "the query result has several binary columns: name the one to rasterise 'pixels'"
                .into(),
        )),
    }
}

/// Pastes every chunk into a raster on `grid`.
pub fn assemble(grid: &OutputGrid, batches: &[RecordBatch]) -> Result<Raster> {
    let mut bpp: Option<usize> = None;
    let mut data: Vec<u8> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let (xs, ys, ws, hs) = (
            int_col(b, "x_off")?,
            int_col(b, "y_off")?,
            int_col(b, "width")?,
            int_col(b, "height")?,
        );
        let px = b.column(pixel_col(b)?);
        let px = arrow::compute::cast(px, &DataType::LargeBinary)
            .map_err(|e| Error::Other(e.to_string()))?;
        let px = px.as_binary::<i64>();
        for i in 0..b.num_rows() {
            let (x, y, w, h) = (xs[i], ys[i], ws[i], hs[i]);
            if x < 0
                || y < 0
                || w <= 0
                || h <= 0
                || (x + w) as usize > grid.width
                || (y + h) as usize > grid.height
            {
                return Err(Error::Other(format!(
                    "chunk window {x},{y} {w}x{h} lies outside the {}x{} grid",
                    grid.width, grid.height
                )));
            }
            if !seen.insert((x, y)) {
                return Err(Error::Other(format!(
                    "two result rows for the chunk at {x},{y}: group by the chunk before rasterising"
                )));
            }
            if px.is_null(i) {
                continue;
            }
            let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
            let v = px.value(i);
            if v.len() % (w * h) != 0 || v.len() / (w * h) > 2 {
                return Err(Error::Other(format!(
                    "chunk at {x},{y}: {} bytes for a {w}x{h} window (expected 1 or 2 bytes per pixel)",
                    v.len()
                )));
            }
            let k = v.len() / (w * h);
            let k0 = *bpp.get_or_insert_with(|| {
                data = vec![0u8; grid.width * grid.height * k];
                k
            });
            if k != k0 {
                return Err(Error::Other("chunks differ in bytes per pixel".into()));
            }
            for r in 0..h {
                let dst = ((y + r) * grid.width + x) * k;
                data[dst..dst + w * k].copy_from_slice(&v[r * w * k..(r + 1) * w * k]);
            }
        }
    }
    let bytes_per_pixel = bpp.unwrap_or(1);
    if data.is_empty() {
        data = vec![0u8; grid.width * grid.height * bytes_per_pixel];
    }
    Ok(Raster {
        grid: grid.clone(),
        bytes_per_pixel,
        data,
    })
}
