//! Flood polygons out: GeoParquet 1.1 (WKB geometry in the raster's CRS,
//! recorded as PROJJSON in the `geo` metadata) and GeoJSON (RFC 7946:
//! longitude/latitude on WGS 84, GDAL's GeoJSON driver reprojecting). Each
//! file is written atomically and the set all or nothing. Blocking (GDAL).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, Date32Array, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use gdal::spatial_ref::SpatialRef;
use gdal::vector::{
    Feature, FieldValue, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType,
};
use gdal::DriverManager;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::context::Cancel;
use crate::error::{io_err, Error, Result};
use crate::output::transaction::OutputTransaction;
use crate::vector::polygons::{FloodPolygon, Polygons};

/// Where polygons go.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolygonOutputs {
    pub(crate) parquet: Option<PathBuf>,
    pub(crate) geojson: Option<PathBuf>,
}

impl PolygonOutputs {
    /// The transaction these outputs are written in: refused when a
    /// directory is missing or both outputs are one file.
    pub(crate) fn transaction(&self, cancel: Cancel) -> Result<OutputTransaction> {
        super::Format::PARQUET.check("--parquet", self.parquet.as_deref())?;
        super::Format::GEOJSON.check("--geojson", self.geojson.as_deref())?;
        OutputTransaction::new(
            [&self.parquet, &self.geojson]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path),
            cancel,
        )
    }
}

fn out_err(p: &Path, message: String) -> Error {
    Error::Output {
        path: p.display().to_string(),
        message,
    }
}

/// The `geo` metadata of GeoParquet 1.1.0.
fn geo_metadata(p: &Polygons) -> Result<String> {
    let mut bbox = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for f in &p.polygons {
        let e = f.geometry.envelope();
        bbox = [
            bbox[0].min(e.MinX),
            bbox[1].min(e.MinY),
            bbox[2].max(e.MaxX),
            bbox[3].max(e.MaxY),
        ];
    }
    let crs: serde_json::Value = serde_json::from_str(&p.projjson)
        .map_err(|e| Error::Internal(format!("PROJJSON of the raster's CRS: {e}")))?;
    let mut col = serde_json::json!({
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        "crs": crs,
        "edges": "planar",
    });
    if !p.polygons.is_empty() {
        col["bbox"] = serde_json::json!(bbox);
    }
    Ok(serde_json::json!({
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": col},
    })
    .to_string())
}

fn write_parquet(p: &Polygons, out: &Path, path: &Path) -> Result<()> {
    let mut fields = vec![
        Field::new("polygon_id", DataType::Int64, false),
        Field::new("class", DataType::Int64, false),
        Field::new("pixels", DataType::Int64, false),
        Field::new("area_km2", DataType::Float64, false),
    ];
    if p.dated {
        fields.push(Field::new("first_flooded", DataType::Date32, true));
        fields.push(Field::new("last_flooded", DataType::Date32, true));
    }
    fields.push(Field::new("geometry", DataType::Binary, false));
    let schema = Arc::new(Schema::new(fields));
    let wkb: Vec<Vec<u8>> = p
        .polygons
        .iter()
        .map(|f| f.geometry.iso_wkb())
        .collect::<std::result::Result<_, _>>()?;
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(1..=p.polygons.len() as i64)),
        Arc::new(Int64Array::from_iter_values(
            p.polygons.iter().map(|f| f.class),
        )),
        Arc::new(Int64Array::from_iter_values(
            p.polygons.iter().map(|f| f.pixels as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            p.polygons.iter().map(|f| f.area_km2),
        )),
    ];
    if p.dated {
        for day in [
            |f: &FloodPolygon| f.first_day,
            |f: &FloodPolygon| f.last_day,
        ] {
            cols.push(Arc::new(Date32Array::from_iter(
                p.polygons.iter().map(|f| day(f).map(i32::from)),
            )));
        }
    }
    cols.push(Arc::new(BinaryArray::from_iter_values(wkb.iter())));
    let batch = RecordBatch::try_new(schema.clone(), cols)
        .map_err(|e| out_err(path, format!("Parquet: {e}")))?;
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "geo".to_string(),
            geo_metadata(p)?,
        )]))
        .build();
    let f = File::create(out).map_err(io_err(out))?;
    let mut w = ArrowWriter::try_new(f, schema, Some(props))
        .map_err(|e| out_err(path, format!("Parquet: {e}")))?;
    w.write(&batch)
        .map_err(|e| out_err(path, format!("Parquet: {e}")))?;
    w.close()
        .map_err(|e| out_err(path, format!("Parquet: {e}")))?;
    Ok(())
}

