//! The Ballista codecs (plan → bytes → plan → same results, for every
//! floodsql node) and the stage layout of the distributed extent query.
//! Real processes are exercised in tests/py/test_cluster.py.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
use datafusion::physical_plan::{collect, displayable, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use floodsql::pipeline::{find_scans, resolve_scans};
use floodsql::session::{cluster_session_config, logical_codec, physical_codec, register_all};
use indicatif::ProgressBar;

use crate::common::tiny_scene;

const DT: &str = "2022-09-01T00:00:00Z/2022-10-01T00:00:00Z";

/// A local context configured like a cluster session (Ballista's planning
/// defaults, floodsql's codecs), without a cluster.
fn ctx() -> SessionContext {
    let ctx = SessionContext::new_with_config(cluster_session_config().with_target_partitions(3));
    register_all(&ctx).unwrap();
    ctx
}

fn source() -> String {
    tiny_scene().dir.join("items.json").display().to_string()
}

fn extent_sql() -> String {
    let s = tiny_scene();
    format!(
        "SELECT x_off, y_off, width, height, flood_max_extent(pixels) AS pixels \
         FROM flood_chunks('{}', 'GFM', '{}', '{DT}', 'ensemble_flood_extent', 200) \
         GROUP BY x_off, y_off, width, height ORDER BY y_off, x_off",
        source(),
        s.bbox
    )
}

fn items_sql() -> String {
    format!(
        "SELECT id, datetime FROM stac_items('{}', 'GFM', '{}', '{DT}') ORDER BY id",
        source(),
        tiny_scene().bbox
    )
}

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

async fn run_physical(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> String {
    text(&collect(plan, ctx.task_ctx()).await.unwrap())
}

#[tokio::test]
async fn logical_codec_round_trips_flood_chunks_and_stac_items() {
    let ctx = ctx();
    let codec = logical_codec();
    for sql in [extent_sql(), items_sql()] {
        let plan = ctx.state().create_logical_plan(&sql).await.unwrap();
        let scans = resolve_scans(&plan, &ProgressBar::hidden()).await.unwrap();
        let bytes = logical_plan_to_bytes_with_extension_codec(&plan, codec.as_ref()).unwrap();
        let back =
            logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), codec.as_ref())
                .unwrap();
        // the resolved scan plan travels with the table: no second search
        let scans_back = resolve_scans(&back, &ProgressBar::hidden()).await.unwrap();
        assert_eq!(scans.len(), scans_back.len());
        for (a, b) in scans.iter().zip(&scans_back) {
            assert_eq!(**a, **b);
        }
        let want = text(
            &ctx.execute_logical_plan(plan)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        let got = text(
            &ctx.execute_logical_plan(back)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        assert_eq!(want, got, "{sql}");
        assert!(want.lines().count() > 6, "{want}");
    }
}

#[tokio::test]
async fn physical_codec_round_trips_the_raster_scan() {
    let ctx = ctx();
    let codec = physical_codec();
    let df = ctx.sql(&extent_sql()).await.unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    assert_eq!(find_scans(&plan).len(), 1);
    let bytes = physical_plan_to_bytes_with_extension_codec(plan.clone(), codec.as_ref()).unwrap();
    let back =
        physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), codec.as_ref())
            .unwrap();
    assert_eq!(
        displayable(plan.as_ref()).indent(false).to_string(),
        displayable(back.as_ref()).indent(false).to_string()
    );
    assert_eq!(*find_scans(&plan)[0], *find_scans(&back)[0]);
    assert_eq!(
        run_physical(&ctx, plan).await,
        run_physical(&ctx, back).await
    );
}

#[tokio::test]
async fn payload_of_another_version_is_refused_naming_both() {
    let ctx = ctx();
    let codec = logical_codec();
    let plan = ctx
        .state()
        .create_logical_plan(&extent_sql())
        .await
        .unwrap();
    resolve_scans(&plan, &ProgressBar::hidden()).await.unwrap();
    let mut bytes = logical_plan_to_bytes_with_extension_codec(&plan, codec.as_ref())
        .unwrap()
        .to_vec();
    // same length, so the protobuf framing around the payload stays valid
    let ours = floodsql::version::version_tag().as_bytes().to_vec();
    let other: Vec<u8> = ours.iter().map(|_| b'9').collect();
    let at = bytes
        .windows(ours.len())
        .position(|w| w == ours.as_slice())
        .expect("version tag in payload");
    bytes[at..at + ours.len()].copy_from_slice(&other);
    let err = logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), codec.as_ref())
        .unwrap_err()
        .to_string();
    assert!(err.contains("version mismatch"), "{err}");
    assert!(err.contains(std::str::from_utf8(&other).unwrap()), "{err}");
    assert!(err.contains(floodsql::version::version_tag()), "{err}");
}

