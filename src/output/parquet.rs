//! The chunk table out as Parquet, written batch by batch as the result
//! streams in: one row per chunk (x_off, y_off, width, height, pixels and
//! whatever else the query returned), with the grid in the file's key-value
//! metadata:
//! `floodsql:crs` (WKT), `floodsql:geotransform` (6 numbers, GDAL order),
//! `floodsql:width`, `floodsql:height`, `floodsql:bytes_per_pixel`.
//! Back to an array (numpy): `a = np.zeros((height, width), np.uint8)`, then
//! for each row `a[y_off:y_off+height, x_off:x_off+width] =
//! np.frombuffer(pixels, np.uint8).reshape(height, width)`.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{io_err, Error, Result};
use crate::raster::grid::OutputGrid;

/// Encoded bytes of a row group before it goes to the file.
const ROW_GROUP_BYTES: usize = 32 << 20;

/// A Parquet file being written to a temp path beside its target.
pub(crate) struct ParquetSink {
    target: PathBuf,
    tmp: PathBuf,
    grid: OutputGrid,
    /// Opened with the first batch (its schema is the file's).
    writer: Option<ArrowWriter<File>>,
}

impl ParquetSink {
    /// A sink for `target` writing to `tmp` (a scratch file of the run's
    /// transaction; nothing is written before the first batch).
    pub(crate) fn new(target: &Path, tmp: PathBuf, grid: &OutputGrid) -> Self {
        Self {
            target: target.to_path_buf(),
            tmp,
            grid: grid.clone(),
            writer: None,
        }
    }

    /// The temp file (removed by the caller when the run fails).
    pub(crate) fn tmp(&self) -> &Path {
        &self.tmp
    }

    fn failed(&self, e: parquet::errors::ParquetError) -> Error {
        Error::Output {
            path: self.target.display().to_string(),
            message: format!("Parquet: {e}"),
        }
    }

    /// Appends the rows of a batch.
    pub(crate) fn write(&mut self, b: &RecordBatch) -> Result<()> {
        if self.writer.is_none() {
            let g = &self.grid;
            let kv = |k: &str, v: String| KeyValue::new(format!("floodsql:{k}"), v);
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                // a row group is held in memory until it is flushed: bound it
                // by bytes (a grid of 10^4 chunks is still one row group by
                // the default row count)
                .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
                .set_key_value_metadata(Some(vec![
                    kv("crs", g.crs.clone()),
                    kv(
                        "geotransform",
                        serde_json::to_string(&g.geotransform()).unwrap_or_default(),
                    ),
                    kv("width", g.width.to_string()),
                    kv("height", g.height.to_string()),
                ]))
                .build();
            let f = File::create(&self.tmp).map_err(io_err(&self.tmp))?;
            let w = ArrowWriter::try_new(f, b.schema(), Some(props)).map_err(|e| self.failed(e))?;
            self.writer = Some(w);
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(Error::Internal("Parquet writer not opened".into()));
        };
        let r = w.write(b);
        r.map_err(|e| self.failed(e))
    }

    /// Closes the file (recording the pixel size): [`Self::tmp`] is complete.
    pub(crate) fn finish(mut self, bytes_per_pixel: usize) -> Result<()> {
        let Some(mut w) = self.writer.take() else {
            return Err(Error::NotRasterisable(
                "the query returned no rows to write to Parquet".into(),
            ));
        };
        w.append_key_value_metadata(KeyValue::new(
            "floodsql:bytes_per_pixel".to_string(),
            bytes_per_pixel.to_string(),
        ));
        w.close().map_err(|e| self.failed(e))?;
        Ok(())
    }
}