fn write_geojson(p: &Polygons, tmp: &Path, path: &Path) -> Result<()> {
    let srs = SpatialRef::from_wkt(&p.crs)?;
    {
        let gerr = |e: gdal::errors::GdalError| out_err(path, format!("GeoJSON: {e}"));
        let drv = DriverManager::get_driver_by_name("GeoJSON").map_err(gerr)?;
        let mut ds = drv.create_vector_only(tmp).map_err(gerr)?;
        {
            let layer = ds
                .create_layer(LayerOptions {
                    name: "flood_polygons",
                    srs: Some(&srs),
                    ty: OGRwkbGeometryType::wkbPolygon,
                    // RFC 7946: WGS 84 longitude/latitude (GDAL reprojects)
                    options: Some(&["RFC7946=YES", "WRITE_BBOX=YES"]),
                })
                .map_err(gerr)?;
            let mut defs = vec![
                ("polygon_id", OGRFieldType::OFTInteger64),
                ("class", OGRFieldType::OFTInteger64),
                ("pixels", OGRFieldType::OFTInteger64),
                ("area_km2", OGRFieldType::OFTReal),
            ];
            if p.dated {
                defs.push(("first_flooded", OGRFieldType::OFTDate));
                defs.push(("last_flooded", OGRFieldType::OFTDate));
            }
            layer.create_defn_fields(&defs).map_err(gerr)?;
            for (i, f) in p.polygons.iter().enumerate() {
                let mut feature = Feature::new(layer.defn()).map_err(gerr)?;
                feature.set_geometry(f.geometry.clone()).map_err(gerr)?;
                let values = [
                    FieldValue::Integer64Value(i as i64 + 1),
                    FieldValue::Integer64Value(f.class),
                    FieldValue::Integer64Value(f.pixels as i64),
                    FieldValue::RealValue(f.area_km2),
                ];
                for (k, v) in values.iter().enumerate() {
                    feature.set_field(k, v).map_err(gerr)?;
                }
                if p.dated {
                    for (k, d) in [(4, f.first_day), (5, f.last_day)] {
                        if let Some(d) = d.and_then(date_of) {
                            feature
                                .set_field(k, &FieldValue::DateValue(d))
                                .map_err(gerr)?;
                        }
                    }
                }
                feature.create(&layer).map_err(gerr)?;
            }
        }
        ds.close().map_err(gerr)?;
        Ok(())
    }
}

/// The date `days` after 1970-01-01.
fn date_of(days: u16) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
        .checked_add_signed(chrono::Duration::days(days as i64))
}

/// Writes `p` to every output asked for, in one transaction (all or
/// nothing; files replaced are put back when it fails or is cancelled).
pub(crate) fn write_polygons(p: &Polygons, outputs: &PolygonOutputs, cancel: Cancel) -> Result<()> {
    let mut tx = outputs.transaction(cancel)?;
    if let Some(path) = &outputs.parquet {
        tx.stage(path, |tmp| write_parquet(p, tmp, path))?;
    }
    if let Some(path) = &outputs.geojson {
        tx.stage(path, |tmp| write_geojson(p, tmp, path))?;
    }
    tx.commit()
}
