//! The physical floor of a scan: the compressed bytes of every block the
//! scan needs, inflated and nothing else — no fusing, no aggregation, no
//! output. Measures flate2's zlib-rs backend (what floodsql inflates with)
//! and libdeflate on one thread, and both on every core: the faster of the
//! two is the floor. ZSTD blocks (GFM-shaped scenes mix codecs) are
//! decompressed with the zstd library (one reused context) in every variant.
//!
//!   cargo bench --profile dev --bench inflate_floor -- WINDOWS_FILE
//!
//! With `--round LOG` only the two floors on every core are measured (the
//! best of 3 each) and appended to LOG as "LIBDEFLATE_S ZLIB_RS_S":
//! `benches/e2e.sh` runs it once per round, beside floodsql, so that the
//! two are compared within the same spell of this VM's speed.
//!
//! WINDOWS_FILE has one needed window per line, "PATH COL ROW WIDTH HEIGHT"
//! in the file's pixels (`benches/decode_floor.py --windows` writes it, from
//! its own search and grid, not floodsql's). Block offsets and sizes come
//! from GDAL (`BLOCK_OFFSET_x_y` / `BLOCK_SIZE_x_y` of the TIFF domain); each
//! block a window touches is counted once per file.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

use gdal::Metadata;

/// A needed block: its compressed bytes, decoded size, and whether it is ZSTD.
type Block = (Vec<u8>, usize, bool);

