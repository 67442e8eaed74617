//! floodsql's function set, defined once: the scalar and aggregate functions
//! of crate `floodsql-udfs` plus the table functions `stac_items` and
//! `flood_chunks`. The session factory registers it; the version tag
//! fingerprints it.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableFunctionImpl;
use datafusion::common::Result;
use datafusion::execution::context::SessionContext;

use crate::raster::table::FloodChunksFunction;
use crate::stac::table::StacItemsFunction;
use crate::vector::table::RegionsFunction;

/// The table functions, by SQL name.
pub(crate) fn table_functions() -> [(&'static str, Arc<dyn TableFunctionImpl>); 3] {
    [
        (crate::stac::table::NAME, Arc::new(StacItemsFunction)),
        (crate::raster::table::NAME, Arc::new(FloodChunksFunction)),
        (crate::vector::table::NAME, Arc::new(RegionsFunction)),
    ]
}

/// One floodsql function as `\\df` lists it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FunctionDoc {
    /// "table", "aggregate" or "scalar".
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    /// How it is called.
    pub(crate) syntax: String,
    /// What it does, from the function's own `documentation()`.
    pub(crate) description: String,
    /// Its arguments: (name, what it is).
    pub(crate) arguments: Vec<(String, String)>,
    /// An example query, when its documentation has one.
    pub(crate) example: Option<String>,
    /// A table function's columns: (name, type).
    pub(crate) columns: Vec<(String, String)>,
}

impl FunctionDoc {
    /// The first sentence of the description.
    pub(crate) fn summary(&self) -> &str {
        let d = self.description.trim();
        match d.find(". ") {
            Some(i) => &d[..=i],
            None => d,
        }
    }
}

/// A schema's columns as (name, type).
fn columns(schema: &arrow::datatypes::Schema) -> Vec<(String, String)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect()
}

/// Every floodsql function with its syntax and description, by kind then name.
pub(crate) fn documented() -> Vec<FunctionDoc> {
    let mut out = vec![
        FunctionDoc {
            kind: "table",
            name: crate::stac::table::NAME.into(),
            syntax: format!("{}({})", crate::stac::table::NAME, crate::stac::table::SIGNATURE),
            description: "One row per STAC item of a search (an API or a static catalogue): id, collection, datetime, bbox, geometry, CRS, asset grid, assets, properties. The session's floodsql.filter (CQL2) applies.".into(),
            arguments: vec![
                ("source".into(), "STAC API URL, or a static catalogue (file, directory, URL)".into()),
                ("collection".into(), "collection id(s), comma-separated; NULL = any".into()),
                ("bbox".into(), "'MINX,MINY,MAXX,MAXY' in degrees; NULL = anywhere".into()),
                ("datetime".into(), "'START/END' (RFC 3339, '..' open); NULL = any time".into()),
            ],
            example: Some("SELECT id, datetime FROM stac_items('floodsql-demo/catalog/items.json', 'GFM', '68.0127,26.7242,68.4127,27.0642', '2022-09') ORDER BY datetime LIMIT 5;".into()),
            columns: columns(&crate::stac::arrow::items_schema()),
        },
        FunctionDoc {
            kind: "table",
            name: crate::raster::table::NAME.into(),
            syntax: format!("{}({})", crate::raster::table::NAME, crate::raster::table::SIGNATURE),
            description: "One row per (time slice, output chunk) of a STAC search's asset on the odc-stac grid: datetime, chunk position and size, items, the slice's fused uint8 pixels, the chunk's true pixel areas; with 'a,b,c' as asset, one more pixel column per extra asset, named after it; with a regions file, `zones`: each pixel's region_id (pixel-centre rule, the last listed region wins).".into(),
            arguments: vec![
                ("source, collection, bbox, datetime".into(), "the search, as stac_items (bbox required)".into()),
                ("asset".into(), "asset name, or 'a,b,c': the first gives `pixels`, each other a column".into()),
                ("chunk_size".into(), "output chunk side in pixels (default floodsql.chunk_size)".into()),
                ("regions".into(), "a vector file: adds `zones`".into()),
            ],
            example: Some("SELECT datetime, sum(pixel_count(pixels, 1)) AS flooded FROM flood_chunks('floodsql-demo/catalog/items.json', 'GFM', '68.0127,26.7242,68.4127,27.0642', '2022-09', 'ensemble_flood_extent') GROUP BY datetime ORDER BY datetime;".into()),
            columns: {
                let mut c = columns(&crate::raster::exec::chunk_schema_for(&[], false));
                c.push(("<asset>".into(), "LargeBinary (one per extra asset)".into()));
                c.push(("zones".into(), "LargeBinary (with regions)".into()));
                c
            },
        },
        FunctionDoc {
            kind: "table",
            name: crate::vector::table::NAME.into(),
            syntax: format!("{}({})", crate::vector::table::NAME, crate::vector::table::SIGNATURE),
            description: "One row per polygon feature of a vector file (GeoJSON, GeoPackage, Shapefile, ...): region_id (its position, from 1), its attributes, geometry (WKB in the file's CRS).".into(),
            arguments: vec![
                ("path".into(), "a local vector file (GeoParquet, or any file OGR opens)".into()),
                ("layer".into(), "the layer to read (default: the first)".into()),
            ],
            example: Some("SELECT region_id, name FROM regions('floodsql-demo/catalog/regions.geojson');".into()),
            columns: vec![
                ("region_id".into(), "Int64".into()),
                ("<attribute>".into(), "Int64 | Float64 | Date32 | Utf8 (one per attribute)".into()),
                ("geometry".into(), "Binary (WKB)".into()),
            ],
        },
    ];
    let mut add = |kind, name: &str, d: Option<&datafusion::logical_expr::Documentation>| {
        out.push(FunctionDoc {
            kind,
            name: name.into(),
            syntax: d.map(|d| d.syntax_example.clone()).unwrap_or_default(),
            description: d.map(|d| d.description.clone()).unwrap_or_default(),
            arguments: d.and_then(|d| d.arguments.clone()).unwrap_or_default(),
            example: d.and_then(|d| d.sql_example.clone()),
            columns: Vec::new(),
        });
    };
    for f in floodsql_udfs::all_udafs() {
        add("aggregate", f.name(), f.documentation());
    }
    for f in scalar_udfs() {
        add("scalar", f.name(), f.documentation());
    }
    out
}

