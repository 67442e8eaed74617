//! The client side of `--cluster df://HOST:PORT`: a session whose queries run
//! on a Ballista cluster, and a progress reporter fed by the scheduler's REST
//! API (tasks done / total of the running job).

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::execution_plans::DistributedQueryExec;
use datafusion::execution::context::SessionContext;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::protobuf::LogicalPlanNode;
use indicatif::ProgressBar;

use crate::context::Cancel;
use crate::error::{chain_message, Error, Result};
use crate::session::{cluster_session_config, register_all};

/// A parsed `df://HOST:PORT` cluster address; a cluster session carries it
/// as a `SessionConfig` extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl ClusterUrl {
    /// Parses `df://HOST:PORT`.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let bad = |m: &str| Error::invalid("cluster URL", s, m);
        let rest = s
            .strip_prefix("df://")
            .ok_or_else(|| bad("expected df://HOST:PORT"))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("expected df://HOST:PORT, without a path"));
        }
        let (host, port) = super::parse_host_port("cluster URL", rest)
            .map_err(|_| bad("expected df://HOST:PORT with a port number"))?;
        Ok(Self { host, port })
    }

    /// `df://HOST:PORT`.
    pub(crate) fn df(&self) -> String {
        format!("df://{}:{}", self.host, self.port)
    }

    /// The scheduler's REST API.
    pub(crate) fn rest(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// Checks that the scheduler answers its health check (`/healthz`).
pub(crate) async fn check_reachable(url: &ClusterUrl) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
    let target = format!("{}/healthz", url.rest());
    let failed = |message: String| Error::Cluster {
        url: url.df(),
        message,
    };
    match client.get(&target).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(failed(format!(
            "the scheduler is not healthy: /healthz answered {}",
            r.status()
        ))),
        Err(e) => Err(failed(format!(
            "cannot reach the floodsql scheduler: {}",
            chain_message(&e)
        ))),
    }
}

/// A session whose queries run on the cluster at `url`; the same functions,
/// table functions, options and codecs as a local one.
pub(crate) async fn connect(url: &ClusterUrl, partitions: Option<usize>) -> Result<SessionContext> {
    check_reachable(url).await?;
    let mut cfg = cluster_session_config().with_extension(Arc::new(url.clone()));
    if let Some(n) = partitions {
        cfg = cfg.with_target_partitions(n.max(1));
    }
    let state = SessionStateBuilder::new()
        .with_config(cfg)
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(&url.df(), state)
        .await
        .map_err(|e| Error::Cluster {
            url: url.df(),
            message: tidy_cluster_message(&e.to_string()),
        })?;
    // Ballista's upgrade replaces the function set with its defaults
    register_all(&ctx).map_err(|e| Error::Internal(format!("registering functions: {e}")))?;
    Ok(ctx)
}

