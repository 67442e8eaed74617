//! The TIFF container of a Cloud-Optimized GeoTIFF, laid out as GDAL's COG
//! driver lays it out: the header, GDAL's structural-metadata "ghost" block,
//! every IFD (full resolution first, then the overviews, largest first) with
//! its values, the tile offset and size arrays, then the tiles — smallest
//! overview first, full resolution last, each row-major, each tile preceded
//! by its size (u32) and followed by its last 4 bytes repeated.
//!
//! This module only places bytes. What the tags say (the CRS's GeoKeys, the
//! metadata, the palette, nodata) is GDAL's: the IFDs come from a GTiff that
//! GDAL wrote without pixels ([`read_ifds`]); only the tile offsets and sizes
//! are ours. GDAL 3.6 has no way to take tiles compressed elsewhere, and its
//! COG driver compresses every tile again from an uncompressed copy — the
//! run's tail this module removes.
//! Little-endian, classic TIFF when the file stays under 4 GiB, BigTIFF
//! otherwise.

use std::io::{self, Write};

pub(crate) use crate::raster::tiff::{
    Entry, Ifd, COMPRESSION, LONG, LONG8, NEW_SUBFILE_TYPE, TILE_BYTE_COUNTS, TILE_LENGTH,
    TILE_OFFSETS, TILE_WIDTH,
};

/// GDAL's structural metadata, as its COG driver writes it after the
/// header: readers that know it (GDAL: `LAYOUT=COG`) may read a tile's
/// size from the 4 bytes before it.
const GHOST: &str = "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\nBLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ";

/// The IFDs of a little-endian TIFF or BigTIFF file, in file order (the
/// writer copies their values as they are).
pub(crate) fn read_ifds(b: &[u8]) -> Result<Vec<Ifd>, String> {
    if !b.starts_with(b"II") {
        return Err("not a little-endian TIFF".into());
    }
    crate::raster::tiff::read_ifds(b).map_err(|e| e.to_string())
}

/// Where each tile's bytes go, and how the header before them is laid out.
struct Layout {
    big: bool,
    /// Offset of each IFD.
    ifds: Vec<u64>,
    /// Offset of each entry's out-of-line values (`None`: inline).
    values: Vec<Vec<Option<u64>>>,
    /// Per IFD: where each tile's bytes start.
    tiles: Vec<Vec<u64>>,
    /// Bytes before the first tile.
    header_len: u64,
    /// The whole file.
    total: u64,
}

/// The entries of `ifd` as written: its own, with the tile offsets and
/// sizes filled in for `offsets` and `sizes` (LONG8 offsets in a BigTIFF).
fn entries(ifd: &Ifd, offsets: &[u64], sizes: &[u32], big: bool) -> Vec<Entry> {
    ifd.entries
        .iter()
        .map(|e| match e.tag {
            TILE_OFFSETS if big => Entry {
                tag: e.tag,
                typ: LONG8,
                count: offsets.len() as u64,
                data: offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
            },
            TILE_OFFSETS => Entry {
                tag: e.tag,
                typ: LONG,
                count: offsets.len() as u64,
                data: offsets
                    .iter()
                    .flat_map(|&o| (o as u32).to_le_bytes())
                    .collect(),
            },
            TILE_BYTE_COUNTS => Entry {
                tag: e.tag,
                typ: LONG,
                count: sizes.len() as u64,
                data: sizes.iter().flat_map(|s| s.to_le_bytes()).collect(),
            },
            _ => e.clone(),
        })
        .collect()
}

fn even(v: u64) -> u64 {
    v + (v & 1)
}

