//! Native COG reads: every byte through `object_store`, the TIFF header
//! read within bounds by [`crate::raster::tiff`], tile decoders from
//! `async-tiff` (DEFLATE, ZSTD and LZW our own, bounded by the block's
//! size), no GDAL.
//!
//! A window of a COG is read in three steps:
//! 1. the file's **layout** (size, block grid, block offsets and byte counts,
//!    compression) is read once per file from its first IFD and kept in a
//!    [`CogReader`]'s cache (a COG's header is a few KB at its start);
//! 2. the **byte ranges** of the blocks (tiles, or strips) the window touches
//!    are merged into runs (at most 1 MB apart, `object_store`'s rule) and
//!    fetched on the reader's I/O runtime ([`IO_RUNTIME`], apart from the
//!    query's workers) with one `get_ranges` call, which keeps
//!    several requests in flight, so a remote store's latency is paid once
//!    per window, not once per block. Blocks in runs fetched before (for a
//!    neighbouring window, or with the header) are taken from a bounded
//!    cache of those runs instead ([`crate::raster::byte_cache`]);
//! 3. the blocks are **decoded** (DEFLATE, LZW, ZSTD, … with the horizontal
//!    predictor undone) by [`Fetched::decode`], where the row is polled.
//!
//! Locations are those of [`crate::stac::item::resolve_href`]: an absolute
//! local path, or an `http(s)://`, `s3://`, `gs://` or `az://` URL. Stores
//! come from (and are added to) DataFusion's object store registry of the
//! session's runtime, so an embedding application can register its own (with
//! credentials, say) before running a query; otherwise s3/gs/az stores are
//! configured from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`, e.g.
//! `AWS_ENDPOINT_URL`, `AWS_SKIP_SIGNATURE=true` for public buckets).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};

use async_tiff::decoder::DecoderRegistry;
use async_tiff::tags::{Compression, PhotometricInterpretation};
use bytes::Bytes;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{redact, redact_urls};

use crate::access::ReadPolicy;
use crate::error::{Error, Result};
use crate::geo::Window;
use crate::raster::byte_cache::{runs_of, ByteCache, Found, PendingRun};
use crate::raster::constant::{self, Pixels};
use crate::raster::tiff::{self, HeaderBytes, HeaderError, Ifd};
use crate::store::{build_store, split, take_prepared, REQUEST_TIMEOUT, RETRY_TIMEOUT};

/// Layouts a [`CogReader`] keeps (oldest dropped first). A layout is its
/// block index: ~16 bytes per block.
const CACHED_LAYOUTS: usize = 4096;

/// Compressed bytes a [`CogReader`] keeps (runs of files' bytes, see
/// [`ByteCache`]), so that a block read for one chunk is not fetched again
/// for its neighbour (oldest dropped first). On the GFM-shaped benchmark
/// scene (160 COGs) 16 MB made 1.9x the requests that 24 MB made; 32 MB and
/// more made no fewer. The rows' horizon reads ahead into it (a share of it
/// per partition, `raster::exec`): on the tutorial-sized scene at 100 ms
/// per response, a 512-row horizon in 24 MB took 1.04 s and 4 096 rows in
/// 96 MB 0.90 s (local 0.66 s), 2 048 rows in 24 MB 1.1-1.2 s (runs read
/// ahead were dropped before their rows came). Compressed bytes: local peak
/// RSS +6 MB.
pub(crate) const BLOCK_CACHE_BYTES: usize = 96 << 20;

/// The largest decoded block a file may declare (a GFM block is 256 KB; a
/// plain GeoTIFF written as one strip of 15 000 x 15 000 px, 225 MB).
const MAX_BLOCK_BYTES: u64 = 1 << 30;

static DECODERS: LazyLock<DecoderRegistry> = LazyLock::new(DecoderRegistry::default);

/// The process's decode threads, one per core (see [`CogReader::decode`]).
static DECODE_POOL: LazyLock<std::result::Result<rayon::ThreadPool, String>> =
    LazyLock::new(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
            .thread_name(|i| format!("floodsql-decode-{i}"))
            // a panicking job drops its result sender: the waiting window gets
            // an internal error instead of the process aborting
            .panic_handler(|_| {})
            .build()
            .map_err(|e| e.to_string())
    });

fn decode_pool() -> Result<&'static rayon::ThreadPool> {
    DECODE_POOL
        .as_ref()
        .map_err(|e| Error::Internal(format!("cannot start the COG decode threads: {e}")))
}

/// Where a location's bytes live: the store and the object's path in it.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    location: String,
    /// The reader's bound on store calls in flight.
    calls: Arc<tokio::sync::Semaphore>,
}

impl Object {
    /// A permit to call the store (see [`STORE_CALLS`]).
    async fn permit(&self) -> std::io::Result<tokio::sync::SemaphorePermit<'_>> {
        self.calls
            .acquire()
            .await
            .map_err(|_| std::io::Error::other("the COG reader was closed"))
    }
}

/// Store calls (`get_range` / `get_ranges`, each at most 10 requests) one
/// reader has in flight. Rows are fetched far ahead to hide latency; at
/// 100 ms per response a reader makes at most this many calls per 0.1 s
/// (measured when the medium scene made ~450 calls: 64 took 1.4 s against
/// 1.05-1.1 s with 128, and 256 or more gained nothing; with blocks kept
/// from the header reads it makes 85). On the tutorial-sized scene a scan
/// starts with ~160 header reads and ~400 runs read ahead, all wanted at
/// once: 256 calls took 0.97 s against 1.085 s with 128 (512: 0.99 s). It
/// keeps a server from seeing thousands of connections at once.
const STORE_CALLS: usize = 256;

/// A read error whose location the caller adds (a block of a file).
fn read_err(message: String) -> Error {
    Error::Read {
        location: None,
        message,
    }
}

/// An error reading `location` (credentials masked).
fn store_err(location: &str, e: impl std::fmt::Display) -> Error {
    let e = e.to_string();
    let shown = redact(location, location);
    if e.contains("timed out") {
        return Error::Timeout {
            location: shown,
            seconds: REQUEST_TIMEOUT.as_secs(),
            message: redact(
                location,
                &format!(
                    "cannot read '{location}': no answer within the {} s request timeout \
                     (retried until {} s had passed): {e}",
                    REQUEST_TIMEOUT.as_secs(),
                    RETRY_TIMEOUT.as_secs()
                ),
            ),
        };
    }
    Error::Read {
        location: Some(shown),
        message: redact(location, &format!("cannot read '{location}': {e}")),
    }
}

