//! floodsql's version handshake between client, scheduler and executors.
//!
//! Ballista only checks its own version. A floodsql process also has to agree
//! with its peers on floodsql's function set and plan encoding, so every
//! process carries a *version tag*: the package version plus a fingerprint of
//! the registered functions (names, signatures, return types) and of the
//! codec format. The tag travels
//! - in the session option `floodsql.version` (sent with every query and every
//!   task: the scheduler refuses a session, an executor refuses a task, whose
//!   tag is not its own), and
//! - in the header of every payload floodsql's codecs write (a plan node
//!   encoded by another build is refused when it is decoded).
//!
//! `FLOODSQL_VERSION_OVERRIDE` replaces the tag of a process (for tests that
//! need two processes of different versions from one build).

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;

/// Bumped whenever the layout of floodsql's codec payloads changes.
pub const CODEC_FORMAT: u32 = 1;

/// Environment variable that overrides this process's version tag (tests).
pub const OVERRIDE_ENV: &str = "FLOODSQL_VERSION_OVERRIDE";

/// This process's version tag, e.g. `0.1.0+fn.3f2a9c1d`.
pub fn version_tag() -> &'static str {
    static TAG: LazyLock<String> = LazyLock::new(|| match std::env::var(OVERRIDE_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => format!(
            "{}+fn.{:08x}",
            env!("CARGO_PKG_VERSION"),
            function_set_fingerprint()
        ),
    });
    TAG.as_str()
}

/// FNV-1a over the function set and the codec format: stable across
/// processes and builds of the same source (unlike `std`'s hasher).
pub fn function_set_fingerprint() -> u32 {
    let probe = [DataType::LargeBinary];
    let udfs = floodsql_udfs::all_udfs().into_iter().map(|f| {
        let ret = f.return_type(&probe).ok();
        ("udf", f.name().to_string(), f.signature().clone(), ret)
    });
    let udafs = floodsql_udfs::all_udafs().into_iter().map(|f| {
        let ret = f.return_type(&probe).ok();
        ("udaf", f.name().to_string(), f.signature().clone(), ret)
    });
    let mut desc: Vec<String> = udfs
        .chain(udafs)
        .map(|(kind, name, sig, ret)| format!("{kind}:{name}:{:?}:{ret:?}", sig.type_signature))
        .collect();
    desc.push("udtf:stac_items".into());
    desc.push("udtf:flood_chunks".into());
    desc.push(format!("codec:{CODEC_FORMAT}"));
    desc.sort();
    let mut h: u32 = 0x811c9dc5;
    for b in desc.join("\n").bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Checks a peer's tag against ours; `what` says who refuses what, e.g.
/// "scheduler refuses the client's session".
pub fn check_peer(peer: &str, what: &str) -> crate::Result<()> {
    let ours = version_tag();
    if peer == ours {
        Ok(())
    } else {
        Err(crate::Error::VersionMismatch {
            what: what.to_string(),
            peer: peer.to_string(),
            ours: ours.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_stable_and_checked() {
        assert_eq!(version_tag(), version_tag());
        assert!(check_peer(version_tag(), "x").is_ok());
        let e = check_peer("0.0.0+fn.00000000", "executor refuses the task")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("0.0.0+fn.00000000") && e.contains(version_tag()),
            "{e}"
        );
    }
}
