//! `floodsql scheduler` and `floodsql executor`: the cluster roles, and the
//! `--cluster df://HOST:PORT` switch shared by `extent` and `sql`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use datafusion::execution::context::SessionContext;

use crate::cluster::executor::{parse_bytes, ExecutorOptions};
use crate::cluster::scheduler::SchedulerOptions;
use crate::cluster::{init_logging, parse_host_port};

#[derive(Debug, Args, Clone)]
pub(crate) struct SchedulerArgs {
    /// Address to listen on (gRPC, REST API /api/…, /healthz).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub(crate) bind: SocketAddr,
    /// Host name executors and clients reach this scheduler by (default: the bind IP).
    #[arg(long)]
    pub(crate) external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor is lost and its tasks re-run
    /// (checked every sixth of it: a lost executor is found within 35 s by default).
    #[arg(long, default_value_t = 30)]
    pub(crate) executor_timeout: u64,
    /// Serve result fetches through this scheduler's port (Ballista's embedded
    /// Arrow Flight proxy), for clients that cannot reach the executors
    /// themselves: a compose network, a Kubernetes cluster behind a port-forward.
    #[arg(long)]
    pub(crate) flight_proxy: bool,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct ExecutorArgs {
    /// Scheduler address, HOST:PORT.
    #[arg(long)]
    pub(crate) scheduler: String,
    /// Arrow Flight address (shuffle and result fetches).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(crate) bind: SocketAddr,
    /// gRPC port (task launches from the scheduler), on the bind IP.
    #[arg(long, default_value_t = 50052)]
    pub(crate) grpc_port: u16,
    /// Host name the scheduler, other executors and clients reach this executor by.
    #[arg(long)]
    pub(crate) external_host: Option<String>,
    /// Concurrent tasks (default: number of cores).
    #[arg(long, default_value_t = 0)]
    pub(crate) slots: usize,
    /// Memory for all tasks, e.g. 4G (default: Ballista's share of host memory).
    #[arg(long)]
    pub(crate) memory_limit: Option<String>,
    /// Directory for shuffle files (default: a temporary directory).
    #[arg(long)]
    pub(crate) work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler (keep below its --executor-timeout).
    #[arg(long, default_value_t = 5)]
    pub(crate) heartbeat_interval: u64,
}

pub(crate) fn run_scheduler(a: SchedulerArgs) -> anyhow::Result<()> {
    init_logging();
    let rt = super::runtime()?;
    rt.block_on(crate::cluster::scheduler::run(SchedulerOptions {
        bind: a.bind,
        external_host: a.external_host,
        executor_timeout: Duration::from_secs(a.executor_timeout),
        flight_proxy: a.flight_proxy,
    }))?;
    Ok(())
}

pub(crate) fn run_executor(a: ExecutorArgs) -> anyhow::Result<()> {
    let (scheduler_host, scheduler_port) = parse_host_port("scheduler address", &a.scheduler)?;
    let memory_limit = a.memory_limit.as_deref().map(parse_bytes).transpose()?;
    if a.grpc_port == a.bind.port() && a.grpc_port != 0 {
        anyhow::bail!(
            "--grpc-port {} is the port of --bind {}: an executor needs two ports",
            a.grpc_port,
            a.bind
        );
    }
    if let Some(d) = &a.work_dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating work dir '{d}'"))?;
    }
    init_logging();
    let rt = super::runtime()?;
    rt.block_on(crate::cluster::executor::run(ExecutorOptions {
        scheduler_host,
        scheduler_port,
        bind: a.bind,
        grpc_port: a.grpc_port,
        external_host: a.external_host,
        slots: a.slots,
        memory_limit,
        work_dir: a.work_dir,
        heartbeat: Duration::from_secs(a.heartbeat_interval),
    }))?;
    Ok(())
}

/// A local session, or one connected to `--cluster df://HOST:PORT`, with
/// the options the environment sets (`pipeline::ENV_OPTIONS`) and `--set
/// KEY=VALUE` applied.
pub(crate) async fn context(
    cluster: Option<&str>,
    partitions: Option<usize>,
    sets: &[String],
) -> anyhow::Result<SessionContext> {
    let ctx = crate::pipeline::connect(cluster, partitions).await?;
    for kv in sets {
        let Some((k, v)) = kv.split_once('=') else {
            anyhow::bail!("--set expects KEY=VALUE, got '{kv}'");
        };
        crate::pipeline::set_option(&ctx, k, v)?;
    }
    Ok(ctx)
}

/// Changes floodsql's options of `ctx` through its session config (typed,
/// as `SET` would; never by generating SQL).
pub(crate) fn set_options(
    ctx: &SessionContext,
    f: impl FnOnce(&mut crate::options::FloodsqlOptions),
) -> anyhow::Result<()> {
    let state = ctx.state_ref();
    let mut state = state.write();
    let opts = crate::options::FloodsqlOptions::of_config_mut(state.config_mut().options_mut())
        .context("the session has no floodsql options")?;
    f(opts);
    Ok(())
}
