//! One output transaction for every writer (`extent`, `sql --out`,
//! `series`, `zonal`, `polygons`, `extent --update`): each output is staged
//! in a temp file beside its target, then [`OutputTransaction::commit`]
//! renames them all into place. A file a run replaces is kept (hard link,
//! or copy) until the commit ends: when a stage or the commit fails, or the
//! run is cancelled meanwhile, every replaced file is put back byte for byte
//! and no new file stays. A transaction dropped without committing (an
//! error, a cancelled query) removes its staged files.
//!
//! In the manner of DataFusion's one `DataSink` for every sink: the writers
//! only write a file they are given; where it goes, and when, is decided
//! here. Blocking (renames, GDAL writers): call from a blocking thread.

use std::path::{Path, PathBuf};

use crate::context::Cancel;
use crate::error::{io_err, Error, Result};
use crate::output::atomic::{check_dir, remove_stale_temps, same_file, temp_path};

/// The outputs of one run, staged until committed (see the module docs).
pub(crate) struct OutputTransaction {
    /// (staged temp file, target), in staging order.
    staged: Vec<(PathBuf, PathBuf)>,
    /// Temp files of writers that own their file until they finish (the
    /// GTiff being built, the Parquet being streamed): removed on drop.
    scratch: Vec<PathBuf>,
    cancel: Cancel,
}

