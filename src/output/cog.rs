//! GeoTIFF out as a Cloud-Optimized GeoTIFF, built as the chunks arrive:
//! each 512 px tile (and each overview tile) is compressed (DEFLATE, see
//! [`Deflate`]) the moment its last pixel comes, and appended to a scratch
//! file; at the end the COG is those tiles behind GDAL's own IFDs
//! (`output::tiff`): the items' CRS, the grid's geotransform, the metadata,
//! the palette, nodata — everything the tags say — is what GDAL writes for
//! a GTiff of this grid, made without pixels. No nodata value for a mask: 0
//! is dry land, not missing data.
//!
//! The overviews are filled as the chunks arrive ([`Overviews`]), by GDAL's
//! own NEAREST rule (a 0/1 mask stays 0/1): the pixels are those `gdaladdo
//! -r nearest` gives.
//!
//! A tile whose pixels are one value is compressed once per value and run
//! (mostly-dry and never-observed areas). Tiles still waiting for pixels of
//! a later chunk are held in memory up to [`PARTIAL_BUDGET`], the least
//! recently written then kept in a second scratch file until they are
//! complete, compressed (ZSTD level 1: a waiting tile is mostly the fill
//! value, a few KB where the raw tile cost a 256 KB write and read).
//! Blocking (file I/O, GDAL): call from a blocking thread.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use gdal::raster::RasterCreationOptions;
use gdal::raster::{ColorEntry, ColorInterpretation, ColorTable, PaletteInterpretation};
use gdal::{Dataset, DriverManager, Metadata};

use crate::error::{Error, Result};
use crate::geo::Window;
use crate::output::assemble::RasterKind;
use crate::output::tiff::{self, Ifd};
use crate::output::Provenance;
use crate::raster::grid::{spatial_ref, OutputGrid};

/// Tile width and height of the COG (and of its overviews).
const TILE: usize = 512;

/// Bytes of incomplete tiles held in memory; beyond it the oldest go to
/// the spill file.
const PARTIAL_BUDGET: usize = 8 << 20;

/// The GeoTIFF being built: its tiles, compressed as they complete.
pub(crate) struct TiledTiff {
    grid: OutputGrid,
    /// Bytes per pixel (1: u8, 2: u16 little-endian).
    k: usize,
    nodata: Option<u16>,
    /// One pixel of the value pixels never written hold (nodata, or 0).
    fill: Vec<u8>,
    /// Full resolution first, then each overview.
    levels: Vec<Tiles>,
    overviews: Overviews,
    store: TileStore,
    spill: Spill,
    /// Incomplete tiles in memory: their bytes, and when each was last
    /// written to, least recently first — (level, tile, stamp): entries
    /// whose stamp is not the tile's own any more are stale and skipped.
    /// The tiles waiting for the next row of chunks are the first to
    /// spill; a tile a chunk column boundary cuts stays.
    partial_bytes: usize,
    partial_order: VecDeque<(usize, usize, u64)>,
    /// Writes to tiles so far (the stamps).
    stamp: u64,
    /// [`PARTIAL_BUDGET`] (tests spill with less).
    budget: usize,
    /// BigTIFF even when the file would fit classic TIFF (tests).
    big: bool,
    /// Tile buffers to reuse.
    spare: Vec<Vec<u8>>,
}

/// The tiles of one level (full resolution or an overview).
struct Tiles {
    width: usize,
    height: usize,
    across: usize,
    slots: Vec<Slot>,
}

/// One tile, as far as it has come.
enum Slot {
    /// No pixel yet.
    Empty,
    /// Some pixels, in memory (a whole tile: never-written pixels hold the
    /// fill value), `filled` of them written, last at `stamp`.
    Partial {
        buf: Vec<u8>,
        filled: usize,
        stamp: u64,
    },
    /// Some pixels, in the spill file.
    Spilled { filled: usize, at: Spilled },
    /// Compressed, in the tile store.
    Done(TileRef),
}

/// A compressed tile in the store's scratch file.
#[derive(Debug, Clone, Copy)]
struct TileRef {
    offset: u64,
    len: u32,
}

impl Tiles {
    fn new(width: usize, height: usize) -> Self {
        let across = width.div_ceil(TILE);
        let down = height.div_ceil(TILE);
        Self {
            width,
            height,
            across,
            slots: (0..across * down).map(|_| Slot::Empty).collect(),
        }
    }

    /// The image window tile `t` covers (clipped to the image).
    fn window(&self, t: usize) -> Window {
        let (x, y) = ((t % self.across) * TILE, (t / self.across) * TILE);
        Window {
            x,
            y,
            width: TILE.min(self.width - x),
            height: TILE.min(self.height - y),
        }
    }
}

