//! A TIFF's image file directories (IFDs), read within bounds.
//!
//! A catalogue is untrusted, and so are the files it points at: a header
//! says where its own values lie and how many there are, and a hostile or
//! broken one can say anything. This reader therefore
//! * fetches a header's bytes through [`HeaderBytes`]: runs of the file,
//!   the first [`HEADER_READ`] bytes at once (a COG's whole header, and for
//!   a mostly dry GFM tile the whole file), other places in runs of their
//!   own (an IFD at the end of a plain GeoTIFF costs one more request, not
//!   the file up to it), at most [`HEADER_MAX`] bytes in all;
//! * checks every count against the bytes it would take before anything is
//!   allocated, and skips entries of unknown field types (TIFF 6, section
//!   2), so that nothing a file says can panic or abort the process;
//! * reads an entry's values in one piece: a GFM COG's block offsets and
//!   byte counts (1800 values) are two slices of the first read.
//!
//! (`async-tiff`'s metadata reader, used before, asks for each value on its
//! own and panics or aborts on unknown field types, huge counts, missing
//! tags or non-ASCII text; its tile decoders are still used.)
//!
//! What the values mean is the caller's: [`crate::raster::cog`] takes band
//! 1's block grid and codec from the first IFD, and the COG writer
//! (`output::tiff`) copies GDAL's IFDs.

use std::future::Future;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Tag: new subfile type (1 = a reduced-resolution image, an overview).
pub(crate) const NEW_SUBFILE_TYPE: u16 = 254;
/// Tag: image width in pixels.
pub(crate) const IMAGE_WIDTH: u16 = 256;
/// Tag: image height in pixels.
pub(crate) const IMAGE_LENGTH: u16 = 257;
/// Tag: bits per sample, one value per sample.
pub(crate) const BITS_PER_SAMPLE: u16 = 258;
/// Tag: compression scheme (8: DEFLATE, zlib stream).
pub(crate) const COMPRESSION: u16 = 259;
/// Tag: photometric interpretation.
pub(crate) const PHOTOMETRIC: u16 = 262;
/// Tag: where each strip starts.
pub(crate) const STRIP_OFFSETS: u16 = 273;
/// Tag: samples per pixel.
pub(crate) const SAMPLES_PER_PIXEL: u16 = 277;
/// Tag: rows per strip.
pub(crate) const ROWS_PER_STRIP: u16 = 278;
/// Tag: each strip's size in bytes.
pub(crate) const STRIP_BYTE_COUNTS: u16 = 279;
/// Tag: planar configuration (1 chunky, 2 planar).
pub(crate) const PLANAR_CONFIGURATION: u16 = 284;
/// Tag: predictor (1 none, 2 horizontal differencing).
pub(crate) const PREDICTOR: u16 = 317;
/// Tag: tile width.
pub(crate) const TILE_WIDTH: u16 = 322;
/// Tag: tile height.
pub(crate) const TILE_LENGTH: u16 = 323;
/// Tag: where each tile starts.
pub(crate) const TILE_OFFSETS: u16 = 324;
/// Tag: each tile's size in bytes.
pub(crate) const TILE_BYTE_COUNTS: u16 = 325;
/// Tag: sample format, one value per sample (1 unsigned integer).
pub(crate) const SAMPLE_FORMAT: u16 = 339;
/// Tag: JPEG quantisation and Huffman tables shared by the blocks.
pub(crate) const JPEG_TABLES: u16 = 347;
/// Tag: GDAL's nodata value, as text.
pub(crate) const GDAL_NODATA: u16 = 42113;

/// Field types.
pub(crate) const BYTE: u16 = 1;
pub(crate) const ASCII: u16 = 2;
pub(crate) const SHORT: u16 = 3;
pub(crate) const LONG: u16 = 4;
pub(crate) const LONG8: u16 = 16;

/// The first read of a header: its first 128 KB. A GFM COG's header and
/// block offsets take a few KB; the rest is blocks, which a caller may keep
/// ([`HeaderBytes::kept`]). A mostly dry or nodata GFM tile is ~120 KB in
/// all, so for most files that one request is the only one.
pub(crate) const HEADER_READ: u64 = 128 << 10;

