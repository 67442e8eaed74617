//! The one session factory: every floodsql function, table function and
//! option is registered here, so every entry point (CLI, tests, and later the
//! Ballista roles) sees the same set.

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;

use crate::options::FloodsqlOptions;
use crate::raster::table::FloodChunksFunction;
use crate::stac::table::StacItemsFunction;

/// Session configuration with floodsql's options namespace.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_option_extension(FloodsqlOptions::default())
        .with_information_schema(true)
}

/// Registers floodsql's UDAFs and table functions on a context.
pub fn register_all(ctx: &SessionContext) {
    for udf in floodsql_udfs::all_udfs() {
        ctx.register_udf((*udf).clone());
    }
    for udaf in floodsql_udfs::all_udafs() {
        ctx.register_udaf((*udaf).clone());
    }
    ctx.register_udtf("stac_items", Arc::new(StacItemsFunction));
    ctx.register_udtf("flood_chunks", Arc::new(FloodChunksFunction));
}

/// A local session context with everything registered.
pub fn new_context(target_partitions: Option<usize>) -> SessionContext {
    let mut cfg = session_config();
    if let Some(n) = target_partitions {
        cfg = cfg.with_target_partitions(n.max(1));
    }
    let ctx = SessionContext::new_with_config(cfg);
    register_all(&ctx);
    ctx
}