impl TiledTiff {
    /// The GeoTIFF of `grid`, its compressed tiles kept in `tiles` and
    /// incomplete ones (when many wait) in `spill` (scratch files of the
    /// run's transaction): 1 (u8) or 2 (u16) bytes per pixel; pixels never
    /// written are 0, or `nodata` (which the band then declares).
    pub(crate) fn create(
        tiles: &Path,
        spill: &Path,
        grid: &OutputGrid,
        bytes_per_pixel: usize,
        nodata: Option<u16>,
    ) -> Result<Self> {
        let k = bytes_per_pixel;
        if !(1..=2).contains(&k) {
            return Err(Error::Internal(format!(
                "a raster of {k} bytes per pixel (the chunk reader allows 1 or 2)"
            )));
        }
        let fill = nodata.unwrap_or(0).to_le_bytes()[..k].to_vec();
        let (w, h) = (grid.width, grid.height);
        let overviews = Overviews::new(w, h);
        let mut levels = vec![Tiles::new(w, h)];
        levels.extend(
            overviews
                .levels
                .iter()
                .map(|l| Tiles::new(l.xs.len(), l.ys.len())),
        );
        let store = TileStore::create(tiles, k)?;
        Ok(Self {
            grid: grid.clone(),
            k,
            nodata,
            fill,
            levels,
            overviews,
            store,
            spill: Spill {
                path: spill.to_path_buf(),
                open: None,
                packed: Vec::new(),
                tile_bytes: TILE * TILE * k,
            },
            partial_bytes: 0,
            partial_order: VecDeque::new(),
            stamp: 0,
            big: false,
            budget: PARTIAL_BUDGET,
            spare: Vec::new(),
        })
    }

    /// Writes a chunk's pixels (`bytes_per_pixel` each, little-endian), and
    /// the overview pixels they hold.
    pub(crate) fn write(&mut self, w: Window, px: &[u8]) -> Result<()> {
        let k = self.k;
        if px.len() != w.area() * k {
            return Err(Error::Internal(format!(
                "a chunk of {} x {} px with {} bytes",
                w.width,
                w.height,
                px.len()
            )));
        }
        self.put(0, w, px)?;
        for i in 0..self.overviews.levels.len() {
            if let Some((ow, picked)) = self.overviews.levels[i].pick(w, px, k) {
                self.put(i + 1, ow, &picked)?;
            }
        }
        self.keep_to_budget()
    }

    /// Pastes `px` at window `w` of level `l` into its tiles; tiles it
    /// completes are compressed.
    fn put(&mut self, l: usize, w: Window, px: &[u8]) -> Result<()> {
        let k = self.k;
        let tile_bytes = TILE * TILE * k;
        let across = self.levels[l].across;
        for ty in w.y / TILE..(w.y + w.height).div_ceil(TILE) {
            for tx in w.x / TILE..(w.x + w.width).div_ceil(TILE) {
                let t = ty * across + tx;
                let tw = self.levels[l].window(t);
                let x0 = w.x.max(tw.x);
                let x1 = (w.x + w.width).min(tw.x + tw.width);
                let y0 = w.y.max(tw.y);
                let y1 = (w.y + w.height).min(tw.y + tw.height);
                let (mut buf, mut filled) =
                    match std::mem::replace(&mut self.levels[l].slots[t], Slot::Empty) {
                        Slot::Empty => {
                            let mut b = self.spare.pop().unwrap_or_default();
                            fill_tile(&mut b, &self.fill, tile_bytes);
                            self.partial_bytes += tile_bytes;
                            (b, 0)
                        }
                        Slot::Partial { buf, filled, .. } => (buf, filled),
                        Slot::Spilled { filled, at } => {
                            let mut b = self.spare.pop().unwrap_or_default();
                            self.spill.read(at, &mut b)?;
                            self.partial_bytes += tile_bytes;
                            (b, filled)
                        }
                        Slot::Done(r) => {
                            self.levels[l].slots[t] = Slot::Done(r);
                            return Err(Error::Internal(format!(
                            "pixels at {x0},{y0} of level {l} written twice (tile {t} was complete)"
                        )));
                        }
                    };
                let n = (x1 - x0) * k;
                for y in y0..y1 {
                    let src = ((y - w.y) * w.width + (x0 - w.x)) * k;
                    let dst = ((y - tw.y) * TILE + (x0 - tw.x)) * k;
                    buf[dst..dst + n].copy_from_slice(&px[src..src + n]);
                }
                filled += (x1 - x0) * (y1 - y0);
                if filled > tw.area() {
                    return Err(Error::Internal(format!(
                        "tile {t} of level {l}: {filled} pixels written, {} in the tile",
                        tw.area()
                    )));
                }
                self.levels[l].slots[t] = if filled == tw.area() {
                    self.partial_bytes -= tile_bytes;
                    let r = self.store.add(&buf, tw)?;
                    self.recycle(buf);
                    Slot::Done(r)
                } else {
                    self.stamp += 1;
                    self.partial_order.push_back((l, t, self.stamp));
                    Slot::Partial {
                        buf,
                        filled,
                        stamp: self.stamp,
                    }
                };
            }
        }
        Ok(())
    }

