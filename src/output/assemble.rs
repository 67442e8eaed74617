//! The rasteriser's view of a query result: rows (x_off, y_off, width,
//! height, pixels) read batch by batch and checked against the output grid
//! (inside it, one row per chunk, one pixel size), so that a stream of
//! results can be written chunk by chunk without ever holding the raster.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};

use crate::error::{Error, Result};
use crate::geo::Window;
use crate::raster::grid::OutputGrid;

pub(crate) use floodsql_udfs::RasterKind;

/// The pixel column's kind and nodata value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixelMeta {
    pub(crate) kind: RasterKind,
    pub(crate) nodata: Option<u16>,
}

impl Default for PixelMeta {
    fn default() -> Self {
        Self {
            kind: RasterKind::Values,
            nodata: None,
        }
    }
}

impl PixelMeta {
    /// From the metadata of a result field: the kind its aggregate
    /// recorded ([`RasterKind::Values`] when none is), or an error naming a
    /// kind this build does not know (never a silent fallback).
    pub(crate) fn of_field(f: &arrow::datatypes::Field) -> Result<Self> {
        let m = f.metadata();
        let kind = match m.get(floodsql_udfs::META_KIND) {
            None => RasterKind::Values,
            Some(k) => RasterKind::parse(k).ok_or_else(|| {
                Error::NotRasterisable(format!(
                    "column '{}' records raster kind '{k}' in its metadata, which this floodsql \
                     does not know (known: {})",
                    f.name(),
                    RasterKind::ALL.map(RasterKind::name).join(", ")
                ))
            })?,
        };
        let nodata = match m.get(floodsql_udfs::META_NODATA) {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                Error::NotRasterisable(format!(
                    "column '{}' records nodata '{v}' in its metadata: not a pixel value",
                    f.name()
                ))
            })?),
        };
        Ok(Self { kind, nodata })
    }
}

/// Reads result batches into checked chunks.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    width: usize,
    height: usize,
    seen: HashSet<(i64, i64)>,
    bytes_per_pixel: Option<usize>,
    meta: Option<PixelMeta>,
}

impl ChunkReader {
    /// A reader for results on `grid`.
    pub(crate) fn new(grid: &OutputGrid) -> Self {
        Self {
            width: grid.width,
            height: grid.height,
            seen: HashSet::new(),
            bytes_per_pixel: None,
            meta: None,
        }
    }

    /// Bytes per pixel of the chunks read so far (None before the first).
    pub(crate) fn bytes_per_pixel(&self) -> Option<usize> {
        self.bytes_per_pixel
    }