fn layout(ifds: &[Ifd], sizes: &[Vec<u32>], big: bool) -> Layout {
    let (header, entry, count_len, inline) = if big { (16, 20, 8, 8) } else { (8, 12, 2, 4) };
    let ghost = 43 + GHOST.len() as u64;
    let mut pos = even(header + ghost);
    let mut at_ifd = Vec::new();
    let mut values = Vec::new();
    // the IFDs, each followed by its values; the tile arrays after them all
    let arrays = |e: &Entry| e.tag == TILE_OFFSETS || e.tag == TILE_BYTE_COUNTS;
    for (ifd, sizes) in ifds.iter().zip(sizes) {
        let zero = vec![0u64; sizes.len()];
        let es = entries(ifd, &zero, sizes, big);
        at_ifd.push(pos);
        pos += count_len + entry * es.len() as u64 + if big { 8 } else { 4 };
        let mut v = Vec::with_capacity(es.len());
        for e in &es {
            if e.data.len() as u64 <= inline || arrays(e) {
                v.push(None);
            } else {
                pos = even(pos);
                v.push(Some(pos));
                pos += e.data.len() as u64;
            }
        }
        values.push(v);
    }
    for (i, (ifd, sizes)) in ifds.iter().zip(sizes).enumerate() {
        let zero = vec![0u64; sizes.len()];
        for (j, e) in entries(ifd, &zero, sizes, big).iter().enumerate() {
            if arrays(e) && e.data.len() as u64 > inline {
                pos = even(pos);
                values[i][j] = Some(pos);
                pos += e.data.len() as u64;
            }
        }
    }
    let header_len = pos;
    // the tiles: smallest overview first
    let mut tiles: Vec<Vec<u64>> = sizes.iter().map(|s| vec![0; s.len()]).collect();
    for (i, s) in sizes.iter().enumerate().rev() {
        for (t, &len) in s.iter().enumerate() {
            tiles[i][t] = pos + 4;
            pos += 4 + len as u64 + 4;
        }
    }
    Layout {
        big,
        ifds: at_ifd,
        values,
        tiles,
        header_len,
        total: pos,
    }
}

/// Writes a COG: `ifds` (GDAL's, full resolution first; their tile offsets
/// and sizes are replaced), with `sizes[i][t]` the compressed size of tile
/// `t` (row-major) of IFD `i`, whose bytes `tile(i, t, buf)` puts in `buf`.
/// Classic TIFF when the file fits 4 GiB, BigTIFF otherwise or when `big`
/// says so. Returns the file's size.
pub(crate) fn write_cog(
    out: &mut impl Write,
    ifds: &[Ifd],
    sizes: &[Vec<u32>],
    big: bool,
    mut tile: impl FnMut(usize, usize, &mut Vec<u8>) -> io::Result<()>,
) -> io::Result<u64> {
    if ifds.len() != sizes.len() {
        return Err(io::Error::other(format!(
            "{} IFDs, tile sizes for {}",
            ifds.len(),
            sizes.len()
        )));
    }
    let big = big || layout(ifds, sizes, false).total > u32::MAX as u64;
    write_as(out, ifds, sizes, &mut tile, big)
}