/// The stage layout Ballista's planner makes of the extent query: one
/// stage — the scan, fusing and the whole aggregation of each chunk in the
/// task whose scan partition holds it (the scan is range-partitioned by chunk
/// row, so no state is shuffled between executors); the client reads the
/// final chunks from the stage's outputs.
#[tokio::test]
async fn extent_query_stages() {
    let ctx = ctx();
    let sql = extent_sql().replace(" ORDER BY y_off, x_off", "");
    let plan = ctx
        .sql(&sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let mut planner = DefaultDistributedPlanner::new();
    let job = ballista_core::JobId::new("stages-test");
    let stages = planner
        .plan_query_stages(&job, plan, ctx.state().config_options())
        .unwrap();
    let shown: Vec<String> = stages
        .iter()
        .map(|s| {
            let p: Arc<dyn ExecutionPlan> = s.clone();
            let shown = displayable(p.as_ref()).indent(false).to_string();
            shown
        })
        .collect();
    let all = shown.join("\n---\n");
    assert_eq!(stages.len(), 1, "{all}");
    // shuffle writer (a passthrough of the range partitioning) <- projection
    // <- single-partitioned aggregate <- raster scan <- its chunk assignment
    // (an in-memory source Ballista restricts to each task's partitions)
    let s1: Vec<&str> = shown[0].lines().map(str::trim).collect();
    assert!(s1[0].contains("ShuffleWriterExec"), "{all}");
    assert!(s1[0].contains("Range([y_off"), "{all}");
    assert!(s1[1].starts_with("ProjectionExec"), "{all}");
    assert!(
        s1[2].starts_with("AggregateExec: mode=SinglePartitioned"),
        "{all}"
    );
    assert!(s1[3].starts_with("FloodChunksExec:"), "{all}");
    assert!(s1[3].contains("partitions=3"), "{all}");
    assert!(s1[4].starts_with("DataSourceExec: partitions=3"), "{all}");
    assert_eq!(s1.len(), 5, "{all}");
    assert!(!all.contains("RepartitionExec"), "{all}");
    println!("{all}");
}

/// Two scans range-partitioned on different chunk rows are never joined
/// partition by partition: the join repartitions both sides, and the answer
/// equals the single-partition one.
#[tokio::test]
async fn joins_of_two_scans_repartition_both_sides() {
    let s = tiny_scene();
    let scan = |dt: &str| {
        format!(
            "(SELECT x_off, y_off, flood_max_extent(pixels) e FROM flood_chunks('{}', 'GFM', '{}', '{dt}', \
             'ensemble_flood_extent', 200) GROUP BY x_off, y_off)",
            source(),
            s.bbox
        )
    };
    let sql = format!(
        "SELECT count(*) n, sum(pixel_count(a.e, 1)) fa, sum(pixel_count(b.e, 1)) fb FROM {} a JOIN {} b \
         ON a.x_off = b.x_off AND a.y_off = b.y_off",
        scan("2022-09-01/2022-09-12"),
        scan("2022-09-10/2022-09-30")
    );
    let plan = ctx()
        .sql(&sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let shown = displayable(plan.as_ref()).indent(false).to_string();
    assert_eq!(
        shown.matches("RepartitionExec: partitioning=Hash").count(),
        2,
        "{shown}"
    );
    let three = text(&ctx().sql(&sql).await.unwrap().collect().await.unwrap());
    let one_ctx =
        SessionContext::new_with_config(cluster_session_config().with_target_partitions(1));
    register_all(&one_ctx).unwrap();
    let one = text(&one_ctx.sql(&sql).await.unwrap().collect().await.unwrap());
    assert_eq!(three, one);
    assert!(three.lines().count() == 5, "{three}");
}