/// [`store_err`] with the whole cause chain (object_store and reqwest keep
/// the reason, e.g. a refused redirect, in their sources).
fn chain_err(location: &str, e: &(dyn std::error::Error + 'static)) -> Error {
    store_err(location, crate::error::chain_message(e))
}

/// A header's bytes come from the object's store, one permit per call.
impl tiff::Source for Object {
    async fn get(&self, range: Range<u64>) -> std::result::Result<Bytes, HeaderError> {
        let _permit = self
            .permit()
            .await
            .map_err(|e| HeaderError::Read(e.to_string()))?;
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(|e| HeaderError::Read(crate::error::chain_message(&e)))
    }
}

/// What is needed to read band 1 of a TIFF: its block grid and codec.
#[derive(Debug)]
pub(crate) struct Layout {
    width: usize,
    height: usize,
    block_w: usize,
    block_h: usize,
    across: usize,
    /// Strips hold only the rows left in the last one; tiles are always whole.
    strips: bool,
    /// Band 1's blocks, row-major: byte offset and length (0 = sparse).
    offsets: Vec<u64>,
    counts: Vec<u64>,
    /// Samples interleaved in a block (1 when bands are planar).
    samples: usize,
    compression: Compression,
    photometric: PhotometricInterpretation,
    jpeg_tables: Option<Bytes>,
    predictor: bool,
    /// Value of pixels in sparse blocks (GDAL's rule: the nodata, else 0).
    sparse_fill: u8,
    /// What decoding depends on (codec, predictor, block shape, JPEG
    /// tables), hashed: blocks of equal bytes and signature decode alike
    /// (see [`crate::raster::constant`]).
    codec: u64,
}

impl Layout {
    /// The block columns and rows `w` (file pixels) covers; `None` when it
    /// is empty or not inside the image.
    fn blocks_of(
        &self,
        w: Window,
    ) -> Option<(
        std::ops::RangeInclusive<usize>,
        std::ops::RangeInclusive<usize>,
    )> {
        if w.width == 0
            || w.height == 0
            || w.x + w.width > self.width
            || w.y + w.height > self.height
        {
            return None;
        }
        Some((
            w.x / self.block_w..=(w.x + w.width - 1) / self.block_w,
            w.y / self.block_h..=(w.y + w.height - 1) / self.block_h,
        ))
    }

    fn from_ifd(ifd: &Ifd, location: &str) -> Result<Self> {
        let bad = |m: String| store_err(location, m);
        let uint = |tag| ifd.uint(tag);
        let (Some(width), Some(height)) = (uint(tiff::IMAGE_WIDTH), uint(tiff::IMAGE_LENGTH))
        else {
            return Err(bad("the TIFF has no image width or height".into()));
        };
        let bits = ifd.uints(tiff::BITS_PER_SAMPLE);
        let format = ifd.uints(tiff::SAMPLE_FORMAT);
        if bits.as_ref().and_then(|b| b.first()) != Some(&8)
            || format
                .as_ref()
                .and_then(|f| f.first())
                .is_some_and(|f| *f != 1)
        {
            return Err(bad(format!(
                "band 1 is not 8-bit unsigned (bits per sample {:?}, sample format {:?}); \
                 flood masks are uint8",
                bits.unwrap_or_default(),
                format.unwrap_or_else(|| vec![1])
            )));
        }
        let predictor = match uint(tiff::PREDICTOR) {
            None | Some(1) => false,
            Some(2) => true,
            Some(p) => return Err(bad(format!("unsupported TIFF predictor {p}"))),
        };
        let compression = Compression::from_u16_exhaustive(
            u16::try_from(uint(tiff::COMPRESSION).unwrap_or(1)).unwrap_or(u16::MAX),
        );
        if !DECODERS.as_ref().contains_key(&compression) {
            return Err(bad(format!("unsupported TIFF compression {compression:?}")));
        }
        let photometric = uint(tiff::PHOTOMETRIC).unwrap_or(1);
        let Some(photometric) = u16::try_from(photometric)
            .ok()
            .and_then(PhotometricInterpretation::from_u16)
        else {
            return Err(bad(format!(
                "unsupported TIFF photometric interpretation {photometric}"
            )));
        };
        let (bw, bh, offsets, counts, strips) =
            match (uint(tiff::TILE_WIDTH), uint(tiff::TILE_LENGTH)) {
                (Some(tw), Some(th)) => (tw, th, tiff::TILE_OFFSETS, tiff::TILE_BYTE_COUNTS, false),
                _ => (
                    width,
                    uint(tiff::ROWS_PER_STRIP).unwrap_or(height),
                    tiff::STRIP_OFFSETS,
                    tiff::STRIP_BYTE_COUNTS,
                    true,
                ),
            };
        let (Some(offsets), Some(counts)) = (ifd.uints(offsets), ifd.uints(counts)) else {
            return Err(bad("the TIFF has no block offsets or byte counts".into()));
        };
        if bw == 0 || bh == 0 || width == 0 || height == 0 {
            return Err(bad(format!(
                "empty TIFF or block size ({width}x{height}, blocks {bw}x{bh})"
            )));
        }
        let samples = match uint(tiff::PLANAR_CONFIGURATION) {
            Some(2) => 1,
            _ => uint(tiff::SAMPLES_PER_PIXEL).unwrap_or(1).max(1),
        };
        let bh = bh.min(height);
        // what one decoded block takes: bounded before anything is allocated
        let block_bytes = bw
            .checked_mul(bh)
            .and_then(|p| p.checked_mul(samples))
            .filter(|&b| b <= MAX_BLOCK_BYTES);
        let (Some(_), Ok(width), Ok(height), Ok(block_w), Ok(block_h), Ok(samples)) = (
            block_bytes,
            usize::try_from(width),
            usize::try_from(height),
            usize::try_from(bw),
            usize::try_from(bh),
            usize::try_from(samples),
        ) else {
            return Err(bad(format!(
                "blocks of {bw}x{bh} px and {samples} samples are larger than {} MB",
                MAX_BLOCK_BYTES >> 20
            )));
        };
        let across = width.div_ceil(block_w);
        let n = across.checked_mul(height.div_ceil(block_h));
        let Some(n) = n.filter(|&n| offsets.len() >= n && counts.len() >= n) else {
            return Err(bad(format!(
                "the TIFF lists {} blocks, its size ({width}x{height} px in blocks of \
                 {block_w}x{block_h}) needs {}",
                offsets.len().min(counts.len()),
                n.map_or("more".into(), |n| n.to_string())
            )));
        };
        let sparse_fill = ifd
            .ascii(tiff::GDAL_NODATA)
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| (0.0..=255.0).contains(v) && v.fract() == 0.0)
            .map_or(0, |v| v as u8);
        let jpeg_tables = ifd.raw(tiff::JPEG_TABLES).map(Bytes::copy_from_slice);
        let codec = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            format!("{compression:?} {photometric:?}").hash(&mut h);
            (block_w, block_h, samples, predictor, strips).hash(&mut h);
            jpeg_tables.hash(&mut h);
            h.finish()
        };
        let mut offsets = offsets;
        let mut counts = counts;
        offsets.truncate(n);
        counts.truncate(n);
        // a block's compressed bytes: no codec TIFF uses more than twice
        // the decoded size (LZW's worst is 1.5x), so a count above that is
        // a lie that would have us read gigabytes for one block
        let most = 2 * block_bytes.unwrap_or(MAX_BLOCK_BYTES) + 4096;
        if let Some(i) =
            (0..n).find(|&i| counts[i] > most || offsets[i].checked_add(counts[i]).is_none())
        {
            return Err(bad(format!(
                "malformed TIFF header: block {i} is {} bytes at byte {}, more than a block \
                 of {block_w}x{block_h} px can take ({most} bytes)",
                counts[i], offsets[i]
            )));
        }
        Ok(Layout {
            width,
            height,
            block_w,
            block_h,
            across,
            strips,
            offsets,
            counts,
            samples,
            compression,
            photometric,
            jpeg_tables,
            predictor,
            sparse_fill,
            codec,
        })
    }

    /// Rows actually stored in block row `by`.
    fn rows_in(&self, by: usize) -> usize {
        if self.strips {
            self.block_h.min(self.height - by * self.block_h)
        } else {
            self.block_h
        }
    }

    /// Decodes block `i` (bytes of one block) into its samples, predictor
    /// undone. A DEFLATE block without predictor may stop after its first
    /// `top` rows: it does when `keep_going` says no to their samples;
    /// otherwise every row is decoded.
    fn decode_block(
        &self,
        i: usize,
        by: usize,
        bytes: Bytes,
        top: usize,
        keep_going: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>> {
        let stride = self.block_w * self.samples;
        let rows = self.rows_in(by);
        let mut v = if matches!(self.compression, Compression::Deflate) {
            // GFM's codec, decoded into a buffer of the block's size (the
            // generic decoder grows its output from empty, one reallocation
            // after another, for every block). flate2's zlib-rs backend:
            // measured 1.7-2x faster than libdeflate on GFM-like blocks
            // (benches/inflate_floor.rs)
            let err = |e: String| read_err(format!("decoding block {i}: {e}"));
            let full = self.block_h * stride;
            if top < rows && !self.predictor {
                // a block at the bottom edge of a window: its first rows
                // only, unless they say to go on (the rest is inflated
                // then, the stream resumed where it stopped); as libtiff
                // stops once it has the bytes it asked for, the stream's
                // checksum is then not reached
                let mut v = Vec::with_capacity(top * stride);
                if !inflate(&bytes, &mut v, top * stride, full, false).map_err(err)? {
                    if !keep_going(&v[..top * stride]) {
                        return Ok(v);
                    }
                    v.reserve_exact(full.saturating_sub(v.len()));
                    inflate(&bytes, &mut v, usize::MAX, full, true).map_err(err)?;
                }
                v
            } else {
                let mut v = scratch::take(full);
                inflate(&bytes, &mut v, usize::MAX, full, false).map_err(err)?;
                v
            }
        } else if let Some(v) = matches!(self.compression, Compression::ZSTD)
            .then(|| unzstd(&bytes, scratch::take(self.block_h * stride)))
            .flatten()
        {
            v.map_err(|e| read_err(format!("decoding block {i}: {e}")))?
        } else if matches!(self.compression, Compression::LZW) {
            unlzw(&bytes, self.block_h * stride)
                .map_err(|e| read_err(format!("decoding block {i}: {e}")))?
        } else {
            let decoder = DECODERS
                .as_ref()
                .get(&self.compression)
                .ok_or_else(|| Error::Internal("decoder vanished from the registry".into()))?;
            decoder
                .decode_tile(
                    bytes,
                    self.photometric,
                    self.jpeg_tables.as_deref(),
                    self.samples as u16,
                    8,
                    None,
                )
                .map_err(|e| read_err(format!("decoding block {i}: {e}")))?
        };
        let need = rows * stride;
        if v.len() < need {
            return Err(read_err(format!(
                "block {i} decodes to {} bytes, {need} expected (corrupt file?)",
                v.len()
            )));
        }
        if self.predictor {
            for row in v[..need].chunks_mut(stride) {
                for k in self.samples..row.len() {
                    row[k] = row[k].wrapping_add(row[k - self.samples]);
                }
            }
        }
        Ok(v)
    }
}

/// Inflates a zlib stream (a DEFLATE block) into `out`'s spare capacity,
/// growing it only if the block is larger than reserved: no zero-fill
/// before writing (as `read_to_end` does) and one inflater per decode
/// thread, reset between blocks. Stops once `out` holds `stop` bytes (it
/// may hold more, up to its capacity) or at the stream's end, and says
/// whether it ended (its checksum then checked). Never holds more than
/// `cap` bytes (the block's size): a stream that goes on past them is cut
/// there, as libtiff stops once it has a block's bytes — and a block of a
/// few KB that would inflate to gigabytes is not. With `resume`, goes on
/// with this thread's last stream (`bytes` the same, `out` as left).
fn inflate(
    bytes: &[u8],
    out: &mut Vec<u8>,
    stop: usize,
    cap: usize,
    resume: bool,
) -> std::result::Result<bool, String> {
    use flate2::{Decompress, FlushDecompress, Status};
    thread_local! {
        static INFLATER: std::cell::RefCell<Decompress> = std::cell::RefCell::new(Decompress::new(true));
    }
    INFLATER.with_borrow_mut(|d| {
        if !resume {
            d.reset(true);
        }
        loop {
            if out.len() >= stop {
                return Ok(false);
            }
            let consumed = d.total_in() as usize;
            if out.len() >= cap {
                // the block is whole: its stream should end here (the
                // checksum); what it would inflate to past the block is
                // not kept, nor is the buffer grown for it
                let mut past = [0u8; 64];
                let status = d
                    .decompress(&bytes[consumed..], &mut past, FlushDecompress::Finish)
                    .map_err(|e| e.to_string())?;
                return Ok(matches!(status, Status::StreamEnd));
            }
            if out.len() == out.capacity() {
                out.reserve_exact(out.capacity().max(4096).min(cap - out.len()));
            }
            let before = out.len();
            let status = d
                .decompress_vec(&bytes[consumed..], out, FlushDecompress::Finish)
                .map_err(|e| e.to_string())?;
            match status {
                Status::StreamEnd => return Ok(true),
                // room to write was left, yet nothing came: the stream is cut short
                _ if out.len() == before && out.len() < out.capacity() => {
                    return Err("truncated DEFLATE stream".into())
                }
                _ => {}
            }
        }
    })
}

/// Decompresses a ZSTD block of `size` bytes with this decode thread's
/// context, into a buffer of that size (no zero-fill; async-tiff's decoder
/// makes a context per block and grows its output from empty). A frame
/// that holds more than `size` bytes is decoded up to them (streamed, the
/// rest not decoded), as libtiff does; one that holds fewer is reported by
/// the caller's length check. `None` only when no context can be made (the
/// generic decoder is used then).
///
/// `out` is an empty buffer of exactly `size` bytes' capacity (see
/// [`scratch`]).
fn unzstd(bytes: &[u8], mut out: Vec<u8>) -> Option<std::result::Result<Vec<u8>, String>> {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
    }
    let size = out.capacity();
    if CONTEXT
        .with_borrow_mut(|d| Some(d.as_mut()?.decompress_to_buffer(bytes, &mut out).is_ok()))?
    {
        return Some(Ok(out));
    }
    // too large for the block, or corrupt: streamed into the block's bytes
    let streamed = (|| {
        let mut d = Decoder::new().map_err(|e| e.to_string())?;
        out.clear();
        let mut input = InBuffer::around(bytes);
        while out.len() < size && input.pos() < bytes.len() {
            let (was_in, was_out) = (input.pos(), out.len());
            d.run(&mut input, &mut OutBuffer::around(&mut out))
                .map_err(|e| e.to_string())?;
            if input.pos() == was_in && out.len() == was_out {
                break;
            }
        }
        Ok(out)
    })();
    Some(streamed)
}

