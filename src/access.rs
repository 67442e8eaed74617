//! What a catalogue may make floodsql read: the read policy applied to every
//! asset location, at planning (the client) and again before each read (the
//! process that reads: the client, or an executor). A catalogue is untrusted
//! input, so it may name
//!
//! * local files only below the directory of a local static catalogue (after
//!   resolving `..` and symbolic links), and only regular files (no FIFOs,
//!   devices or directories);
//! * URLs only on the catalogue's own host (any port) or on a host the user
//!   allows (`floodsql.allowed_hosts`: `host`, `host:port`, or a bucket as
//!   `s3://bucket`, `gs://bucket`, `az://container`); redirects are followed
//!   only to hosts the same rule allows;
//! * nothing else: GDAL virtual paths (`/vsizip/`, `/vsicurl/`, ...) and other
//!   schemes are refused when hrefs are resolved (`stac::item`).
//!
//! `floodsql.allowed_paths` widens the local rule (directories whose files
//! may be read). The default allow-list holds EODC's asset host, where the GFM
//! catalogue's COGs live.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Refusal};

/// The default `floodsql.allowed_hosts`: where EODC's GFM assets are served.
pub(crate) const DEFAULT_ALLOWED_HOSTS: &str = "data.eodc.eu";

/// The read policy of one scan (plain data: it travels with the scan plan to
/// executors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReadPolicy {
    /// Directory of a local static catalogue (canonical).
    catalogue_dir: Option<PathBuf>,
    /// Host of a remote catalogue (lower case, without port).
    catalogue_host: Option<String>,
    /// Bucket of a catalogue on object storage (`s3://b`, lower case).
    #[serde(default)]
    catalogue_bucket: Option<String>,
    /// Hosts (`host` or `host:port`, lower case) and buckets (`s3://b`) the
    /// user allows.
    hosts: Vec<String>,
    /// Directories the user allows (canonical when they exist).
    paths: Vec<PathBuf>,
}

fn refusal(location: &str, rule: String) -> Error {
    Error::Refused(Refusal {
        location: crate::error::redact(location, location),
        rule: crate::error::redact(location, &rule),
    })
}

