//! Temp file + rename, so that a failed run leaves no (partial) output file.

use std::path::{Path, PathBuf};

#[cfg(test)]
use crate::error::io_err;
use crate::error::{Error, Result};

/// One file written as a one-output transaction
/// ([`crate::output::transaction`]): `write(tmp)` writes a temp file in the
/// target's directory, renamed onto `target` when complete; on error nothing
/// changes.
pub(crate) fn write_atomic(target: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut tx = crate::output::transaction::OutputTransaction::new(
        [target],
        crate::context::Cancel::default(),
    )?;
    tx.stage(target, write)?;
    tx.commit()
}

/// A temp path beside `target` (`.NAME.tmp-PID` + `suffix`), in a directory
/// that exists.
pub(crate) fn temp_path(target: &Path, suffix: &str) -> Result<PathBuf> {
    check_dir(target)?;
    let name = target
        .file_name()
        .ok_or_else(|| {
            Error::invalid(
                "output path",
                target.display().to_string(),
                "not a file path",
            )
        })?
        .to_string_lossy()
        .to_string();
    Ok(dir_of(target).join(format!(".{name}.tmp-{}{suffix}", std::process::id())))
}

/// Removes the temp files a run that no longer exists left beside `target`
/// (killed, crashed): `.NAME.tmp-PID…` whose process is gone. Temp files of
/// runs still going are kept.
pub(crate) fn remove_stale_temps(target: &Path) {
    let Some(name) = target.file_name() else {
        return;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir_of(target)) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let gone = !pid.is_empty() && !Path::new("/proc").join(&pid).exists();
        if gone && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn dir_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fails unless the directory `target` would be written to exists.
pub(crate) fn check_dir(target: &Path) -> Result<()> {
    let dir = dir_of(target);
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Error::invalid(
            "output directory",
            dir.display().to_string(),
            "does not exist",
        ))
    }
}

/// Whether two paths name the same file: the same canonical directory and
/// file name (the file itself need not exist yet).
pub(crate) fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let key = |p: &std::path::Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (
            std::fs::canonicalize(&dir).unwrap_or(dir),
            p.file_name().map(|n| n.to_os_string()),
        )
    };
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => key(a) == key(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_by_rename_and_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        write_atomic(&target, |tmp| {
            assert_ne!(tmp, target.as_path());
            assert_eq!(tmp.parent(), target.parent());
            std::fs::write(tmp, b"ok").map_err(io_err(tmp))
        })
        .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"ok");
        // a failing writer: the old file stays, no temp file is left
        let e = write_atomic(&target, |tmp| {
            std::fs::write(tmp, b"partial").map_err(io_err(tmp))?;
            Err(Error::Gdal("boom".into()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("boom"));
        assert_eq!(std::fs::read(&target).unwrap(), b"ok");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.bin"]);
        // a missing directory is refused before anything is written
        let e = write_atomic(&dir.path().join("no/x.bin"), |_| panic!("not called")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