    /// Calls `f(window, pixels, bytes_per_pixel, observed)` for every row
    /// of `b` with pixels (a NULL leaves its chunk 0), after checking it.
    /// `observed`: the row's `observed` column (one 0/1 byte per pixel, as
    /// `flood_observed` makes) when the result has one.
    pub(crate) fn read(
        &mut self,
        b: &RecordBatch,
        mut f: impl FnMut(Window, &[u8], usize, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        if b.num_rows() == 0 {
            return Ok(());
        }
        let (xs, ys, ws, hs) = (
            int_col(b, "x_off")?,
            int_col(b, "y_off")?,
            int_col(b, "width")?,
            int_col(b, "height")?,
        );
        let col = pixel_col(b)?;
        let meta = PixelMeta::of_field(b.schema().field(col))?;
        if *self.meta.get_or_insert(meta) != meta {
            return Err(Error::NotRasterisable(
                "result batches differ in what their pixels are".into(),
            ));
        }
        let px = b.column(col);
        let px = arrow::compute::cast(px, &DataType::LargeBinary)
            .map_err(|e| Error::Internal(format!("binary column to LargeBinary: {e}")))?;
        let px = px.as_binary::<i64>();
        let observed = match b.column_by_name("observed") {
            Some(c)
                if matches!(
                    c.data_type(),
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                ) =>
            {
                Some(
                    arrow::compute::cast(c, &DataType::LargeBinary).map_err(|e| {
                        Error::Internal(format!("binary column to LargeBinary: {e}"))
                    })?,
                )
            }
            _ => None,
        };
        let observed = observed.as_ref().map(|c| c.as_binary::<i64>());
        for i in 0..b.num_rows() {
            let (x, y, w, h) = (xs[i], ys[i], ws[i], hs[i]);
            if x < 0
                || y < 0
                || w <= 0
                || h <= 0
                || (x + w) as usize > self.width
                || (y + h) as usize > self.height
            {
                return Err(Error::NotRasterisable(format!(
                    "chunk window {x},{y} {w}x{h} lies outside the {}x{} grid",
                    self.width, self.height
                )));
            }
            if !self.seen.insert((x, y)) {
                return Err(Error::NotRasterisable(format!(
                    "two result rows for the chunk at {x},{y}: group by the chunk before rasterising"
                )));
            }
            if px.is_null(i) {
                continue;
            }
            let window = Window {
                x: x as usize,
                y: y as usize,
                width: w as usize,
                height: h as usize,
            };
            let v = px.value(i);
            let area = window.area();
            if v.len() % area != 0 || v.len() / area > 2 || v.is_empty() {
                return Err(Error::NotRasterisable(format!(
                    "chunk at {x},{y}: {} bytes for a {w}x{h} window (expected 1 or 2 bytes per pixel)",
                    v.len()
                )));
            }
            let k = v.len() / area;
            if *self.bytes_per_pixel.get_or_insert(k) != k {
                return Err(Error::NotRasterisable(
                    "chunks differ in bytes per pixel".into(),
                ));
            }
            let obs = observed
                .filter(|o| o.is_valid(i) && o.value(i).len() == area)
                .map(|o| o.value(i));
            f(window, v, k, obs)?;
        }
        Ok(())
    }
}

fn int_col(b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let c = b.column_by_name(name).ok_or_else(|| {
        Error::NotRasterisable(format!(
            "the query result has no '{name}' column: a raster output needs \
             x_off, y_off, width, height and a binary pixels column"
        ))
    })?;
    let c = arrow::compute::cast(c, &DataType::Int64)
        .map_err(|e| Error::NotRasterisable(format!("column '{name}' is not an integer: {e}")))?;
    let a = c.as_primitive::<Int64Type>();
    if a.null_count() > 0 {
        return Err(Error::NotRasterisable(format!("column '{name}' has NULLs")));
    }
    Ok(a.values().to_vec())
}

/// What the pixels of a result batch are.
pub(crate) fn pixel_meta(b: &RecordBatch) -> Result<PixelMeta> {
    PixelMeta::of_field(b.schema().field(pixel_col(b)?))
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
        [] => Err(Error::NotRasterisable(
            "the query result has no binary pixels column".into(),
        )),
        _ => Err(Error::NotRasterisable(
            "the query result has several binary columns: name the one to rasterise 'pixels'"
                .into(),
        )),
    }
}