/// Splits a comma-separated option value into its non-empty entries.
pub(crate) fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl ReadPolicy {
    /// The policy for a catalogue at `source` (a path, or an http(s) URL),
    /// with the user's allowed hosts and directories.
    pub(crate) fn new(source: &str, hosts: &[String], paths: &[String]) -> Self {
        let (mut catalogue_dir, mut catalogue_host, mut catalogue_bucket) = (None, None, None);
        match url::Url::parse(source) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                catalogue_host = u.host_str().map(str::to_ascii_lowercase);
            }
            Ok(u)
                if matches!(
                    u.scheme(),
                    "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure"
                ) =>
            {
                // a catalogue on object storage: its own bucket
                catalogue_bucket = u
                    .host_str()
                    .map(|h| format!("{}://{}", u.scheme(), h).to_ascii_lowercase());
            }
            _ => {
                let p = Path::new(source.strip_prefix("file://").unwrap_or(source));
                let dir = if p.is_dir() {
                    p
                } else {
                    p.parent().unwrap_or(Path::new("/"))
                };
                catalogue_dir = Some(canonical(dir));
            }
        }
        ReadPolicy {
            catalogue_dir,
            catalogue_host,
            catalogue_bucket,
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            paths: paths.iter().map(|p| canonical(Path::new(p))).collect(),
        }
    }

    /// A policy that allows every location (tests, and plans built by hand).
    #[cfg(test)]
    pub(crate) fn allow_all() -> Self {
        ReadPolicy {
            catalogue_dir: Some(PathBuf::from("/")),
            hosts: vec!["*".into()],
            ..Default::default()
        }
    }

    /// Whether `location` (an absolute path or a URL, as `resolve_href`
    /// gives) may be read; `Err` says which rule refuses it.
    pub(crate) fn check(&self, location: &str) -> Result<(), String> {
        if location.starts_with('/') {
            return self.check_path(Path::new(location));
        }
        let u = url::Url::parse(location).map_err(|e| format!("'{location}': {e}"))?;
        self.check_url(&u)
    }

    /// [`ReadPolicy::check`] as floodsql's error: [`Error::Refused`] naming
    /// the location and the rule (the one mapping every reader uses).
    pub(crate) fn allow(&self, location: &str) -> Result<(), Error> {
        self.check(location).map_err(|rule| refusal(location, rule))
    }

    /// [`ReadPolicy::check_for_gdal`] as floodsql's error (see [`Self::allow`]).
    pub(crate) fn allow_for_gdal(&self, location: &str) -> Result<(), Error> {
        self.check_for_gdal(location)
            .map_err(|rule| refusal(location, rule))
    }

    /// The rule for GDAL's reader, which follows HTTP redirects without
    /// asking: a URL must be on a host the user allowed by name (the
    /// catalogue's own host is not enough, it could bounce the read).
    pub(crate) fn check_for_gdal(&self, location: &str) -> Result<(), String> {
        self.check(location)?;
        let Ok(u) = url::Url::parse(location) else {
            return Ok(());
        };
        if matches!(u.scheme(), "http" | "https") && !self.named(&u) {
            let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
            return Err(format!(
                "'{}': the gdal reader follows redirects unchecked, so it reads only hosts \
                 allowed by name (SET floodsql.allowed_hosts = '...,{host}'), not the \
                 catalogue's own",
                crate::error::redact_urls(location)
            ));
        }
        Ok(())
    }

    /// Whether the user's allow-list names `u`'s host (`host` for any port,
    /// `host:port`, or `*`).
    fn named(&self, u: &url::Url) -> bool {
        let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
        let with_port = u.port().map(|p| format!("{host}:{p}"));
        self.hosts
            .iter()
            .any(|h| h == "*" || *h == host || Some(h) == with_port.as_ref())
    }

    /// The URL rule (also applied to every redirect).
    pub(crate) fn check_url(&self, u: &url::Url) -> Result<(), String> {
        if self.hosts.iter().any(|h| h == "*") {
            return Ok(());
        }
        let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
        let shown = crate::error::redact_urls(u.as_str());
        match u.scheme() {
            "http" | "https" => {
                if self.catalogue_host.as_deref() == Some(host.as_str()) || self.named(u) {
                    return Ok(());
                }
                let with_port = match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.clone(),
                };
                let own = match &self.catalogue_host {
                    Some(c) => format!("the catalogue's host '{c}' and "),
                    None => String::new(),
                };
                Err(format!(
                    "'{shown}' is on host '{with_port}', outside {own}the allowed hosts [{}] \
                     (add it with SET floodsql.allowed_hosts = '...,{with_port}')",
                    self.hosts.join(", ")
                ))
            }
            scheme => {
                let bucket = format!("{scheme}://{host}");
                if self.hosts.contains(&bucket)
                    || self.catalogue_bucket.as_deref() == Some(bucket.as_str())
                {
                    return Ok(());
                }
                Err(format!(
                    "'{shown}' is in bucket '{bucket}', which is not in the allowed hosts [{}] \
                     (add it with SET floodsql.allowed_hosts = '...,{bucket}')",
                    self.hosts.join(", ")
                ))
            }
        }
    }

    /// The local-file rule: below the catalogue's directory or an allowed
    /// one, after resolving links, and a regular file.
    fn check_path(&self, p: &Path) -> Result<(), String> {
        let real = canonical(p);
        let inside = |d: &PathBuf| real.starts_with(d);
        if !(self.catalogue_dir.iter().any(inside) || self.paths.iter().any(inside)) {
            let own = match &self.catalogue_dir {
                Some(d) => format!("the catalogue's directory '{}'", d.display()),
                None => "a local static catalogue's directory (this catalogue is remote)".into(),
            };
            return Err(format!(
                "local file '{}' is outside {own} and the allowed paths \
                 (add a directory with SET floodsql.allowed_paths = '...')",
                p.display()
            ));
        }
        match std::fs::metadata(&real) {
            // missing files are reported by the read, with the item
            Err(_) => Ok(()),
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("'{}' is not a regular file", p.display())),
        }
    }
}

