//! Results out: the aggregated chunks, as they stream in, written as a COG,
//! a Parquet chunk table and a PNG quicklook ([`sink::RasterSink`]). Every
//! writer is atomic (a temp file beside the target, renamed into place) and
//! the set is all or nothing: when a later output fails, the earlier ones
//! are removed. Blocking (GDAL): call from a blocking thread.

pub(crate) mod assemble;
pub(crate) mod atomic;
pub(crate) mod cog;
pub(crate) mod lettering;
pub(crate) mod lineage;
pub(crate) mod parquet;
pub(crate) mod png;
pub(crate) mod polygons;
pub(crate) mod remote;
pub(crate) mod series;
pub(crate) mod sink;
pub(crate) mod tiff;
pub(crate) mod transaction;

use std::path::PathBuf;

use crate::error::Result;

/// Where a result comes from, recorded in the outputs (GeoTIFF metadata, the
/// quicklook's caption) so that a file shown to a colleague says what it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// What the result is, e.g. "Maximum flood extent".
    pub title: String,
    /// The catalogue and collections searched (credentials masked).
    pub source: String,
    /// The asset read.
    pub asset: String,
    /// First and last time slice fused (RFC 3339 UTC), when known.
    pub time_range: Option<(String, String)>,
    /// Items read.
    pub items: usize,
    /// The SQL that made the result (credentials masked).
    pub query: String,
    /// The parameters bound into it (name, value; credentials masked).
    pub parameters: Vec<(String, String)>,
    /// The ids of the items read, sorted.
    pub item_ids: Vec<String>,
    /// What identified each item's content (id → version, see
    /// `StacItem::version`): an update tells a reprocessed item by it.
    pub item_versions: std::collections::BTreeMap<String, String>,
    /// Assets items lacked, and what stood for them.
    pub missing: Vec<crate::raster::plan::MissingAsset>,
    /// The outputs as the user named them (the lineage item's hrefs).
    pub outputs: Outputs,
    /// floodsql's version tag (see `crate::version`).
    pub version: String,
}

impl Provenance {
    /// "2022-09-01 .. 2022-09-29" (dates of the first and last slice).
    pub(crate) fn dates(&self) -> Option<String> {
        self.time_range
            .as_ref()
            .map(|(a, b)| format!("{} .. {}", &a[..a.len().min(10)], &b[..b.len().min(10)]))
    }
}

/// A format an output flag writes, and the extensions that name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    what: &'static str,
    own: &'static [&'static str],
}

impl Format {
    pub(crate) const GEOTIFF: Self = Self::new("a GeoTIFF (COG)", &["tif", "tiff"]);
    pub(crate) const PARQUET: Self = Self::new("Parquet", &["parquet", "pq"]);
    pub(crate) const PNG: Self = Self::new("a PNG picture", &["png"]);
    pub(crate) const CSV: Self = Self::new("CSV", &["csv"]);
    pub(crate) const GEOJSON: Self = Self::new("GeoJSON", &["geojson", "json"]);

    const fn new(what: &'static str, own: &'static [&'static str]) -> Self {
        Self { what, own }
    }

    /// Fails when `path`'s extension names another format this tool knows
    /// (`--out o.png` would be a GeoTIFF named .png); a name without an
    /// extension, or with one floodsql does not write, passes.
    pub(crate) fn check(&self, flag: &str, path: Option<&std::path::Path>) -> Result<()> {
        const KNOWN: [&str; 11] = [
            "tif", "tiff", "parquet", "pq", "png", "jpg", "jpeg", "csv", "json", "geojson", "nc",
        ];
        let Some((path, ext)) = path.and_then(|p| {
            p.extension()
                .map(|e| (p, e.to_string_lossy().to_ascii_lowercase()))
        }) else {
            return Ok(());
        };
        if KNOWN.contains(&ext.as_str()) && !self.own.contains(&ext.as_str()) {
            return Err(crate::error::Error::invalid(
                "output path",
                path.display().to_string(),
                format!(
                    "{flag} writes {}, not a .{ext} file (name it .{})",
                    self.what, self.own[0]
                ),
            ));
        }
        Ok(())
    }
}

/// Where to write a raster result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// Cloud-Optimized GeoTIFF.
    pub tif: Option<PathBuf>,
    /// The chunk table as Parquet.
    pub parquet: Option<PathBuf>,
    /// PNG quicklook.
    pub png: Option<PathBuf>,
    /// The run's lineage STAC item (see [`lineage`]); set by
    /// [`Outputs::with_lineage`] beside the first output.
    pub lineage: Option<PathBuf>,
}