/// Decodes an LZW block (TIFF's variant, codes widened one code early)
/// into a buffer of the block's `size` bytes: a stream that goes on is cut
/// there, as libtiff reads it, and a corrupt one is an error (async-tiff's
/// decoder panics on it and grows its output without bound).
fn unlzw(bytes: &[u8], size: usize) -> std::result::Result<Vec<u8>, String> {
    use weezl::{decode::Decoder, BitOrder, LzwStatus};
    let mut out = vec![0u8; size];
    let mut d = Decoder::with_tiff_size_switch(BitOrder::Msb, 8);
    let (mut read, mut filled) = (0, 0);
    while filled < size {
        let r = d.decode_bytes(&bytes[read..], &mut out[filled..]);
        read += r.consumed_in;
        filled += r.consumed_out;
        match r.status.map_err(|e| format!("LZW: {e}"))? {
            LzwStatus::Done | LzwStatus::NoProgress => break,
            LzwStatus::Ok if r.consumed_in == 0 && r.consumed_out == 0 => break,
            LzwStatus::Ok => {}
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// Buffers of decoded blocks, kept by each decode thread and used again:
/// a window's blocks are decoded, copied into its pixels and dropped, one
/// block row after another, so a thread needs only a few at a time (a new
/// 256 KB buffer for every GFM block cost an allocation under the
/// allocator's lock and, often, fresh pages).
mod scratch {
    use std::cell::RefCell;

    /// Buffers a thread keeps (a window's block row holds a few at once).
    const KEPT: usize = 8;
    /// Larger buffers are not kept (one strip of a plain GeoTIFF can be
    /// hundreds of megabytes).
    const MAX_KEPT_BYTES: usize = 4 << 20;

    thread_local! {
        static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer of exactly `n` bytes' capacity (the decoders write
    /// up to the capacity, so it must be the block's size): a kept one, or
    /// a new one.
    pub(super) fn take(n: usize) -> Vec<u8> {
        SPARE
            .with_borrow_mut(|s| {
                let i = s.iter().position(|v| v.capacity() == n)?;
                Some(s.swap_remove(i))
            })
            .map(|mut v| {
                v.clear();
                v
            })
            .unwrap_or_else(|| Vec::with_capacity(n))
    }

    /// Gives `v` back for a later [`take`] on this thread; when `KEPT`
    /// are kept, the oldest goes (a buffer of a size no block asks for
    /// again, e.g. a window's bottom rows only, does not stay for good).
    pub(super) fn give(v: Vec<u8>) {
        if v.capacity() == 0 || v.capacity() > MAX_KEPT_BYTES {
            return;
        }
        SPARE.with_borrow_mut(|s| {
            if s.len() == KEPT {
                s.remove(0);
            }
            s.push(v);
        });
    }

    /// The capacities of this thread's kept buffers.
    #[cfg(test)]
    pub(super) fn kept() -> Vec<usize> {
        SPARE.with_borrow(|s| s.iter().map(Vec::capacity).collect())
    }
}

/// The compressed blocks of one window, ready to decode.
pub(crate) struct Fetched {
    layout: Arc<Layout>,
    window: Window,
    /// (block column, block row, bytes; None = sparse block).
    blocks: Vec<(usize, usize, Option<Bytes>)>,
    location: String,
}

impl Fetched {
    /// Compressed bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.2.as_ref().map_or(0, Bytes::len))
            .sum()
    }

    /// Decodes into the window's pixels (row-major, band 1). Blocks seen
    /// constant before are not inflated, and a window of one value is not
    /// materialised (see [`crate::raster::constant`]). CPU work and no I/O:
    /// called where the row is polled, as DataFusion's operators do theirs.
    pub(crate) fn decode(self) -> Result<Pixels> {
        let mut rows = Collect {
            width: self.window.width,
            area: self.window.area(),
            out: Vec::new(),
        };
        Ok(match self.decode_to(&mut rows)? {
            Some(v) => Pixels::Constant(v),
            None => Pixels::Data(rows.out),
        })
    }

    /// Decodes the window into `sink`, row by row: `Some(value)` (and
    /// nothing given to `sink`) when every pixel is that value. Otherwise
    /// the window's first rows of one value come as one run, then each
    /// later row's parts from left to right, one per block. Blocking.
    pub(crate) fn decode_to<S: RowSink + ?Sized>(self, sink: &mut S) -> Result<Option<u8>> {
        let Fetched {
            layout: l,
            window: w,
            blocks,
            location,
        } = self;
        // until a block differs from those before it: the one value of
        // every block so far, and the window rows they cover
        let mut started = false;
        let mut so_far: Option<u8> = None;
        let mut uniform_rows = 0;
        // blocks come row-major: one block row at a time
        for row in blocks.chunk_by(|a, b| a.1 == b.1) {
            let by = row[0].1;
            let (ys, ye) = l.rows_of(&w, by);
            // the block rows the window needs, from the first
            let top = ye - by * l.block_h;
            let decoded = row
                .iter()
                .map(|(bx, by, bytes)| {
                    l.classify(by * l.across + bx, *by, bytes.clone(), top)
                        .map(|b| (*bx, b))
                        .map_err(|e| store_err(&location, e))
                })
                .collect::<Result<Vec<_>>>()?;
            if !started {
                let value = decoded
                    .iter()
                    .try_fold(so_far, |acc, (_, b)| match (acc, b) {
                        (None, Block::Constant(v)) => Some(Some(*v)),
                        (Some(u), Block::Constant(v)) if u == *v => Some(Some(u)),
                        _ => None,
                    });
                if let Some(v) = value {
                    so_far = v;
                    uniform_rows += ye - ys;
                    continue;
                }
                started = true;
                if uniform_rows > 0 {
                    sink.value_rows(uniform_rows, so_far.unwrap_or(l.sparse_fill));
                }
            }
            for y in ys..ye {
                for (bx, block) in &decoded {
                    l.row_part(&w, *bx, by, y, block, sink);
                }
            }
            for (_, block) in decoded {
                if let Block::Data(v) = block {
                    scratch::give(v);
                }
            }
        }
        Ok((!started).then(|| so_far.unwrap_or(l.sparse_fill)))
    }
}

/// A part of a window row, as [`Fetched::decode_to`] gives it.
pub(crate) enum RowPart<'a> {
    /// These pixels.
    Pixels(&'a [u8]),
    /// This many pixels of one value.
    Value(usize, u8),
}

impl RowPart<'_> {
    /// Pixels in the part.
    pub(crate) fn len(&self) -> usize {
        match self {
            RowPart::Pixels(p) => p.len(),
            RowPart::Value(n, _) => *n,
        }
    }
}

/// Where [`Fetched::decode_to`] puts a window's pixels.
pub(crate) trait RowSink {
    /// The window's first `rows` rows are all `value` (called at most once,
    /// before any part).
    fn value_rows(&mut self, rows: usize, value: u8);
    /// Window row `y` holds `part` from column `x` (rows in order, parts
    /// of a row from left to right, every pixel of a row once).
    fn part(&mut self, y: usize, x: usize, part: RowPart<'_>);
}

/// The window's pixels, appended in order.
struct Collect {
    width: usize,
    area: usize,
    out: Vec<u8>,
}

impl RowSink for Collect {
    fn value_rows(&mut self, rows: usize, value: u8) {
        self.out.reserve_exact(self.area);
        self.out.resize(rows * self.width, value);
    }

    fn part(&mut self, y: usize, x: usize, part: RowPart<'_>) {
        debug_assert_eq!(self.out.len(), y * self.width + x);
        self.out
            .reserve_exact(self.area.saturating_sub(self.out.len()));
        match part {
            RowPart::Pixels(p) => self.out.extend_from_slice(p),
            RowPart::Value(n, v) => self.out.resize(self.out.len() + n, v),
        }
    }
}

/// A decoded block: one value throughout, or its samples.
enum Block {
    Constant(u8),
    Data(Vec<u8>),
}

impl Layout {
    /// Block `i` (in block row `by`; `None` = sparse) as a value or its
    /// samples, of which the caller needs the first `top` rows: a block
    /// whose bytes were seen constant is not inflated; a small block is
    /// checked once after decoding and remembered when it is one value. A
    /// block whose first `top` rows are not all one value may come with
    /// those rows only (see [`Layout::decode_block`]): the rest cannot make
    /// it constant.
    fn classify(&self, i: usize, by: usize, bytes: Option<Bytes>, top: usize) -> Result<Block> {
        let Some(bytes) = bytes else {
            return Ok(Block::Constant(self.sparse_fill));
        };
        let small = self.samples == 1 && bytes.len() <= constant::MAX_CONSTANT_BYTES;
        if small {
            if let Some(v) = constant::recall(self.codec, &bytes) {
                return Ok(Block::Constant(v));
            }
        }
        let keep_going: &dyn Fn(&[u8]) -> bool = if small {
            &|rows: &[u8]| constant::uniform(rows).is_some()
        } else {
            &|_: &[u8]| false
        };
        let data = self.decode_block(i, by, bytes.clone(), top, keep_going)?;
        if small {
            let need = self.rows_in(by) * self.block_w;
            // tiles: the whole block, padding included, so that the value
            // holds for any part of any tile with these bytes
            let whole = if self.strips { need } else { data.len() };
            if let Some(v) = constant::uniform(&data[..whole.min(data.len())]) {
                constant::remember(self.codec, &bytes, v);
                scratch::give(data);
                return Ok(Block::Constant(v));
            }
        }
        Ok(Block::Data(data))
    }

    /// The part of `run` (the file's bytes from `start`) from the first
    /// block of band 1 it holds whole to the last: (its start, its bytes;
    /// copied when it is not the whole run), or None if it holds none.
    fn blocks_part(&self, start: u64, run: &Bytes) -> Option<(u64, Bytes)> {
        let end = start.saturating_add(run.len() as u64);
        let (from, to) = self
            .offsets
            .iter()
            .zip(&self.counts)
            .filter(|&(&off, &n)| off != 0 && n != 0)
            .map(|(&off, &n)| (off, off.saturating_add(n)))
            .filter(|&(s, e)| start <= s && e <= end)
            .fold(None, |acc: Option<(u64, u64)>, (s, e)| match acc {
                None => Some((s, e)),
                Some((a, b)) => Some((a.min(s), b.max(e))),
            })?;
        let part = (from - start) as usize..(to - start) as usize;
        Some(if part.len() == run.len() {
            (start, run.clone())
        } else {
            (from, Bytes::copy_from_slice(&run[part]))
        })
    }

    /// The window rows `ys..ye` that block row `by` holds.
    fn rows_of(&self, w: &Window, by: usize) -> (usize, usize) {
        let y0 = by * self.block_h;
        let ys = w.y.max(y0);
        let ye = (w.y + w.height).min(y0 + self.block_h).min(self.height);
        (ys, ye)
    }

    /// Gives `sink` the part of image row `y` that `block` (at block column
    /// `bx`, row `by`) holds inside window `w`.
    fn row_part(
        &self,
        w: &Window,
        bx: usize,
        by: usize,
        y: usize,
        block: &Block,
        sink: &mut (impl RowSink + ?Sized),
    ) {
        let x0 = bx * self.block_w;
        let xs = w.x.max(x0);
        let xe = (w.x + w.width).min(x0 + self.block_w).min(self.width);
        let at = (y - w.y, xs - w.x);
        match block {
            Block::Constant(v) => sink.part(at.0, at.1, RowPart::Value(xe - xs, *v)),
            Block::Data(data) => {
                let stride = self.block_w * self.samples;
                let src = &data[(y - by * self.block_h) * stride..];
                if self.samples == 1 {
                    sink.part(at.0, at.1, RowPart::Pixels(&src[xs - x0..xe - x0]));
                } else {
                    let band: Vec<u8> = (xs..xe).map(|x| src[(x - x0) * self.samples]).collect();
                    sink.part(at.0, at.1, RowPart::Pixels(&band));
                }
            }
        }
    }
}

fn lock_blocks(m: &Mutex<ByteCache>) -> Result<std::sync::MutexGuard<'_, ByteCache>> {
    m.lock()
        .map_err(|_| Error::Internal("COG block cache poisoned by a panic".into()))
}

/// Native COG reader: layouts cached per location, windows fetched on the
/// runtime and decoded by the caller on a blocking thread. One per scan.
#[derive(Debug)]
pub(crate) struct CogReader {
    layouts: Arc<Mutex<LayoutCache>>,
    blocks: Arc<Mutex<ByteCache>>,
    /// The scan's read policy: checked before every read, and by the HTTP
    /// stores on every redirect.
    policy: Arc<ReadPolicy>,
    /// HTTP stores of this reader (their redirect rule is this scan's
    /// policy, so they are not shared through the runtime's registry).
    http_stores: Mutex<HashMap<Url, Arc<dyn ObjectStore>>>,
    /// Store calls in flight (see [`STORE_CALLS`]).
    calls: Arc<tokio::sync::Semaphore>,
}

impl CogReader {
    /// A reader that reads only what `policy` allows.
    pub(crate) fn new(policy: ReadPolicy) -> Self {
        CogReader {
            layouts: Arc::default(),
            blocks: Arc::new(Mutex::new(ByteCache::new(BLOCK_CACHE_BYTES))),
            policy: Arc::new(policy),
            http_stores: Mutex::default(),
            calls: Arc::new(tokio::sync::Semaphore::new(STORE_CALLS)),
        }
    }

    /// The object at `location` (after the read policy's check, while its
    /// header is not cached): HTTP stores
    /// are this reader's own, the others are taken from (or added to) the
    /// runtime's object store registry.
    fn object(&self, env: &RuntimeEnv, location: &str) -> Result<Object> {
        // checked when the header is read, i.e. once per location per scan
        // (not per window: for a local file the check resolves the path)
        if !self.layout_cache()?.map.contains_key(location) {
            self.policy.allow(location)?;
        }
        let (key, path) = split(location)?;
        let store = if matches!(key.scheme(), "http" | "https") {
            let mut stores = self
                .http_stores
                .lock()
                .map_err(|_| Error::Internal("HTTP store map poisoned by a panic".into()))?;
            match stores.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let s = match take_prepared(&key, &self.policy) {
                        Some(s) => s,
                        None => {
                            build_store(&key, &self.policy).map_err(|e| chain_err(location, &e))?
                        }
                    };
                    stores.insert(key, s.clone());
                    s
                }
            }
        } else {
            match env.object_store_registry.get_store(&key) {
                Ok(s) => s,
                Err(_) => {
                    let s = build_store(&key, &self.policy).map_err(|e| chain_err(location, &e))?;
                    env.register_object_store(&key, s.clone());
                    s
                }
            }
        };
        Ok(Object {
            store,
            path,
            location: location.to_string(),
            calls: self.calls.clone(),
        })
    }
}

