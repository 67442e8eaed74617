//! Distributed execution on an Apache Ballista cluster.
//!
//! One binary, three roles, all built from the one session factory
//! ([`crate::session`]): the [`scheduler`], the [`executor`]s, and the
//! [`client`] side of `floodsql extent|sql --cluster df://HOST:PORT`. The
//! codecs they share live in [`crate::codec`].
//!
//! The client resolves every `flood_chunks(...)` scan (STAC search + scan
//! plan) before it sends the logical plan, so the scheduler never talks to the
//! catalogue and the client knows the output grid; the scheduler plans the
//! query into stages; executors read COG windows, fuse slices and aggregate
//! per chunk; only aggregated chunk states cross the shuffle; the client
//! fetches the final aggregated chunks and rasterises them locally.

pub(crate) mod client;
pub(crate) mod executor;
pub(crate) mod scheduler;

/// Logs to stdout at `info` (`RUST_LOG` overrides), for the server roles.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .try_init();
}

/// Parses `HOST:PORT` (the host may be a name).
pub(crate) fn parse_host_port(what: &'static str, s: &str) -> crate::Result<(String, u16)> {
    let bad = |m: &str| crate::Error::invalid(what, s, m);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad("port must be a number 0-65535"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(
            parse_host_port("x", "127.0.0.1:50050").unwrap(),
            ("127.0.0.1".to_string(), 50050)
        );
        assert_eq!(
            parse_host_port("x", "scheduler:1").unwrap(),
            ("scheduler".to_string(), 1)
        );
        for bad in ["", "host", ":1", "h:99999", "h:x"] {
            assert!(parse_host_port("x", bad).is_err(), "{bad}");
        }
    }
}
