//! Temp file + rename, so that a failed run leaves no (partial) output file.

use std::path::{Path, PathBuf};

use crate::error::{io_err, Error, Result};

/// Calls `write(tmp)` with a temp path in the target's directory, then renames
/// the temp file to `target`. On error the temp file is removed.
pub fn write_atomic(target: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::Other(format!(
            "output directory '{}' does not exist",
            dir.display()
        )));
    }
    let name = target
        .file_name()
        .ok_or_else(|| Error::Other(format!("'{}' is not a file path", target.display())))?
        .to_string_lossy()
        .to_string();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = write(&tmp).and_then(|_| std::fs::rename(&tmp, target).map_err(io_err(target)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