/// [`write_cog`], as classic TIFF or as BigTIFF (`big`).
fn write_as(
    out: &mut impl Write,
    ifds: &[Ifd],
    sizes: &[Vec<u32>],
    tile: &mut impl FnMut(usize, usize, &mut Vec<u8>) -> io::Result<()>,
    big: bool,
) -> io::Result<u64> {
    let l = layout(ifds, sizes, big);
    // the header section, in memory (IFDs, values, tile arrays)
    let mut h = Vec::with_capacity(l.header_len as usize);
    h.extend_from_slice(b"II");
    if l.big {
        h.extend_from_slice(&43u16.to_le_bytes());
        h.extend_from_slice(&8u16.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&l.ifds[0].to_le_bytes());
    } else {
        h.extend_from_slice(&42u16.to_le_bytes());
        h.extend_from_slice(&(l.ifds[0] as u32).to_le_bytes());
    }
    h.extend_from_slice(
        format!(
            "GDAL_STRUCTURAL_METADATA_SIZE={:06} bytes\n{GHOST}",
            GHOST.len()
        )
        .as_bytes(),
    );
    let put_at = |h: &mut Vec<u8>, at: u64, bytes: &[u8]| {
        if h.len() < at as usize {
            h.resize(at as usize, 0);
        }
        debug_assert_eq!(h.len(), at as usize, "the layout and the writer agree");
        h.extend_from_slice(bytes);
    };
    let mut arrays = Vec::new();
    for (i, ifd) in ifds.iter().enumerate() {
        let es = entries(ifd, &l.tiles[i], &sizes[i], l.big);
        let mut d = Vec::new();
        if l.big {
            d.extend_from_slice(&(es.len() as u64).to_le_bytes());
        } else {
            d.extend_from_slice(&(es.len() as u16).to_le_bytes());
        }
        let mut outside = Vec::new();
        for (j, e) in es.iter().enumerate() {
            d.extend_from_slice(&e.tag.to_le_bytes());
            d.extend_from_slice(&e.typ.to_le_bytes());
            let inline = if l.big { 8 } else { 4 };
            if l.big {
                d.extend_from_slice(&e.count.to_le_bytes());
            } else {
                d.extend_from_slice(&(e.count as u32).to_le_bytes());
            }
            match l.values[i][j] {
                None => {
                    let mut v = e.data.clone();
                    v.resize(inline, 0);
                    d.extend_from_slice(&v);
                }
                Some(at) => {
                    if l.big {
                        d.extend_from_slice(&at.to_le_bytes());
                    } else {
                        d.extend_from_slice(&(at as u32).to_le_bytes());
                    }
                    if e.tag == TILE_OFFSETS || e.tag == TILE_BYTE_COUNTS {
                        arrays.push((at, e.data.clone()));
                    } else {
                        outside.push((at, &e.data));
                    }
                }
            }
        }
        let next = l.ifds.get(i + 1).copied().unwrap_or(0);
        if l.big {
            d.extend_from_slice(&next.to_le_bytes());
        } else {
            d.extend_from_slice(&(next as u32).to_le_bytes());
        }
        put_at(&mut h, l.ifds[i], &d);
        for (at, data) in outside {
            put_at(&mut h, at, data);
        }
    }
    for (at, data) in arrays {
        put_at(&mut h, at, &data);
    }
    h.resize(l.header_len as usize, 0);
    out.write_all(&h)?;
    let mut buf = Vec::new();
    for i in (0..ifds.len()).rev() {
        for (t, &len) in sizes[i].iter().enumerate() {
            buf.clear();
            tile(i, t, &mut buf)?;
            if buf.len() != len as usize || buf.len() < 4 {
                return Err(io::Error::other(format!(
                    "tile {t} of IFD {i}: {} bytes, {len} announced",
                    buf.len()
                )));
            }
            out.write_all(&len.to_le_bytes())?;
            out.write_all(&buf)?;
            out.write_all(&buf[buf.len() - 4..])?;
        }
    }
    Ok(l.total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::tiff::{IMAGE_LENGTH, IMAGE_WIDTH, SHORT};

    fn short(tag: u16, v: u16) -> Entry {
        Entry {
            tag,
            typ: SHORT,
            count: 1,
            data: v.to_le_bytes().to_vec(),
        }
    }

    fn image(w: u16, h: u16, tiles: usize, overview: bool) -> Ifd {
        let mut entries = vec![];
        if overview {
            entries.push(Entry {
                tag: NEW_SUBFILE_TYPE,
                typ: LONG,
                count: 1,
                data: 1u32.to_le_bytes().to_vec(),
            });
        }
        entries.extend([
            short(IMAGE_WIDTH, w),
            short(IMAGE_LENGTH, h),
            short(COMPRESSION, 8),
            short(TILE_WIDTH, 16),
            short(TILE_LENGTH, 16),
            Entry {
                tag: TILE_OFFSETS,
                typ: LONG,
                count: tiles as u64,
                data: vec![0; 4 * tiles],
            },
            Entry {
                tag: TILE_BYTE_COUNTS,
                typ: LONG,
                count: tiles as u64,
                data: vec![0; 4 * tiles],
            },
            Entry {
                tag: 33550,
                typ: 12,
                count: 3,
                data: [10f64, 10., 0.]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            },
        ]);
        Ifd {
            entries,
            ..Default::default()
        }
    }

    fn u32s(e: &Entry) -> Vec<u64> {
        match e.typ {
            LONG => e
                .data
                .chunks(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64)
                .collect(),
            _ => e
                .data
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        }
    }

    /// What is written reads back: the same IFDs (tile arrays aside), every
    /// tile's bytes at its offset with its size before and its last 4
    /// bytes after, the smallest overview's tiles first; one tile (inline
    /// arrays) and several.
    #[test]
    fn a_cog_reads_back_with_its_tiles_in_cog_order() {
        let ifds = vec![
            image(40, 20, 6, false),
            image(20, 10, 2, true),
            image(10, 5, 1, true),
        ];
        let sizes: Vec<Vec<u32>> = vec![vec![9, 4, 30, 5, 6, 7], vec![11, 12], vec![13]];
        let body =
            |i: usize, t: usize, n: u32| (0..n).map(move |b| (i * 50 + t * 7 + b as usize) as u8);
        for big in [false, true] {
            let mut out = Vec::new();
            let mut put = |i: usize, t: usize, buf: &mut Vec<u8>| {
                buf.extend(body(i, t, sizes[i][t]));
                Ok(())
            };
            let total = write_as(&mut out, &ifds, &sizes, &mut put, big).unwrap();
            assert_eq!(total, out.len() as u64);
            assert_eq!(&out[2..4], if big { &[43, 0] } else { &[42, 0] });
            let ghost = if big { 16 } else { 8 };
            assert_eq!(
                &out[ghost..ghost + 43],
                b"GDAL_STRUCTURAL_METADATA_SIZE=000140 bytes\n"
            );
            let back = read_ifds(&out).unwrap();
            assert_eq!(back.len(), 3);
            let mut first_tile = Vec::new();
            for (i, (got, want)) in back.iter().zip(&ifds).enumerate() {
                let keep = |e: &&Entry| e.tag != TILE_OFFSETS && e.tag != TILE_BYTE_COUNTS;
                assert!(got
                    .entries
                    .iter()
                    .filter(keep)
                    .eq(want.entries.iter().filter(keep)));
                let find = |tag| got.entries.iter().find(|e| e.tag == tag).unwrap();
                let offsets = u32s(find(TILE_OFFSETS));
                let counts = u32s(find(TILE_BYTE_COUNTS));
                assert_eq!(
                    counts,
                    sizes[i].iter().map(|&s| s as u64).collect::<Vec<_>>()
                );
                for (t, (&o, &n)) in offsets.iter().zip(&counts).enumerate() {
                    let (o, n) = (o as usize, n as usize);
                    assert!(out[o..o + n].iter().copied().eq(body(i, t, n as u32)));
                    assert_eq!(&out[o - 4..o], &(n as u32).to_le_bytes());
                    assert_eq!(out[o + n..o + n + 4], out[o + n - 4..o + n]);
                }
                first_tile.push(offsets[0]);
            }
            // smallest overview first, full resolution last; IFDs before data
            assert!(first_tile[2] < first_tile[1] && first_tile[1] < first_tile[0]);
            let main: u64 = sizes[0].iter().map(|&s| 8 + s as u64).sum();
            assert_eq!(out.len() as u64, first_tile[0] - 4 + main);
        }
    }

    /// A corrupt or truncated file is an error naming what is wrong, never
    /// a panic.
    #[test]
    fn truncated_files_are_errors() {
        let ifds = vec![image(40, 20, 6, false)];
        let sizes = vec![vec![5u32; 6]];
        let mut out = Vec::new();
        write_cog(&mut out, &ifds, &sizes, false, |_, _, b| {
            b.extend([1, 2, 3, 4, 5]);
            Ok(())
        })
        .unwrap();
        for cut in [0, 3, 8, 200, 300] {
            assert!(
                read_ifds(&out[..cut.min(out.len())]).is_err(),
                "cut at {cut}"
            );
        }
        let mut mm = out.clone();
        mm[..2].copy_from_slice(b"MM");
        assert!(read_ifds(&mm).unwrap_err().contains("little-endian"));
        // a tile of another size than announced
        let err = write_cog(&mut Vec::new(), &ifds, &sizes, false, |_, _, b| {
            b.extend([1, 2, 3]);
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("announced"), "{err}");
    }
}