/// `p` with links resolved when it exists. When it does not (the read will
/// fail anyway), `..` are resolved lexically, then the longest existing
/// ancestor is resolved and the rest appended.
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let mut lexical = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            c => lexical.push(c.as_os_str()),
        }
    }
    let mut tail: Vec<std::ffi::OsString> = Vec::new();
    let mut cur = lexical.as_path();
    loop {
        if let Ok(mut out) = std::fs::canonicalize(cur) {
            out.extend(tail.iter().rev());
            return out;
        }
        match (cur.file_name(), cur.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name.to_os_string());
                cur = parent;
            }
            _ => return lexical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_catalogue_reads_only_below_its_directory() {
        let d = std::env::temp_dir().join(format!("floodsql-access-{}", std::process::id()));
        let cogs = d.join("cat/cogs");
        std::fs::create_dir_all(&cogs).unwrap();
        std::fs::write(cogs.join("a.tif"), b"x").unwrap();
        std::fs::write(d.join("outside.tif"), b"x").unwrap();
        std::os::unix::fs::symlink(d.join("outside.tif"), cogs.join("link.tif")).unwrap();
        let items = d.join("cat/items.json");
        let p = ReadPolicy::new(items.to_str().unwrap(), &[], &[]);
        let ok = |s: &Path| p.check(s.to_str().unwrap());
        assert!(ok(&cogs.join("a.tif")).is_ok());
        assert!(
            ok(&cogs.join("missing.tif")).is_ok(),
            "missing: the read reports it"
        );
        for bad in [
            d.join("outside.tif"),
            cogs.join("link.tif"),
            cogs.join("../../outside.tif"),
            cogs.join("nope/../../../outside.tif"),
            PathBuf::from("/etc/passwd"),
        ] {
            let e = ok(&bad).unwrap_err();
            assert!(e.contains("outside the catalogue's directory"), "{e}");
        }
        assert!(ok(&cogs).unwrap_err().contains("not a regular file"));
        assert!(p.check("http://127.0.0.1:9/a.tif").is_err());
        // an allowed directory widens the rule
        let p = ReadPolicy::new(items.to_str().unwrap(), &[], &[d.display().to_string()]);
        assert!(p.check(d.join("outside.tif").to_str().unwrap()).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn remote_catalogue_reads_its_host_and_allowed_hosts() {
        let hosts = list("data.eodc.eu, 127.0.0.5:8080 ,s3://bucket,");
        assert_eq!(hosts.len(), 3);
        let p = ReadPolicy::new("http://127.0.0.1:8000/api", &hosts, &[]);
        for ok in [
            "http://127.0.0.1:9999/a.tif",
            "https://DATA.eodc.eu/x/a.tif",
            "http://127.0.0.5:8080/a.tif",
            "s3://bucket/k/a.tif",
        ] {
            assert!(p.check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.3/secret.tif",
            "http://127.0.0.5:8081/a.tif",
            "http://169.254.169.254/latest/meta-data",
            "s3://other/a.tif",
            "gs://bucket/a.tif",
            "/etc/passwd",
        ] {
            assert!(p.check(bad).is_err(), "{bad}");
        }
        // GDAL follows redirects: it gets named hosts only
        assert!(p.check_for_gdal("http://127.0.0.1:9999/a.tif").is_err());
        assert!(p.check_for_gdal("https://data.eodc.eu/a.tif").is_ok());
        let e = p.check("http://u:secret@10.0.0.1/a.tif").unwrap_err();
        assert!(!e.contains("secret") && e.contains("10.0.0.1"), "{e}");
    }
}