#[derive(Default)]
struct LayoutCache {
    map: HashMap<String, Arc<Layout>, ahash::RandomState>,
    order: VecDeque<String>,
    /// Headers being read by a spawned task (as [`ByteCache`] lists runs being fetched).
    in_flight: HashMap<String, PendingLayout, ahash::RandomState>,
    /// Blocks to read ahead once a header being read is in: windows (file
    /// pixels) and the most bytes to read for them ([`CogReader::start_blocks`]).
    wanted: HashMap<String, Vec<(Vec<Window>, u64)>, ahash::RandomState>,
}

impl std::fmt::Debug for LayoutCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayoutCache")
            .field("layouts", &self.map.len())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

type PendingLayout = Shared<BoxFuture<'static, std::result::Result<Arc<Layout>, Arc<str>>>>;

impl CogReader {
    /// Runs `decode` on the decode pool and waits for its result: for
    /// windows that call GDAL (warped sources), which must not run on the
    /// runtime's threads; others are decoded where they are polled
    /// ([`Self::decode_here`]). The pool has one thread per core. Jobs
    /// queue without waiting for a free thread, so a partition whose stream
    /// is not being polled never holds up another.
    pub(crate) async fn decode<T: Send + 'static>(
        &self,
        decode: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        decode_pool()?.spawn(move || {
            let _ = tx.send(decode());
        });
        rx.await
            .map_err(|_| Error::Internal("a COG decode panicked".into()))
    }

    /// Runs `decode` on the calling thread — a runtime worker, when it
    /// involves no GDAL call: decoding is CPU work, like any DataFusion
    /// operator's, and the runtime has one worker per core, so as many
    /// windows are decoded at once as with the pool. Handing each window to
    /// the pool and its result back cost two thread wake-ups per window: on
    /// the GFM-shaped scene ~13 % of the wall time and a third of the system
    /// time (BENCHMARKS.md, session 41). A panic is an internal error, as
    /// on the pool.
    pub(crate) fn decode_here<T>(decode: impl FnOnce() -> T) -> Result<T> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
            .map_err(|_| Error::Internal("a COG decode panicked".into()))
    }

    fn layout_cache(&self) -> Result<std::sync::MutexGuard<'_, LayoutCache>> {
        lock_layouts(&self.layouts)
    }

    fn block_cache(&self) -> Result<std::sync::MutexGuard<'_, ByteCache>> {
        lock_blocks(&self.blocks)
    }

    /// The layout of `obj`, read from its header once and kept. Concurrent
    /// callers share one read, run by a spawned task.
    async fn layout(&self, obj: &Object) -> Result<Arc<Layout>> {
        match self.layout_or_read(obj)? {
            Ok(l) => Ok(l),
            Err(pending) => pending.await.map_err(|e| read_err(e.to_string())),
        }
    }

    /// The layout of `obj` when it is cached, or else its header's read in
    /// flight, started now by a spawned task if none is.
    fn layout_or_read(
        &self,
        obj: &Object,
    ) -> Result<std::result::Result<Arc<Layout>, PendingLayout>> {
        let mut c = self.layout_cache()?;
        Ok(self.layout_or_read_in(&mut c, obj))
    }

    /// [`Self::layout_or_read`], the layout cache locked.
    fn layout_or_read_in(
        &self,
        c: &mut LayoutCache,
        obj: &Object,
    ) -> std::result::Result<Arc<Layout>, PendingLayout> {
        if let Some(l) = c.map.get(&obj.location) {
            return Ok(l.clone());
        }
        if let Some(p) = c.in_flight.get(&obj.location) {
            return Err(p.clone());
        }
        tracing::debug!("header read: {}", redact_urls(&obj.location));
        let p: PendingLayout = spawn_shared(
            "header read",
            read_layout(obj.clone(), self.layouts.clone(), self.blocks.clone()),
        );
        c.in_flight.insert(obj.location.clone(), p.clone());
        Err(p)
    }

    /// Starts reading the header of the COG at `location` ahead of its
    /// windows, without waiting for it: the read runs as its own task and
    /// its layout is cached (a window's fetch then waits for its blocks
    /// only, or joins the read still in flight). Nothing is started when the
    /// header is cached or being read. An error (a refused or malformed
    /// location) is returned here; one of the read itself is met again by
    /// the window's fetch, which names the item.
    #[cfg(test)]
    pub(crate) fn start_header(&self, env: &RuntimeEnv, location: &str) -> Result<()> {
        {
            let c = self.layout_cache()?;
            if c.map.contains_key(location) || c.in_flight.contains_key(location) {
                return Ok(());
            }
        }
        let obj = self.object(env, location)?;
        self.layout_or_read(&obj).map(|_| ())
    }

    /// Starts reading the header of the COG at `location` (see
    /// [`Self::start_header`]) and waits for it.
    #[cfg(test)]
    pub(crate) async fn prefetch_header(&self, env: &RuntimeEnv, location: &str) -> Result<()> {
        self.start_header(env, location)?;
        let obj = self.object(env, location)?;
        self.layout(&obj).await.map(|_| ())
    }

    /// Starts fetching, in as few requests as the runs they make, every
    /// block of the COG at `location` that `windows` (file pixels: the
    /// windows a scan partition will read of it) need and the block cache
    /// neither holds nor is fetching; nothing when they come to more than
    /// `cap` bytes (the rows then fetch their own). Its header is read
    /// first when it is not cached: the blocks are then asked for by the
    /// header's read, before its layout is published, so that no row's
    /// fetch asks for them too. Without waiting: the runs are filed in the
    /// cache as pending, and the rows' fetches take or join them. A
    /// GFM-sized COG (100-500 KB) is then one request after its header
    /// instead of one per row. An error is a refused or malformed location;
    /// one of a read is left for the rows' fetches to report.
    pub(crate) fn start_blocks(
        &self,
        env: &RuntimeEnv,
        location: &str,
        windows: Vec<Window>,
        cap: u64,
    ) -> Result<()> {
        let obj = self.object(env, location)?;
        let mut c = self.layout_cache()?;
        match self.layout_or_read_in(&mut c, &obj) {
            Ok(layout) => {
                drop(c);
                let mut cache = self.block_cache()?;
                blocks_ahead(&self.blocks, &mut cache, &obj, &layout, windows, cap);
            }
            Err(_) => c
                .wanted
                .entry(location.to_string())
                .or_default()
                .push((windows, cap)),
        }
        Ok(())
    }

    /// Fetches the blocks of `window` (file pixels) of the COG at `location`,
    /// whose STAC metadata declares `expect` = (cols, rows).
    pub(crate) async fn fetch(
        &self,
        env: &RuntimeEnv,
        location: &str,
        expect: (usize, usize),
        window: Window,
    ) -> Result<Fetched> {
        let obj = self.object(env, location)?;
        let layout = self.layout(&obj).await?;
        if (layout.width, layout.height) != expect {
            return Err(Error::Read {
                location: Some(redact(location, location)),
                message: redact(
                    location,
                    &format!(
                        "'{location}' is {}x{} pixels but its STAC item's proj:shape says {}x{}",
                        layout.width, layout.height, expect.0, expect.1
                    ),
                ),
            });
        }
        let Some((cols, rows)) = layout.blocks_of(window) else {
            return Err(Error::Internal(format!(
                "window {window:?} outside '{location}' ({}x{})",
                layout.width, layout.height
            )));
        };
        // each block: kept bytes, part of a run being fetched, sparse, or
        // to fetch
        let mut blocks = Vec::new();
        let mut waits: Vec<(usize, PendingRun, u64, Range<u64>)> = Vec::new();
        let mut missing: Vec<(usize, Range<u64>)> = Vec::new();
        {
            let mut cache = self.block_cache()?;
            let file = cache.file(location);
            for by in rows {
                for bx in cols.clone() {
                    let i = by * layout.across + bx;
                    let (off, n) = (layout.offsets[i], layout.counts[i]);
                    if off == 0 || n == 0 {
                        blocks.push((bx, by, None)); // sparse
                        continue;
                    }
                    let range = off..off.saturating_add(n);
                    match file.map_or(Found::Missing, |f| f.find(range.clone())) {
                        Found::Kept(b) => blocks.push((bx, by, Some(b))),
                        Found::Pending(p, start) => {
                            waits.push((blocks.len(), p, start, range));
                            blocks.push((bx, by, Some(Bytes::new())));
                        }
                        Found::Missing => {
                            missing.push((blocks.len(), range));
                            blocks.push((bx, by, Some(Bytes::new())));
                        }
                    }
                }
            }
            if !missing.is_empty() {
                tracing::trace!(
                    "window {window:?} of {}: {} blocks not read ahead",
                    redact_urls(location),
                    missing.len()
                );
                let ranges: Vec<Range<u64>> = missing.iter().map(|m| m.1.clone()).collect();
                let (runs, pending) = begin_runs(&self.blocks, &mut cache, &obj, &ranges);
                for (slot, range) in missing {
                    // runs are sorted and disjoint: the last starting at or
                    // before the block holds it
                    let k = runs.partition_point(|r| r.start <= range.start) - 1;
                    waits.push((slot, pending[k].clone(), runs[k].start, range));
                }
            }
        }
        for (slot, pending, start, range) in waits {
            let run = pending.await.map_err(|e| store_err(location, e))?;
            let (from, to) = ((range.start - start) as usize, (range.end - start) as usize);
            if to > run.len() {
                return Err(store_err(
                    location,
                    format!(
                        "bytes {}..{}: the file ends before them (truncated file?)",
                        range.start, range.end
                    ),
                ));
            }
            blocks[slot].2 = Some(run.slice(from..to));
        }
        Ok(Fetched {
            layout,
            window,
            blocks,
            location: location.to_string(),
        })
    }
}

