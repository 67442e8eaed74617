//! `floodsql scheduler`: a Ballista scheduler that knows floodsql's functions,
//! table providers and codecs, and refuses clients of another floodsql version.
//! Its gRPC port also serves Ballista's REST API (`/api/jobs`,
//! `/api/job/{id}/stages`, `/api/executors`, …) and `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use crate::error::Error;
use crate::session::{
    cluster_session_config, logical_codec, physical_codec, scheduler_session_state,
    MAX_MESSAGE_BYTES,
};
use crate::version::version_tag;

/// What the scheduler role needs.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerOptions {
    /// Address to listen on.
    pub(crate) bind: SocketAddr,
    /// Host name executors and clients use to reach this scheduler.
    pub(crate) external_host: Option<String>,
    /// An executor silent for this long is considered lost (its tasks re-run).
    pub(crate) executor_timeout: Duration,
    /// Result fetches go through the scheduler (Ballista's embedded Flight
    /// proxy) instead of from the client to each executor.
    pub(crate) flight_proxy: bool,
}

/// The Ballista scheduler configuration floodsql runs with.
pub(crate) fn scheduler_config(o: &SchedulerOptions) -> SchedulerConfig {
    let timeout = o.executor_timeout.as_secs().max(2);
    let mut cfg = SchedulerConfig::default()
        .with_hostname(
            o.external_host
                .clone()
                .unwrap_or_else(|| o.bind.ip().to_string()),
        )
        .with_port(o.bind.port())
        .with_override_config_producer(Arc::new(cluster_session_config))
        .with_override_session_builder(Arc::new(scheduler_session_state))
        .with_enable_embedded_flight_proxy(o.flight_proxy);
    cfg.override_logical_codec = Some(logical_codec());
    cfg.override_physical_codec = Some(physical_codec());
    cfg.bind_host = o.bind.ip().to_string();
    cfg.executor_timeout_seconds = timeout;
    // checked every timeout/6 s: a lost executor is found at most 7/6 of the
    // timeout after its last heartbeat (35 s by default)
    cfg.expire_dead_executor_interval_seconds = (timeout / 6).max(1);
    cfg.no_executors_grace_period_seconds = timeout;
    cfg.grpc_server_max_decoding_message_size = MAX_MESSAGE_BYTES;
    cfg.grpc_server_max_encoding_message_size = MAX_MESSAGE_BYTES;
    cfg.grpc_client_max_message_size = MAX_MESSAGE_BYTES;
    cfg
}

/// Runs the scheduler until the process is stopped.
pub(crate) async fn run(o: SchedulerOptions) -> crate::Result<()> {
    tracing::info!(
        "floodsql {} scheduler on {} (REST API and health checks on the same port: /api/jobs, /healthz); executor timeout {} s{}",
        version_tag(),
        o.bind,
        o.executor_timeout.as_secs(),
        if o.flight_proxy {
            "; results served through this port (flight proxy)"
        } else {
            ""
        }
    );
    let config = scheduler_config(&o);
    let failed = |e: ballista_core::error::BallistaError| Error::Cluster {
        url: format!("scheduler {}", o.bind),
        message: e.to_string(),
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(failed)?;
    start_server(cluster, o.bind, Arc::new(config))
        .await
        .map_err(failed)
}