    /// Keeps a tile buffer for the next tile (a few: the rest are freed).
    fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < 8 {
            self.spare.push(buf);
        }
    }

    /// Moves the least recently written incomplete tiles to the spill
    /// file while those in memory exceed the budget ([`PARTIAL_BUDGET`]).
    fn keep_to_budget(&mut self) -> Result<()> {
        while self.partial_bytes > self.budget {
            let Some((l, t, stamp)) = self.partial_order.pop_front() else {
                break;
            };
            let slot = &mut self.levels[l].slots[t];
            if !matches!(slot, Slot::Partial { stamp: s, .. } if *s == stamp) {
                continue; // stale: completed, spilled or written since
            }
            let Slot::Partial { buf, filled, .. } = std::mem::replace(slot, Slot::Empty) else {
                unreachable!("matched above")
            };
            let at = self.spill.write(&buf)?;
            self.levels[l].slots[t] = Slot::Spilled { filled, at };
            self.partial_bytes -= buf.len();
            self.recycle(buf);
        }
        // stale entries go when they outnumber the live ones
        let live = self.partial_bytes / (TILE * TILE * self.k);
        if self.partial_order.len() > 4096.max(8 * live) {
            let levels = &self.levels;
            self.partial_order.retain(|&(l, t, stamp)| {
                matches!(levels[l].slots[t], Slot::Partial { stamp: s, .. } if s == stamp)
            });
        }
        Ok(())
    }

    /// Compresses every tile not yet complete: pixels never written hold
    /// the fill value.
    fn complete(&mut self) -> Result<Vec<Vec<TileRef>>> {
        let mut refs = Vec::with_capacity(self.levels.len());
        let mut buf = Vec::new();
        for l in 0..self.levels.len() {
            let mut level = Vec::with_capacity(self.levels[l].slots.len());
            for t in 0..self.levels[l].slots.len() {
                let tw = self.levels[l].window(t);
                let r = match std::mem::replace(&mut self.levels[l].slots[t], Slot::Empty) {
                    Slot::Done(r) => r,
                    Slot::Empty => self.store.constant(&self.fill)?,
                    Slot::Partial { buf, .. } => self.store.add(&buf, tw)?,
                    Slot::Spilled { at, .. } => {
                        self.spill.read(at, &mut buf)?;
                        self.store.add(&buf, tw)?
                    }
                };
                self.levels[l].slots[t] = Slot::Done(r);
                level.push(r);
            }
            refs.push(level);
        }
        self.partial_bytes = 0;
        Ok(refs)
    }

    /// Writes the COG at `out` (a staged file; messages name `target`)
    /// from the tiles, behind the IFDs GDAL writes for this grid. The COG
    /// carries `provenance` as metadata (what QGIS shows under the layer's
    /// properties), a band description, and for a 0/1 mask or three states
    /// a colour table (0 light beige, 1 flood blue, 255 grey).
    pub(crate) fn into_cog(
        mut self,
        out: &Path,
        target: &Path,
        provenance: &Provenance,
        kind: RasterKind,
    ) -> Result<()> {
        let refs = self.complete()?;
        let sizes: Vec<Vec<u32>> = refs
            .iter()
            .map(|l| l.iter().map(|r| r.len).collect())
            .collect();
        let ifds = self.template(provenance, kind)?;
        let bad = |m: String| Error::Output {
            path: target.display().to_string(),
            message: m,
        };
        let tiles = self
            .store
            .finish()
            .map_err(|e| bad(format!("its tiles: {e}")))?;
        let file = File::create(out).map_err(|e| bad(e.to_string()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        tiff::write_cog(&mut w, &ifds, &sizes, self.big, |l, t, buf| {
            let r = refs[l][t];
            buf.resize(r.len as usize, 0);
            tiles.read_exact_at(buf, r.offset)
        })
        .and_then(|_| w.flush())
        .map_err(|e| bad(e.to_string()))?;
        Ok(())
    }

    /// The IFDs GDAL writes for this GeoTIFF (full resolution, then the
    /// overviews, largest first): a tiled DEFLATE GTiff of the grid with
    /// its CRS, geotransform, overviews, nodata and `describe`'s metadata,
    /// made in memory without a pixel.
    fn template(&self, provenance: &Provenance, kind: RasterKind) -> Result<Vec<Ifd>> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = PathBuf::from(format!(
            "/vsimem/floodsql-cog-{}-{n}.tif",
            std::process::id()
        ));
        let made = (|| -> Result<Vec<u8>> {
            let drv = DriverManager::get_driver_by_name("GTiff")?;
            let opts = RasterCreationOptions::from_iter([
                "TILED=YES",
                "BLOCKXSIZE=512",
                "BLOCKYSIZE=512",
                "COMPRESS=DEFLATE",
                "SPARSE_OK=TRUE",
                "BIGTIFF=NO",
            ]);
            let (w, h) = (self.grid.width, self.grid.height);
            let mut ds = match self.k {
                1 => drv.create_with_band_type_with_options::<u8, _>(&path, w, h, 1, &opts),
                _ => drv.create_with_band_type_with_options::<u16, _>(&path, w, h, 1, &opts),
            }?;
            ds.set_geo_transform(&self.grid.geotransform())?;
            ds.set_spatial_ref(&spatial_ref(&self.grid.crs)?)?;
            if let Some(v) = self.nodata {
                ds.rasterband(1)?.set_no_data_value(Some(v as f64))?;
            }
            // described first: the overviews take the band's palette
            describe(&mut ds, provenance, kind)?;
            let factors = overview_factors(w, h);
            if !factors.is_empty() {
                ds.build_overviews("NONE", &factors, &[])?;
            }
            ds.flush_cache()?;
            drop(ds);
            Ok(gdal::vsi::get_vsi_mem_file_bytes_owned(&path)?)
        })();
        let _ = gdal::vsi::unlink_mem_file(&path);
        let bytes = made.map_err(|e| Error::Gdal(format!("the COG's tags: {e}")))?;
        let found = tiff::read_ifds(&bytes)
            .map_err(|e| Error::Internal(format!("reading GDAL's GTiff tags: {e}")))?;
        let (main, mut overviews): (Vec<Ifd>, Vec<Ifd>) = found
            .into_iter()
            .partition(|i| i.uint(tiff::NEW_SUBFILE_TYPE).unwrap_or(0) == 0);
        overviews.sort_by_key(|i| std::cmp::Reverse(i.size()));
        let ifds: Vec<Ifd> = main.into_iter().chain(overviews).collect();
        let want: Vec<(u64, u64)> = self
            .levels
            .iter()
            .map(|l| (l.width as u64, l.height as u64))
            .collect();
        let got: Vec<(u64, u64)> = ifds.iter().filter_map(Ifd::size).collect();
        let shaped = ifds.iter().all(|i| {
            i.uint(tiff::TILE_WIDTH) == Some(TILE as u64)
                && i.uint(tiff::TILE_LENGTH) == Some(TILE as u64)
                && i.uint(tiff::COMPRESSION) == Some(8)
        });
        if got != want || ifds.len() != want.len() || !shaped {
            return Err(Error::Internal(format!(
                "GDAL's GTiff has images {got:?} (tiled 512, DEFLATE: {shaped}), the COG's levels are {want:?}"
            )));
        }
        Ok(ifds)
    }
}