impl Outputs {
    /// Whether any output is asked for.
    pub fn any(&self) -> bool {
        self.paths().next().is_some()
    }

    /// Result columns none of these outputs reads beside the `pixels`
    /// column: `observed` serves the quicklook and the Parquet table only
    /// (the GeoTIFF is `pixels`), so a run writing neither does not compute
    /// it (see `pipeline::statement::query_plan`).
    pub(crate) fn unread_columns(&self) -> Vec<&'static str> {
        if self.png.is_none() && self.parquet.is_none() {
            vec!["observed"]
        } else {
            Vec::new()
        }
    }

    /// The paths asked for.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.tif, &self.parquet, &self.png, &self.lineage]
            .into_iter()
            .flatten()
    }

    /// These outputs with their lineage item beside the first of them.
    pub fn with_lineage(mut self) -> Self {
        if self.lineage.is_none() {
            self.lineage = [&self.tif, &self.parquet, &self.png]
                .into_iter()
                .flatten()
                .next()
                .map(|p| lineage::lineage_path(p));
        }
        self
    }

    /// Fails unless every output's directory exists and no two outputs are
    /// the same file (checked before a query runs, so that a long run does
    /// not end in a refusal).
    pub(crate) fn check_dirs(&self) -> Result<()> {
        let all: Vec<&std::path::Path> = self.paths().map(PathBuf::as_path).collect();
        transaction::check_targets(&all)?;
        self.check_formats()
    }

    /// Fails when an output's name says another format than the one it gets
    /// (see [`Format::check`]).
    fn check_formats(&self) -> Result<()> {
        Format::GEOTIFF.check("--out", self.tif.as_deref())?;
        Format::PARQUET.check("--parquet", self.parquet.as_deref())?;
        Format::PNG.check("--png", self.png.as_deref())
    }

    /// Fails when an output would overwrite one of the query's inputs
    /// (`locations`: the COGs it reads).
    pub(crate) fn check_not_inputs(&self, locations: &[&str]) -> Result<()> {
        for p in self.paths() {
            if let Some(input) = locations.iter().find(|l| {
                (l.starts_with('/') && atomic::same_file(p, std::path::Path::new(l)))
                    || p.to_str() == Some(**l)
            }) {
                return Err(crate::error::Error::invalid(
                    "output path",
                    p.display().to_string(),
                    format!("it is an input of the query ('{input}'); choose another file"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, LargeBinaryArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::output::sink::{RasterSink, Written};
    use crate::raster::grid::OutputGrid;
    use arrow::array::RecordBatch;

    fn write_all(
        grid: &OutputGrid,
        batches: Vec<RecordBatch>,
        outputs: &Outputs,
        title: &str,
    ) -> Result<Written> {
        let p = Provenance {
            title: title.into(),
            ..Default::default()
        };
        let mut sink = RasterSink::new(grid, outputs, &p, Default::default())?;
        for b in &batches {
            sink.write(b)?;
        }
        sink.finish()
    }

    fn grid() -> OutputGrid {
        OutputGrid {
            crs: "EPSG:32642".into(),
            res: 20.0,
            col0: 100,
            row0: 2000,
            width: 700,
            height: 300,
        }
    }

    /// Two chunks of a 0/1 mask: 500 x 300 at 0,0 and 200 x 300 at 500,0.
    fn rows() -> (Vec<RecordBatch>, Vec<u8>) {
        let (g, mut want) = (grid(), vec![0u8; 700 * 300]);
        for (i, v) in want.iter_mut().enumerate() {
            *v = ((i % 700) * (i / 700) % 7 == 0) as u8;
        }
        let chunk = |x: usize, w: usize| -> Vec<u8> {
            (0..g.height)
                .flat_map(|r| want[r * 700 + x..r * 700 + x + w].to_vec())
                .collect()
        };
        let i32s = |v: [i32; 2]| -> ArrayRef { Arc::new(Int32Array::from(v.to_vec())) };
        let schema = Schema::new(vec![
            Field::new("x_off", DataType::Int32, false),
            Field::new("y_off", DataType::Int32, false),
            Field::new("width", DataType::Int32, false),
            Field::new("height", DataType::Int32, false),
            Field::new("pixels", DataType::LargeBinary, false),
        ]);
        let px = LargeBinaryArray::from_vec(vec![&chunk(0, 500), &chunk(500, 200)]);
        let b = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                i32s([0, 500]),
                i32s([0, 0]),
                i32s([500, 200]),
                i32s([300, 300]),
                Arc::new(px),
            ],
        )
        .unwrap();
        (vec![b], want)
    }

    #[test]
    fn writes_a_cog_gdal_reads_back_with_grid_and_crs() {
        let dir = tempfile::tempdir().unwrap();
        let (batches, want) = rows();
        let out = Outputs {
            tif: Some(dir.path().join("x.tif")),
            parquet: Some(dir.path().join("x.parquet")),
            png: Some(dir.path().join("x.png")),
            lineage: None,
        };
        let r = write_all(&grid(), batches, &out, "T").unwrap();
        assert_eq!(r.bytes_per_pixel, 1);
        assert_eq!(r.ones, want.iter().filter(|&&v| v == 1).count() as u64);
        let ds = gdal::Dataset::open(dir.path().join("x.tif")).unwrap();
        assert_eq!(ds.raster_size(), (700, 300));
        assert_eq!(
            ds.geo_transform().unwrap(),
            [2000.0, 20.0, 0.0, 40000.0, 0.0, -20.0]
        );
        assert!(ds
            .spatial_ref()
            .unwrap()
            .to_wkt()
            .unwrap()
            .contains("UTM zone 42N"));
        let band = ds.rasterband(1).unwrap();
        assert_eq!(band.no_data_value(), None);
        let got = band
            .read_as::<u8>((0, 0), (700, 300), (700, 300), None)
            .unwrap();
        assert_eq!(got.into_shape_and_vec().1, want);
        let f = std::fs::File::open(dir.path().join("x.parquet")).unwrap();
        let reader = ::parquet::file::reader::SerializedFileReader::new(f).unwrap();
        use ::parquet::file::reader::FileReader;
        let meta = reader.metadata().file_metadata();
        assert_eq!(meta.num_rows(), 2);
        let kv: std::collections::HashMap<_, _> = meta
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(kv["floodsql:width"], "700");
        assert_eq!(
            kv["floodsql:geotransform"],
            "[2000.0,20.0,0.0,40000.0,0.0,-20.0]"
        );
        assert!(std::fs::read(dir.path().join("x.png"))
            .unwrap()
            .starts_with(b"\x89PNG"));
    }

    #[test]
    fn outputs_named_for_another_format_are_refused() {
        let o = |tif: &str| Outputs {
            tif: Some(PathBuf::from(tif)),
            ..Default::default()
        };
        let e = o("o.png").check_formats().unwrap_err().to_string();
        assert!(
            e.contains("--out writes a GeoTIFF (COG), not a .png file"),
            "{e}"
        );
        for fine in ["o.tif", "o.TIFF", "o", "s3://b/o.tif", "o.v2"] {
            assert!(o(fine).check_formats().is_ok(), "{fine}");
        }
    }

    #[test]
    fn a_failing_output_removes_the_ones_already_written() {
        let dir = tempfile::tempdir().unwrap();
        let (batches, _) = rows();
        let out = Outputs {
            tif: Some(dir.path().join("missing/x.tif")),
            parquet: Some(dir.path().join("x.parquet")),
            png: Some(dir.path().join("x.png")),
            lineage: None,
        };
        assert!(out.check_dirs().is_err());
        let e = write_all(&grid(), batches.clone(), &out, "T").unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // the COG fails last (its temp GTiff cannot be copied onto a directory):
        // the Parquet and PNG already in place are removed, no temp file stays
        std::fs::create_dir(dir.path().join("x.tif")).unwrap();
        let out = Outputs {
            tif: Some(dir.path().join("x.tif")),
            ..out
        };
        assert!(write_all(&grid(), batches.clone(), &out, "T").is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["x.tif"], "only the directory in the way");
        // a sink dropped mid-stream (a failed or cancelled query) leaves nothing
        std::fs::remove_dir(dir.path().join("x.tif")).unwrap();
        let mut sink =
            RasterSink::new(&grid(), &out, &Provenance::default(), Default::default()).unwrap();
        sink.write(&batches[0]).unwrap();
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() > 0,
            "temp files exist"
        );
        drop(sink);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