/// Registers every floodsql function (scalar, aggregate, table) on `ctx`.
pub(crate) fn register_all(ctx: &SessionContext) -> Result<()> {
    register_scalars(&mut ctx.clone())?;
    for (name, f) in table_functions() {
        ctx.register_udtf(name, f);
    }
    Ok(())
}

/// The scalar and aggregate functions every role carries: floodsql's
/// (`floodsql-udfs`) and `item_property` (a field of `stac_items`'
/// `properties`).
pub(crate) fn register_scalars(
    registry: &mut dyn datafusion::execution::FunctionRegistry,
) -> Result<()> {
    for f in scalar_udfs() {
        registry.register_udf(f)?;
    }
    for f in floodsql_udfs::all_udafs() {
        registry.register_udaf(f)?;
    }
    Ok(())
}

/// Every scalar function: `floodsql-udfs`' and the `stac` layer's
/// (`item_property`) — the one list documented, described and registered.
fn scalar_udfs() -> Vec<Arc<datafusion::logical_expr::ScalarUDF>> {
    let mut all = floodsql_udfs::all_udfs();
    all.push(crate::stac::property::item_property_udf());
    all
}

/// One line per function (kind, name, signature, return type), sorted: what
/// two processes must agree on to exchange plans.
pub(crate) fn describe() -> Vec<String> {
    let probe = [DataType::LargeBinary];
    let udfs = scalar_udfs().into_iter().map(|f| {
        let ret = f.return_type(&probe).ok();
        format!(
            "udf:{}:{:?}:{ret:?}",
            f.name(),
            f.signature().type_signature
        )
    });
    let udafs = floodsql_udfs::all_udafs().into_iter().map(|f| {
        let ret = f.return_type(&probe).ok();
        format!(
            "udaf:{}:{:?}:{ret:?}",
            f.name(),
            f.signature().type_signature
        )
    });
    let udtfs = table_functions()
        .into_iter()
        .map(|(name, _)| format!("udtf:{name}"));
    let mut desc: Vec<String> = udfs.chain(udafs).chain(udtfs).collect();
    desc.sort();
    desc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_function_is_callable_after_registration() {
        let ctx = SessionContext::new();
        register_all(&ctx).unwrap();
        let state = ctx.state();
        for line in describe() {
            let mut parts = line.split(':');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap());
            let known = match kind {
                "udf" => state.scalar_functions().contains_key(name),
                "udaf" => state.aggregate_functions().contains_key(name),
                "udtf" => state.table_functions().contains_key(name),
                _ => false,
            };
            assert!(known, "{line}");
        }
        assert_eq!(
            describe().iter().filter(|l| l.starts_with("udtf:")).count(),
            3
        );
    }
}