impl Drop for TiledTiff {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.store.path);
        let _ = std::fs::remove_file(&self.spill.path);
    }
}

/// The compressed tiles, appended to a scratch file as they complete; a
/// tile of one value is compressed once per value.
struct TileStore {
    path: PathBuf,
    file: BufWriter<File>,
    len: u64,
    k: usize,
    z: Deflate,
    out: Vec<u8>,
    constants: HashMap<Vec<u8>, TileRef>,
}

impl TileStore {
    fn create(path: &Path, k: usize) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            len: 0,
            k,
            z: Deflate::for_pixels(k),
            out: Vec::new(),
            constants: HashMap::new(),
        })
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Stores the tile `buf` (a whole tile of `k`-byte pixels) whose
    /// pixels within the image are window `tw`.
    fn add(&mut self, buf: &[u8], tw: Window) -> Result<TileRef> {
        let k = self.k;
        let v = &buf[..k];
        // each row compared without a branch per byte, so that it
        // vectorises (a byte at a time, this check was ~3 % of a GFM-shaped
        // scan's CPU)
        let one_value = (0..tw.height).all(|r| {
            let row = &buf[r * TILE * k..][..tw.width * k];
            match k {
                1 => row.iter().fold(0u8, |acc, &b| acc | (b ^ v[0])) == 0,
                _ => row.chunks_exact(k).all(|p| p == v),
            }
        });
        if one_value {
            return self.constant(v);
        }
        self.append(buf)
    }

    /// The tile whose every pixel is `v`.
    fn constant(&mut self, v: &[u8]) -> Result<TileRef> {
        if let Some(r) = self.constants.get(v) {
            return Ok(*r);
        }
        let mut tile = Vec::new();
        fill_tile(&mut tile, v, TILE * TILE * self.k);
        let r = self.append(&tile)?;
        self.constants.insert(v.to_vec(), r);
        Ok(r)
    }

    /// Compresses `tile` (zlib stream, as TIFF's DEFLATE) and appends it.
    fn append(&mut self, tile: &[u8]) -> Result<TileRef> {
        let n = self.z.compress(tile, &mut self.out)?;
        let r = TileRef {
            offset: self.len,
            len: n as u32,
        };
        self.file
            .write_all(&self.out[..n])
            .map_err(|e| self.io(e))?;
        self.len += n as u64;
        Ok(r)
    }

    /// The scratch file, every tile written.
    fn finish(&mut self) -> std::io::Result<&File> {
        self.file.flush()?;
        Ok(self.file.get_ref())
    }
}

