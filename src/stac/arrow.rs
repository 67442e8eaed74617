//! STAC items as an Arrow record batch: one row per item.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::stac::item::StacItem;

/// The schema of `stac_items(...)`.
pub(crate) fn items_schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        let f64_list = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        let i64_list = DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true)));
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("collection", DataType::Utf8, true),
            Field::new(
                "datetime",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("bbox", f64_list.clone(), true),
            Field::new("geometry", DataType::Utf8, true),
            Field::new("crs_wkt", DataType::Utf8, true),
            Field::new("proj_shape", i64_list, true),
            Field::new("proj_transform", f64_list, true),
            Field::new("gsd", DataType::Float64, true),
            Field::new("assets", DataType::Utf8, false),
            Field::new("properties", DataType::Utf8, false),
        ]))
    });
    S.clone()
}

/// Properties that have their own column.
const PROMOTED: [&str; 8] = [
    "datetime",
    "proj:wkt2",
    "proj:projjson",
    "proj:code",
    "proj:epsg",
    "proj:shape",
    "proj:transform",
    "gsd",
];

/// Items → one record batch (`assets`: JSON object name → href;
/// `properties`: JSON of the properties without a column of their own).
pub(crate) fn items_to_batch(items: &[StacItem]) -> Result<RecordBatch> {
    let mut id = StringBuilder::new();
    let mut coll = StringBuilder::new();
    let mut dt = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut bbox = ListBuilder::new(Float64Builder::new());
    let mut geom = StringBuilder::new();
    let mut crs = StringBuilder::new();
    let mut shape = ListBuilder::new(Int64Builder::new());
    let mut transform = ListBuilder::new(Float64Builder::new());
    let mut gsd = Float64Builder::new();
    let mut assets = StringBuilder::new();
    let mut props = StringBuilder::new();
    for it in items {
        id.append_value(&it.id);
        coll.append_option(it.collection.as_deref());
        dt.append_option(it.datetime.map(|t| t.timestamp_micros()));
        match it.bbox {
            Some(b) => bbox.append_value(b.iter().map(|v| Some(*v))),
            None => bbox.append_null(),
        }
        geom.append_option(it.geometry.as_ref().map(Value::to_string));
        crs.append_option(it.crs(None));
        match it.proj_shape(None) {
            Some((r, c)) => shape.append_value([Some(r as i64), Some(c as i64)]),
            None => shape.append_null(),
        }
        match it.proj_transform(None) {
            Some(t) => transform.append_value(t.iter().map(|v| Some(*v))),
            None => transform.append_null(),
        }
        gsd.append_option(it.gsd());
        let a: serde_json::Map<String, Value> = it
            .asset_hrefs()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        assets.append_value(Value::Object(a).to_string());
        let mut p = it.properties.clone();
        PROMOTED.iter().for_each(|k| {
            p.remove(*k);
        });
        props.append_value(Value::Object(p).to_string());
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(coll.finish()),
        Arc::new(dt.finish()),
        Arc::new(bbox.finish()),
        Arc::new(geom.finish()),
        Arc::new(crs.finish()),
        Arc::new(shape.finish()),
        Arc::new(transform.finish()),
        Arc::new(gsd.finish()),
        Arc::new(assets.finish()),
        Arc::new(props.finish()),
    ];
    RecordBatch::try_new(items_schema(), cols)
        .map_err(|e| Error::Internal(format!("items to Arrow: {e}")))
}
