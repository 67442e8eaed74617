//! Fusing one time slice over one output chunk: odc-stac's rule. Pixels start
//! as nodata; items are pasted in (datetime, id) order and a pixel takes the
//! first value that is not nodata (later items only fill pixels still nodata).
//! One nodata for every source and for the fill: the scan's
//! (`raster::plan::scan_nodata`).

use datafusion::execution::runtime_env::RuntimeEnv;

use crate::access::ReadPolicy;
use crate::error::{Error, Result};
use crate::geo::{Overlap, Window};
use crate::raster::cog::{CogReader, Fetched};
use crate::raster::constant::Pixels;
use crate::raster::grid::OutputGrid;
use crate::raster::plan::{AssetLoc, Source};
use crate::raster::read::{read_window, warp_window};

/// What fusing one window cost.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FuseStats {
    /// Source windows read.
    pub(crate) windows: usize,
    /// Compressed bytes fetched (native reader only).
    pub(crate) fetched_bytes: usize,
}

fn item_err(src: &Source, e: Error) -> Error {
    Error::InItem {
        item: src.item_id.clone(),
        context: "asset unreadable".into(),
        source: Box::new(e),
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

/// A source in another CRS over `window`: warped with GDAL and pasted where
/// it lands. The warp windows are the tutorial's 1000 px dask chunks, not the
/// scan's chunks (GDAL's approximate transformer picks neighbours per
/// window): each such block meeting `window` is warped over the part the
/// source covers (odc-geo's rule), and its part inside `window` pasted — so
/// the result does not depend on `--chunk`. Blocking.
fn fuse_warped(
    out: &mut [u8],
    window: Window,
    src: &Source,
    grid: &OutputGrid,
    fill: u8,
    policy: &ReadPolicy,
) -> Result<()> {
    let (Some(w), AssetLoc::Read(path)) = (&src.warp, &src.loc) else {
        // a missing asset of a warped item reads as nodata (planning
        // refuses any other value there)
        return Ok(());
    };
    let b = crate::raster::warp::WARP_BLOCK;
    let mut checked = false;
    for by in (window.y / b..).take_while(|k| k * b < window.y + window.height) {
        for bx in (window.x / b..).take_while(|k| k * b < window.x + window.width) {
            let block = Window {
                x: bx * b,
                y: by * b,
                width: b.min(grid.width - bx * b),
                height: b.min(grid.height - by * b),
            };
            let roi = crate::raster::warp::dst_roi(w, grid, block).map_err(|e| item_err(src, e))?;
            let Some(roi) = roi.filter(|r| r.intersect(window).is_some()) else {
                continue;
            };
            if !checked {
                check(policy, src, path)?;
                checked = true;
            }
            let buf = warp_window(path, (w.width, w.height), grid, roi, fill)
                .map_err(|e| item_err(src, e))?;
            paste_roi(out, window, roi, &buf, fill);
        }
    }
    Ok(())
}

/// Pastes the part of `buf` (a warped source over `roi`, output pixels) that
/// lies in the output `window` into `out`, filling only pixels still `nodata`.
fn paste_roi(out: &mut [u8], window: Window, roi: Window, buf: &[u8], nodata: u8) {
    let Some(i) = roi.intersect(window) else {
        return;
    };
    for r in 0..i.height {
        let from = (i.y - roi.y + r) * roi.width + (i.x - roi.x);
        let to = (i.y - window.y + r) * window.width + (i.x - window.x);
        paste_row(&mut out[to..][..i.width], &buf[from..][..i.width], nodata);
    }
}

fn check(policy: &ReadPolicy, src: &Source, path: &str) -> Result<()> {
    policy.allow_for_gdal(path).map_err(|e| item_err(src, e))
}

/// A missing asset standing as `value` over the source's overlap `o`:
/// pasted like a read (nothing when `value` is the nodata).
fn paste_fill(out: &mut [u8], window: Window, o: &Overlap, value: u8, nodata: u8) {
    if value == nodata {
        return;
    }
    let row = vec![value; o.src.width];
    for r in 0..o.src.height {
        let dst = &mut out[(o.dst_y + r) * window.width + o.dst_x..][..o.src.width];
        paste_row(dst, &row, nodata);
    }
}

/// Fuses `sources` (already in fusing order) over the output `window` with
/// GDAL reads, each location checked against `policy` first. Blocking: call
/// from a blocking thread.
pub(crate) fn fuse_window(
    window: Window,
    sources: &[Source],
    grid: &OutputGrid,
    fill: u8,
    policy: &ReadPolicy,
) -> Result<Vec<u8>> {
    let mut out = vec![fill; window.area()];
    for src in sources {
        if src.warp.is_some() {
            fuse_warped(&mut out, window, src, grid, fill, policy)?;
            continue;
        }
        let Some(o) = src.overlap(window) else {
            continue;
        };
        let path = match &src.loc {
            AssetLoc::Read(p) => p,
            AssetLoc::Fill(v) => {
                paste_fill(&mut out, window, &o, *v, fill);
                continue;
            }
        };
        check(policy, src, path)?;
        let buf =
            read_window(path, (src.width, src.height), o.src).map_err(|e| item_err(src, e))?;
        paste(&mut out, window, &o, &buf, fill);
    }
    Ok(out)
}

/// The sources of one window with their compressed blocks fetched, ready
/// to fuse ([`fetch_window`] then [`FetchedWindow::fuse`]): what a window
/// holds while it waits for the decode pool — compressed bytes only.
pub(crate) struct FetchedWindow {
    window: Window,
    /// Each source with its overlap (None: warped) and fetched blocks
    /// (None: warped, or a missing asset standing as a value).
    parts: Vec<(Source, Option<Overlap>, Option<Fetched>)>,
    stats: FuseStats,
}

/// Reads the headers of the COGs `sources` need over `window` with the
/// native reader, ahead of [`fetch_window`] (which then waits for blocks
/// only). An unreadable header is the item's error, as in `fetch_window`.
pub(crate) async fn prefetch_headers(
    reader: &CogReader,
    env: &RuntimeEnv,
    window: Window,
    sources: &[Source],
) -> Result<()> {
    futures::future::try_join_all(
        sources
            .iter()
            .filter(|s| s.warp.is_none() && s.overlap(window).is_some())
            .filter_map(|s| match &s.loc {
                AssetLoc::Read(path) => Some((s, path)),
                AssetLoc::Fill(_) => None,
            })
            .map(|(s, path)| async move {
                reader
                    .prefetch_header(env, path)
                    .await
                    .map_err(|e| item_err(s, e))
            }),
    )
    .await
    .map(|_| ())
}

/// Fetches the blocks `sources` need over `window` with the native reader,
/// concurrently on the runtime. Sources in another CRS (no overlap in their
/// own pixels) are warped by GDAL when fused.
pub(crate) async fn fetch_window(
    reader: &CogReader,
    env: &RuntimeEnv,
    window: Window,
    sources: &[Source],
) -> Result<FetchedWindow> {
    let parts: Vec<(Source, Option<Overlap>)> = sources
        .iter()
        .filter_map(|s| match s.warp {
            Some(_) => Some((s.clone(), None)),
            None => Some((s.clone(), Some(s.overlap(window)?))),
        })
        .collect();
    let fetched = futures::future::try_join_all(parts.iter().map(|(src, o)| async move {
        match (o, &src.loc) {
            (Some(o), AssetLoc::Read(path)) => reader
                .fetch(env, path, (src.width, src.height), o.src)
                .await
                .map(Some)
                .map_err(|e| item_err(src, e)),
            _ => Ok(None),
        }
    }))
    .await?;
    let stats = FuseStats {
        windows: fetched.iter().flatten().count()
            + parts.iter().filter(|(s, _)| s.warp.is_some()).count(),
        fetched_bytes: fetched.iter().flatten().map(|f| f.bytes()).sum(),
    };
    Ok(FetchedWindow {
        window,
        parts: parts
            .into_iter()
            .zip(fetched)
            .map(|((s, o), f)| (s, o, f))
            .collect(),
        stats,
    })
}

impl FetchedWindow {
    /// Decodes the sources and pastes them in fusing order on the reader's
    /// decode pool (one thread per core: windows waiting on the network or
    /// for the pool hold only compressed bytes).
    pub(crate) async fn fuse(
        self,
        reader: &CogReader,
        grid: &OutputGrid,
        fill: u8,
        policy: &ReadPolicy,
    ) -> Result<(Pixels, FuseStats)> {
        let FetchedWindow {
            window,
            parts,
            stats,
        } = self;
        let (grid, policy) = (grid.clone(), policy.clone());
        let out = reader
            .decode(move || {
                let mut out = Fused::new(window, fill);
                for (src, o, f) in parts {
                    match (o, f, &src.loc) {
                        // every source is decoded, even under a window already
                        // full, so that a corrupt file is reported as with GDAL
                        (Some(o), Some(f), _) => match f.decode().map_err(|e| item_err(&src, e))? {
                            Pixels::Data(buf) => out.paste(&o, buf),
                            Pixels::Constant(v) => out.paste_value(&o, v),
                        },
                        (Some(o), None, AssetLoc::Fill(v)) => out.paste_value(&o, *v),
                        _ => fuse_warped(out.data(), window, &src, &grid, fill, &policy)?,
                    }
                }
                Ok::<_, Error>(out.into_pixels())
            })
            .await??;
        Ok((out, stats))
    }
}

/// A window being fused that stays one value for as long as it can: no
/// pixel buffer is made while every source pasted so far is constant over
/// it (nodata, or a value covering the whole window), and the first source
/// covering the whole window is taken as it is, not pasted.
struct Fused {
    window: Window,
    fill: u8,
    /// Every pixel's value while `data` is `None`.
    value: u8,
    /// The pixels, once materialised.
    data: Option<Vec<u8>>,
}

impl Fused {
    fn new(window: Window, fill: u8) -> Self {
        Self {
            window,
            fill,
            value: fill,
            data: None,
        }
    }

    /// Whether `o` covers the whole window.
    fn covers(&self, o: &Overlap) -> bool {
        o.src.width == self.window.width && o.src.height == self.window.height
    }

    /// Whether the window is still one value and that value is nodata.
    fn empty(&self) -> bool {
        self.data.is_none() && self.value == self.fill
    }

    /// Whether the window is one value other than nodata: no later source
    /// can change it.
    fn full(&self) -> bool {
        self.data.is_none() && self.value != self.fill
    }

    /// The pixels, materialised.
    fn data(&mut self) -> &mut Vec<u8> {
        let (value, area) = (self.value, self.window.area());
        self.data.get_or_insert_with(|| vec![value; area])
    }

    /// The fused window.
    fn into_pixels(self) -> Pixels {
        match self.data {
            Some(d) => Pixels::Data(d),
            None => Pixels::Constant(self.value),
        }
    }

    /// Pastes a source's pixels over `o` (first valid wins).
    fn paste(&mut self, o: &Overlap, buf: Vec<u8>) {
        if self.full() {
            return;
        }
        if self.empty() && self.covers(o) {
            // nothing pasted yet: the source's pixels are the window's
            self.data = Some(buf);
            return;
        }
        let (window, fill) = (self.window, self.fill);
        paste(self.data(), window, o, &buf, fill)
    }

    /// Pastes one value over `o` (a constant source window or a missing
    /// asset's value).
    fn paste_value(&mut self, o: &Overlap, value: u8) {
        if value == self.fill || self.full() {
            return;
        }
        if self.empty() && self.covers(o) {
            self.value = value;
            return;
        }
        let (window, fill) = (self.window, self.fill);
        paste_fill(self.data(), window, o, value, fill)
    }
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

    /// A window fused through [`Fused`] — kept one value while it can, a
    /// covering source taken as is, later sources skipped once nothing is
    /// nodata — equals every source pasted as bytes into a window of
    /// nodata, for random runs of sources that are data or one value (0,
    /// 1, 255, 7), covering the window or a part of it (edge parts
    /// included), with nodata 255 and 0.
    #[test]
    fn fused_as_values_equals_fused_as_bytes() {
        let mut x: u64 = 12345;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let window = Window {
            x: 100,
            y: 40,
            width: 37,
            height: 23,
        };
        for case in 0..3000 {
            let fill = [255u8, 0][case % 2];
            let mut fused = Fused::new(window, fill);
            let mut naive = vec![fill; window.area()];
            for _ in 0..1 + next(4) {
                // the source's part of the window: all of it, or a part
                // touching an edge or inside
                let o = if next(2) == 0 {
                    crate::geo::overlap(100, 40, 37, 23, window)
                } else {
                    let (w, h) = (1 + next(37) as usize, 1 + next(23) as usize);
                    let (dx, dy) = (next(38 - w as u64) as i64, next(24 - h as u64) as i64);
                    crate::geo::overlap(100 + dx, 40 + dy, w, h, window)
                }
                .unwrap();
                let n = o.src.width * o.src.height;
                let value = [0u8, 1, 255, 7][next(4) as usize];
                if next(2) == 0 {
                    fused.paste_value(&o, value);
                    paste_fill(&mut naive, window, &o, value, fill);
                } else {
                    let buf: Vec<u8> = (0..n).map(|_| [0u8, 1, 255, 7][next(4) as usize]).collect();
                    paste(&mut naive, window, &o, &buf, fill);
                    fused.paste(&o, buf);
                }
            }
            assert_eq!(
                fused.into_pixels().into_vec(window.area()),
                naive,
                "case {case}"
            );
        }
    }

    #[test]
    fn first_valid_wins() {
        let mut d = vec![255, 255, 1, 0];
        paste_row(&mut d, &[0, 255, 0, 1], 255);
        assert_eq!(d, vec![0, 255, 1, 0]);
    }
}