/// The tiles' DEFLATE encoder (zlib streams, TIFF compression 8: any
/// reader inflates them):
/// - 1-byte pixels (masks, states, classes): zlib's run-length strategy
///   (`Z_RLE`, level 6, zlib-rs). Flood rasters are runs; on the benches'
///   results it made the tiles as small as libdeflate's level 6 (+2 % on
///   the tutorial-sized scene, +1 % on the GFM-shaped one) in a fifth to a
///   sixth of the time;
/// - 2-byte pixels (counts, days): libdeflate level 6, GDAL's default (a
///   run of one u16 value is no run of bytes).
enum Deflate {
    Rle(Box<zlib_rs::Deflate>),
    Lazy(libdeflater::Compressor),
}

impl Deflate {
    fn for_pixels(bytes_per_pixel: usize) -> Self {
        if bytes_per_pixel == 1 {
            Deflate::Rle(Box::new(zlib_rs::Deflate::new_with_config(
                zlib_rs::DeflateConfig {
                    level: 6,
                    strategy: zlib_rs::Strategy::Rle,
                    ..Default::default()
                },
            )))
        } else {
            Deflate::Lazy(libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(6).expect("level 6 is one of libdeflate's"),
            ))
        }
    }

    /// Compresses `tile` into `out` (resized to fit): the stream's length.
    fn compress(&mut self, tile: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let failed = |e: String| Error::Internal(format!("DEFLATE of a COG tile: {e}"));
        match self {
            Deflate::Rle(z) => {
                out.resize(zlib_rs::compress_bound(tile.len()), 0);
                z.reset();
                match z.compress(tile, out, zlib_rs::DeflateFlush::Finish) {
                    Ok(zlib_rs::Status::StreamEnd) => Ok(z.total_out() as usize),
                    Ok(s) => Err(failed(format!("stream not ended ({s:?})"))),
                    Err(e) => Err(failed(format!("{e:?}"))),
                }
            }
            Deflate::Lazy(z) => {
                out.resize(z.zlib_compress_bound(tile.len()), 0);
                z.zlib_compress(tile, out)
                    .map_err(|e| failed(e.to_string()))
            }
        }
    }
}

/// `buf` made `n` bytes of the pixel `v`, repeated.
fn fill_tile(buf: &mut Vec<u8>, v: &[u8], n: usize) {
    buf.clear();
    if v.iter().all(|&b| b == v[0]) {
        buf.resize(n, v[0]);
    } else {
        buf.extend(v.iter().copied().cycle().take(n));
    }
}

/// Incomplete tiles kept on disk, compressed (ZSTD level 1), appended to a file
/// created when first needed (a tile spilled again is appended again: the
/// file is scratch, gone with the run).
struct Spill {
    path: PathBuf,
    open: Option<SpillFile>,
    /// The compressed bytes of the tile being spilled or read back.
    packed: Vec<u8>,
    tile_bytes: usize,
}

/// The spill file once a tile has been spilled, and its codec's contexts.
struct SpillFile {
    file: File,
    len: u64,
    zc: zstd::bulk::Compressor<'static>,
    zd: zstd::bulk::Decompressor<'static>,
}

/// Where a spilled tile's compressed bytes are.
#[derive(Debug, Clone, Copy)]
struct Spilled {
    offset: u64,
    len: u32,
}

impl Spill {
    fn err(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn write(&mut self, buf: &[u8]) -> Result<Spilled> {
        let Spill {
            path, open, packed, ..
        } = self;
        let at = (|| -> std::io::Result<Spilled> {
            let s = match open {
                Some(s) => s,
                None => open.insert(SpillFile {
                    file: std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&*path)?,
                    len: 0,
                    zc: zstd::bulk::Compressor::new(1)?,
                    zd: zstd::bulk::Decompressor::new()?,
                }),
            };
            packed.resize(zstd::zstd_safe::compress_bound(buf.len()), 0);
            let n = s.zc.compress_to_buffer(buf, &mut packed[..])?;
            s.file.write_all_at(&packed[..n], s.len)?;
            let at = Spilled {
                offset: s.len,
                len: n as u32,
            };
            s.len += n as u64;
            Ok(at)
        })();
        at.map_err(|e| self.err(e))
    }