/// The runtime every store call of the readers runs on: one thread of its
/// own, apart from the runtime that decodes and fuses rows.
///
/// A scan's partitions keep the query runtime's workers busy: a row's
/// blocks are decoded where its stream is polled, and a stream whose rows
/// are ready does not yield. A fetch spawned there waited for a worker to
/// fall idle, and so did the socket events of the requests in flight: at
/// 100 ms per response, blocks read ahead at 0.28 s went out at 0.64 s and
/// the scan's last rows waited for them. Here requests go out when they
/// are asked for and their bytes are taken in when they come, whatever the
/// rows are doing (DataFusion's advice too: its `thread_pools` example runs
/// I/O on a runtime of its own). `None` when the thread cannot be started:
/// fetches then run on the caller's runtime.
static IO_RUNTIME: LazyLock<Option<tokio::runtime::Runtime>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("floodsql-io")
        .enable_all()
        .build()
        .map_err(|e| tracing::warn!("no I/O runtime ({e}): store calls share the query's"))
        .ok()
});

/// Runs `fut` as its own task on the I/O runtime ([`IO_RUNTIME`]) and
/// returns its result as a future any number of windows can wait for.
fn spawn_shared<T: Clone + Send + Sync + 'static>(
    what: &'static str,
    fut: impl std::future::Future<Output = std::result::Result<T, Arc<str>>> + Send + 'static,
) -> Shared<BoxFuture<'static, std::result::Result<T, Arc<str>>>> {
    let task = match IO_RUNTIME.as_ref() {
        Some(io) => io.spawn(fut),
        None => tokio::spawn(fut),
    };
    async move {
        match task.await {
            Ok(r) => r,
            Err(e) => Err(Arc::from(format!("{what} task failed: {e}"))),
        }
    }
    .boxed()
    .shared()
}

fn lock_layouts(m: &Mutex<LayoutCache>) -> Result<std::sync::MutexGuard<'_, LayoutCache>> {
    m.lock()
        .map_err(|_| Error::Internal("COG layout cache poisoned by a panic".into()))
}

/// Starts one spawned task fetching the runs `ranges` make (sorted,
/// disjoint block ranges, coalesced; one `get_ranges`: concurrent
/// requests), each run filed in `cache` (locked: `blocks`) as pending until
/// it is kept: the runs and each one's pending bytes.
fn begin_runs(
    blocks: &Arc<Mutex<ByteCache>>,
    cache: &mut ByteCache,
    obj: &Object,
    ranges: &[Range<u64>],
) -> (Vec<Range<u64>>, Vec<PendingRun>) {
    let key: Arc<str> = Arc::from(obj.location.as_str());
    let runs = runs_of(ranges, object_store::OBJECT_STORE_COALESCE_DEFAULT);
    let all: PendingRuns = spawn_shared(
        "block fetch",
        fetch_runs(
            obj.clone(),
            runs.clone(),
            key.clone(),
            blocks.clone(),
            std::time::Instant::now(),
        ),
    );
    let mut pending = Vec::with_capacity(runs.len());
    for (k, run) in runs.iter().enumerate() {
        let one: PendingRun = all
            .clone()
            .map(move |r| r.map(|v| v[k].clone()))
            .boxed()
            .shared();
        cache.begin(&key, run.clone(), one.clone());
        pending.push(one);
    }
    (runs, pending)
}

/// Starts fetching, in as few requests as the runs they make, every block
/// of `obj` (whose layout is `layout`) that `windows` need and `cache`
/// (locked: `blocks`) neither holds nor is fetching; nothing when they come
/// to more than `cap` bytes. Blocks kept are made recent: their rows are
/// coming.
fn blocks_ahead(
    blocks: &Arc<Mutex<ByteCache>>,
    cache: &mut ByteCache,
    obj: &Object,
    layout: &Layout,
    windows: Vec<Window>,
    cap: u64,
) {
    let location = obj.location.as_str();
    let mut needed = Vec::new();
    for (cols, rows) in windows.into_iter().filter_map(|w| layout.blocks_of(w)) {
        for by in rows {
            needed.extend(cols.clone().map(|bx| by * layout.across + bx));
        }
    }
    needed.sort_unstable();
    needed.dedup();
    let (mut kept, mut missing) = (Vec::new(), Vec::new());
    {
        let file = cache.file(location);
        for (off, n) in needed
            .into_iter()
            .map(|i| (layout.offsets[i], layout.counts[i]))
        {
            if off == 0 || n == 0 {
                continue; // sparse
            }
            let r = off..off.saturating_add(n);
            match file.map_or(Found::Missing, |f| f.find(r.clone())) {
                Found::Kept(_) => kept.push(r),
                Found::Pending(..) => {}
                Found::Missing => missing.push(r),
            }
        }
    }
    // the runs' bytes, gaps included, are what would be read
    let runs = runs_of(&missing, object_store::OBJECT_STORE_COALESCE_DEFAULT);
    let bytes: u64 = runs.iter().map(|r| r.end - r.start).sum();
    if bytes > cap {
        return;
    }
    for r in kept {
        cache.touch(location, r);
    }
    if missing.is_empty() {
        return;
    }
    tracing::debug!(
        "blocks of {} read ahead: {} blocks in {} runs, {bytes} bytes",
        redact_urls(location),
        missing.len(),
        runs.len()
    );
    begin_runs(blocks, cache, obj, &missing);
}

/// Reads the layout of `obj` from its header and files it in `cache`
/// (clearing its in-flight entry either way); the blocks that came with the
/// header's bytes go to `blocks`.
async fn read_layout(
    obj: Object,
    cache: Arc<Mutex<LayoutCache>>,
    blocks: Arc<Mutex<ByteCache>>,
) -> std::result::Result<Arc<Layout>, Arc<str>> {
    let started = std::time::Instant::now();
    let r = async {
        let mut reader = HeaderBytes::new(&obj);
        let header = |e| store_err(&obj.location, e);
        let (format, at) = tiff::read_header(&mut reader).await.map_err(header)?;
        if at == 0 {
            return Err(store_err(&obj.location, "the TIFF has no image"));
        }
        let (ifd, _) = tiff::read_ifd(&mut reader, format, at)
            .await
            .map_err(header)?;
        let layout = Layout::from_ifd(&ifd, &obj.location)?;
        Ok::<_, Error>((Arc::new(layout), reader.into_runs()))
    }
    .await;
    tracing::trace!(
        "header of {} read in {:?}",
        redact_urls(&obj.location),
        started.elapsed()
    );
    // the header's bytes and the blocks wanted are filed before the layout
    // is published (one lock of the layouts), so that no window's fetch
    // asks for them again and no wish is missed
    let mut c = lock_layouts(&cache).map_err(|e| Arc::from(e.to_string()))?;
    c.in_flight.remove(&obj.location);
    let wanted = c.wanted.remove(&obj.location).unwrap_or_default();
    let r = r.and_then(|(layout, header_runs)| {
        let mut b = lock_blocks(&blocks)?;
        // the bytes read with the header (its first 128 KB: for a small COG,
        // most of its blocks) are kept from its first whole block of band 1
        // to its last (not the IFDs, nor the overviews' tiles GDAL writes
        // before them), as the least recent: the blocks wanted soon are
        // made recent, the others go first
        let key: Arc<str> = Arc::from(obj.location.as_str());
        for (start, run) in header_runs {
            if let Some(part) = layout.blocks_part(start, &run) {
                b.keep_least_recent(&key, part.0, part.1);
            }
        }
        for (windows, cap) in wanted {
            blocks_ahead(&blocks, &mut b, &obj, &layout, windows, cap);
        }
        Ok(layout)
    });
    if let Ok(l) = &r {
        c.map.insert(obj.location.clone(), l.clone());
        c.order.push_back(obj.location.clone());
        while c.order.len() > CACHED_LAYOUTS {
            if let Some(old) = c.order.pop_front() {
                c.map.remove(&old);
            }
        }
    }
    drop(c);
    r.map_err(|e| Arc::from(e.to_string()))
}