/// Read ahead of a header value that lies away from the bytes read so far.
const RUN_READ: u64 = 64 << 10;

/// The most bytes of a file a header may make us read: the block offsets
/// and byte counts of a COG of 100 000 x 100 000 pixels in 256 px tiles
/// (150 000 blocks) take 2.4 MB; a plain GeoTIFF of one-row strips of that
/// height, 1.6 MB.
pub(crate) const HEADER_MAX: u64 = 64 << 20;

/// Entries an IFD may have (a classic TIFF's count is a u16; a BigTIFF's
/// could claim more).
const MAX_ENTRIES: u64 = 1 << 16;

/// Why a TIFF header cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    /// The store failed (its message).
    #[error("{0}")]
    Read(String),
    /// The file does not start as a TIFF does.
    #[error("not a TIFF file (it starts with {0:02x?})")]
    NotTiff(Vec<u8>),
    /// The header points past the end of the file.
    #[error("the TIFF header points at bytes {start}..{end}, past the end of the file")]
    PastEnd { start: u64, end: u64 },
    /// The header would need more than [`HEADER_MAX`] bytes of the file.
    #[error(
        "the TIFF header asks for bytes {start}..{end}, beyond the {} MB a header may take \
         (a cloud-optimised GeoTIFF's header is a few KB at its start)",
        HEADER_MAX >> 20
    )]
    TooLarge { start: u64, end: u64 },
    /// A value the header holds is not what TIFF allows.
    #[error("malformed TIFF header: {0}")]
    Malformed(String),
}

type HResult<T> = std::result::Result<T, HeaderError>;

/// Where a header's bytes come from: a range read (fewer bytes than asked
/// when the file ends first).
pub(crate) trait Source: Sync {
    fn get(&self, range: Range<u64>) -> impl Future<Output = HResult<Bytes>> + Send;
}

/// A file in memory.
impl Source for [u8] {
    fn get(&self, range: Range<u64>) -> impl Future<Output = HResult<Bytes>> + Send {
        let len = self.len() as u64;
        let (s, e) = (range.start.min(len) as usize, range.end.min(len) as usize);
        std::future::ready(Ok(Bytes::copy_from_slice(&self[s..e.max(s)])))
    }
}

/// The bytes of a file a header's reader has fetched: runs of it, each
/// grown (doubled, or to what is asked) while reads land in or just past
/// it, a new run for a read elsewhere; [`HEADER_MAX`] bytes in all at most.
pub(crate) struct HeaderBytes<'a, S: ?Sized> {
    src: &'a S,
    runs: Vec<(u64, Bytes)>,
    read: u64,
}

impl<'a, S: Source + ?Sized> HeaderBytes<'a, S> {
    pub(crate) fn new(src: &'a S) -> Self {
        HeaderBytes {
            src,
            runs: Vec::new(),
            read: 0,
        }
    }

    /// Bytes `range` of the file, if a run read so far holds them.
    pub(crate) fn kept(&self, range: Range<u64>) -> Option<Bytes> {
        self.runs.iter().find_map(|(s, b)| {
            (*s <= range.start && range.start <= range.end && range.end - s <= b.len() as u64)
                .then(|| b.slice((range.start - s) as usize..(range.end - s) as usize))
        })
    }

    /// The runs read, each as (start offset, bytes).
    pub(crate) fn into_runs(self) -> Vec<(u64, Bytes)> {
        self.runs
    }

