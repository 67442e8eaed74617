//! Kernel throughput: the flood kernels on a 1000x1000 chunk, against a naive
//! float version of the tutorial's masking (`where(data != 255 & data != 0)`,
//! `sum`, `> 0`) measured in the same run as the baseline.
//! `cargo bench -p floodsql-udfs --profile dev` (reuses the debug build, where
//! floodsql's own crates are compiled at opt-level 2; the default bench profile
//! rebuilds DataFusion in release, ~20 min on 2 cores).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use floodsql_udfs::flood_count::FloodCountKernel;
use floodsql_udfs::flood_dates::FirstDateKernel;
use floodsql_udfs::flood_extent_states::ExtentStatesKernel;
use floodsql_udfs::flood_frequency::FrequencyKernel;
use floodsql_udfs::flood_max_extent::MaxExtentKernel;
use floodsql_udfs::pixel_areas::{node_positions, PixelAreas, NODE_STEP};
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
    g.bench_function("flood_extent_states", |b| {
        let mut cells = vec![0u8; N];
        b.iter(|| ExtentStatesKernel::update(&mut cells, black_box(&px), 255, 0))
    });
    g.bench_function("flood_first_date", |b| {
        let mut cells = vec![0u16; N];
        b.iter(|| FirstDateKernel::update(&mut cells, black_box(&px), 255, 19236))
    });
    g.bench_function("flood_frequency", |b| {
        let mut cells = vec![[0u16; 2]; N];
        b.iter(|| FrequencyKernel::update(&mut cells, black_box(&px), 255, 0))
    });
    // true areas: one pass of interpolated pixel areas into value classes
    // (what area_km2 and the writers' summary do per chunk)
    let side = 1000;
    let xs = node_positions(side, NODE_STEP);
    let areas = PixelAreas {
        width: side,
        height: side,
        grid_m2: 0.0,
        values: (0..xs.len() * xs.len())
            .map(|i| 380.0 + (i % 7) as f64)
            .collect(),
        ys: xs.clone(),
        xs,
    };
    g.bench_function("pixel_areas_sum_by", |b| {
        let mut bins = [0.0; 4];
        b.iter(|| {
            areas
                .sum_by(black_box(&px), |v| (v as usize).min(3), &mut bins)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
