//! Results on object storage: `--out s3://bucket/extent.tif` (also gs://,
//! az://, and http(s):// servers that accept PUT). Each remote output is
//! written by the same writers, through the same output transaction, to a
//! local staging file (in a private temp directory), then uploaded with
//! object_store — in parts for large files, so memory stays bounded. An
//! object becomes visible only when its upload completes, so readers never
//! see a partial file. The uploads are the remote half of the transaction:
//! an object a run replaces is first copied aside, and when an upload fails
//! or the run is cancelled the objects already uploaded are deleted and the
//! replaced ones copied back (all or nothing, as for local files). Credentials and
//! endpoints come from the environment (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, …), as for reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::context::Cancel;
use crate::error::{Error, Result};
use crate::output::Outputs;
use crate::store::{is_cloud, writable_object};

/// Upload part size (S3's minimum part is 5 MiB).
const PART: usize = 8 << 20;

/// Whether an output names an object rather than a local file.
pub(crate) fn is_remote(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.contains("://"))
}

/// The remote outputs of a run, staged locally until [`Staging::upload`].
pub(crate) struct Staging {
    /// Private directory of the staging files (removed on drop).
    _dir: Option<tempfile::TempDir>,
    /// (staging file, store, object path, URL) per remote output.
    uploads: Vec<(PathBuf, Arc<dyn ObjectStore>, ObjectPath, String)>,
}

impl Staging {
    /// Splits `outputs`: remote ones are replaced by staging files. Stores
    /// are made (and bad URLs refused) before the query runs.
    pub(crate) fn new(outputs: &Outputs) -> Result<(Staging, Outputs)> {
        let mut local = outputs.clone();
        let mut uploads = Vec::new();
        let mut dir: Option<tempfile::TempDir> = None;
        for (i, slot) in [
            &mut local.tif,
            &mut local.parquet,
            &mut local.png,
            &mut local.lineage,
        ]
        .into_iter()
        .enumerate()
        {
            let Some(p) = slot.as_ref().filter(|p| is_remote(p)) else {
                continue;
            };
            let url = p.to_string_lossy().to_string();
            let (store, path) = writable_object(&url)?;
            let name = path.filename().unwrap_or("output").to_string();
            if dir.is_none() {
                dir = Some(
                    tempfile::Builder::new()
                        .prefix(".floodsql-out-")
                        .tempdir()
                        .map_err(|e| Error::Io {
                            path: std::env::temp_dir().display().to_string(),
                            source: e,
                        })?,
                );
            }
            let staged = dir
                .as_ref()
                .map(|d| d.path().join(format!("{i}-{name}")))
                .unwrap_or_default();
            *slot = Some(staged.clone());
            uploads.push((staged, store, path, url));
        }
        Ok((Staging { _dir: dir, uploads }, local))
    }

    /// Uploads every staged output; when one fails, or `cancel` is set
    /// before the last finished, the targets are put back as they were
    /// (new objects deleted, replaced ones restored).
    pub(crate) async fn upload(&self, cancel: &Cancel) -> Result<()> {
        let mut kept: Vec<Kept> = Vec::new();
        let mut done: Vec<(&Arc<dyn ObjectStore>, &ObjectPath)> = Vec::new();
        let result = async {
            for (_, store, path, url) in &self.uploads {
                kept.push(Kept::aside(store, path, url).await?);
            }
            for (file, store, path, url) in &self.uploads {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                upload_one(file, store, path, url).await?;
                done.push((store, path));
            }
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            for (s, p) in done {
                let _ = s.delete(p).await;
            }
        }
        for k in kept {
            k.finish(result.is_err()).await;
        }
        result
    }
}

/// An object a run replaces, copied aside until the uploads end.
struct Kept {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    /// Where it was copied (None: there was no object).
    aside: Option<ObjectPath>,
}