    /// Bytes `range` of the file, fetched unless kept.
    pub(crate) async fn get(&mut self, range: Range<u64>) -> HResult<Bytes> {
        if let Some(b) = self.kept(range.clone()) {
            return Ok(b);
        }
        let too_large = || HeaderError::TooLarge {
            start: range.start,
            end: range.end,
        };
        if range.end < range.start || range.end - range.start > HEADER_MAX {
            return Err(too_large());
        }
        let grow = self.runs.iter().position(|(s, b)| {
            range.start >= *s && range.start - s <= 2 * (b.len() as u64).max(RUN_READ)
        });
        let (from, ahead) = match grow {
            Some(k) => {
                let (s, b) = &self.runs[k];
                (s + b.len() as u64, b.len() as u64)
            }
            None if self.runs.is_empty() => (range.start, HEADER_READ),
            None => (range.start, RUN_READ),
        };
        let mut to = range.end.max(from.saturating_add(ahead));
        if self.read + (to - from) > HEADER_MAX {
            to = range.end;
            if self.read + (to - from) > HEADER_MAX {
                return Err(too_large());
            }
        }
        let more = self.src.get(from..to).await?;
        self.read += more.len() as u64;
        match grow {
            Some(k) => {
                let b = &mut self.runs[k].1;
                let mut grown = BytesMut::with_capacity(b.len() + more.len());
                grown.extend_from_slice(b);
                grown.extend_from_slice(&more);
                *b = grown.freeze();
            }
            None => self.runs.push((from, more)),
        }
        self.kept(range.clone()).ok_or(HeaderError::PastEnd {
            start: range.start,
            end: range.end,
        })
    }
}

/// How a file lays out its numbers: byte order, and classic TIFF or BigTIFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Format {
    pub(crate) big_endian: bool,
    pub(crate) bigtiff: bool,
}

impl Format {
    fn uint(&self, b: &[u8]) -> u64 {
        let mut v = [0u8; 8];
        if self.big_endian {
            v[8 - b.len()..].copy_from_slice(b);
            u64::from_be_bytes(v)
        } else {
            v[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(v)
        }
    }

    /// Size of an offset or a count in the IFD (4 or 8 bytes).
    fn word(&self) -> u64 {
        if self.bigtiff {
            8
        } else {
            4
        }
    }
}

/// Size in bytes of one value of TIFF field type `t` (TIFF 6 and BigTIFF).
pub(crate) fn type_size(t: u16) -> Option<u64> {
    Some(match t {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16..=18 => 8,
        _ => return None,
    })
}

/// One IFD entry: its values as the file holds them (in its byte order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) tag: u16,
    pub(crate) typ: u16,
    pub(crate) count: u64,
    pub(crate) data: Vec<u8>,
}

/// An image file directory: its entries in file order, and how the file
/// lays out numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Ifd {
    pub(crate) entries: Vec<Entry>,
    pub(crate) format: Format,
}

