//! State that travels with a query rather than living in the process, the
//! way DataFusion passes per-query context: as `SessionConfig` extensions,
//! read back by the table providers (at planning) and by the scan (through
//! its `TaskContext`, at execution).
//!
//! - [`QueryProgress`]: where a query reports search and scan progress (the
//!   CLI's bars; hidden when absent). Two queries in one process each carry
//!   their own.
//! - [`Cancel`]: a query's cancellation (SIGINT/SIGTERM in the CLI): the flag
//!   the writers check before an output becomes final, and the cluster job to
//!   cancel on the scheduler.
//! - [`ProcessLabel`]: names the process in scan logs ("executor
//!   127.0.0.1:50051"); set by the executor role's config producer, which
//!   Ballista calls for every task.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::prelude::SessionConfig;
use indicatif::ProgressBar;

/// Progress sinks of one query (hidden bars by default).
#[derive(Clone)]
pub struct QueryProgress {
    /// Items found by STAC searches.
    pub search: ProgressBar,
    /// (time slice, chunk) rows scanned locally; tasks done on a cluster.
    pub scan: ProgressBar,
    /// The query's cancellation.
    pub cancel: Cancel,
    /// Where one-line notes go (the plan's estimate before a run reads);
    /// dropped when `None`.
    pub notes: Option<Notes>,
}

/// A sink for one-line notes to the user (the CLI: standard error).
pub(crate) type Notes = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for QueryProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryProgress")
            .field("search", &self.search)
            .field("scan", &self.scan)
            .field("cancel", &self.cancel)
            .field("notes", &self.notes.is_some())
            .finish()
    }
}

impl QueryProgress {
    /// Tells the user `line` (when the query has a notes sink).
    pub fn note(&self, line: &str) {
        if let Some(n) = &self.notes {
            self.search.suspend(|| n(line));
        }
    }

    /// Tells the user the scan's plan: the search is over, so its spinner
    /// goes (its count of items found would contradict the plan's count of
    /// items on the grid).
    pub fn plan(&self, line: &str) {
        tracing::info!("plan: {line}");
        self.search.finish_and_clear();
        self.note(&format!("plan: {line}"));
    }
}

impl Default for QueryProgress {
    fn default() -> Self {
        Self {
            search: ProgressBar::hidden(),
            scan: ProgressBar::hidden(),
            cancel: Cancel::default(),
            notes: None,
        }
    }
}

/// A query's cancellation, shared by whoever stops it and whoever must
/// notice: the writers (which remove this run's files instead of finishing)
/// and the cluster client (which records its job, so that it can be
/// cancelled on the scheduler).
///
/// Cancelling and committing outputs exclude each other: a writer's commit
/// ends by sealing the run ([`Cancel::seal`]), and a cancel that comes after
/// that is refused ([`Cancel::cancel`] returns false: the outputs are
/// already in place, the run is finishing).
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    /// [`RUNNING`], [`CANCELLED`] or [`SEALED`].
    state: Arc<AtomicU8>,
    /// (scheduler REST URL, job id) of the query's cluster job.
    job: Arc<Mutex<Option<(String, String)>>>,
}

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const SEALED: u8 = 2;

impl Cancel {
    /// Marks the query cancelled; false when too late: its outputs were
    /// already committed.
    pub fn cancel(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, CANCELLED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(now) => now == CANCELLED,
        }
    }

    /// Whether the query was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CANCELLED
    }

    /// The last step of committing outputs: from now on the run cannot be
    /// cancelled. False when it already was (the commit must be undone).
    pub(crate) fn seal(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, SEALED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(now) => now == SEALED,
        }
    }

    /// Records the query's cluster job.
    pub(crate) fn set_job(&self, rest: &str, id: &str) {
        if let Ok(mut j) = self.job.lock() {
            *j = Some((rest.to_string(), id.to_string()));
        }
    }

    /// The query's cluster job: (scheduler REST URL, job id).
    pub fn job(&self) -> Option<(String, String)> {
        self.job.lock().ok().and_then(|j| j.clone())
    }
}

impl QueryProgress {
    /// The progress a session config carries (hidden bars when none).
    pub(crate) fn of(config: &SessionConfig) -> Arc<QueryProgress> {
        config.get_extension::<QueryProgress>().unwrap_or_default()
    }
}

/// The name of the process a task runs in, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessLabel(pub(crate) String);

impl ProcessLabel {
    /// `"<label>: "`, or `""` when the config carries no label.
    pub(crate) fn prefix(config: &SessionConfig) -> String {
        config
            .get_extension::<ProcessLabel>()
            .map(|l| format!("{}: ", l.0))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sessions_carry_their_own_progress() {
        let (a, b) = (QueryProgress::default(), QueryProgress::default());
        let ca = SessionConfig::new().with_extension(Arc::new(a.clone()));
        let cb = SessionConfig::new().with_extension(Arc::new(b.clone()));
        a.scan.set_length(10);
        QueryProgress::of(&ca).scan.inc(3);
        QueryProgress::of(&cb).scan.inc(1);
        assert_eq!(a.scan.position(), 3);
        assert_eq!(b.scan.position(), 1);
        // no extension: a hidden bar, nothing shared
        QueryProgress::of(&SessionConfig::new()).scan.inc(5);
        assert_eq!(a.scan.position(), 3);
        assert_eq!(ProcessLabel::prefix(&SessionConfig::new()), "");
        let l = SessionConfig::new().with_extension(Arc::new(ProcessLabel("executor x:1".into())));
        assert_eq!(ProcessLabel::prefix(&l), "executor x:1: ");
    }
}
