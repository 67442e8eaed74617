//! The flood UDAFs on multi-partition input (so `state`/`merge_batch` run),
//! against a naive per-pixel computation written here.

use std::sync::Arc;

use arrow::array::{AsArray, Int32Array, LargeBinaryArray, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

const N: usize = 64; // pixels per chunk

/// Rows (chunk, slice, pixels) per partition.
type Parts = Vec<Vec<(i32, usize, Vec<u8>)>>;

/// The day (since 1970-01-01) of slice `t`: slices are not in time order.
fn day(t: usize) -> i64 {
    19236 + ((t * 5) % 9) as i64 * 3
}

/// Deterministic pseudo-random slices: values in {0, 1, 7, 255}.
fn slice(chunk: usize, t: usize) -> Vec<u8> {
    (0..N)
        .map(|i| {
            let h = (i * 2654435761 + chunk * 40503 + t * 97) % 1009;
            match h % 5 {
                0 | 1 => 0,
                2 => 1,
                3 => 255,
                _ => {
                    if h.is_multiple_of(2) {
                        7
                    } else {
                        255
                    }
                }
            }
        })
        .collect()
}

fn ctx_with(partitions: usize, binary: DataType) -> (SessionContext, Parts) {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
    for u in floodsql_udfs::all_udafs() {
        ctx.register_udaf((*u).clone());
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("chunk", DataType::Int32, false),
        Field::new("pixels", binary.clone(), true),
        Field::new(
            "datetime",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    // rows (chunk, t) spread over partitions so that every chunk is split
    let mut parts: Parts = vec![vec![]; partitions];
    let mut k = 0;
    for chunk in 0..5 {
        for t in 0..9 {
            parts[k % partitions].push((chunk, t, slice(chunk as usize, t)));
            k += 1;
        }
    }
    let batches: Vec<Vec<RecordBatch>> = parts
        .iter()
        .map(|rows| {
            let c = Int32Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
            let p = LargeBinaryArray::from_iter_values(rows.iter().map(|r| r.2.as_slice()));
            let p = arrow::compute::cast(&p, &binary).unwrap();
            // noon UTC of the slice's day
            let d = TimestampMicrosecondArray::from_iter_values(
                rows.iter()
                    .map(|r| (day(r.1) * 86_400 + 43_200) * 1_000_000),
            )
            .with_timezone("UTC");
            vec![RecordBatch::try_new(schema.clone(), vec![Arc::new(c), p, Arc::new(d)]).unwrap()]
        })
        .collect();
    let table = MemTable::try_new(schema, batches).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    (ctx, parts)
}

/// Per pixel of a chunk, computed naively: (extent, flood count, valid
/// count, first flood day, last flood day).
type Naive = (Vec<u8>, Vec<u16>, Vec<u16>, Vec<u16>, Vec<u16>);

fn naive(parts: &Parts, chunk: i32, nodata: u8) -> Naive {
    let mut ext = vec![0u8; N];
    let mut cnt = vec![0u16; N];
    let mut val = vec![0u16; N];
    let mut first = vec![0u16; N];
    let mut last = vec![0u16; N];
    for (c, t, px) in parts.iter().flatten() {
        if *c != chunk {
            continue;
        }
        let d = day(*t) as u16;
        for i in 0..N {
            let v = px[i];
            if v != nodata {
                val[i] += 1;
                if v != 0 {
                    cnt[i] += 1;
                    ext[i] = 1;
                    if first[i] == 0 || d < first[i] {
                        first[i] = d;
                    }
                    last[i] = last[i].max(d);
                }
            }
        }
    }
    (ext, cnt, val, first, last)
}

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

async fn check(binary: DataType, nodata: u8) {
    let (ctx, parts) = ctx_with(3, binary);
    let sql = format!(
        "SELECT chunk, flood_max_extent(pixels, {nodata}) e, flood_count(pixels, {nodata}) c, \
         valid_count(pixels, {nodata}) v, flood_observed(pixels, {nodata}) o, \
         flood_extent_states(pixels, {nodata}) s, flood_first_date(pixels, datetime, {nodata}) f, \
         flood_last_date(pixels, datetime, {nodata}) l, flood_frequency(pixels, {nodata}) q \
         FROM t GROUP BY chunk ORDER BY chunk"
    );
    let plan = ctx
        .sql(&format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(
        text.contains("mode=Partial") && text.contains("mode=FinalPartitioned"),
        "{text}"
    );
    let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let mut seen = 0;
    for b in &out {
        let chunks = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
        for r in 0..b.num_rows() {
            let (e, c, v, first, last) = naive(&parts, chunks.value(r), nodata);
            assert_eq!(b.column(1).as_binary::<i64>().value(r), e.as_slice());
            assert_eq!(u16s(b.column(2).as_binary::<i64>().value(r)), c);
            assert_eq!(u16s(b.column(3).as_binary::<i64>().value(r)), v);
            // observed = valid_count > 0
            let o: Vec<u8> = v.iter().map(|&n| (n > 0) as u8).collect();
            assert_eq!(b.column(4).as_binary::<i64>().value(r), o.as_slice());
            // three states: 1 flooded, 0 observed dry, 255 never observed
            let s: Vec<u8> = (0..N)
                .map(|i| match (e[i], v[i]) {
                    (1, _) => 1,
                    (_, 0) => 255,
                    _ => 0,
                })
                .collect();
            assert_eq!(b.column(5).as_binary::<i64>().value(r), s.as_slice());
            assert_eq!(u16s(b.column(6).as_binary::<i64>().value(r)), first);
            assert_eq!(u16s(b.column(7).as_binary::<i64>().value(r)), last);
            // percent rounded half up, in floating point here
            let q: Vec<u8> = (0..N)
                .map(|i| match v[i] {
                    0 => 255,
                    n => (100.0 * c[i] as f64 / n as f64 + 0.5).floor() as u8,
                })
                .collect();
            assert_eq!(b.column(8).as_binary::<i64>().value(r), q.as_slice());
            seen += 1;
        }
    }
    assert_eq!(seen, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udafs_merge_across_partitions_binary() {
    check(DataType::Binary, 255).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udafs_merge_across_partitions_large_binary_other_nodata() {
    check(DataType::LargeBinary, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udafs_accept_binary_view() {
    check(DataType::BinaryView, 255).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungrouped_accumulator_merges_too() {
    let (ctx, parts) = ctx_with(3, DataType::Binary);
    let out = ctx
        .sql("SELECT flood_max_extent(pixels) FROM t WHERE chunk = 2")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let got = out[0].column(0).as_binary::<i64>().value(0).to_vec();
    assert_eq!(got, naive(&parts, 2, 255).0);
    // a dated aggregate without groups merges too
    let out = ctx
        .sql("SELECT flood_last_date(pixels, datetime) FROM t WHERE chunk = 3")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let got = u16s(out[0].column(0).as_binary::<i64>().value(0));
    assert_eq!(got, naive(&parts, 3, 255).4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_buffers_are_an_execution_error() {
    let ctx = SessionContext::new();
    for u in floodsql_udfs::all_udafs() {
        ctx.register_udaf((*u).clone());
    }
    async fn error_of(ctx: &SessionContext, sql: &str) -> String {
        match ctx.sql(sql).await {
            Err(e) => e.to_string(),
            Ok(df) => df.collect().await.expect_err(sql).to_string(),
        }
    }
    let err = error_of(
        &ctx,
        "SELECT flood_max_extent(column1) FROM (VALUES (X'0001'), (X'000100')) AS v",
    )
    .await;
    assert!(err.contains("differ in length"), "{err}");
    let err = error_of(
        &ctx,
        "SELECT flood_max_extent(column1, 300) FROM (VALUES (X'00')) AS v",
    )
    .await;
    assert!(err.contains("0..=255"), "{err}");
    let err = error_of(&ctx, "SELECT flood_count('abc')").await;
    assert!(err.contains("must be Binary"), "{err}");
    let err = error_of(&ctx, "SELECT flood_first_date(X'01', 3)").await;
    assert!(err.contains("must be a timestamp"), "{err}");
    let err = error_of(&ctx, "SELECT flood_first_date(X'01')").await;
    assert!(err.contains("(pixels, datetime [, nodata])"), "{err}");
    let err = error_of(
        &ctx,
        "SELECT flood_first_date(X'01', TIMESTAMP '1960-01-01T00:00:00')",
    )
    .await;
    assert!(err.contains("outside 1970-01-02"), "{err}");
}