impl Ifd {
    fn entry(&self, tag: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// The values of an unsigned integer tag (BYTE, SHORT, LONG, LONG8);
    /// `None` when absent or of another type.
    pub(crate) fn uints(&self, tag: u16) -> Option<Vec<u64>> {
        let e = self.entry(tag)?;
        let n = match e.typ {
            BYTE => 1,
            SHORT => 2,
            LONG => 4,
            LONG8 => 8,
            _ => return None,
        };
        Some(
            e.data
                .chunks_exact(n)
                .map(|c| self.format.uint(c))
                .collect(),
        )
    }

    /// The first value of an unsigned integer tag.
    pub(crate) fn uint(&self, tag: u16) -> Option<u64> {
        let e = self.entry(tag)?;
        let n = type_size(e.typ).filter(|_| matches!(e.typ, BYTE | SHORT | LONG | LONG8))?;
        e.data.get(..n as usize).map(|c| self.format.uint(c))
    }

    /// The text of an ASCII tag, up to its first NUL (any non-UTF-8 byte
    /// replaced).
    pub(crate) fn ascii(&self, tag: u16) -> Option<String> {
        let e = self.entry(tag).filter(|e| e.typ == ASCII)?;
        let end = e.data.iter().position(|&c| c == 0).unwrap_or(e.data.len());
        Some(String::from_utf8_lossy(&e.data[..end]).into_owned())
    }

    /// The bytes of a tag's values.
    pub(crate) fn raw(&self, tag: u16) -> Option<&[u8]> {
        self.entry(tag).map(|e| e.data.as_slice())
    }

    /// Width and height of the image.
    pub(crate) fn size(&self) -> Option<(u64, u64)> {
        Some((self.uint(IMAGE_WIDTH)?, self.uint(IMAGE_LENGTH)?))
    }
}

/// The file's format and the offset of its first IFD.
pub(crate) async fn read_header<S: Source + ?Sized>(
    bytes: &mut HeaderBytes<'_, S>,
) -> HResult<(Format, u64)> {
    let head = match bytes.get(0..8).await {
        Err(HeaderError::PastEnd { .. }) => {
            let all = bytes
                .runs
                .first()
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            return Err(HeaderError::NotTiff(all[..all.len().min(8)].to_vec()));
        }
        r => r?,
    };
    let big_endian = match &head[..2] {
        b"II" => false,
        b"MM" => true,
        _ => return Err(HeaderError::NotTiff(head[..8].to_vec())),
    };
    let mut f = Format {
        big_endian,
        bigtiff: false,
    };
    match f.uint(&head[2..4]) {
        42 => Ok((f, f.uint(&head[4..8]))),
        43 => {
            f.bigtiff = true;
            if f.uint(&head[4..6]) != 8 {
                return Err(HeaderError::Malformed(format!(
                    "BigTIFF offsets of {} bytes",
                    f.uint(&head[4..6])
                )));
            }
            let first = bytes.get(8..16).await?;
            Ok((f, f.uint(&first)))
        }
        _ => Err(HeaderError::NotTiff(head[..8].to_vec())),
    }
}

/// The IFD at `at` and the offset of the next one (0: none). Entries of
/// field types TIFF does not define are skipped; every entry's values are
/// read, in one piece.
pub(crate) async fn read_ifd<S: Source + ?Sized>(
    bytes: &mut HeaderBytes<'_, S>,
    format: Format,
    at: u64,
) -> HResult<(Ifd, u64)> {
    let w = format.word();
    let count_len = if format.bigtiff { 8 } else { 2 };
    let n = format.uint(&bytes.get(at..at.saturating_add(count_len)).await?);
    if n > MAX_ENTRIES {
        return Err(HeaderError::Malformed(format!(
            "an IFD of {n} entries (at most {MAX_ENTRIES})"
        )));
    }
    let size = 4 + 2 * w;
    let first = at + count_len;
    let table_end = first + n * size;
    let table = bytes.get(first..table_end + w).await?;
    let mut ifd = Ifd {
        entries: Vec::with_capacity(n as usize),
        format,
    };
    for e in table[..(n * size) as usize].chunks_exact(size as usize) {
        let tag = format.uint(&e[..2]) as u16;
        let typ = format.uint(&e[2..4]) as u16;
        let count = format.uint(&e[4..4 + w as usize]);
        let value = &e[4 + w as usize..];
        let Some(t) = type_size(typ) else {
            continue;
        };
        let len = count
            .checked_mul(t)
            .filter(|&l| l <= HEADER_MAX)
            .ok_or_else(|| {
                HeaderError::Malformed(format!(
                    "tag {tag} claims {count} values of {t} bytes, more than the {} MB a \
                     header may take",
                    HEADER_MAX >> 20
                ))
            })?;
        let data = if len <= w {
            value[..len as usize].to_vec()
        } else {
            let from = format.uint(value);
            bytes
                .get(from..from.saturating_add(len))
                .await
                .map_err(|e| match e {
                    HeaderError::PastEnd { .. } => HeaderError::Malformed(format!(
                        "tag {tag}'s {count} values at byte {from} lie past the end of the file"
                    )),
                    e => e,
                })?
                .to_vec()
        };
        ifd.entries.push(Entry {
            tag,
            typ,
            count,
            data,
        });
    }
    let next = format.uint(&table[(n * size) as usize..]);
    Ok((ifd, next))
}

/// The IFDs of a TIFF file in memory, in file order (at most 64: a chain
/// that goes on is a loop).
pub(crate) fn read_ifds(b: &[u8]) -> HResult<Vec<Ifd>> {
    futures::executor::block_on(async {
        let mut bytes = HeaderBytes::new(b);
        let (format, mut next) = read_header(&mut bytes).await?;
        let mut ifds = Vec::new();
        while next != 0 {
            if ifds.len() >= 64 {
                return Err(HeaderError::Malformed("more than 64 IFDs (a loop?)".into()));
            }
            let (ifd, after) = read_ifd(&mut bytes, format, next).await?;
            ifds.push(ifd);
            next = after;
        }
        Ok(ifds)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A file in memory that counts the bytes asked of it.
    struct Counted {
        file: Vec<u8>,
        asked: AtomicU64,
    }

    impl Source for Counted {
        fn get(&self, range: Range<u64>) -> impl Future<Output = HResult<Bytes>> + Send {
            self.asked
                .fetch_add(range.end - range.start, Ordering::Relaxed);
            Source::get(self.file.as_slice(), range)
        }
    }

    /// A classic TIFF, little- or big-endian: its header, then entries
    /// (tag, type, count, values) in one IFD at `ifd_at`, out-of-line values
    /// after it.
    fn tiff(big_endian: bool, ifd_at: usize, entries: &[(u16, u16, u32, Vec<u8>)]) -> Vec<u8> {
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = if big_endian {
            b"MM".to_vec()
        } else {
            b"II".to_vec()
        };
        f.extend(u16b(42));
        f.extend(u32b(ifd_at as u32));
        f.resize(ifd_at, 0);
        f.extend(u16b(entries.len() as u16));
        let mut values = ifd_at + 2 + 12 * entries.len() + 4;
        let mut tail: Vec<u8> = Vec::new();
        for (tag, typ, count, data) in entries {
            f.extend(u16b(*tag));
            f.extend(u16b(*typ));
            f.extend(u32b(*count));
            if data.len() <= 4 {
                let mut v = data.clone();
                v.resize(4, 0);
                f.extend(v);
            } else {
                f.extend(u32b(values as u32));
                tail.extend(data);
                values += data.len();
            }
        }
        f.extend(u32b(0));
        f.extend(tail);
        f
    }

    fn shorts(big_endian: bool, v: &[u16]) -> Vec<u8> {
        v.iter()
            .flat_map(|x| {
                if big_endian {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                }
            })
            .collect()
    }

    fn read_first(file: &[u8]) -> HResult<Ifd> {
        futures::executor::block_on(async {
            let mut b = HeaderBytes::new(file);
            let (f, at) = read_header(&mut b).await?;
            Ok(read_ifd(&mut b, f, at).await?.0)
        })
    }

    /// Both byte orders; inline and out-of-line values; entries of unknown
    /// field types skipped; text up to its NUL, non-UTF-8 bytes replaced.
    #[test]
    fn reads_values_in_either_byte_order() {
        for be in [false, true] {
            let offsets: Vec<u8> = [7u32, 70_000, 9]
                .iter()
                .flat_map(|x| if be { x.to_be_bytes() } else { x.to_le_bytes() })
                .collect();
            let f = tiff(
                be,
                8,
                &[
                    (IMAGE_WIDTH, SHORT, 1, shorts(be, &[300])),
                    (BITS_PER_SAMPLE, SHORT, 3, shorts(be, &[8, 8, 8])),
                    (999, 77, 1_000_000_000, vec![0; 4]),
                    (TILE_OFFSETS, LONG, 3, offsets),
                    (GDAL_NODATA, ASCII, 5, b"25\xff\0\0".to_vec()),
                ],
            );
            let ifd = read_first(&f).unwrap();
            assert_eq!(ifd.format.big_endian, be);
            assert_eq!(ifd.uint(IMAGE_WIDTH), Some(300));
            assert_eq!(ifd.uints(BITS_PER_SAMPLE), Some(vec![8, 8, 8]));
            assert_eq!(ifd.uints(TILE_OFFSETS), Some(vec![7, 70_000, 9]));
            assert_eq!(ifd.ascii(GDAL_NODATA).as_deref(), Some("25\u{fffd}"));
            assert!(ifd.entries.iter().all(|e| e.tag != 999));
            assert_eq!(ifd.uint(GDAL_NODATA), None);
            assert_eq!(ifd.uint(IMAGE_LENGTH), None);
        }
    }

    /// What a header says cannot make the reader allocate or fetch without
    /// bound: a count past [`HEADER_MAX`] (or past u64) is an error before
    /// any read; values past the end of the file are an error; not a TIFF
    /// says what the file starts with.
    #[test]
    fn hostile_counts_and_offsets_are_errors() {
        let huge = tiff(false, 8, &[(TILE_OFFSETS, LONG, u32::MAX, vec![0; 4])]);
        let e = read_first(&huge).unwrap_err().to_string();
        assert!(e.contains("tag 324") && e.contains("64 MB"), "{e}");
        let bigtiff_huge = {
            let mut f = b"II".to_vec();
            f.extend(43u16.to_le_bytes());
            f.extend(8u16.to_le_bytes());
            f.extend(0u16.to_le_bytes());
            f.extend(16u64.to_le_bytes());
            f.extend(1u64.to_le_bytes());
            f.extend(TILE_OFFSETS.to_le_bytes());
            f.extend(LONG8.to_le_bytes());
            f.extend(u64::MAX.to_le_bytes());
            f.extend(0u64.to_le_bytes());
            f.extend(0u64.to_le_bytes());
            f
        };
        let e = read_first(&bigtiff_huge).unwrap_err().to_string();
        assert!(e.contains("tag 324"), "{e}");
        let mut past = tiff(false, 8, &[(TILE_OFFSETS, LONG, 4, vec![0; 16])]);
        past.truncate(past.len() - 8);
        let e = read_first(&past).unwrap_err().to_string();
        assert!(e.contains("tag 324") && e.contains("past the end"), "{e}");
        let mut nowhere = tiff(false, 8, &[]);
        nowhere[4..8].copy_from_slice(&1_000_000u32.to_le_bytes());
        let e = read_first(&nowhere).unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
        let e = read_first(b"<html>not a tiff</html>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a TIFF") && e.contains("3c"), "{e}");
        let e = read_first(b"II").unwrap_err().to_string();
        assert!(e.contains("not a TIFF"), "{e}");
    }

    /// An IFD far into a file is read with a run of its own: the bytes
    /// fetched are the first read and that run, not the file up to it; a
    /// header that would need more than [`HEADER_MAX`] in all is refused.
    #[test]
    fn an_ifd_far_away_costs_a_run_not_the_file() {
        let far = 40 << 20;
        let file = tiff(false, far, &[(IMAGE_WIDTH, SHORT, 1, shorts(false, &[5]))]);
        let src = Counted {
            file,
            asked: AtomicU64::new(0),
        };
        let ifd = futures::executor::block_on(async {
            let mut b = HeaderBytes::new(&src);
            let (f, at) = read_header(&mut b).await?;
            read_ifd(&mut b, f, at).await
        })
        .unwrap()
        .0;
        assert_eq!(ifd.uint(IMAGE_WIDTH), Some(5));
        let asked = src.asked.load(Ordering::Relaxed);
        assert!(asked <= HEADER_READ + 2 * RUN_READ, "{asked} bytes asked");

        // values scattered over the file, each a run: refused at the limit
        let src = Counted {
            file: vec![0; 200 << 20],
            asked: AtomicU64::new(0),
        };
        let e = futures::executor::block_on(async {
            let mut b = HeaderBytes::new(&src);
            for k in 0..2000u64 {
                b.get(k * (100 << 10)..k * (100 << 10) + 8).await?;
            }
            Ok::<_, HeaderError>(())
        })
        .unwrap_err();
        assert!(matches!(e, HeaderError::TooLarge { .. }), "{e}");
        assert!(src.asked.load(Ordering::Relaxed) <= HEADER_MAX);
    }
}
