//! The chunk table out as Parquet: one row per chunk (x_off, y_off, width,
//! height, pixels and whatever else the query returned), with the grid in the
//! file's key-value metadata:
//! `floodsql:crs` (WKT), `floodsql:geotransform` (6 numbers, GDAL order),
//! `floodsql:width`, `floodsql:height`, `floodsql:bytes_per_pixel`.
//! Back to an array (numpy): `a = np.zeros((height, width), np.uint8)`, then
//! for each row `a[y_off:y_off+height, x_off:x_off+width] =
//! np.frombuffer(pixels, np.uint8).reshape(height, width)`.

use std::fs::File;
use std::path::Path;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{io_err, Error, Result};
use crate::output::assemble::Raster;
use crate::output::atomic::write_atomic;

/// Writes the result rows as Parquet at `path` (atomically), with the grid
/// of `raster` in the file metadata.
pub(crate) fn write_parquet(batches: &[RecordBatch], raster: &Raster, path: &Path) -> Result<()> {
    let Some(first) = batches.first() else {
        return Err(Error::NotRasterisable(
            "the query returned no rows to write to Parquet".into(),
        ));
    };
    let g = &raster.grid;
    let gt = g.geotransform();
    let kv = |k: &str, v: String| KeyValue::new(format!("floodsql:{k}"), v);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(vec![
            kv("crs", g.crs.clone()),
            kv(
                "geotransform",
                serde_json::to_string(&gt).unwrap_or_default(),
            ),
            kv("width", g.width.to_string()),
            kv("height", g.height.to_string()),
            kv("bytes_per_pixel", raster.bytes_per_pixel.to_string()),
        ]))
        .build();
    write_atomic(path, |tmp| {
        let f = File::create(tmp).map_err(io_err(tmp))?;
        let pe = |e: parquet::errors::ParquetError| Error::Output {
            path: path.display().to_string(),
            message: format!("Parquet: {e}"),
        };
        let mut w = ArrowWriter::try_new(f, first.schema(), Some(props)).map_err(pe)?;
        for b in batches {
            w.write(b).map_err(pe)?;
        }
        w.close().map_err(pe)?;
        Ok(())
    })
}