/// Follows the job a distributed plan submits and reports its tasks done /
/// total on `progress`, until dropped.
pub(crate) struct JobProgress {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for JobProgress {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl JobProgress {
    /// `None` when `plan` is not a distributed query.
    pub(crate) fn follow(
        plan: &Arc<dyn ExecutionPlan>,
        url: &ClusterUrl,
        job_name: &str,
        progress: &ProgressBar,
        cancel: &Cancel,
    ) -> Option<Self> {
        let any: &dyn std::any::Any = plan.as_ref();
        let exec = any
            .downcast_ref::<DistributedQueryExec<LogicalPlanNode>>()?
            .clone();
        let (rest, pb, cancel) = (url.rest(), progress.clone(), cancel.clone());
        let name = job_name.to_string();
        let handle = tokio::spawn(async move {
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
            {
                Ok(c) => c,
                Err(_) => return,
            };
            let mut announced = false;
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                // Ballista knows the id once the job is accepted (pull mode)
                // or only at its end (push mode): else find it by its name
                let job = match exec.job_id() {
                    Some(j) => j.to_string(),
                    None => match find_job(&client, &rest, &name).await {
                        Some(j) => j,
                        None => continue,
                    },
                };
                if !announced {
                    cancel.set_job(&rest, &job.to_string());
                    tracing::info!("job {job} submitted");
                    pb.set_message(format!("job {job}"));
                    announced = true;
                }
                let url = format!("{rest}/api/job/{job}/stages");
                let Ok(resp) = client.get(&url).send().await else {
                    continue;
                };
                let Ok(v) = resp.json::<serde_json::Value>().await else {
                    continue;
                };
                if let Some((done, total)) = count_tasks(&v) {
                    pb.set_length(total as u64);
                    pb.set_position(done as u64);
                }
            }
        });
        Some(Self { handle })
    }
}

/// The id of the job named `name` on the scheduler (REST API at `rest`).
async fn find_job(client: &reqwest::Client, rest: &str, name: &str) -> Option<String> {
    let jobs: serde_json::Value = client
        .get(format!("{rest}/api/jobs"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    jobs.as_array()?
        .iter()
        .find(|j| j.get("job_name").and_then(|n| n.as_str()) == Some(name))?
        .get("job_id")?
        .as_str()
        .map(str::to_string)
}

/// Asks the scheduler (its REST API at `rest`) to cancel job `id`: the
/// client of a stopped query does not leave its job running. A job that
/// has already ended (the scheduler answers 409 Conflict: it failed or
/// completed, e.g. between the interrupt and this call) is left as it is.
pub(crate) async fn cancel_job(rest: &str, id: &str) -> Result<()> {
    let url = format!("{rest}/api/job/{id}");
    let failed = |m: String| Error::Cluster {
        url: rest.to_string(),
        message: format!("cancelling job {id}: {m}"),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let resp = client
        .patch(&url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if resp.status().is_success() {
        Ok(())
    } else if resp.status() == reqwest::StatusCode::CONFLICT {
        let why = resp.text().await.unwrap_or_default();
        tracing::debug!("job {id} not cancelled, it has ended: {why}");
        Ok(())
    } else {
        Err(failed(format!("the scheduler answered {}", resp.status())))
    }
}

/// (successful, total) tasks over the stages of a `/api/job/{id}/stages` answer.
fn count_tasks(v: &serde_json::Value) -> Option<(usize, usize)> {
    let stages = v.get("stages")?.as_array()?;
    let (mut done, mut total) = (0, 0);
    for s in stages {
        let tasks = s.get("tasks")?.as_array()?;
        total += tasks.len();
        done += tasks
            .iter()
            .filter(|t| t.get("status").and_then(|s| s.as_str()) == Some("Successful"))
            .count();
    }
    Some((done, total))
}

/// A failed cluster query as an execution error: Ballista wraps the cause
/// in several layers (a gRPC status in Debug form inside DataFusion errors);
/// keep the cause, say where it ran.
pub(crate) fn cluster_error(
    e: datafusion::error::DataFusionError,
    url: &ClusterUrl,
) -> datafusion::error::DataFusionError {
    Error::Cluster {
        url: url.df(),
        message: format!("query failed: {}", tidy_cluster_message(&e.to_string())),
    }
    .into()
}

/// The `message: "…"` of a gRPC status, unescaped; the text otherwise.
/// Ballista hands its errors over as text, so text is all there is to read.
fn tidy_cluster_message(text: &str) -> String {
    let Some(start) = text.find("message: \"") else {
        return text.trim().to_string();
    };
    let body = &text[start + "message: \"".len()..];
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push(' '),
                Some(o) => out.push(o),
                None => break,
            },
            '"' => break,
            c => out.push(c),
        }
    }
    let mut opened = 0;
    for noise in [
        "Failed to create SessionContext: ",
        "DataFusionError(",
        "Plan(\"",
        "Execution(\"",
        // floodsql's own errors cross as External (their Debug: the message)
        "External(\"",
    ] {
        if out.contains(noise) {
            opened += noise.matches('(').count();
            out = out.replace(noise, "");
        }
    }
    // the wrappers' closing parentheses, then the quote, not the message's own
    let mut t = out.trim_end();
    for _ in 0..opened {
        t = t.strip_suffix(')').unwrap_or(t);
    }
    t.strip_suffix('"').unwrap_or(t).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_messages_lose_their_wrapping() {
        let t = r#"Execution error: Status { code: Internal, message: "Failed to create SessionContext: DataFusionError(Plan(\"floodsql version mismatch: peer is floodsql 1, this process is floodsql 2\"))", metadata: MetadataMap { } }"#;
        assert_eq!(
            tidy_cluster_message(t),
            "floodsql version mismatch: peer is floodsql 1, this process is floodsql 2"
        );
        assert_eq!(tidy_cluster_message(" plain "), "plain");
        // floodsql's errors cross DataFusion as External: their Debug is the message
        let e = datafusion::error::DataFusionError::from(crate::Error::VersionMismatch {
            what: "the scheduler refuses".into(),
            peer: "1".into(),
            ours: "2".into(),
        });
        let status = tonic_like(&format!("Failed to create SessionContext: {e:?}"));
        assert_eq!(
            tidy_cluster_message(&status),
            "floodsql version mismatch: the scheduler refuses: peer is floodsql 1, this process is floodsql 2 (run the same floodsql build on client, scheduler and executors)"
        );
    }

    /// How a gRPC status prints a message (Debug-escaped, as tonic does).
    fn tonic_like(message: &str) -> String {
        format!("Execution error: Status {{ code: Internal, message: {message:?}, metadata: MetadataMap {{ }} }}")
    }

    #[test]
    fn cluster_urls() {
        let u = ClusterUrl::parse("df://127.0.0.1:50050").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 50050));
        assert_eq!(u.rest(), "http://127.0.0.1:50050");
        for bad in [
            "127.0.0.1:50050",
            "df://",
            "df://host",
            "http://h:1",
            "df://h:1/x",
        ] {
            assert!(ClusterUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_counts() {
        let v = serde_json::json!({"stages": [
            {"tasks": [{"status": "Successful"}, {"status": "Running"}, null]},
            {"tasks": [{"status": {"Failed": {"reason": "x", "error": "y"}}}]}
        ]});
        assert_eq!(count_tasks(&v), Some((1, 4)));
    }
}
