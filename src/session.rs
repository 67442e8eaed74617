//! The one session factory: every role (the local CLI, the cluster client,
//! the scheduler, the executors) and every test builds its session from here,
//! so all of them carry the same functions, table functions, options,
//! version tag and codecs.

use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::common::Result;
use datafusion::execution::context::SessionContext;
use datafusion::execution::SessionState;
use datafusion::prelude::SessionConfig;

use crate::codec::{FloodsqlLogicalCodec, FloodsqlPhysicalCodec};
use crate::options::FloodsqlOptions;
use crate::version::{check_peer, version_tag};

/// Largest gRPC / Flight message floodsql's cluster roles accept: one row of a
/// partial flood aggregate is a whole chunk's state (up to 25 MB at the
/// largest chunk size), far above gRPC's usual 16 MB.
pub(crate) const MAX_MESSAGE_BYTES: u32 = 1 << 30;

/// floodsql's options, stamped with this process's version tag.
fn options() -> FloodsqlOptions {
    FloodsqlOptions {
        version: version_tag().to_string(),
        ..FloodsqlOptions::default()
    }
}

/// DataFusion settings floodsql's plans rely on: a scan partitioned by
/// ranges of chunk rows satisfies an aggregation grouped by any set of keys
/// that includes its key (`y_off` or `chunk_row`), so each chunk is
/// aggregated in its scan partition, with no repartition, and emitted as
/// soon as its last slice is scanned.
fn tuned(mut cfg: SessionConfig) -> SessionConfig {
    cfg.options_mut().optimizer.subset_repartition_threshold = 1;
    cfg
}

/// Session configuration with floodsql's options namespace.
pub fn session_config() -> SessionConfig {
    tuned(
        SessionConfig::new()
            .with_option_extension(options())
            .with_information_schema(true),
    )
}

/// Registers floodsql's functions and table functions on a context.
pub fn register_all(ctx: &SessionContext) -> Result<()> {
    crate::functions::register_all(ctx)
}

/// A local session context with everything registered.
pub fn new_context(target_partitions: Option<usize>) -> Result<SessionContext> {
    let mut cfg = session_config();
    if let Some(n) = target_partitions {
        cfg = cfg.with_target_partitions(n.max(1));
    }
    let ctx = SessionContext::new_with_config(cfg);
    register_all(&ctx)?;
    Ok(ctx)
}

/// Session configuration for every cluster role: Ballista's defaults,
/// floodsql's options, and floodsql's codecs.
pub fn cluster_session_config() -> SessionConfig {
    use ballista_core::config::{
        BALLISTA_CLIENT_GRPC_MAX_MESSAGE_SIZE, BALLISTA_SHUFFLE_COMPRESSION_CODEC,
    };
    use ballista_core::extension::SessionConfigExt;
    let mut cfg = tuned(SessionConfig::new_with_ballista());
    // DataFusion 55's leaf-expression pushdown names struct field accesses
    // `__datafusion_extracted_N`, and a plan it rewrote does not survive the
    // client → scheduler protobuf round trip (an aggregate over
    // `z['flooded_km2']`, as sql/zonal_stats.sql has, fails to decode: "No
    // field named sum(__datafusion_extracted_3)"). Off on clusters; it only
    // moves cheap expressions towards the scan.
    cfg.options_mut().optimizer.enable_leaf_expression_pushdown = false;
    cfg.with_option_extension(options())
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
    Arc::new(FloodsqlLogicalCodec::default())
}

/// floodsql's physical extension codec (wraps Ballista's).
pub fn physical_codec() -> Arc<dyn datafusion_proto::physical_plan::PhysicalExtensionCodec> {
    Arc::new(FloodsqlPhysicalCodec::default())
}

/// The version tag a session was made with (`floodsql.version`).
pub(crate) fn session_version(config: &SessionConfig) -> String {
    FloodsqlOptions::from_config(config.options()).version
}

/// Ballista's default session state for `config` plus floodsql's functions:
/// what the scheduler plans with and what executors resolve functions from.
fn cluster_state(config: SessionConfig) -> Result<SessionState> {
    let mut state = ballista_core::utils::default_session_builder(config)?;
    crate::functions::register_scalars(&mut state)?;
    Ok(state)
}

/// The scheduler's session state for a client session. Refuses a client of
/// another floodsql version.
pub(crate) fn scheduler_session_state(config: SessionConfig) -> Result<SessionState> {
    // a plain-text error: Ballista passes it to the client in Debug form
    check_peer(
        &session_version(&config),
        "the scheduler refuses the client's session",
    )?;
    cluster_state(config)
}

/// Ballista's function registry plus floodsql's functions (executors).
pub(crate) fn function_registry() -> Result<BallistaFunctionRegistry> {
    Ok(BallistaFunctionRegistry::from(&cluster_state(
        cluster_session_config(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_carries_the_same_functions_and_tag() {
        let reg = function_registry().unwrap();
        let state = scheduler_session_state(cluster_session_config()).unwrap();
        for f in floodsql_udfs::all_udafs() {
            assert!(
                reg.aggregate_functions.contains_key(f.name()),
                "{}",
                f.name()
            );
            assert!(state.aggregate_functions().contains_key(f.name()));
        }
        for f in floodsql_udfs::all_udfs() {
            assert!(reg.scalar_functions.contains_key(f.name()), "{}", f.name());
            assert!(state.scalar_functions().contains_key(f.name()));
        }
        // Ballista's own functions are still there
        assert!(reg.aggregate_functions.contains_key("sum"));
        for cfg in [session_config(), cluster_session_config()] {
            assert_eq!(session_version(&cfg), version_tag());
        }
        // a session of another version is refused, naming both
        let mut other = cluster_session_config();
        other
            .options_mut()
            .set("floodsql.version", "0.0.0+fn.deadbeef")
            .unwrap();
        let e = scheduler_session_state(other).unwrap_err().to_string();
        assert!(
            e.contains("0.0.0+fn.deadbeef") && e.contains(version_tag()),
            "{e}"
        );
    }
}