impl Kept {
    async fn aside(store: &Arc<dyn ObjectStore>, path: &ObjectPath, url: &str) -> Result<Self> {
        let mut kept = Kept {
            store: store.clone(),
            path: path.clone(),
            aside: None,
        };
        if store.head(path).await.is_err() {
            return Ok(kept);
        }
        let aside = ObjectPath::from(format!(
            "{}.floodsql-replaced-{}",
            path.as_ref(),
            std::process::id()
        ));
        // a server-side copy where the store has one; else read and write
        // it back (an HTTP server that takes PUT but not WebDAV's COPY)
        if store.copy(path, &aside).await.is_err() {
            let kept = async {
                let bytes = store.get(path).await?.bytes().await?;
                store.put(&aside, PutPayload::from(bytes)).await
            }
            .await;
            kept.map_err(|e| Error::Output {
                path: crate::error::redact_urls(url),
                message: format!(
                    "keeping the object this run replaces: {}",
                    crate::error::chain_message(&e)
                ),
            })?;
        }
        kept.aside = Some(aside);
        Ok(kept)
    }

    /// Puts the object back (`restore`) or drops the copy.
    async fn finish(self, restore: bool) {
        let Some(aside) = self.aside else {
            return;
        };
        if restore && self.store.copy(&aside, &self.path).await.is_err() {
            if let Ok(r) = self.store.get(&aside).await {
                if let Ok(bytes) = r.bytes().await {
                    let _ = self.store.put(&self.path, PutPayload::from(bytes)).await;
                }
            }
        }
        let _ = self.store.delete(&aside).await;
    }
}

async fn upload_one(
    file: &Path,
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    url: &str,
) -> Result<()> {
    let err = |m: String| Error::Output {
        path: crate::error::redact_urls(url),
        message: m,
    };
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| err(format!("reading the staged file: {e}")))?;
    let size = f.metadata().await.map(|m| m.len() as usize).unwrap_or(0);
    // HTTP(S) targets take one PUT (object_store's HTTP store has no
    // multipart upload); cloud stores take parts above PART
    if size <= PART || !is_cloud(url) {
        let mut buf = Vec::with_capacity(size);
        f.read_to_end(&mut buf)
            .await
            .map_err(|e| err(format!("reading the staged file: {e}")))?;
        store
            .put(path, PutPayload::from(buf))
            .await
            .map_err(|e| err(crate::error::chain_message(&e)))?;
        return Ok(());
    }
    let up = store
        .put_multipart(path)
        .await
        .map_err(|e| err(crate::error::chain_message(&e)))?;
    let mut w = WriteMultipart::new_with_chunk_size(up, PART);
    let mut buf = vec![0u8; PART];
    loop {
        let n = match f.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = w.abort().await;
                return Err(err(format!("reading the staged file: {e}")));
            }
        };
        if n == 0 {
            break;
        }
        // at most a few parts in flight: memory stays bounded
        if let Err(e) = w.wait_for_capacity(4).await {
            return Err(err(crate::error::chain_message(&e)));
        }
        w.write(&buf[..n]);
    }
    w.finish()
        .await
        .map_err(|e| err(crate::error::chain_message(&e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file larger than a part goes up in parts and comes back whole; a
    /// small one in one request.
    #[tokio::test]
    async fn uploads_in_parts_and_whole() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let dir = tempfile::tempdir().unwrap();
        for (name, size) in [("big.bin", 2 * PART + 12345), ("small.bin", 1000)] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7919 % 251) as u8).collect();
            let file = dir.path().join(name);
            std::fs::write(&file, &data).unwrap();
            let path = ObjectPath::from(format!("out/{name}"));
            upload_one(&file, &store, &path, "s3://test/out")
                .await
                .unwrap();
            let got = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(got.len(), data.len(), "{name}");
            assert!(got == data, "{name}: bytes differ");
        }
        // a missing staged file is an error naming the output
        let e = upload_one(
            &dir.path().join("gone"),
            &store,
            &ObjectPath::from("x"),
            "s3://b/x.tif",
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("s3://b/x.tif"), "{e}");
    }
}
