//! Finding the `flood_chunks` scans of a query: in its logical plan (views
//! included), to search and plan them on the client before the plan runs —
//! locally or on a cluster, whose scheduler then needs no catalogue access,
//! while the client knows the output grid it rasterises onto — and in its
//! physical plan.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Result;
use datafusion::datasource::{source_as_provider, ViewTable};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use indicatif::ProgressBar;

use crate::raster::exec::FloodChunksExec;
use crate::raster::plan::ScanPlan;
use crate::raster::table::FloodChunksTable;

/// The scan plans of every `flood_chunks` scan in a physical plan.
pub fn find_scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<ScanPlan>> {
    let mut out = Vec::new();
    let _ = plan.apply(|node| {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(s) = any.downcast_ref::<FloodChunksExec>() {
            out.push(s.scan_plan().clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Searches and plans every `flood_chunks` table a logical plan scans (views
/// included), so that the plan carries its scan plans wherever it runs;
/// items found are reported on `progress`.
pub async fn resolve_scans(
    plan: &LogicalPlan,
    progress: &ProgressBar,
) -> Result<Vec<Arc<ScanPlan>>> {
    let mut tables: Vec<Arc<dyn TableProvider>> = Vec::new();
    collect_tables(plan, &mut tables);
    let mut out: Vec<Arc<ScanPlan>> = Vec::new();
    for t in tables {
        let any: &dyn std::any::Any = t.as_ref();
        if let Some(fc) = any.downcast_ref::<FloodChunksTable>() {
            let p = fc.resolve(progress).await?;
            if !out.iter().any(|q| Arc::ptr_eq(q, &p)) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn collect_tables(plan: &LogicalPlan, out: &mut Vec<Arc<dyn TableProvider>>) {
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Ok(p) = source_as_provider(&scan.source) {
                let any: &dyn std::any::Any = p.as_ref();
                if let Some(v) = any.downcast_ref::<ViewTable>() {
                    collect_tables(v.logical_plan(), out);
                }
                out.push(p);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
}