    fn read(&mut self, at: Spilled, buf: &mut Vec<u8>) -> Result<()> {
        let Some(s) = self.open.as_mut() else {
            return Err(Error::Internal(
                "a spilled tile without a spill file".into(),
            ));
        };
        self.packed.resize(at.len as usize, 0);
        buf.resize(self.tile_bytes, 0);
        let n = s
            .file
            .read_exact_at(&mut self.packed, at.offset)
            .and_then(|_| s.zd.decompress_to_buffer(&self.packed, &mut buf[..]));
        match n {
            Ok(n) if n == self.tile_bytes => Ok(()),
            Ok(n) => Err(self.err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a spilled tile of {n} bytes, not {}", self.tile_bytes),
            ))),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// The overviews of the GeoTIFF being built: as many as the COG driver
/// would make (halving until the image fits one 512 px block), each as
/// large as GDAL makes it for its factor, filled chunk by chunk.
struct Overviews {
    levels: Vec<Level>,
}

/// One overview: for each of its columns and rows, the base-image column
/// and row whose pixel it shows.
struct Level {
    xs: Vec<usize>,
    ys: Vec<usize>,
}

impl Overviews {
    fn new(width: usize, height: usize) -> Self {
        let mut levels: Vec<Level> = Vec::new();
        for f in overview_factors(width, height) {
            let f = f as usize;
            let (w, h) = (width.div_ceil(f), height.div_ceil(f));
            let level = match levels.last() {
                None => Level {
                    xs: nearest(&(0..width).collect::<Vec<_>>(), w),
                    ys: nearest(&(0..height).collect::<Vec<_>>(), h),
                },
                Some(up) => Level {
                    xs: nearest(&up.xs, w),
                    ys: nearest(&up.ys, h),
                },
            };
            levels.push(level);
        }
        Self { levels }
    }
}

impl Level {
    /// The part of this overview that chunk `w` (pixels `px`, `k` bytes
    /// each) holds, and its pixels; `None` when it holds none.
    fn pick(&self, w: Window, px: &[u8], k: usize) -> Option<(Window, Vec<u8>)> {
        let within = |v: &[usize], lo: usize, len: usize| {
            v.partition_point(|&s| s < lo)..v.partition_point(|&s| s < lo + len)
        };
        let cols = within(&self.xs, w.x, w.width);
        let rows = within(&self.ys, w.y, w.height);
        if cols.is_empty() || rows.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(cols.len() * rows.len() * k);
        for &y in &self.ys[rows.clone()] {
            let row = &px[(y - w.y) * w.width * k..][..w.width * k];
            let xs = &self.xs[cols.clone()];
            if k == 1 {
                out.extend(xs.iter().map(|&x| row[x - w.x]));
            } else {
                for &x in xs {
                    out.extend_from_slice(&row[(x - w.x) * k..][..k]);
                }
            }
        }
        let at = Window {
            x: cols.start,
            y: rows.start,
            width: cols.len(),
            height: rows.len(),
        };
        Some((at, out))
    }
}

/// Overview factors 2, 4, 8, ... while the image halved (rounding down, as
/// the COG driver counts) is wider or taller than one 512 px block.
fn overview_factors(width: usize, height: usize) -> Vec<i32> {
    let mut factors = Vec::new();
    let mut f = 1;
    while width / f > 512 || height / f > 512 {
        f *= 2;
        factors.push(f as i32);
    }
    factors
}

/// GDAL's NEAREST resampling of one axis (as in GDAL 3.6, each overview
/// from the one above it): pixel `i` of an overview `n` pixels long shows
/// pixel `floor(0.5 + i * m / n)` of the level above (`up`, `m` long, as
/// the base-image pixels it shows).
fn nearest(up: &[usize], n: usize) -> Vec<usize> {
    let ratio = up.len() as f64 / n as f64;
    (0..n)
        .map(|i| up[((0.5 + i as f64 * ratio) as usize).min(up.len() - 1)])
        .collect()
}

/// Metadata items (dataset level) of a floodsql COG.
pub(crate) fn metadata_items(p: &Provenance) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("TIFFTAG_IMAGEDESCRIPTION", p.title.clone()),
        (
            "TIFFTAG_SOFTWARE",
            format!("floodsql {}", env!("CARGO_PKG_VERSION")),
        ),
        ("FLOODSQL_SOURCE", p.source.clone()),
        ("FLOODSQL_ASSET", p.asset.clone()),
        ("FLOODSQL_ITEMS", p.items.to_string()),
        ("FLOODSQL_QUERY", p.query.clone()),
    ];
    if let Some((a, b)) = &p.time_range {
        v.push(("FLOODSQL_TIME_START", a.clone()));
        v.push(("FLOODSQL_TIME_END", b.clone()));
    }
    v.retain(|(_, val)| !val.is_empty());
    v
}

