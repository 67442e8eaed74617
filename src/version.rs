//! floodsql's version handshake between client, scheduler and executors.
//!
//! Ballista only checks its own version. A floodsql process also has to agree
//! with its peers on floodsql's function set and plan encoding, so every
//! process carries a *version tag*: the package version plus a fingerprint of
//! the [function set](crate::functions) (names, signatures, return types) and
//! of the codec format. The tag travels
//! - in the session option `floodsql.version` (sent with every query and every
//!   task: the scheduler refuses a session, an executor refuses a task, whose
//!   tag is not its own), and
//! - in the header of every payload floodsql's codecs write (a plan node
//!   encoded by another build is refused when it is decoded).
//!
//! `FLOODSQL_VERSION_OVERRIDE` replaces the tag of a process (for tests that
//! need two processes of different versions from one build).

use std::sync::LazyLock;

/// Bumped whenever the layout of floodsql's codec payloads changes.
pub const CODEC_FORMAT: u32 = 8;

/// Environment variable that overrides this process's version tag (tests).
pub const OVERRIDE_ENV: &str = "FLOODSQL_VERSION_OVERRIDE";

/// This process's version tag, e.g. `0.1.0+fn.3f2a9c1d` (computed once: the
/// function set and the environment do not change while a process runs).
pub fn version_tag() -> &'static str {
    static TAG: LazyLock<String> = LazyLock::new(|| match std::env::var(OVERRIDE_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => tag_for(&crate::functions::describe()),
    });
    TAG.as_str()
}

/// The tag of a build whose function set is described by `functions`.
fn tag_for(functions: &[String]) -> String {
    let mut lines = functions.to_vec();
    lines.push(format!("codec:{CODEC_FORMAT}"));
    lines.sort();
    format!(
        "{}+fn.{:08x}",
        env!("CARGO_PKG_VERSION"),
        fnv1a(lines.join("\n").as_bytes())
    )
}

/// 32-bit FNV-1a: stable across processes and builds (unlike `std`'s hasher).
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for &b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Checks a peer's tag against ours; `what` says who refuses what, e.g.
/// "the scheduler refuses the client's session".
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
    fn fnv1a_matches_the_reference_vectors() {
        // from the FNV reference (draft-eastlake-fnv): 32-bit FNV-1a
        assert_eq!(fnv1a(b""), 0x811c9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn the_tag_follows_the_function_set_not_its_order() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = tag_for(&set(&["udaf:flood_max_extent:x", "udtf:flood_chunks"]));
        let b = tag_for(&set(&["udtf:flood_chunks", "udaf:flood_max_extent:x"]));
        let c = tag_for(&set(&["udaf:flood_max_extent:y", "udtf:flood_chunks"]));
        let d = tag_for(&set(&["udtf:flood_chunks"]));
        assert_eq!(a, b);
        assert_ne!(a, c, "a changed signature changes the tag");
        assert_ne!(a, d, "a removed function changes the tag");
        let (version, fp) = a.split_once("+fn.").unwrap();
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
        assert!(
            fp.len() == 8 && fp.chars().all(|c| c.is_ascii_hexdigit()),
            "{a}"
        );
    }

    #[test]
    fn peers_of_another_tag_are_refused_naming_both() {
        if std::env::var_os(OVERRIDE_ENV).is_none() {
            assert_eq!(version_tag(), tag_for(&crate::functions::describe()));
        }
        assert!(check_peer(version_tag(), "x").is_ok());
        let e = check_peer("0.0.0+fn.00000000", "the executor refuses the task")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("0.0.0+fn.00000000")
                && e.contains(version_tag())
                && e.contains("the executor refuses the task"),
            "{e}"
        );
    }
}