/// Pastes every chunk into one raster on `grid`: (bytes per pixel, data).
#[cfg(test)]
pub(crate) fn assemble(grid: &OutputGrid, batches: &[RecordBatch]) -> Result<(usize, Vec<u8>)> {
    let mut reader = ChunkReader::new(grid);
    let mut data: Vec<u8> = Vec::new();
    for b in batches {
        reader.read(b, |w, px, k, _| {
            if data.is_empty() {
                data = vec![0u8; grid.width * grid.height * k];
            }
            for r in 0..w.height {
                let dst = ((w.y + r) * grid.width + w.x) * k;
                data[dst..dst + w.width * k].copy_from_slice(&px[r * w.width * k..][..w.width * k]);
            }
            Ok(())
        })?;
    }
    let k = reader.bytes_per_pixel().unwrap_or(1);
    if data.is_empty() {
        data = vec![0u8; grid.width * grid.height * k];
    }
    Ok((k, data))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BinaryArray, Int32Array, Int64Array};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    /// Every kind the aggregates record reads back as itself; a kind this
    /// build does not know is an error naming it, never another kind.
    #[test]
    fn raster_kinds_read_back_or_are_refused() {
        let field = |kind: Option<&str>| {
            let mut f = Field::new("pixels", DataType::LargeBinary, true);
            if let Some(k) = kind {
                f = f.with_metadata([(floodsql_udfs::META_KIND.to_string(), k.to_string())].into());
            }
            f
        };
        for k in RasterKind::ALL {
            assert_eq!(PixelMeta::of_field(&field(Some(k.name()))).unwrap().kind, k);
        }
        assert_eq!(
            PixelMeta::of_field(&field(None)).unwrap().kind,
            RasterKind::Values
        );
        let e = PixelMeta::of_field(&field(Some("maks")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("raster kind 'maks'") && e.contains("mask, count"),
            "{e}"
        );
    }

    pub(crate) fn grid(width: usize, height: usize) -> OutputGrid {
        OutputGrid {
            crs: "EPSG:32642".into(),
            res: 20.0,
            col0: 1000,
            row0: 50000,
            width,
            height,
        }
    }

    /// Chunks (x, y, w, h, pixels) as one batch, offsets as Int64 and pixels
    /// as Binary (what a user query may return), plus an extra column.
    /// x, y, w, h, pixels
    type Chunk = (i64, i64, i64, i64, Option<Vec<u8>>);

    fn batch(chunks: &[Chunk]) -> RecordBatch {
        let col = |f: fn(&Chunk) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from(chunks.iter().map(f).collect::<Vec<_>>()))
        };
        let px: BinaryArray = chunks.iter().map(|c| c.4.as_deref()).collect();
        let schema = Schema::new(vec![
            Field::new("x_off", DataType::Int64, false),
            Field::new("y_off", DataType::Int64, false),
            Field::new("width", DataType::Int64, false),
            Field::new("height", DataType::Int64, false),
            Field::new("n", DataType::Int32, false),
            Field::new("e", DataType::Binary, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                col(|c| c.0),
                col(|c| c.1),
                col(|c| c.2),
                col(|c| c.3),
                Arc::new(Int32Array::from(vec![7; chunks.len()])),
                Arc::new(px),
            ],
        )
        .unwrap()
    }

    #[test]
    fn pastes_chunks_at_their_offsets() {
        // a 5 x 3 grid in 3-px chunks: (0,0) 3x3, (3,0) 2x3; the second is NULL
        let b = batch(&[(0, 0, 3, 3, Some((1..=9).collect())), (3, 0, 2, 3, None)]);
        let (k, data) = assemble(&grid(5, 3), &[b]).unwrap();
        assert_eq!(k, 1);
        assert_eq!(data, [1, 2, 3, 0, 0, 4, 5, 6, 0, 0, 7, 8, 9, 0, 0]);
        // 2 bytes per pixel, over two batches
        let a = batch(&[(0, 0, 2, 1, Some(vec![1, 0, 2, 1]))]);
        let b = batch(&[(2, 0, 1, 1, Some(vec![255, 255]))]);
        let r = assemble(&grid(3, 1), &[a, b]).unwrap();
        assert_eq!(r, (2, vec![1, 0, 2, 1, 255, 255]));
        // no rows: an all-0 raster
        let r = assemble(&grid(2, 2), &[]).unwrap();
        assert_eq!(r, (1, vec![0; 4]));
    }

    #[test]
    fn refuses_what_cannot_be_a_raster() {
        let cases = [
            (
                batch(&[(3, 0, 3, 3, Some(vec![0; 9]))]),
                "outside the 5x3 grid",
            ),
            (
                batch(&[(0, 0, 3, 3, Some(vec![0; 9])), (0, 0, 3, 3, None)]),
                "two result rows",
            ),
            (
                batch(&[(0, 0, 3, 3, Some(vec![0; 8]))]),
                "8 bytes for a 3x3 window",
            ),
            (
                batch(&[(0, 0, 1, 1, Some(vec![0])), (1, 0, 1, 1, Some(vec![0, 0]))]),
                "differ in bytes per pixel",
            ),
        ];
        for (b, needle) in cases {
            let e = assemble(&grid(5, 3), &[b]).unwrap_err();
            assert!(matches!(e, Error::NotRasterisable(_)), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let no_y = batch(&[(0, 0, 1, 1, None)]).project(&[0, 2, 3, 5]).unwrap();
        let e = assemble(&grid(5, 3), &[no_y]).unwrap_err().to_string();
        assert!(e.contains("no 'y_off' column"), "{e}");
    }
}
