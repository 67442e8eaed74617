//! Regions for zonal statistics: the polygons of one layer of a vector file
//! (GeoJSON, GeoParquet where GDAL has the driver, GeoPackage, Shapefile,
//! anything OGR opens) with their attributes, read once by the client.
//!
//! A region's id (`region_id`) is its position in the layer, from 1; the
//! zones of a scan ([`crate::vector::zones`]) use the same ids. Blocking
//! (GDAL): call from a blocking thread.

use std::path::Path;

use gdal::spatial_ref::AxisMappingStrategy;
use gdal::vector::{
    geometry_type_flatten, FieldValue, Geometry, LayerAccess, OGRFieldType, OGRwkbGeometryType,
};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Column names of the regions table that attributes may not take.
pub(crate) const RESERVED: [&str; 2] = ["region_id", "geometry"];

/// The type of an attribute column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AttrKind {
    /// 64-bit integer.
    Int,
    /// Double.
    Real,
    /// Text (also dates with a time and every other OGR type, as OGR
    /// formats them).
    Text,
    /// A date (days since 1970-01-01).
    Date,
}

/// One attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum AttrValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Date(i32),
}

/// One region: its attributes (in the order of [`RegionSet::fields`]) and
/// its polygon(s) as WKB in the layer's CRS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Region {
    pub(crate) values: Vec<AttrValue>,
    pub(crate) wkb: Vec<u8>,
}

/// Where the regions come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RegionsSpec {
    /// A local vector file.
    pub(crate) path: String,
    /// Its layer; `None`: the first.
    pub(crate) layer: Option<String>,
}

impl RegionsSpec {
    /// Regions from local file `path` (remote locations are refused: the
    /// file is read by the client only).
    pub(crate) fn new(path: &str, layer: Option<String>) -> Result<Self> {
        if path.contains("://") || path.starts_with("/vsi") {
            return Err(Error::invalid(
                "regions",
                path,
                "regions are read from a local file (GeoJSON, GeoPackage, Shapefile, GeoParquet, ...)",
            ));
        }
        Ok(Self {
            path: path.to_string(),
            layer,
        })
    }
}

/// The regions of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegionSet {
    pub(crate) spec: RegionsSpec,
    /// The layer's name.
    pub(crate) layer: String,
    /// The layer's CRS as WKT.
    pub(crate) crs: String,
    /// Attribute columns: name and type.
    pub(crate) fields: Vec<(String, AttrKind)>,
    pub(crate) regions: Vec<Region>,
}

fn bad(spec: &RegionsSpec, message: impl Into<String>) -> Error {
    Error::invalid("regions", spec.path.clone(), message)
}

fn kind_of(t: OGRFieldType::Type) -> AttrKind {
    match t {
        OGRFieldType::OFTInteger | OGRFieldType::OFTInteger64 => AttrKind::Int,
        OGRFieldType::OFTReal => AttrKind::Real,
        OGRFieldType::OFTDate => AttrKind::Date,
        _ => AttrKind::Text,
    }
}

fn value_of(v: Option<FieldValue>, kind: AttrKind) -> AttrValue {
    let Some(v) = v else {
        return AttrValue::Null;
    };
    match (kind, v) {
        (AttrKind::Int, FieldValue::IntegerValue(i)) => AttrValue::Int(i as i64),
        (AttrKind::Int, FieldValue::Integer64Value(i)) => AttrValue::Int(i),
        (AttrKind::Real, FieldValue::RealValue(r)) => AttrValue::Real(r),
        (AttrKind::Date, FieldValue::DateValue(d)) => {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            AttrValue::Date((d - epoch).num_days() as i32)
        }
        (_, FieldValue::StringValue(s)) => AttrValue::Text(s),
        (_, FieldValue::DateTimeValue(t)) => AttrValue::Text(t.to_rfc3339()),
        (_, FieldValue::DateValue(d)) => AttrValue::Text(d.to_string()),
        (_, FieldValue::IntegerValue(i)) => AttrValue::Text(i.to_string()),
        (_, FieldValue::Integer64Value(i)) => AttrValue::Text(i.to_string()),
        (_, FieldValue::RealValue(r)) => AttrValue::Text(r.to_string()),
        (_, other) => AttrValue::Text(format!("{other:?}")),
    }
}

/// Refuses attributes named like the table's own columns.
fn check_names(spec: &RegionsSpec, fields: &[(String, AttrKind)]) -> Result<()> {
    for (name, _) in fields {
        if RESERVED.contains(&name.as_str()) {
            return Err(bad(
                spec,
                format!("an attribute is named '{name}', a column the regions table has itself (rename it)"),
            ));
        }
    }
    Ok(())
}

