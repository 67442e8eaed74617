//! Fusing one time slice over one output chunk: odc-stac's rule. Pixels start
//! as nodata; items are pasted in (datetime, id) order and a pixel takes the
//! first value that is not nodata (later items only fill pixels still nodata).
//! One nodata for every source and for the fill: the scan's
//! (`raster::plan::scan_nodata`).

use datafusion::execution::runtime_env::RuntimeEnv;

use crate::access::ReadPolicy;
use crate::error::{Error, Result};
use crate::geo::{Overlap, Window};
use crate::raster::cog::{CogReader, Fetched, RowPart, RowSink};
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
    for r in 0..o.src.height {
        let dst = &mut out[(o.dst_y + r) * window.width + o.dst_x..][..o.src.width];
        paste_value_row(dst, value, nodata);
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

/// What the native reader reads of `sources` over `window`: each COG it
/// reads (not warped, not a missing asset) that overlaps the window, with
/// the window in the COG's own pixels.
pub(crate) fn native_reads<'a>(
    window: Window,
    sources: &'a [Source],
) -> impl Iterator<Item = (&'a str, Window)> + 'a {
    sources
        .iter()
        .filter(|s| s.warp.is_none())
        .filter_map(move |s| match (&s.loc, s.overlap(window)) {
            (AssetLoc::Read(path), Some(o)) => Some((path.as_str(), o.src)),
            _ => None,
        })
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
    /// Decodes the sources and pastes them in fusing order: here, on the
    /// runtime's worker (one per core: windows waiting on the network hold
    /// only compressed bytes), or on the reader's decode pool when a source
    /// is warped (GDAL is never called on the runtime's threads).
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
        let warped = parts.iter().any(|(s, _, _)| s.warp.is_some());
        let job = move || {
            let mut out = Fused::new(window, fill);
            for (src, o, f) in parts {
                match (o, f, &src.loc) {
                    // every source is decoded, even under a window already
                    // full, so that a corrupt file is reported as with GDAL
                    (Some(o), Some(f), _) => {
                        out.paste_decoded(&o, f).map_err(|e| item_err(&src, e))?
                    }
                    (Some(o), None, AssetLoc::Fill(v)) => out.paste_value(&o, *v),
                    _ => fuse_warped(out.data(), window, &src, &grid, fill, &policy)?,
                }
            }
            Ok::<_, Error>(out.into_pixels())
        };
        let out = if warped {
            reader.decode(job).await??
        } else {
            CogReader::decode_here(job)??
        };
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

    /// Decodes a source's window over `o` and pastes it (first valid
    /// wins): into the window's pixels as it is decoded, block row by block
    /// row, with no window of the source's own made first — unless it is
    /// the first source and covers the window (its pixels are the window's
    /// then) or one value. A window already full is decoded all the same,
    /// so that a corrupt file is reported as with GDAL.
    fn paste_decoded(&mut self, o: &Overlap, src: impl Decode) -> Result<()> {
        if self.full() {
            return src.decode_to(&mut Discard).map(|_| ());
        }
        if self.empty() && self.covers(o) {
            match src.decode()? {
                Pixels::Data(buf) => self.paste(o, buf),
                Pixels::Constant(v) => self.paste_value(o, v),
            }
            return Ok(());
        }
        if let Some(v) = src.decode_to(&mut Paste { fused: self, o })? {
            self.paste_value(o, v);
        }
        Ok(())
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

/// A source's window that decodes row by row (see [`Fetched::decode_to`]).
trait Decode {
    /// Its pixels, or its one value.
    fn decode(self) -> Result<Pixels>;
    /// Into `sink` (`Some(value)`, and nothing given, when it is one value).
    fn decode_to(self, sink: &mut dyn RowSink) -> Result<Option<u8>>;
}

impl Decode for Fetched {
    fn decode(self) -> Result<Pixels> {
        Fetched::decode(self)
    }

    fn decode_to(self, sink: &mut dyn RowSink) -> Result<Option<u8>> {
        Fetched::decode_to(self, sink)
    }
}

/// A source's rows pasted straight into a [`Fused`] window over `o`.
struct Paste<'a> {
    fused: &'a mut Fused,
    o: &'a Overlap,
}

impl RowSink for Paste<'_> {
    fn value_rows(&mut self, rows: usize, value: u8) {
        let top = Overlap {
            src: Window {
                height: rows,
                ..self.o.src
            },
            ..*self.o
        };
        self.fused.paste_value(&top, value);
    }

    fn part(&mut self, y: usize, x: usize, part: RowPart<'_>) {
        let (width, fill) = (self.fused.window.width, self.fused.fill);
        let at = (self.o.dst_y + y) * width + self.o.dst_x + x;
        let n = part.len();
        match part {
            RowPart::Pixels(p) => paste_row(&mut self.fused.data()[at..][..n], p, fill),
            RowPart::Value(_, v) if v != fill => {
                paste_value_row(&mut self.fused.data()[at..][..n], v, fill)
            }
            RowPart::Value(..) => {}
        }
    }
}

/// Rows decoded only to be checked.
struct Discard;

impl RowSink for Discard {
    fn value_rows(&mut self, _: usize, _: u8) {}
    fn part(&mut self, _: usize, _: usize, _: RowPart<'_>) {}
}

/// dst = value where dst is still `nodata`.
#[inline]
fn paste_value_row(dst: &mut [u8], value: u8, nodata: u8) {
    for d in dst.iter_mut() {
        *d = if *d == nodata { value } else { *d };
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
                let values = [0u8, 1, 255, 7];
                let value = values[next(4) as usize];
                match next(3) {
                    0 => {
                        fused.paste_value(&o, value);
                        paste_fill(&mut naive, window, &o, value, fill);
                    }
                    1 => {
                        let buf: Vec<u8> = (0..n).map(|_| values[next(4) as usize]).collect();
                        paste(&mut naive, window, &o, &buf, fill);
                        fused.paste(&o, buf);
                    }
                    _ => {
                        // decoded into the window: its first rows one value
                        // (all of them, some or none), then pixels that are
                        // random, or one value per row
                        let (w, h) = (o.src.width, o.src.height);
                        let top = [0, h, next(h as u64 + 1) as usize][next(3) as usize];
                        let per_row = next(2) == 0;
                        let mut buf = vec![value; top * w];
                        for _ in top..h {
                            let v = values[next(4) as usize];
                            buf.extend((0..w).map(|_| {
                                if per_row {
                                    v
                                } else {
                                    values[next(4) as usize]
                                }
                            }));
                        }
                        let cuts = (0..next(4)).map(|_| 1 + next(w as u64) as usize).collect();
                        paste(&mut naive, window, &o, &buf, fill);
                        let src = RowsOf {
                            px: buf,
                            width: w,
                            cuts,
                            short: next(2) == 0,
                        };
                        fused.paste_decoded(&o, src).unwrap();
                    }
                }
            }
            assert_eq!(
                fused.into_pixels().into_vec(window.area()),
                naive,
                "case {case}"
            );
        }
    }

    /// A source window given as bytes, decoded the way
    /// [`Fetched::decode_to`] gives one: its first rows of one value as a
    /// run, each later row in parts cut at `cuts` (a part of one value as
    /// a value); a window of one value as that value when `short`.
    struct RowsOf {
        px: Vec<u8>,
        width: usize,
        cuts: Vec<usize>,
        short: bool,
    }

    impl Decode for RowsOf {
        fn decode(self) -> Result<Pixels> {
            Ok(match crate::raster::constant::uniform(&self.px) {
                Some(v) => Pixels::Constant(v),
                None => Pixels::Data(self.px),
            })
        }

        fn decode_to(self, sink: &mut dyn RowSink) -> Result<Option<u8>> {
            let first = self.px[0];
            if self.short && self.px.iter().all(|&b| b == first) {
                return Ok(Some(first));
            }
            let rows = self.px.chunks(self.width);
            let top = rows
                .clone()
                .take_while(|r| r.iter().all(|&b| b == first))
                .count();
            let top = top.min(self.px.len() / self.width - 1);
            if top > 0 {
                sink.value_rows(top, first);
            }
            let mut cuts = self.cuts.clone();
            cuts.retain(|&c| c < self.width);
            cuts.push(self.width);
            cuts.sort_unstable();
            cuts.dedup();
            for (y, row) in rows.enumerate().skip(top) {
                let mut x = 0;
                for &end in &cuts {
                    let part = &row[x..end];
                    match crate::raster::constant::uniform(part) {
                        Some(v) if y % 2 == 0 => sink.part(y, x, RowPart::Value(part.len(), v)),
                        _ => sink.part(y, x, RowPart::Pixels(part)),
                    }
                    x = end;
                }
            }
            Ok(None)
        }
    }

    #[test]
    fn first_valid_wins() {
        let mut d = vec![255, 255, 1, 0];
        paste_row(&mut d, &[0, 255, 0, 1], 255);
        assert_eq!(d, vec![0, 255, 1, 0]);
    }
}
