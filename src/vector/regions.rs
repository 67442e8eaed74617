//! Regions for zonal statistics: the polygons of one layer of a vector file
//! (GeoJSON, GeoParquet where GDAL has the driver, GeoPackage, Shapefile,
//! anything OGR opens) with their attributes, read once by the client.
//!
//! A region's id (`region_id`) is its position in the layer, from 1; the
//! zones of a scan ([`crate::vector::zones`]) use the same ids. Blocking
//! (GDAL): call from a blocking thread.

use std::path::Path;

use gdal::spatial_ref::AxisMappingStrategy;
use gdal::vector::{FieldValue, LayerAccess, OGRFieldType, OGRwkbGeometryType};
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

impl RegionSet {
    /// Reads the regions `spec` names: every feature must have a polygon
    /// or multipolygon (or none, or an empty one: a region of no pixel).
    pub(crate) fn read(spec: &RegionsSpec) -> Result<Self> {
        if !Path::new(&spec.path).exists() {
            return Err(bad(spec, "no such file"));
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
        for (name, _) in &fields {
            if RESERVED.contains(&name.as_str()) {
                return Err(bad(
                    spec,
                    format!("an attribute is named '{name}', a column the regions table has itself (rename it)"),
                ));
            }
        }
        let layer_name = layer.name();
        let mut regions = Vec::new();
        for (i, f) in layer.features().enumerate() {
            let values = fields
                .iter()
                .enumerate()
                .map(|(k, (_, kind))| Ok(value_of(f.field(k)?, *kind)))
                .collect::<Result<Vec<_>>>()?;
            let wkb = match f.geometry() {
                None => {
                    gdal::vector::Geometry::empty(OGRwkbGeometryType::wkbMultiPolygon)?.wkb()?
                }
                Some(g) => {
                    let t = gdal::vector::geometry_type_flatten(g.geometry_type());
                    if t != OGRwkbGeometryType::wkbPolygon
                        && t != OGRwkbGeometryType::wkbMultiPolygon
                    {
                        return Err(bad(
                            spec,
                            format!(
                                "feature {} (region_id {}) is a {}, not a polygon or multipolygon",
                                f.fid().map(|v| v.to_string()).unwrap_or_default(),
                                i + 1,
                                g.geometry_name()
                            ),
                        ));
                    }
                    let mut g = g.clone();
                    g.flatten_to_2d();
                    g.wkb()?
                }
            };
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
