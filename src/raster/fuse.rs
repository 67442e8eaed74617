//! Fusing one time slice over one output chunk: odc-stac's rule. Pixels start
//! as nodata; items are pasted in (datetime, id) order and a pixel takes the
//! first value that is not nodata (later items only fill pixels still nodata).
//! One nodata for every source and for the fill: the scan's
//! (`raster::plan::scan_nodata`).

use datafusion::execution::runtime_env::RuntimeEnv;

use crate::access::ReadPolicy;
use crate::error::{Error, Result};
use crate::geo::{Overlap, Window};
use crate::raster::cog::CogReader;
use crate::raster::plan::Source;
use crate::raster::read::read_window;

/// Which reader brings a source window's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReaderKind {
    /// `object_store` + `async-tiff` (the default): concurrent range reads.
    Native,
    /// GDAL's drivers and network file systems (`/vsicurl/`, `/vsis3/`, ...).
    Gdal,
}

/// What fusing one window cost.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FuseStats {
    /// Source windows read.
    pub(crate) windows: usize,
    /// Compressed bytes fetched (native reader only).
    pub(crate) fetched_bytes: usize,
}

fn item_err(src: &Source, e: Error) -> Error {
    Error::BadItem {
        item: src.item_id.clone(),
        message: format!("asset unreadable: {e}"),
    }
}

/// Pastes `buf` (the window `o.src` of a source's file) into `out` (the
/// output `window`), filling only pixels still `nodata`.
fn paste(out: &mut [u8], window: Window, o: &Overlap, buf: &[u8], nodata: u8) {
    let w = o.src.width;
    for r in 0..o.src.height {
        let dst = &mut out[(o.dst_y + r) * window.width + o.dst_x..][..w];
        paste_row(dst, &buf[r * w..][..w], nodata);
    }
}

/// Fuses `sources` (already in fusing order) over the output `window` with
/// GDAL reads, each location checked against `policy` first. Blocking: call
/// from a blocking thread.
pub(crate) fn fuse_window(
    window: Window,
    sources: &[Source],
    fill: u8,
    policy: &ReadPolicy,
) -> Result<Vec<u8>> {
    let mut out = vec![fill; window.area()];
    for src in sources {
        let Some(o) = src.overlap(window) else {
            continue;
        };
        policy.check_for_gdal(&src.path).map_err(|e| {
            item_err(
                src,
                Error::Refused(format!("asset refused by the read policy: {e}")),
            )
        })?;
        let buf =
            read_window(&src.path, (src.width, src.height), o.src).map_err(|e| item_err(src, e))?;
        paste(&mut out, window, &o, &buf, fill);
    }
    Ok(out)
}

/// Fuses `sources` over `window` with the native reader: every source's
/// blocks fetched concurrently on the runtime, then decoded and pasted in
/// fusing order on the reader's decode pool (one thread per core: windows
/// waiting on the network hold only compressed bytes).
pub(crate) async fn fuse_window_native(
    reader: &CogReader,
    env: &RuntimeEnv,
    window: Window,
    sources: &[Source],
    fill: u8,
) -> Result<(Vec<u8>, FuseStats)> {
    let parts: Vec<(Source, Overlap)> = sources
        .iter()
        .filter_map(|s| Some((s.clone(), s.overlap(window)?)))
        .collect();
    let fetched = futures::future::try_join_all(parts.iter().map(|(src, o)| async move {
        reader
            .fetch(env, &src.path, (src.width, src.height), o.src)
            .await
            .map_err(|e| item_err(src, e))
    }))
    .await?;
    let stats = FuseStats {
        windows: parts.len(),
        fetched_bytes: fetched.iter().map(|f| f.bytes()).sum(),
    };
    let out = reader
        .decode(move || {
            let mut out = vec![fill; window.area()];
            for ((src, o), f) in parts.iter().zip(fetched) {
                let buf = f.decode().map_err(|e| item_err(src, e))?;
                paste(&mut out, window, o, &buf, fill);
            }
            Ok::<_, Error>(out)
        })
        .await??;
    Ok((out, stats))
}

/// dst = src where dst is still `nodata` (a nodata src leaves it nodata).
/// A select, not a branch: vectorises.
#[inline]
pub(crate) fn paste_row(dst: &mut [u8], src: &[u8], nodata: u8) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = if *d == nodata { s } else { *d };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_valid_wins() {
        let mut d = vec![255, 255, 1, 0];
        paste_row(&mut d, &[0, 255, 0, 1], 255);
        assert_eq!(d, vec![0, 255, 1, 0]);
    }
}
