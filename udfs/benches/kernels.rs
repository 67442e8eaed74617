//! Kernel throughput: the flood kernels on a 1000x1000 chunk, against a naive
//! float version of the tutorial's masking (`where(data != 255 & data != 0)`,
//! `sum`, `> 0`) measured in the same run as the baseline.
//! `cargo bench -p floodsql-udfs --profile dev` (reuses the debug build, where
//! floodsql's own crates are compiled at opt-level 2; the default bench profile
//! rebuilds DataFusion in release, ~20 min on 2 cores).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use floodsql_udfs::flood_count::FloodCountKernel;
use floodsql_udfs::flood_max_extent::MaxExtentKernel;
use floodsql_udfs::valid_count::ValidCountKernel;
use floodsql_udfs::PixelKernel;

const N: usize = 1_000_000;

fn slice(t: usize) -> Vec<u8> {
    (0..N)
        .map(|i| match (i * 2654435761 + t * 97) % 7 {
            0 => 1,
            1 | 2 => 255,
            _ => 0,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let px = slice(3);
    let mut g = c.benchmark_group("chunk_1000x1000");
    g.throughput(Throughput::Bytes(N as u64));
    g.bench_function("baseline_float_mask_sum", |b| {
        let mut sum = vec![0f32; N];
        b.iter(|| {
            for (s, &p) in sum.iter_mut().zip(black_box(&px)) {
                let v = if p != 255 && p != 0 {
                    p as f32
                } else {
                    f32::NAN
                };
                if !v.is_nan() {
                    *s += v;
                }
            }
            black_box(&sum);
        })
    });
    g.bench_function("flood_max_extent", |b| {
        let mut cells = vec![0u8; N];
        b.iter(|| MaxExtentKernel::update(&mut cells, black_box(&px), 255, 0))
    });
    g.bench_function("flood_count", |b| {
        let mut cells = vec![0u16; N];
        b.iter(|| FloodCountKernel::update(&mut cells, black_box(&px), 255, 0))
    });
    g.bench_function("valid_count", |b| {
        let mut cells = vec![0u16; N];
        b.iter(|| ValidCountKernel::update(&mut cells, black_box(&px), 255, 0))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