fn describe(ds: &mut Dataset, p: &Provenance, kind: RasterKind) -> Result<()> {
    for (k, v) in metadata_items(p) {
        ds.set_metadata_item(k, &v, "")?;
    }
    let mut band = ds.rasterband(1)?;
    let what = if p.title.is_empty() {
        "floodsql result"
    } else {
        p.title.as_str()
    };
    band.set_description(&match kind {
        RasterKind::Mask => format!("{what}: 1 = flooded, 0 = not flooded or not observed"),
        RasterKind::States => {
            format!("{what}: 1 = flooded, 0 = observed, not flooded, 255 = never observed")
        }
        RasterKind::Date => {
            format!("{what}: days since 1970-01-01 (UTC), 0 = never flooded")
        }
        RasterKind::Percent => {
            format!("{what}: percent of observations flooded, 255 = never observed")
        }
        RasterKind::Count => format!("{what}: number of time slices"),
        RasterKind::Values => format!("{what} (values per pixel)"),
    })?;
    if matches!(kind, RasterKind::Mask | RasterKind::States) {
        let mut ct = ColorTable::new(PaletteInterpretation::Rgba);
        let rgba = |r, g, b, a| ColorEntry::rgba(r, g, b, a);
        // TIFF palettes are RGB (no alpha): 0 is drawn light, as in the PNG
        ct.set_color_entry(0, &rgba(236, 232, 214, 255));
        ct.set_color_entry(1, &rgba(20, 90, 200, 255));
        if kind == RasterKind::States {
            for v in 2..255 {
                ct.set_color_entry(v, &rgba(0, 0, 0, 255));
            }
            ct.set_color_entry(255, &rgba(175, 175, 175, 255));
        }
        band.set_color_table(&ct);
        band.set_color_interpretation(ColorInterpretation::PaletteIndex)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::assemble::tests::grid;
    use gdal::raster::{Buffer, RasterBand};

    /// Writes `px` (`k` bytes per pixel, little-endian) at window `w` of `band`.
    fn write_window(band: &mut RasterBand, w: Window, px: Vec<u8>, k: usize) -> Result<()> {
        let at = (w.x as isize, w.y as isize);
        let size = (w.width, w.height);
        match k {
            1 => band.write(at, size, &mut Buffer::new(size, px))?,
            _ => {
                let v: Vec<u16> = px
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect();
                band.write(at, size, &mut Buffer::new(size, v))?
            }
        }
        Ok(())
    }

    /// Overview `i` of `path`'s band 1, as u16 values.
    fn overview(path: &Path, i: usize) -> (usize, usize, Vec<u16>) {
        let ds = Dataset::open(path).unwrap();
        let o = ds.rasterband(1).unwrap().overview(i).unwrap();
        let (w, h) = o.size();
        let b = o.read_as::<u16>((0, 0), (w, h), (w, h), None).unwrap();
        (w, h, b.data().to_vec())
    }

    /// The overviews filled chunk by chunk are GDAL's own: the COG's
    /// overviews equal those `GDALBuildOverviews(NEAREST)` computes from the
    /// same full-resolution pixels, for odd sizes, chunks that do not align
    /// with the halvings, 1- and 2-byte pixels, and chunks never written.
    #[test]
    fn overviews_filled_per_chunk_are_gdals_nearest() {
        let dir = tempfile::tempdir().unwrap();
        for (k, width, height, chunk) in [(1, 1300, 1111, 333), (2, 1031, 2100, 250)] {
            let g = grid(width, height);
            let mut seed = 7u64;
            let mut full = vec![0u8; width * height * k];
            let mut chunks = Vec::new();
            for y in (0..height).step_by(chunk) {
                for x in (0..width).step_by(chunk) {
                    let c = x / chunk + y / chunk;
                    if c % 5 == 3 {
                        continue; // a chunk no row covered: never written
                    }
                    let w = Window {
                        x,
                        y,
                        width: chunk.min(width - x),
                        height: chunk.min(height - y),
                    };
                    // chunks of one value (0, 1, 255: whole tiles of one
                    // value, and edge tiles), the others a few values
                    let px: Vec<u8> = (0..w.area() * k)
                        .map(|_| match c % 7 {
                            1 => 0,
                            2 => 1,
                            4 => 255,
                            _ => {
                                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                                (seed >> 59) as u8 // runs and changes
                            }
                        })
                        .collect();
                    for r in 0..w.height {
                        let dst = ((y + r) * width + x) * k;
                        full[dst..][..w.width * k]
                            .copy_from_slice(&px[r * w.width * k..][..w.width * k]);
                    }
                    chunks.push((w, px));
                }
            }
            // in row order, tiles held in memory; in reverse order with
            // every incomplete tile spilled to disk: the same file; as
            // BigTIFF: the same pixels
            let mut written = Vec::new();
            for (variant, budget, big) in [(0, usize::MAX, false), (1, 0, false), (2, 0, true)] {
                let tiles = dir.path().join(format!("s{k}{variant}.tiles"));
                let spill = dir.path().join(format!("s{k}{variant}.spill"));
                let mut t = TiledTiff::create(&tiles, &spill, &g, k, Some(255)).unwrap();
                t.budget = budget;
                t.big = big;
                let order: Vec<usize> = match variant {
                    0 => (0..chunks.len()).collect(),
                    _ => (0..chunks.len()).rev().collect(),
                };
                for i in order {
                    let (w, px) = &chunks[i];
                    t.write(*w, px).unwrap();
                }
                assert_eq!(spill.exists(), budget == 0, "k={k}: spilled");
                let cog = dir.path().join(format!("c{k}{variant}.tif"));
                t.into_cog(&cog, &cog, &Provenance::default(), RasterKind::Values)
                    .unwrap();
                assert!(!tiles.exists() && !spill.exists(), "scratch files removed");
                written.push(std::fs::read(&cog).unwrap());
            }
            assert!(written[0] == written[1], "k={k}: the order of chunks shows");
            assert_eq!(&written[2][..4], b"II+\0", "k={k}: BigTIFF");
            for variant in [0, 2] {
                let cog = dir.path().join(format!("c{k}{variant}.tif"));
                // the reference: the same pixels (never-written chunks as
                // nodata) in a plain GTiff, overviews computed by GDAL
                let reference = dir.path().join(format!("r{k}.tif"));
                let unwritten = if k == 1 { vec![255u8] } else { vec![255, 0] };
                let mut all = full.clone();
                for y in 0..height {
                    for x in 0..width {
                        if (x / chunk + y / chunk) % 5 == 3 {
                            all[(y * width + x) * k..][..k].copy_from_slice(&unwritten);
                        }
                    }
                }
                {
                    let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
                    let mut r = if k == 1 {
                        drv.create_with_band_type::<u8, _>(&reference, width, height, 1)
                    } else {
                        drv.create_with_band_type::<u16, _>(&reference, width, height, 1)
                    }
                    .unwrap();
                    let whole = Window {
                        x: 0,
                        y: 0,
                        width,
                        height,
                    };
                    write_window(&mut r.rasterband(1).unwrap(), whole, all, k).unwrap();
                    r.build_overviews("NEAREST", &overview_factors(width, height), &[])
                        .unwrap();
                }
                let n = Dataset::open(&cog)
                    .unwrap()
                    .rasterband(1)
                    .unwrap()
                    .overview_count()
                    .unwrap();
                assert_eq!(n as usize, overview_factors(width, height).len(), "k={k}");
                assert!(n >= 2, "k={k}: {n} overviews");
                for i in 0..n as usize {
                    assert_eq!(
                        overview(&cog, i),
                        overview(&reference, i),
                        "k={k} level {i}"
                    );
                }
                // full resolution: every pixel, never-written ones as nodata
                let ds = Dataset::open(&cog).unwrap();
                let band = ds.rasterband(1).unwrap();
                let got = band
                    .read_as::<u16>((0, 0), (width, height), (width, height), None)
                    .unwrap();
                let want = Dataset::open(&reference)
                    .unwrap()
                    .rasterband(1)
                    .unwrap()
                    .read_as::<u16>((0, 0), (width, height), (width, height), None)
                    .unwrap();
                assert!(got.data() == want.data(), "k={k}: full resolution");
                assert_eq!(band.no_data_value(), Some(255.0));
                let layout = ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE");
                assert_eq!(layout.as_deref(), Some("COG"), "k={k}");
            }
        }
    }

    /// As many overviews as GDAL's COG driver makes: none for an image
    /// within one 512 px block, then one per halving.
    #[test]
    fn overview_count_follows_the_cog_driver() {
        assert!(overview_factors(512, 512).is_empty());
        assert_eq!(overview_factors(513, 10), vec![2]);
        assert_eq!(overview_factors(1025, 10), vec![2]);
        assert_eq!(overview_factors(9936, 10030), vec![2, 4, 8, 16, 32]);
    }
}