/// The 2D WKB of region `id`'s geometry, which must be a polygon or a
/// multipolygon (none: an empty multipolygon, a region of no pixel).
fn region_wkb(spec: &RegionsSpec, g: Option<&Geometry>, id: usize) -> Result<Vec<u8>> {
    let Some(g) = g else {
        return Ok(Geometry::empty(OGRwkbGeometryType::wkbMultiPolygon)?.wkb()?);
    };
    let t = geometry_type_flatten(g.geometry_type());
    if t != OGRwkbGeometryType::wkbPolygon && t != OGRwkbGeometryType::wkbMultiPolygon {
        return Err(bad(
            spec,
            format!(
                "region_id {id} is a {}, not a polygon or multipolygon",
                g.geometry_name()
            ),
        ));
    }
    let mut g = g.clone();
    g.flatten_to_2d();
    Ok(g.wkb()?)
}

/// Is `path` a Parquet file (its first bytes)?
fn is_parquet(path: &Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"PAR1"
}

impl RegionSet {
    /// Reads the regions `spec` names: every feature must have a polygon
    /// or multipolygon (or none, or an empty one: a region of no pixel).
    /// GeoParquet is read with the parquet crate (GDAL builds without the
    /// Parquet driver, as Debian's, are common); everything else with OGR.
    pub(crate) fn read(spec: &RegionsSpec) -> Result<Self> {
        if !Path::new(&spec.path).exists() {
            return Err(bad(spec, "no such file"));
        }
        if is_parquet(Path::new(&spec.path)) {
            return read_geoparquet(spec);
        }
        let ds = Dataset::open_ex(
            &spec.path,
            DatasetOptions {
                open_flags: GdalOpenFlags::GDAL_OF_VECTOR | GdalOpenFlags::GDAL_OF_READONLY,
                ..Default::default()
            },
        )
        .map_err(|e| {
            bad(
                spec,
                format!("GDAL cannot open it as vector data ({e}); floodsql reads regions from GeoJSON, GeoPackage, Shapefile and the other formats OGR opens"),
            )
        })?;
        let mut layer = match &spec.layer {
            Some(name) => ds.layer_by_name(name).map_err(|_| {
                let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
                bad(
                    spec,
                    format!("no layer '{name}' (layers: {})", names.join(", ")),
                )
            })?,
            None => ds
                .layer(0)
                .map_err(|_| bad(spec, "the file has no layer"))?,
        };
        let mut srs = layer.spatial_ref().ok_or_else(|| {
            bad(
                spec,
                "the layer has no CRS (regions must say which CRS their coordinates are in)",
            )
        })?;
        srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let crs = srs
            .to_wkt()
            .map_err(|e| bad(spec, format!("its CRS cannot be written as WKT: {e}")))?;
        let fields: Vec<(String, AttrKind)> = layer
            .defn()
            .fields()
            .map(|f| (f.name(), kind_of(f.field_type())))
            .collect();
        check_names(spec, &fields)?;
        let layer_name = layer.name();
        let mut regions = Vec::new();
        for (i, f) in layer.features().enumerate() {
            let values = fields
                .iter()
                .enumerate()
                .map(|(k, (_, kind))| Ok(value_of(f.field(k)?, *kind)))
                .collect::<Result<Vec<_>>>()?;
            let wkb = region_wkb(spec, f.geometry(), i + 1)?;
            regions.push(Region { values, wkb });
        }
        if regions.len() >= u32::MAX as usize {
            return Err(bad(spec, "too many regions"));
        }
        Ok(Self {
            spec: spec.clone(),
            layer: layer_name,
            crs,
            fields,
            regions,
        })
    }
}

/// A GeoParquet file's regions: its primary geometry column (WKB; GeoArrow
/// encodings are refused), CRS from the `geo` metadata (absent: OGC:CRS84,
/// as the specification says), every other column an attribute.
fn read_geoparquet(spec: &RegionsSpec) -> Result<RegionSet> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let pq = |e: &dyn std::fmt::Display| bad(spec, format!("GeoParquet: {e}"));
    let file = std::fs::File::open(&spec.path).map_err(|e| pq(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| pq(&e))?;
    let geo: serde_json::Value = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "geo"))
        .and_then(|k| k.value.as_deref())
        .ok_or_else(|| bad(spec, "a Parquet file without GeoParquet 'geo' metadata"))
        .and_then(|v| serde_json::from_str(v).map_err(|e| pq(&e)))?;
    let (primary, crs) = geoparquet_geometry(spec, &geo)?;
    let (fields, attr_cols, geom_col) = geoparquet_columns(spec, builder.schema(), &primary)?;
    let reader = builder.build().map_err(|e| pq(&e))?;
    let mut regions = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| pq(&e))?;
        let cast =
            |i: usize, t: &DataType| arrow::compute::cast(batch.column(i), t).map_err(|e| pq(&e));
        let attrs: Vec<(AttrKind, arrow::array::ArrayRef)> = attr_cols
            .iter()
            .zip(&fields)
            .map(|(&i, (_, kind))| Ok((*kind, cast(i, &kind.arrow_type())?)))
            .collect::<Result<_>>()?;
        let geoms = cast(geom_col, &DataType::LargeBinary)?;
        let geoms = geoms.as_binary::<i64>();
        for r in 0..batch.num_rows() {
            let values = attrs.iter().map(|(kind, a)| kind.value(a, r)).collect();
            let id = regions.len() + 1;
            let g = if geoms.is_null(r) {
                None
            } else {
                Some(Geometry::from_wkb(geoms.value(r)).map_err(|e| {
                    bad(
                        spec,
                        format!("region_id {id}: its WKB cannot be read ({e})"),
                    )
                })?)
            };
            let wkb = region_wkb(spec, g.as_ref(), id)?;
            regions.push(Region { values, wkb });
        }
    }
    Ok(RegionSet {
        spec: spec.clone(),
        layer: primary,
        crs,
        fields,
        regions,
    })
}

