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
}

/// Every floodsql function with its syntax and description, by kind then name.
pub(crate) fn documented() -> Vec<FunctionDoc> {
    let mut out = vec![
        FunctionDoc {
            kind: "table",
            name: crate::stac::table::NAME.into(),
            syntax: format!("{}({})", crate::stac::table::NAME, crate::stac::table::SIGNATURE),
            description: "One row per STAC item of a search (an API or a static catalogue): id, collection, datetime, bbox, geometry, CRS, asset grid, assets, properties.".into(),
        },
        FunctionDoc {
            kind: "table",
            name: crate::raster::table::NAME.into(),
            syntax: format!("{}({})", crate::raster::table::NAME, crate::raster::table::SIGNATURE),
            description: "One row per (time slice, output chunk) of a STAC search's asset on the odc-stac grid: datetime, chunk position and size, items, the slice's fused uint8 pixels, the chunk's true pixel areas; with 'a,b,c' as asset, one more pixel column per extra asset, named after it; with a regions file, `zones`: each pixel's region_id (pixel-centre rule, the last listed region wins).".into(),
        },
        FunctionDoc {
            kind: "table",
            name: crate::vector::table::NAME.into(),
            syntax: format!("{}({})", crate::vector::table::NAME, crate::vector::table::SIGNATURE),
            description: "One row per polygon feature of a vector file (GeoJSON, GeoPackage, Shapefile, ...): region_id (its position, from 1), its attributes, geometry (WKB in the file's CRS).".into(),
        },
    ];
    let mut add = |kind, name: &str, d: Option<&datafusion::logical_expr::Documentation>| {
        let (syntax, description) = d
            .map(|d| (d.syntax_example.clone(), d.description.clone()))
            .unwrap_or_default();
        out.push(FunctionDoc {
            kind,
            name: name.into(),
            syntax,
            description,
        });
    };
    for f in floodsql_udfs::all_udafs() {
        add("aggregate", f.name(), f.documentation());
    }
    for f in floodsql_udfs::all_udfs() {
        add("scalar", f.name(), f.documentation());
    }
    out
}

/// Registers every floodsql function (scalar, aggregate, table) on `ctx`.
pub(crate) fn register_all(ctx: &SessionContext) -> Result<()> {
    floodsql_udfs::register_all(&mut ctx.clone())?;
    for (name, f) in table_functions() {
        ctx.register_udtf(name, f);
    }
    Ok(())
}

/// One line per function (kind, name, signature, return type), sorted: what
/// two processes must agree on to exchange plans.
pub(crate) fn describe() -> Vec<String> {
    let probe = [DataType::LargeBinary];
    let udfs = floodsql_udfs::all_udfs().into_iter().map(|f| {
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
