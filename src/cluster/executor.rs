//! `floodsql executor`: a Ballista executor carrying floodsql's functions,
//! codecs and raster scan. It has two ports: Arrow Flight (shuffle and result
//! fetches) and gRPC (task launches from the scheduler). Every task's session
//! carries the client's `floodsql.version`; a task of another floodsql version
//! is refused (the task fails with both versions named, and so does the job).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::JobId;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;

use crate::context::ProcessLabel;
use crate::error::{Error, Result};
use crate::session::{
    cluster_session_config, function_registry, logical_codec, physical_codec, session_version,
    MAX_MESSAGE_BYTES,
};
use crate::version::{check_peer, version_tag};

/// What the executor role needs.
#[derive(Debug, Clone)]
pub(crate) struct ExecutorOptions {
    /// The scheduler's host.
    pub(crate) scheduler_host: String,
    /// The scheduler's port.
    pub(crate) scheduler_port: u16,
    /// Arrow Flight address (shuffle and result fetches).
    pub(crate) bind: SocketAddr,
    /// gRPC port (task launches), on the bind IP.
    pub(crate) grpc_port: u16,
    /// Host name the scheduler, other executors and clients use to reach this one.
    pub(crate) external_host: Option<String>,
    /// Concurrent tasks (0: number of cores).
    pub(crate) slots: usize,
    /// Memory pool for all tasks, bytes (None: Ballista's share of host memory).
    pub(crate) memory_limit: Option<u64>,
    /// Directory for shuffle files.
    pub(crate) work_dir: Option<String>,
    /// Interval between heartbeats.
    pub(crate) heartbeat: Duration,
}

/// Ballista's execution engine, behind the version check: a task whose
/// session comes from a client of another floodsql version fails with both
/// versions named (a failure here is reported as the task's error, which the
/// scheduler passes on to the client).
struct VersionCheckedEngine(DefaultExecutionEngine);

impl ExecutionEngine for VersionCheckedEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> datafusion::error::Result<Arc<dyn QueryStageExecutor>> {
        check_peer(
            &session_version(config),
            "the executor refuses a task of the client's session",
        )
        .map_err(DataFusionError::from)?;
        self.0.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )
    }
}

/// Parses `512M`, `4G`, `1.5G`, `1048576` (bytes; K/M/G/T are powers of 1024).
pub(crate) fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let bad = || {
        Error::invalid(
            "memory limit",
            s,
            "expected bytes or a number with K, M, G or T",
        )
    };
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v <= 0.0 {
        return Err(bad());
    }
    Ok((v * mult as f64) as u64)
}

/// The Ballista executor configuration floodsql runs with. Every task's
/// session starts from [`cluster_session_config`] plus this executor's
/// [`ProcessLabel`] (its scan logs name it).
pub(crate) fn executor_config(o: &ExecutorOptions) -> Result<ExecutorProcessConfig> {
    let host = o
        .external_host
        .clone()
        .unwrap_or_else(|| o.bind.ip().to_string());
    // Ballista's pooled shuffle client is private to its crate: fetches open
    // their own connection (fine for floodsql's one small shuffle per query)
    let engine = VersionCheckedEngine(DefaultExecutionEngine::new());
    let executor_id = format!("{host}:{}", o.bind.port());
    let label = Arc::new(ProcessLabel(format!("executor {executor_id}")));
    let mut cfg = ExecutorProcessConfig {
        executor_id,
        bind_host: o.bind.ip().to_string(),
        external_host: Some(host),
        port: o.bind.port(),
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler_host.clone(),
        scheduler_port: o.scheduler_port,
        // keep trying while the scheduler starts (compose, Kubernetes)
        scheduler_connect_timeout_seconds: 60,
        work_dir: o.work_dir.clone(),
        print_thread_info: false,
        grpc_max_decoding_message_size: MAX_MESSAGE_BYTES,
        grpc_max_encoding_message_size: MAX_MESSAGE_BYTES,
        executor_heartbeat_interval_seconds: o.heartbeat.as_secs().max(1),
        memory_pool_size: o.memory_limit,
        override_function_registry: Some(Arc::new(function_registry().map_err(|e| {
            Error::Internal(format!("building the executor's function registry: {e}"))
        })?)),
        override_config_producer: Some(Arc::new(move || {
            cluster_session_config().with_extension(label.clone())
        })),
        override_execution_engine: Some(Arc::new(engine)),
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        override_create_grpc_client_endpoint: Some(Arc::new(dial_resolved)),
        ..Default::default()
    };
    if o.slots > 0 {
        cfg.vcores = o.slots;
    }
    Ok(cfg)
}

/// The scheduler endpoints an executor dials (registration, and the task
/// status reports, whose connection Ballista opens on the first report):
/// the host name resolved here, retried for a few seconds, and the address
/// dialled. A name service that fails once (podman's aardvark-dns in a
/// compose network under load did, on a first report) would otherwise lose
/// a task's status and leave its job waiting for ever.
fn dial_resolved(
    endpoint: tonic::transport::Endpoint,
) -> std::result::Result<tonic::transport::Endpoint, Box<dyn std::error::Error + Send + Sync>> {
    use std::net::ToSocketAddrs;
    let uri = endpoint.uri().clone();
    let Some(host) = uri.host().map(|h| h.trim_matches(['[', ']'])) else {
        return Ok(endpoint);
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(endpoint);
    }
    let port = uri.port_u16().unwrap_or(80);
    let resolve = || {
        let mut last = None;
        for attempt in 1..=8u64 {
            match (host, port).to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(addr)) => return Ok(addr),
                Ok(None) => last = Some(format!("'{host}' has no address")),
                Err(e) => last = Some(format!("resolving '{host}': {e}")),
            }
            tracing::warn!("{} (attempt {attempt} of 8)", last.as_deref().unwrap_or(""));
            std::thread::sleep(std::time::Duration::from_millis(250 * attempt));
        }
        Err(last.unwrap_or_default())
    };
    // a blocking lookup: off the runtime's async work where it can be
    let addr = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(resolve)
        }
        _ => resolve(),
    }?;
    let config = ballista_core::utils::GrpcClientConfig::default();
    Ok(ballista_core::utils::create_grpc_client_endpoint(
        format!("http://{addr}"),
        Some(&config),
    )?)
}

/// Runs the executor until the process is stopped.
pub(crate) async fn run(o: ExecutorOptions) -> Result<()> {
    let cfg = executor_config(&o)?;
    tracing::info!(
        "floodsql {} executor {}: flight {}, grpc port {}, {} slots, scheduler {}:{}",
        version_tag(),
        cfg.executor_id,
        o.bind,
        o.grpc_port,
        cfg.vcores,
        o.scheduler_host,
        o.scheduler_port
    );
    start_executor_process(Arc::new(cfg))
        .await
        .map_err(|e| Error::Cluster {
            url: format!("scheduler {}:{}", o.scheduler_host, o.scheduler_port),
            message: format!("executor: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        for bad in ["", "x", "-1G", "0", "4Q", "G"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
