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

/// Largest gRPC / Flight message floodsql's cluster roles accept: one row of a
/// partial flood aggregate is a whole chunk's state (up to 25 MB at the
/// largest chunk size), far above gRPC's usual 16 MB.
pub const MAX_MESSAGE_BYTES: u32 = 1 << 30;

/// Session configuration for every cluster role: Ballista's defaults,
/// floodsql's options, and floodsql's codecs.
pub fn cluster_session_config() -> SessionConfig {
    use ballista_core::config::{
        BALLISTA_CLIENT_GRPC_MAX_MESSAGE_SIZE, BALLISTA_SHUFFLE_COMPRESSION_CODEC,
    };
    use ballista_core::extension::SessionConfigExt;
    SessionConfig::new_with_ballista()
        .with_option_extension(FloodsqlOptions::default())
        .with_information_schema(true)
        .set_u64(
            BALLISTA_CLIENT_GRPC_MAX_MESSAGE_SIZE,
            MAX_MESSAGE_BYTES as u64,
        )
        // flood masks are mostly runs of 0/1: zstd shrinks the shuffled
        // chunk states far more than lz4 (Ballista's default), and is faster
        .set_str(BALLISTA_SHUFFLE_COMPRESSION_CODEC, "zstd")
        .with_ballista_logical_extension_codec(logical_codec())
        .with_ballista_physical_extension_codec(physical_codec())
}

/// floodsql's logical extension codec (wraps Ballista's).
pub fn logical_codec() -> Arc<dyn datafusion_proto::logical_plan::LogicalExtensionCodec> {
    Arc::new(crate::cluster::codec::FloodsqlLogicalCodec::default())
}

/// floodsql's physical extension codec (wraps Ballista's).
pub fn physical_codec() -> Arc<dyn datafusion_proto::physical_plan::PhysicalExtensionCodec> {
    Arc::new(crate::cluster::codec::FloodsqlPhysicalCodec::default())
}

/// Ballista's function registry plus floodsql's functions (executors).
pub fn function_registry() -> ballista_core::registry::BallistaFunctionRegistry {
    let mut reg = ballista_core::registry::BallistaFunctionRegistry::default();
    for udf in floodsql_udfs::all_udfs() {
        reg.scalar_functions.insert(udf.name().to_string(), udf);
    }
    for udaf in floodsql_udfs::all_udafs() {
        reg.aggregate_functions
            .insert(udaf.name().to_string(), udaf);
    }
    reg
}

/// The version tag a session was made with (`floodsql.version`).
pub fn session_version(config: &SessionConfig) -> String {
    config
        .options()
        .extensions
        .get::<FloodsqlOptions>()
        .map(|o| o.version.clone())
        .unwrap_or_default()
}

/// The scheduler's session state for a client session: Ballista's defaults
/// plus floodsql's functions. Refuses a client of another floodsql version.
pub fn scheduler_session_state(
    config: SessionConfig,
) -> datafusion::error::Result<datafusion::execution::SessionState> {
    use datafusion::execution::FunctionRegistry;
    // a plain-text error: Ballista passes it to the client in Debug form
    crate::version::check_peer(
        &session_version(&config),
        "the scheduler refuses the client's session",
    )
    .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
    let mut state = ballista_core::utils::default_session_builder(config)?;
    for udf in floodsql_udfs::all_udfs() {
        state.register_udf(udf)?;
    }
    for udaf in floodsql_udfs::all_udafs() {
        state.register_udaf(udaf)?;
    }
    Ok(state)
}