fn main() {
    // WINDOWS_FILE, and --round LOG (cargo adds flags of its own: skipped)
    let (mut list, mut round_log) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--round" {
            round_log = Some(args.next().expect("--round LOG"));
        } else if !a.starts_with('-') && list.is_none() {
            list = Some(a);
        }
    }
    let list = list.expect("usage: inflate_floor [--round LOG] WINDOWS_FILE");
    let text = std::fs::read_to_string(&list).expect("reading the windows file");
    // (path) -> blocks needed
    let mut need: HashMap<String, BTreeSet<(usize, usize)>> = HashMap::new();
    let mut block_size = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [path, col, row, w, h] = f[..] else {
            continue;
        };
        let n = |s: &str| s.parse::<usize>().expect("a number");
        let (col, row, w, h) = (n(col), n(row), n(w), n(h));
        let (bw, bh) = *block_size.entry(path.to_string()).or_insert_with(|| {
            let ds = gdal::Dataset::open(path).expect("opening a COG");
            ds.rasterband(1).expect("band 1").block_size()
        });
        let set = need.entry(path.to_string()).or_default();
        for by in row / bh..(row + h).div_ceil(bh) {
            for bx in col / bw..(col + w).div_ceil(bw) {
                set.insert((bx, by));
            }
        }
    }
    // the compressed bytes of every needed block, and whether it is ZSTD
    let mut blocks: Vec<(Vec<u8>, usize, bool)> = Vec::new();
    for (path, set) in &need {
        let ds = gdal::Dataset::open(path).expect("opening a COG");
        let zstd = ds
            .metadata_item("COMPRESSION", "IMAGE_STRUCTURE")
            .as_deref()
            == Some("ZSTD");
        let band = ds.rasterband(1).expect("band 1");
        let (bw, bh) = band.block_size();
        let mut file = std::fs::File::open(path).expect("opening a COG");
        for (bx, by) in set {
            let item = |k: &str| {
                band.metadata_item(&format!("BLOCK_{k}_{bx}_{by}"), "TIFF")
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let (Some(off), Some(len)) = (item("OFFSET"), item("SIZE")) else {
                continue; // sparse
            };
            let mut b = vec![0u8; len as usize];
            file.seek(SeekFrom::Start(off)).expect("seek");
            file.read_exact(&mut b).expect("read");
            blocks.push((b, bw * bh, zstd));
        }
    }
    let compressed: usize = blocks.iter().map(|b| b.0.len()).sum();
    let decoded: usize = blocks.iter().map(|b| b.1).sum();
    let mut distinct: HashMap<&[u8], usize> = HashMap::new();
    for (b, _, _) in &blocks {
        *distinct.entry(b).or_default() += 1;
    }
    let n_zstd = blocks.iter().filter(|b| b.2).count();
    let (top, top_n) = distinct
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(b, n)| (b.len(), *n))
        .unwrap_or((0, 0));
    println!(
        "blocks: {} in {} files, {:.1} MB compressed, {:.2} GB decoded; the commonest block ({top} bytes) is {:.0} % of them",
        blocks.len(),
        need.len(),
        compressed as f64 / 1e6,
        decoded as f64 / 1e9,
        100.0 * top_n as f64 / blocks.len().max(1) as f64
    );
    if n_zstd > 0 {
        println!("of them ZSTD: {n_zstd} (decompressed the same way in every variant)");
    }
    let unzstd = |d: &mut zstd::bulk::Decompressor, b: &[u8], n: usize| {
        let mut v = Vec::with_capacity(n);
        d.decompress_to_buffer(b, &mut v).expect("zstd");
        std::hint::black_box(&v);
    };
    let zlib_rs = |set: &[(Vec<u8>, usize, bool)]| {
        let mut z = zstd::bulk::Decompressor::new().expect("a zstd context");
        for (b, n, is_zstd) in set {
            if *is_zstd {
                unzstd(&mut z, b, *n);
                continue;
            }
            let mut v = Vec::with_capacity(*n);
            flate2::read::ZlibDecoder::new(&b[..])
                .read_to_end(&mut v)
                .expect("inflate");
            std::hint::black_box(&v);
        }
    };
    let libdeflate = |set: &[(Vec<u8>, usize, bool)]| {
        let mut d = libdeflater::Decompressor::new();
        let mut z = zstd::bulk::Decompressor::new().expect("a zstd context");
        for (b, n, is_zstd) in set {
            if *is_zstd {
                unzstd(&mut z, b, *n);
                continue;
            }
            let mut v = vec![0u8; *n];
            d.zlib_decompress(b, &mut v).expect("inflate");
            std::hint::black_box(&v);
        }
    };
    let time = |f: &dyn Fn()| {
        // the best of 3
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let libdeflate_reused = |set: &[(Vec<u8>, usize, bool)]| {
        let mut d = libdeflater::Decompressor::new();
        let mut z = zstd::bulk::Decompressor::new().expect("a zstd context");
        let mut v = vec![0u8; set.iter().map(|b| b.1).max().unwrap_or(0)];
        for (b, n, is_zstd) in set {
            if *is_zstd {
                unzstd(&mut z, b, *n);
                continue;
            }
            d.zlib_decompress(b, &mut v[..*n]).expect("inflate");
            std::hint::black_box(&v);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = blocks.len().div_ceil(cores).max(1);
    let on_all_cores = |one: &(dyn Fn(&[Block]) + Sync)| {
        time(&|| {
            std::thread::scope(|s| {
                for part in blocks.chunks(per) {
                    s.spawn(|| one(part));
                }
            })
        })
    };
    if let Some(log) = round_log {
        let (floor, floor_z) = (on_all_cores(&libdeflate), on_all_cores(&zlib_rs));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("opening the round log");
        writeln!(f, "{floor:.4} {floor_z:.4}").expect("writing the round log");
        return;
    }
    let r = time(&|| libdeflate_reused(&blocks));
    println!("libdeflate into one reused buffer: {r:.3} s");
    let z = time(&|| zlib_rs(&blocks));
    let l = time(&|| libdeflate(&blocks));
    let floor = on_all_cores(&libdeflate);
    println!(
        "inflate, 1 thread: zlib-rs (flate2) {z:.3} s, libdeflate {l:.3} s ({:.2}x)",
        z / l
    );
    let floor_z = on_all_cores(&zlib_rs);
    println!("all {cores} cores: libdeflate {floor:.3} s, zlib-rs {floor_z:.3} s");
    println!("physical floor: {:.3} s", floor.min(floor_z));
}