/// The runs of one spawned fetch.
type PendingRuns = Shared<BoxFuture<'static, std::result::Result<Arc<Vec<Bytes>>, Arc<str>>>>;

/// Fetches byte `runs` of `obj`, keeps them in `cache` and clears their
/// pending entries, whether or not anyone still waits.
async fn fetch_runs(
    obj: Object,
    runs: Vec<Range<u64>>,
    key: Arc<str>,
    cache: Arc<Mutex<ByteCache>>,
    asked: std::time::Instant,
) -> std::result::Result<Arc<Vec<Bytes>>, Arc<str>> {
    let started = asked.elapsed();
    let got = match obj.permit().await {
        Ok(_permit) => obj
            .store
            .get_ranges(&obj.path, &runs)
            .await
            .map_err(|e| crate::error::chain_message(&e)),
        Err(e) => Err(e.to_string()),
    };
    tracing::trace!(
        "{} runs of {} fetched {:?} after they were asked (started after {started:?})",
        runs.len(),
        redact_urls(&key),
        asked.elapsed()
    );
    let got = got.and_then(|got| {
        if got.len() != runs.len() {
            return Err(format!(
                "{} ranges asked, {} returned",
                runs.len(),
                got.len()
            ));
        }
        for (r, b) in runs.iter().zip(&got) {
            if b.len() as u64 != r.end - r.start {
                return Err(format!(
                    "bytes {}..{}: {} read of {} (truncated file?)",
                    r.start,
                    r.end,
                    b.len(),
                    r.end - r.start
                ));
            }
        }
        Ok(got)
    });
    if let Ok(mut c) = lock_blocks(&cache) {
        for (k, r) in runs.iter().enumerate() {
            // kept first, so that a file whose only entry was this pending
            // run is not dropped from the map and added again
            if let Ok(got) = &got {
                c.keep(&key, r.start, got[k].clone());
            }
            c.end(&key, r);
        }
    }
    got.map(Arc::new).map_err(Arc::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdal::raster::{Buffer, RasterCreationOptions};
    use gdal::DriverManager;

    /// A decode done where it is polled reports a panic as an error.
    #[test]
    fn a_panicking_decode_is_an_error() {
        assert_eq!(CogReader::decode_here(|| 7).unwrap(), 7);
        let e = CogReader::decode_here(|| -> u8 { panic!("a decoder's bug") }).unwrap_err();
        assert!(matches!(e, Error::Internal(_)), "{e}");
    }

    /// A kept buffer is handed out again only with exactly the capacity
    /// asked for (the decoders write up to it), and empty.
    #[test]
    fn scratch_buffers_have_the_size_asked_for() {
        let mut v = scratch::take(1000);
        assert_eq!(v.capacity(), 1000);
        v.extend_from_slice(&[9; 1000]);
        let at = v.as_ptr();
        scratch::give(v);
        let w = scratch::take(999);
        assert_eq!((w.capacity(), w.len()), (999, 0));
        let v = scratch::take(1000);
        assert_eq!((v.capacity(), v.len(), v.as_ptr()), (1000, 0, at));
        // a thread's buffers all of sizes no longer asked for: the newest
        // given is kept all the same
        (0..20).for_each(|k| scratch::give(Vec::with_capacity(10 + k)));
        scratch::give(v);
        let kept = scratch::kept();
        assert_eq!((kept.len(), kept.last()), (8, Some(&1000)), "{kept:?}");
    }

    /// A GeoTIFF of `w`x`h` whose pixel (x, y) is `px(x, y)`, written by
    /// GDAL with the given creation options; returns its pixels.
    fn write_with(
        path: &std::path::Path,
        (w, h): (usize, usize),
        opts: &[&str],
        px: impl Fn(usize, usize) -> u8,
    ) -> Vec<u8> {
        let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
        let o = RasterCreationOptions::from_iter(opts.iter().copied());
        let mut ds = drv
            .create_with_band_type_with_options::<u8, _>(path, w, h, 1, &o)
            .unwrap();
        let v: Vec<u8> = (0..w * h).map(|i| px(i % w, i / w)).collect();
        ds.rasterband(1)
            .unwrap()
            .write((0, 0), (w, h), &mut Buffer::new((w, h), v.clone()))
            .unwrap();
        ds.flush_cache().unwrap();
        v
    }

    /// A GeoTIFF of `w`x`h` with pseudo-random runs.
    fn write(path: &std::path::Path, w: usize, h: usize, opts: &[&str]) -> Vec<u8> {
        write_with(path, (w, h), opts, |x, y| {
            [0u8, 1, 255][(x / 7 + y / 5 + (x * y) % 3) % 3]
        })
    }

    /// Window `win` of an image `w` pixels wide, row by row.
    fn crop(image: &[u8], w: usize, win: Window) -> Vec<u8> {
        (win.y..win.y + win.height)
            .flat_map(|y| image[y * w + win.x..y * w + win.x + win.width].to_vec())
            .collect()
    }

    fn window(x: usize, y: usize, width: usize, height: usize) -> Window {
        Window {
            x,
            y,
            width,
            height,
        }
    }

    #[tokio::test]
    async fn decodes_like_gdal_for_every_codec_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let env = RuntimeEnv::default();
        let reader = CogReader::new(ReadPolicy::allow_all());
        let cases: &[&[&str]] = &[
            &[
                "TILED=YES",
                "BLOCKXSIZE=32",
                "BLOCKYSIZE=16",
                "COMPRESS=DEFLATE",
            ],
            &[
                "TILED=YES",
                "BLOCKXSIZE=32",
                "BLOCKYSIZE=32",
                "COMPRESS=DEFLATE",
                "PREDICTOR=2",
            ],
            &["TILED=YES", "COMPRESS=LZW", "PREDICTOR=2"],
            &[
                "TILED=YES",
                "BLOCKXSIZE=16",
                "BLOCKYSIZE=16",
                "COMPRESS=ZSTD",
            ],
            &["COMPRESS=DEFLATE", "ROWSPERSTRIP=7"],
            &["COMPRESS=NONE"],
        ];
        let (w, h) = (101, 77);
        for (k, opts) in cases.iter().enumerate() {
            let p = dir.path().join(format!("{k}.tif"));
            let truth = write(&p, w, h, opts);
            let loc = p.display().to_string();
            for win in [
                window(0, 0, w, h),
                window(3, 5, 40, 30),
                window(90, 70, 11, 7),
            ] {
                let got = reader
                    .fetch(&env, &loc, (w, h), win)
                    .await
                    .unwrap()
                    .decode()
                    .unwrap()
                    .into_vec(win.area());
                let want = crop(&truth, w, win);
                assert_eq!(got, want, "{opts:?} {win:?}");
            }
        }
    }

    /// Windows of a file larger than the header's first read, read at once
    /// (blocks found in runs other windows are still fetching) and then
    /// again one by one (blocks found in kept runs, at any offset in them),
    /// give GDAL's pixels: the runs are sliced right.
    #[tokio::test]
    async fn windows_sharing_runs_read_like_gdal() {
        let dir = tempfile::tempdir().unwrap();
        let env = RuntimeEnv::default();
        let reader = CogReader::new(ReadPolicy::allow_all());
        let (w, h) = (700, 600);
        let p = dir.path().join("big.tif");
        let truth = write_with(
            &p,
            (w, h),
            &[
                "TILED=YES",
                "BLOCKXSIZE=16",
                "BLOCKYSIZE=16",
                "COMPRESS=NONE",
            ],
            |x, y| (x * 31 + y * 17 + (x * y) % 7) as u8,
        );
        assert!(std::fs::metadata(&p).unwrap().len() > 3 * (128 << 10));
        let loc = p.display().to_string();
        let windows: Vec<Window> = (0..12)
            .map(|k| window(37 * k + 3, 43 * k % 500, 100 + k, 90 - k))
            .collect();
        let read = |win: Window| {
            let (reader, env, loc) = (&reader, &env, &loc);
            async move {
                reader
                    .fetch(env, loc, (w, h), win)
                    .await
                    .unwrap()
                    .decode()
                    .unwrap()
                    .into_vec(win.area())
            }
        };
        let at_once = futures::future::join_all(windows.iter().map(|&win| read(win))).await;
        for (win, got) in windows.iter().zip(at_once) {
            assert_eq!(got, crop(&truth, w, *win), "{win:?} at once");
        }
        for &win in windows.iter().rev() {
            assert_eq!(read(win).await, crop(&truth, w, win), "{win:?} again");
        }
    }

    /// A 16 px-block GeoTIFF of `w` x `h` whose blocks are constant 0, 1 or
    /// 255 (by position) except every fifth, which holds a pattern; its
    /// size is not a multiple of the block, so edge blocks are partial.
    fn write_blocky(path: &std::path::Path, w: usize, h: usize, opts: &[&str]) -> Vec<u8> {
        write_with(path, (w, h), opts, |x, y| {
            let block = (x / 16) + 7 * (y / 16);
            if block % 5 == 4 {
                [0u8, 1, 255][(x + 2 * y) % 3]
            } else {
                [0u8, 1, 255][block % 3]
            }
        })
    }

    #[tokio::test]
    async fn constant_blocks_decode_as_their_bytes_would() {
        // each window is read twice: first every block is inflated (and the
        // constant ones remembered), then the remembered ones are not; both
        // give GDAL's pixels, for blocks of 0, 1 and 255, partial edge
        // blocks, with and without a predictor, DEFLATE and ZSTD
        let dir = tempfile::tempdir().unwrap();
        let env = RuntimeEnv::default();
        let (w, h) = (103, 71);
        let cases: &[&[&str]] = &[
            &[
                "TILED=YES",
                "BLOCKXSIZE=16",
                "BLOCKYSIZE=16",
                "COMPRESS=DEFLATE",
            ],
            &[
                "TILED=YES",
                "BLOCKXSIZE=16",
                "BLOCKYSIZE=16",
                "COMPRESS=DEFLATE",
                "PREDICTOR=2",
            ],
            &[
                "TILED=YES",
                "BLOCKXSIZE=16",
                "BLOCKYSIZE=16",
                "COMPRESS=ZSTD",
            ],
            &["COMPRESS=DEFLATE", "BLOCKYSIZE=16"],
        ];
        for (k, opts) in cases.iter().enumerate() {
            let p = dir.path().join(format!("c{k}.tif"));
            let truth = write_blocky(&p, w, h, opts);
            let loc = p.display().to_string();
            for pass in 0..2 {
                let reader = CogReader::new(ReadPolicy::allow_all());
                for win in [
                    window(0, 0, w, h),
                    window(5, 3, 40, 30),
                    window(96, 64, 7, 7),  // the corner's partial block
                    window(16, 0, 16, 16), // one whole block
                    window(17, 18, 9, 9),  // inside one block
                ] {
                    let got = reader
                        .fetch(&env, &loc, (w, h), win)
                        .await
                        .unwrap()
                        .decode()
                        .unwrap();
                    let want = crop(&truth, w, win);
                    let one = constant::uniform(&want);
                    let tiled = opts.contains(&"TILED=YES");
                    match (&got, one) {
                        // a window inside constant tiles comes as their
                        // value once the tiles were seen (a strip spans the
                        // image's width: it is not constant here)
                        (Pixels::Constant(v), Some(u)) => assert_eq!(*v, u),
                        (Pixels::Data(_), Some(_)) if pass == 0 || !tiled => {}
                        (Pixels::Data(d), None) => assert_eq!(d, &want, "{opts:?} {win:?}"),
                        _ => panic!("{opts:?} {win:?} pass {pass}: {got:?} for {one:?}"),
                    }
                    assert_eq!(got.into_vec(win.area()), want, "{opts:?} {win:?}");
                }
            }
        }
    }

    /// Blocks under a window's bottom edge, decoded only as far as the
    /// window needs: a block whose top rows are one value and the rest a
    /// pattern (inflated on to its end, never taken for constant), a block
    /// of a pattern throughout (small: ~1 KB compressed) and one of noise
    /// (large: over 4 KB compressed), as tiles and as strips. Windows end
    /// inside each part; every window equals GDAL's pixels, and after the
    /// partial reads the whole image still does (nothing remembered from a
    /// part of a block).
    #[tokio::test]
    async fn blocks_cut_by_the_window_bottom_decode_as_gdal() {
        let dir = tempfile::tempdir().unwrap();
        let env = RuntimeEnv::default();
        let (w, h) = (128, 192);
        let mut x: u64 = 7;
        let noise: Vec<u8> = (0..w * h)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        let px = |x: usize, y: usize| match y / 64 {
            // block row 0: top 40 rows one value, then a pattern
            0 if y < 40 => 7,
            0 => [0u8, 1, 255][(x + 2 * y) % 3],
            // block row 1: a pattern
            1 => [0u8, 1, 255][(x / 3 + y) % 3],
            // block row 2: noise
            _ => noise[y * w + x],
        };
        let cases: &[&[&str]] = &[
            &[
                "TILED=YES",
                "BLOCKXSIZE=128",
                "BLOCKYSIZE=64",
                "COMPRESS=DEFLATE",
            ],
            &["COMPRESS=DEFLATE", "BLOCKYSIZE=64"],
        ];
        for (k, opts) in cases.iter().enumerate() {
            let p = dir.path().join(format!("b{k}.tif"));
            let truth = write_with(&p, (w, h), opts, px);
            let loc = p.display().to_string();
            let reader = CogReader::new(ReadPolicy::allow_all());
            for win in [
                window(0, 0, w, 20),    // inside the one-value rows
                window(3, 10, 50, 40),  // past them, into the pattern
                window(0, 60, w, 30),   // into the pattern block
                window(5, 100, 90, 60), // into the noise block
                window(0, 0, w, h),
                window(0, 0, w, 20),
            ] {
                let got = reader
                    .fetch(&env, &loc, (w, h), win)
                    .await
                    .unwrap()
                    .decode()
                    .unwrap()
                    .into_vec(win.area());
                assert_eq!(got, crop(&truth, w, win), "{opts:?} {win:?}");
            }
        }
    }

    /// The error of reading one pixel of `location`, declared `expect` in size.
    async fn fetch_err(reader: &CogReader, location: &str, expect: (usize, usize)) -> String {
        fetch_err_in(reader, location, expect, window(0, 0, 1, 1)).await
    }

    /// The error of reading window `w` of `location`.
    async fn fetch_err_in(
        reader: &CogReader,
        location: &str,
        expect: (usize, usize),
        w: Window,
    ) -> String {
        let env = RuntimeEnv::default();
        match reader.fetch(&env, location, expect, w).await {
            Ok(_) => panic!("reading '{location}' succeeded"),
            Err(e) => e.to_string(),
        }
    }

    /// A header read ahead is cached and shared by concurrent readers, and
    /// the blocks its first read brought are filed: a file smaller than
    /// [`tiff::HEADER_READ`] is read in one request, and its windows then need
    /// none (it can be gone). Blocks past that first read are fetched. A
    /// header that cannot be read is an error naming the file, and not
    /// cached.
    #[tokio::test]
    async fn headers_read_ahead_are_cached_with_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let env = RuntimeEnv::default();
        let reader = CogReader::new(ReadPolicy::allow_all());
        let opts = DEFLATE_16;
        let p = dir.path().join("a.tif");
        let px = write(&p, 40, 30, &opts);
        let loc = p.display().to_string();
        // started, not awaited: the read is in flight (or done) at once
        reader.start_header(&env, &loc).unwrap();
        {
            let c = reader.layout_cache().unwrap();
            assert!(c.in_flight.contains_key(&loc) || c.map.contains_key(&loc));
        }
        let (a, b) = futures::join!(
            reader.prefetch_header(&env, &loc),
            reader.prefetch_header(&env, &loc)
        );
        a.unwrap();
        b.unwrap();
        assert!(reader.layout_cache().unwrap().map.contains_key(&loc));
        std::fs::remove_file(&p).unwrap();
        let f = reader
            .fetch(&env, &loc, (40, 30), window(0, 0, 40, 30))
            .await
            .unwrap();
        assert_eq!(f.decode().unwrap().into_vec(40 * 30), px);

        // noise does not compress: most of this file is past the first read
        let big = dir.path().join("big.tif");
        let noise = write_with(&big, (1024, 1024), &opts, |x, y| {
            let mut h = (x as u32).wrapping_mul(0x9E37_79B1) ^ (y as u32).wrapping_mul(0x85EB_CA77);
            h ^= h >> 15;
            h = h.wrapping_mul(0x2C1B_3C6D);
            h ^= h >> 12;
            (h >> 24) as u8
        });
        let loc = big.display().to_string();
        reader.prefetch_header(&env, &loc).await.unwrap();
        let all = window(0, 0, 1024, 1024);
        let f = reader.fetch(&env, &loc, (1024, 1024), all).await.unwrap();
        assert_eq!(f.decode().unwrap().into_vec(1024 * 1024), noise);
        let other = CogReader::new(ReadPolicy::allow_all());
        other.prefetch_header(&env, &loc).await.unwrap();
        std::fs::remove_file(&big).unwrap();
        let e = fetch_err_in(&other, &loc, (1024, 1024), all).await;
        assert!(e.contains("big.tif"), "{e}");

        let missing = dir.path().join("none.tif").display().to_string();
        for _ in 0..2 {
            let e = reader
                .prefetch_header(&env, &missing)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("none.tif"), "{e}");
            assert!(!reader.layout_cache().unwrap().map.contains_key(&missing));
        }
    }

    /// Tiled COGs of 16 px DEFLATE blocks.
    const DEFLATE_16: [&str; 4] = [
        "TILED=YES",
        "BLOCKXSIZE=16",
        "BLOCKYSIZE=16",
        "COMPRESS=DEFLATE",
    ];

    /// Pixels that do not compress.
    fn noise(x: usize, y: usize) -> u8 {
        let mut h = (x as u32).wrapping_mul(0x9E37_79B1) ^ (y as u32).wrapping_mul(0x85EB_CA77);
        h ^= h >> 15;
        h = h.wrapping_mul(0x2C1B_3C6D);
        (h >> 24) as u8
    }

    /// A local file system counting the reads made of it (one per range
    /// asked of `get_ranges`, one per `get_opts`).
    #[derive(Debug, Default)]
    struct CountingStore {
        inner: object_store::local::LocalFileSystem,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl CountingStore {
        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn add(&self, n: usize) {
            self.reads.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl std::fmt::Display for CountingStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "CountingStore({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for CountingStore {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.add(1);
            self.inner.get_opts(location, options).await
        }
        async fn get_ranges(
            &self,
            location: &ObjectPath,
            ranges: &[Range<u64>],
        ) -> object_store::Result<Vec<Bytes>> {
            self.add(ranges.len());
            self.inner.get_ranges(location, ranges).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// The blocks all of a partition's windows need of a COG are fetched
    /// with its header, in one request past its first read, whether the
    /// header is being read or cached: the windows' fetches, started at
    /// once, read nothing more (the file can then be gone) and decode to
    /// its pixels. Over the cap, nothing is read ahead.
    #[tokio::test]
    async fn blocks_read_ahead_serve_every_window() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DEFLATE_16;
        // windows past the header's first read (128 KB of a ~260 KB file)
        let windows = [
            window(0, 300, 512, 100),
            window(40, 400, 300, 112),
            window(0, 0, 64, 64),
        ];
        let cases = [
            (1 << 20, true, false),
            (1 << 20, true, true),
            (16 << 10, false, false),
        ];
        for (cap, served, header_first) in cases {
            let env = Arc::new(RuntimeEnv::default());
            let store = Arc::new(CountingStore::default());
            env.register_object_store(&Url::parse("file:///").unwrap(), store.clone());
            let p = dir.path().join(format!("n{cap}{header_first}.tif"));
            let px = write_with(&p, (512, 512), &opts, noise);
            assert!(std::fs::metadata(&p).unwrap().len() > tiff::HEADER_READ + (64 << 10));
            let loc = p.display().to_string();
            let reader = Arc::new(CogReader::new(ReadPolicy::allow_all()));
            if header_first {
                reader.prefetch_header(&env, &loc).await.unwrap();
            }
            reader
                .start_blocks(&env, &loc, windows.to_vec(), cap)
                .unwrap();
            // fetches started at once: they join the reads ahead
            let fetches = futures::future::join_all(
                windows
                    .iter()
                    .map(|w| reader.fetch(&env, &loc, (512, 512), *w)),
            )
            .await;
            let reads = store.reads();
            std::fs::remove_file(&p).unwrap();
            let want = |w: &Window| crop(&px, 512, *w);
            for (w, f) in windows.iter().zip(fetches) {
                let got = f.unwrap().decode().unwrap().into_vec(w.width * w.height);
                assert_eq!(got, want(w));
            }
            if served {
                // the header's first read, then one run for all three windows
                assert_eq!(reads, 2, "reads (header first: {header_first})");
                for w in &windows[..2] {
                    let f = reader.fetch(&env, &loc, (512, 512), *w).await.unwrap();
                    assert_eq!(f.decode().unwrap().into_vec(w.width * w.height), want(w));
                }
            } else {
                // each window past the first read fetched its own blocks
                assert_eq!(reads, 3, "blocks over the cap were read ahead");
            }
        }
    }

    /// Reads go out, and their bytes come in, while the runtime that asked
    /// for them is busy: a scan's rows decode where they are polled and do
    /// not yield, and blocks read ahead must not wait for them. Here the
    /// asking runtime (one thread) is blocked outright; the header's read
    /// and the run of blocks after it are still made and kept, and the
    /// windows then decode with nothing more read. (On the query's runtime,
    /// as before [`IO_RUNTIME`], neither read is made until it yields.)
    #[tokio::test(flavor = "current_thread")]
    async fn reads_ahead_go_out_while_the_asking_runtime_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let env = Arc::new(RuntimeEnv::default());
        let store = Arc::new(CountingStore::default());
        env.register_object_store(&Url::parse("file:///").unwrap(), store.clone());
        let p = dir.path().join("busy.tif");
        let px = write_with(&p, (512, 512), &DEFLATE_16, noise);
        let loc = p.display().to_string();
        let reader = Arc::new(CogReader::new(ReadPolicy::allow_all()));
        let w = window(0, 300, 512, 100); // past the header's first read
        reader.start_blocks(&env, &loc, vec![w], 1 << 20).unwrap();
        // the only thread of this runtime, busy and never yielding
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.reads() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(store.reads(), 2, "reads made while the runtime was busy");
        let f = reader.fetch(&env, &loc, (512, 512), w).await.unwrap();
        let got = f.decode().unwrap().into_vec(w.width * w.height);
        assert_eq!(got, crop(&px, 512, w));
        assert_eq!(store.reads(), 2, "the window read its blocks again");
    }

    /// Where entry `tag` of the first IFD of a little-endian classic TIFF
    /// starts.
    fn entry_at(f: &[u8], tag: u16) -> usize {
        let at = u32::from_le_bytes(f[4..8].try_into().unwrap()) as usize;
        let n = u16::from_le_bytes([f[at], f[at + 1]]) as usize;
        (0..n)
            .map(|i| at + 2 + 12 * i)
            .find(|&e| u16::from_le_bytes([f[e], f[e + 1]]) == tag)
            .unwrap()
    }

    /// A header that lies is an error naming the file, never a panic, an
    /// abort or a read of the whole file: a field type TIFF does not define
    /// (the entry skipped), a count of 2^31 block offsets, blocks of 4 GB,
    /// a block said to take 65535 bytes compressed, 14 times its size;
    /// an IFD 40 MB into a (sparse) file is read with one run, and the
    /// file decodes as GDAL wrote it.
    #[tokio::test]
    async fn hostile_headers_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let reader = CogReader::new(ReadPolicy::allow_all());
        let opts = ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"];
        let good = dir.path().join("good.tif");
        let px = write(&good, 40, 30, &opts);
        let f = std::fs::read(&good).unwrap();
        let patch = |name: &str, edits: &[(u16, usize, &[u8])]| {
            let mut g = f.clone();
            for (tag, at, bytes) in edits {
                let e = entry_at(&g, *tag) + at;
                g[e..e + bytes.len()].copy_from_slice(bytes);
            }
            let p = dir.path().join(name);
            std::fs::write(&p, g).unwrap();
            p.display().to_string()
        };
        let big = 65535u16.to_le_bytes();
        let cases = [
            (
                patch("type.tif", &[(tiff::IMAGE_WIDTH, 2, &99u16.to_le_bytes())]),
                "no image width",
            ),
            (
                patch(
                    "count.tif",
                    &[(tiff::TILE_OFFSETS, 4, &0x7fff_ffffu32.to_le_bytes())],
                ),
                "tag 324 claims 2147483647 values",
            ),
            (
                patch(
                    "blocks.tif",
                    &[
                        (tiff::IMAGE_WIDTH, 8, &big),
                        (tiff::IMAGE_LENGTH, 8, &big),
                        (tiff::TILE_WIDTH, 8, &big),
                        (tiff::TILE_LENGTH, 8, &big),
                    ],
                ),
                "larger than 1024 MB",
            ),
            (patch("bytes.tif", &[]), "more than a block of 16x16 px"),
        ];
        // the first tile's byte count, out of line (SHORTs in a file this small)
        let mut g = f.clone();
        let e = entry_at(&g, tiff::TILE_BYTE_COUNTS) + 8;
        let at = u32::from_le_bytes(g[e..e + 4].try_into().unwrap()) as usize;
        g[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&cases[3].0, g).unwrap();
        // not a flood mask: said plainly
        let wide = dir.path().join("u16.tif");
        DriverManager::get_driver_by_name("GTiff")
            .unwrap()
            .create_with_band_type::<u16, _>(&wide, 40, 30, 1)
            .unwrap();
        let wide = wide.display().to_string();
        let e = fetch_err(&reader, &wide, (40, 30)).await;
        assert!(
            e.contains("bits per sample [16]") && !e.contains("Some("),
            "{e}"
        );
        for (loc, says) in &cases {
            let e = fetch_err(&reader, loc, (40, 30)).await;
            assert!(e.contains(loc.as_str()) && e.contains(says), "{e}");
        }

        // the IFD copied 40 MB into the file, the header pointing at it
        let far = 40usize << 20;
        let at = u32::from_le_bytes(f[4..8].try_into().unwrap()) as usize;
        let n = u16::from_le_bytes([f[at], f[at + 1]]) as usize;
        let mut g = f.clone();
        g[4..8].copy_from_slice(&(far as u32).to_le_bytes());
        let p = dir.path().join("far.tif");
        let mut file = std::fs::File::create(&p).unwrap();
        use std::io::{Seek, Write};
        file.write_all(&g).unwrap();
        file.seek(std::io::SeekFrom::Start(far as u64)).unwrap();
        file.write_all(&f[at..at + 2 + 12 * n + 4]).unwrap();
        drop(file);
        let loc = p.display().to_string();
        let got = reader
            .fetch(&RuntimeEnv::default(), &loc, (40, 30), window(0, 0, 40, 30))
            .await
            .unwrap();
        assert_eq!(got.decode().unwrap().into_vec(40 * 30), px);
    }

    /// A block whose stream holds far more than the block (100 times: a
    /// "bomb" of a few hundred bytes) decodes to the block's bytes, as GDAL
    /// reads it, DEFLATE, ZSTD and LZW alike; nothing past them is decoded
    /// into memory. A corrupt LZW block is an error.
    #[tokio::test]
    async fn blocks_that_decode_past_their_size_decode_as_gdal() {
        let dir = tempfile::tempdir().unwrap();
        let reader = CogReader::new(ReadPolicy::allow_all());
        for codec in ["DEFLATE", "ZSTD", "LZW"] {
            let p = dir.path().join(format!("bomb-{codec}.tif"));
            let opts = [
                "TILED=YES",
                "BLOCKXSIZE=16",
                "BLOCKYSIZE=16",
                &format!("COMPRESS={codec}"),
            ];
            write(&p, 32, 32, &opts);
            let content: Vec<u8> = (0..256 * 100)
                .map(|i| if i < 256 { (i * 7 % 251) as u8 } else { 9 })
                .collect();
            let stream = if codec == "DEFLATE" {
                use std::io::Write;
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(&content).unwrap();
                e.finish().unwrap()
            } else if codec == "ZSTD" {
                zstd::bulk::compress(&content, 19).unwrap()
            } else {
                weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
                    .encode(&content)
                    .unwrap()
            };
            assert!(stream.len() < 1024, "{}", stream.len());
            // the decoders stop at the block's bytes, memory included
            let one = if codec == "DEFLATE" {
                let mut v = Vec::with_capacity(256);
                assert!(!inflate(&stream, &mut v, usize::MAX, 256, false).unwrap());
                v
            } else if codec == "ZSTD" {
                unzstd(&stream, Vec::with_capacity(256)).unwrap().unwrap()
            } else {
                unlzw(&stream, 256).unwrap()
            };
            assert_eq!(one, content[..256], "{codec}");
            assert_eq!(one.capacity(), 256, "{codec}");
            let mut f = std::fs::read(&p).unwrap();
            let at = f.len();
            f.extend(&stream);
            for (tag, value) in [
                (tiff::TILE_OFFSETS, at as u32),
                (tiff::TILE_BYTE_COUNTS, stream.len() as u32),
            ] {
                let e = entry_at(&f, tag);
                let typ = u16::from_le_bytes([f[e + 2], f[e + 3]]);
                let first = u32::from_le_bytes(f[e + 8..e + 12].try_into().unwrap()) as usize;
                match typ {
                    3 => f[first..first + 2].copy_from_slice(&(value as u16).to_le_bytes()),
                    _ => f[first..first + 4].copy_from_slice(&value.to_le_bytes()),
                }
            }
            std::fs::write(&p, &f).unwrap();
            let gdal: Vec<u8> = gdal::Dataset::open(&p)
                .unwrap()
                .rasterband(1)
                .unwrap()
                .read_as::<u8>((0, 0), (32, 32), (32, 32), None)
                .unwrap()
                .data()
                .to_vec();
            assert_eq!(
                &gdal[..16],
                &content[..16],
                "{codec}: GDAL reads the first bytes"
            );
            let loc = p.display().to_string();
            let got = reader
                .fetch(&RuntimeEnv::default(), &loc, (32, 32), window(0, 0, 32, 32))
                .await
                .unwrap()
                .decode()
                .unwrap()
                .into_vec(32 * 32);
            assert_eq!(got, gdal, "{codec}");
        }
        // a corrupt LZW block is an error (async-tiff's decoder panicked)
        let e = unlzw(&[0xFF; 64], 256).unwrap_err();
        assert!(e.contains("LZW"), "{e}");
    }

    #[tokio::test]
    async fn refuses_wrong_sizes_and_missing_or_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let reader = CogReader::new(ReadPolicy::allow_all());
        let p = dir.path().join("a.tif");
        write(&p, 20, 10, &["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"]);
        let e = fetch_err(&reader, &p.display().to_string(), (21, 10)).await;
        assert!(e.contains("20x10") && e.contains("21x10"), "{e}");
        let missing = dir.path().join("none.tif").display().to_string();
        let e = fetch_err(&reader, &missing, (1, 1)).await;
        assert!(e.contains("none.tif"), "{e}");
        let junk = dir.path().join("junk.tif");
        std::fs::write(&junk, b"this is not a tiff at all").unwrap();
        let e = fetch_err(&reader, &junk.display().to_string(), (1, 1)).await;
        assert!(e.contains("junk.tif"), "{e}");
        // credentials in a URL never reach a message
        let e = fetch_err(&reader, "http://alice:s3cret@127.0.0.1:9/x.tif", (1, 1)).await;
        assert!(
            !e.contains("s3cret") && !e.contains("alice") && e.contains("***@127.0.0.1:9/x.tif"),
            "{e}"
        );
        for bad in ["ftp://host/x.tif", "relative/x.tif", "s3:///nobucket.tif"] {
            let e = fetch_err(&reader, bad, (1, 1)).await;
            assert!(e.contains(bad), "{e}");
        }
    }
}