impl OutputTransaction {
    /// A transaction writing to `targets`: refused when a directory is
    /// missing or two targets are the same file (before anything runs).
    /// Temp files that killed runs left beside the targets go.
    pub(crate) fn new<'a>(
        targets: impl IntoIterator<Item = &'a Path>,
        cancel: Cancel,
    ) -> Result<Self> {
        let targets: Vec<&Path> = targets.into_iter().collect();
        check_targets(&targets)?;
        targets.iter().for_each(|t| remove_stale_temps(t));
        Ok(Self {
            staged: Vec::new(),
            scratch: Vec::new(),
            cancel,
        })
    }

    /// Fails with [`Error::Cancelled`] once the run is cancelled.
    pub(crate) fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// A temp path beside `target` for a writer that builds a file of its
    /// own over a run (`suffix` tells them apart): removed unless staged.
    pub(crate) fn scratch(&mut self, target: &Path, suffix: &str) -> Result<PathBuf> {
        let p = temp_path(target, suffix)?;
        self.scratch.push(p.clone());
        Ok(p)
    }

    /// Stages `target`: `write(tmp)` writes the whole output to a temp file
    /// beside it, which the commit renames onto `target`.
    pub(crate) fn stage(
        &mut self,
        target: &Path,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        self.check_cancel()?;
        let tmp = temp_path(target, "")?;
        self.staged.push((tmp.clone(), target.to_path_buf()));
        write(&tmp)?;
        self.check_cancel()
    }

    /// Stages a file a writer already finished at `tmp` (a scratch path).
    pub(crate) fn stage_file(&mut self, tmp: &Path, target: &Path) -> Result<()> {
        self.check_cancel()?;
        self.scratch.retain(|s| s != tmp);
        self.staged.push((tmp.to_path_buf(), target.to_path_buf()));
        Ok(())
    }

    /// Renames every staged file onto its target. On any failure, or a
    /// cancellation before the last rename, the targets are as they were.
    /// Nothing stays staged afterwards.
    pub(crate) fn commit(&mut self) -> Result<()> {
        let staged = std::mem::take(&mut self.staged);
        let mut replaced = Backups::default();
        let mut placed: Vec<&Path> = Vec::new();
        let result = (|| -> Result<()> {
            for (_, target) in &staged {
                replaced.keep(target)?;
            }
            for (tmp, target) in &staged {
                self.check_cancel()?;
                std::fs::rename(tmp, target).map_err(io_err(target))?;
                placed.push(target);
            }
            // a signal during the last rename still takes the run back;
            // one after this is refused (the run is committed)
            if self.cancel.seal() {
                Ok(())
            } else {
                Err(Error::Cancelled)
            }
        })();
        if let Err(e) = result {
            for t in placed {
                let _ = std::fs::remove_file(t);
            }
            replaced.restore();
            for (tmp, _) in &staged {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for OutputTransaction {
    fn drop(&mut self) {
        for (tmp, _) in &self.staged {
            let _ = std::fs::remove_file(tmp);
        }
        for p in &self.scratch {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Fails unless every target's directory exists and no two targets are the
/// same file (checked before a query runs, so that a long run does not end
/// in a refusal).
pub(crate) fn check_targets(targets: &[&Path]) -> Result<()> {
    targets.iter().try_for_each(|p| check_dir(p))?;
    for (i, a) in targets.iter().enumerate() {
        if targets[..i].iter().any(|b| same_file(a, b)) {
            return Err(Error::invalid(
                "output path",
                a.display().to_string(),
                "given for two outputs (each output of a run, its lineage item NAME.stac.json included, needs a file of its own)",
            ));
        }
    }
    Ok(())
}

/// Files a commit replaces, kept (hard links, or copies) until it ends: put
/// back when it fails.
#[derive(Default)]
struct Backups(Vec<(PathBuf, PathBuf)>);

impl Backups {
    fn keep(&mut self, target: &Path) -> Result<()> {
        if !target.is_file() {
            return Ok(());
        }
        let bak = temp_path(target, ".bak")?;
        let _ = std::fs::remove_file(&bak);
        std::fs::hard_link(target, &bak)
            .or_else(|_| std::fs::copy(target, &bak).map(|_| ()))
            .map_err(io_err(&bak))?;
        self.0.push((bak, target.to_path_buf()));
        Ok(())
    }

    fn restore(&mut self) {
        for (bak, target) in self.0.drain(..) {
            // the target may still be the very file (a hard link to it):
            // rename would then do nothing and leave the backup behind
            let _ = std::fs::remove_file(&target);
            let _ = std::fs::rename(&bak, &target);
        }
    }
}

impl Drop for Backups {
    fn drop(&mut self) {
        for (bak, _) in &self.0 {
            let _ = std::fs::remove_file(bak);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }

    fn write(text: &'static str) -> impl FnOnce(&Path) -> Result<()> {
        move |tmp| std::fs::write(tmp, text).map_err(io_err(tmp))
    }

    /// Cancelling and committing exclude each other: a cancel after a
    /// commit is refused (the outputs stay), a commit after a cancel is
    /// undone.
    #[test]
    fn a_cancel_after_the_commit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        std::fs::write(&a, "old").unwrap();
        let cancel = Cancel::default();
        let mut t = OutputTransaction::new([a.as_path()], cancel.clone()).unwrap();
        t.stage(&a, write("new")).unwrap();
        t.commit().unwrap();
        assert!(!cancel.cancel() && !cancel.is_cancelled());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new");

        let cancel = Cancel::default();
        let mut t = OutputTransaction::new([a.as_path()], cancel.clone()).unwrap();
        t.stage(&a, write("newer")).unwrap();
        assert!(cancel.cancel() && cancel.cancel() && cancel.is_cancelled());
        assert!(matches!(t.commit(), Err(Error::Cancelled)));
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new");
    }

    #[test]
    fn commits_all_or_puts_every_replaced_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::write(&a, "old a").unwrap();
        std::fs::write(&b, "old b").unwrap();
        // a stage fails: nothing changes, no temp stays
        let mut t =
            OutputTransaction::new([a.as_path(), b.as_path(), c.as_path()], Cancel::default())
                .unwrap();
        t.stage(&a, write("new a")).unwrap();
        assert!(t.stage(&c, |_| Err(Error::Gdal("boom".into()))).is_err());
        drop(t);
        assert_eq!(names(dir.path()), ["a", "b"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        // the last rename fails (a directory in its way): a and b back as they were
        std::fs::create_dir(&c).unwrap();
        std::fs::write(c.join("x"), "").unwrap();
        let mut t =
            OutputTransaction::new([a.as_path(), b.as_path(), c.as_path()], Cancel::default())
                .unwrap();
        for (p, s) in [(&a, "new a"), (&b, "new b"), (&c, "new c")] {
            t.stage(p, write(s)).unwrap();
        }
        assert!(t.commit().is_err());
        assert_eq!(names(dir.path()), ["a", "b", "c"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert_eq!(std::fs::read(&b).unwrap(), b"old b");
        std::fs::remove_dir_all(&c).unwrap();
        // cancelled before the commit: the same
        let cancel = Cancel::default();
        let mut t = OutputTransaction::new([a.as_path(), c.as_path()], cancel.clone()).unwrap();
        t.stage(&a, write("new a")).unwrap();
        t.stage(&c, write("new c")).unwrap();
        cancel.cancel();
        assert!(matches!(t.commit(), Err(Error::Cancelled)));
        assert_eq!(names(dir.path()), ["a", "b"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        // committed: every target new, no backup or temp left
        let mut t = OutputTransaction::new([a.as_path(), c.as_path()], Cancel::default()).unwrap();
        let scratch = t.scratch(&c, ".gtiff").unwrap();
        std::fs::write(&scratch, "new c").unwrap();
        t.stage(&a, write("new a")).unwrap();
        t.stage_file(&scratch, &c).unwrap();
        t.commit().unwrap();
        assert_eq!(names(dir.path()), ["a", "b", "c"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read(&c).unwrap(), b"new c");
    }

    #[test]
    fn bad_targets_are_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let e = OutputTransaction::new([a.as_path(), a.as_path()], Cancel::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("two outputs"), "{e}");
        let missing = dir.path().join("no/a");
        let e = OutputTransaction::new([missing.as_path()], Cancel::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