/// The primary geometry column of a GeoParquet file (`geo` metadata) and
/// its CRS as WKT (OGC:CRS84 when the metadata gives none); only WKB.
fn geoparquet_geometry(spec: &RegionsSpec, geo: &serde_json::Value) -> Result<(String, String)> {
    let primary = geo["primary_column"]
        .as_str()
        .ok_or_else(|| bad(spec, "GeoParquet metadata without primary_column"))?
        .to_string();
    let col = &geo["columns"][&primary];
    if col["encoding"].as_str() != Some("WKB") {
        return Err(bad(
            spec,
            format!(
                "geometry column '{primary}' is encoded as {}: floodsql reads WKB GeoParquet",
                col["encoding"]
            ),
        ));
    }
    let crs_def = match col.get("crs") {
        None => "OGC:CRS84".to_string(),
        Some(serde_json::Value::Null) => {
            return Err(bad(spec, "the geometry column's CRS is null (unknown)"))
        }
        Some(v) => v.to_string(),
    };
    let mut srs = gdal::spatial_ref::SpatialRef::from_definition(&crs_def)
        .map_err(|e| bad(spec, format!("GDAL cannot read its CRS: {e}")))?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let crs = srs
        .to_wkt()
        .map_err(|e| bad(spec, format!("its CRS cannot be written as WKT: {e}")))?;
    Ok((primary, crs))
}

/// The attribute columns of a GeoParquet file ((name, kind), their
/// indices) and the index of its primary geometry column; names checked.
type Columns = (Vec<(String, AttrKind)>, Vec<usize>, usize);

fn geoparquet_columns(
    spec: &RegionsSpec,
    schema: &arrow::datatypes::SchemaRef,
    primary: &str,
) -> Result<Columns> {
    use arrow::datatypes::DataType;
    let mut fields = Vec::new();
    let mut attr_cols = Vec::new();
    let mut geom_col = None;
    for (i, f) in schema.fields().iter().enumerate() {
        if f.name() == primary {
            geom_col = Some(i);
            continue;
        }
        let kind = match f.data_type() {
            t if t.is_integer() => AttrKind::Int,
            t if t.is_floating() => AttrKind::Real,
            DataType::Date32 => AttrKind::Date,
            _ => AttrKind::Text,
        };
        fields.push((f.name().clone(), kind));
        attr_cols.push(i);
    }
    let geom_col = geom_col.ok_or_else(|| {
        bad(
            spec,
            format!("no column '{primary}' (the primary geometry)"),
        )
    })?;
    check_names(spec, &fields)?;
    Ok((fields, attr_cols, geom_col))
}

impl AttrKind {
    /// The Arrow type an attribute of this kind is read as.
    fn arrow_type(self) -> arrow::datatypes::DataType {
        use arrow::datatypes::DataType;
        match self {
            AttrKind::Int => DataType::Int64,
            AttrKind::Real => DataType::Float64,
            AttrKind::Date => DataType::Date32,
            AttrKind::Text => DataType::Utf8,
        }
    }

    /// Row `r` of `a` (cast to [`Self::arrow_type`]).
    fn value(self, a: &arrow::array::ArrayRef, r: usize) -> AttrValue {
        use arrow::array::{Array, AsArray};
        if a.is_null(r) {
            return AttrValue::Null;
        }
        match self {
            AttrKind::Int => {
                AttrValue::Int(a.as_primitive::<arrow::datatypes::Int64Type>().value(r))
            }
            AttrKind::Real => {
                AttrValue::Real(a.as_primitive::<arrow::datatypes::Float64Type>().value(r))
            }
            AttrKind::Date => {
                AttrValue::Date(a.as_primitive::<arrow::datatypes::Date32Type>().value(r))
            }
            AttrKind::Text => AttrValue::Text(a.as_string::<i32>().value(r).to_string()),
        }
    }
}
