//! A static file server for the remote benchmarks (`benches/remote.sh`):
//! HTTP Range requests (one range per request, as object stores answer),
//! a fixed delay added to every response, and request counts at
//! `GET /__stats` — what `tests/py/range_server.py` does for the tests,
//! without its cost. The Python server runs on the benchmark's own two
//! cores and spends about 0.2 s of CPU per 600 requests and 50 MB: a real
//! object store serves from machines of its own, so the benchmarks measure
//! latency against this one (and report the Python server's series too).
//!
//!     range_server ROOT PORT [DELAY_MS]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use std::os::unix::fs::FileExt;

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    range_requests: AtomicU64,
    bytes: AtomicU64,
}

struct Server {
    root: PathBuf,
    delay: Duration,
    stats: Stats,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` of a file of `size` bytes, as an
/// inclusive range; `None` when unsatisfiable or malformed.
fn range(spec: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = spec.trim().strip_prefix("bytes=")?.split_once('-')?;
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let start: u64 = a.parse().ok()?;
            let end = if b.is_empty() {
                size.checked_sub(1)?
            } else {
                b.parse::<u64>().ok()?
            };
            (start, end.min(size.checked_sub(1)?))
        }
        (true, false) => (size.saturating_sub(b.parse().ok()?), size.checked_sub(1)?),
        (true, true) => return None,
    };
    (start < size && start <= end).then_some((start, end))
}

async fn stats(State(s): State<Arc<Server>>) -> impl IntoResponse {
    tokio::time::sleep(s.delay).await;
    let body = format!(
        r#"{{"requests": {}, "range_requests": {}, "bytes": {}}}"#,
        s.stats.requests.load(Ordering::Relaxed),
        s.stats.range_requests.load(Ordering::Relaxed),
        s.stats.bytes.load(Ordering::Relaxed)
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn serve(
    State(s): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    tokio::time::sleep(s.delay).await;
    s.stats.requests.fetch_add(1, Ordering::Relaxed);
    let rel = uri.path().trim_start_matches('/');
    let path = s.root.join(rel);
    // no way out of the root
    let inside = std::fs::canonicalize(&path)
        .ok()
        .filter(|p| p.starts_with(&s.root) && p.is_file());
    let Some(path) = inside else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    // plain blocking reads: the files are small and in the page cache, and
    // each of tokio::fs's calls is a hop to its blocking pool and back (4 per
    // request), CPU taken from the benchmark's two cores
    let Ok(file) = std::fs::File::open(&path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let size = match file.metadata() {
        Ok(m) => m.len(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match asked {
        Some(spec) => match range(spec, size) {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
            None => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response()
            }
        },
        None => (StatusCode::OK, 0, size),
    };
    let mut body = vec![0u8; (end - start) as usize];
    if method != Method::HEAD && file.read_exact_at(&mut body, start).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if asked.is_some() {
        s.stats.range_requests.fetch_add(1, Ordering::Relaxed);
    }
    s.stats
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut r = Response::builder()
        .status(status)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "image/tiff")
        .header(header::CONTENT_LENGTH, end - start);
    if status == StatusCode::PARTIAL_CONTENT {
        r = r.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    r.body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [root, port, rest @ ..] = args.as_slice() else {
        return Err("usage: range_server ROOT PORT [DELAY_MS]".into());
    };
    let delay_ms: f64 = rest.first().map_or(Ok(0.0), |d| d.parse())?;
    let server = Arc::new(Server {
        root: std::fs::canonicalize(root)?,
        delay: Duration::from_secs_f64(delay_ms / 1000.0),
        stats: Stats::default(),
    });
    let app = Router::new()
        .route("/__stats", get(stats))
        .fallback(serve)
        .with_state(server);
    // TCP_NODELAY on every connection, as object stores and nginx set it
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, app).await?;
    Ok(())
}
