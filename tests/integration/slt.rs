//! SQL behaviour pinned in `tests/slt/*.slt` (sqllogictest). `${scene}` and
//! `${bbox}` in the files are the tiny synthetic scene's directory and AOI.

use std::path::PathBuf;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::tiny_scene;

struct FloodDb {
    ctx: SessionContext,
}

fn cell(col: &dyn Array, row: usize) -> String {
    if col.is_null(row) {
        return "NULL".into();
    }
    match col.data_type() {
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let c = arrow::compute::cast(&col.slice(row, 1), &DataType::LargeBinary).unwrap();
            let c = c
                .as_any()
                .downcast_ref::<arrow::array::LargeBinaryArray>()
                .unwrap();
            format!("<{} bytes>", c.value(0).len())
        }
        _ => arrow::util::display::array_value_to_string(col, row).unwrap_or_default(),
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for FloodDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let scene = tiny_scene();
        let sql = sql
            .replace("${scene}", &scene.dir.display().to_string())
            .replace("${bbox}", &scene.bbox);
        let is_query = {
            let s = sql.trim_start().to_ascii_lowercase();
            s.starts_with("select")
                || s.starts_with("explain")
                || s.starts_with("with")
                || s.starts_with("show")
        };
        let stmts = floodsql::pipeline::split_statements(&sql)
            .map_err(|e| DataFusionError::Plan(e.to_string()))?;
        let mut batches: Vec<RecordBatch> = vec![];
        for s in stmts {
            batches = floodsql::pipeline::run_statement(&self.ctx, s, &Default::default())
                .await?
                .batches;
        }
        if !is_query {
            return Ok(DBOutput::StatementComplete(0));
        }
        let ncols = batches.first().map(|b| b.num_columns()).unwrap_or(0);
        let explain = sql.trim_start().to_ascii_lowercase().starts_with("explain");
        let mut rows: Vec<Vec<String>> = vec![];
        for b in &batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = (0..b.num_columns())
                    .map(|c| cell(b.column(c).as_ref(), r))
                    .collect();
                if explain && cells.len() == 2 {
                    // like DataFusion's own .slt files: the plan type, then
                    // numbered plan lines with indentation shown as '--'
                    rows.push(vec![cells[0].clone()]);
                    for (i, line) in cells[1].lines().enumerate() {
                        let body = line.trim_start();
                        let indent = "-".repeat(line.len() - body.len());
                        rows.push(vec![format!("{:02}){indent}{body}", i + 1)]);
                    }
                } else {
                    rows.push(cells);
                }
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; ncols],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let _ = tiny_scene();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let mut runner = sqllogictest::Runner::new(|| async {
            Ok(FloodDb {
                ctx: floodsql::session::new_context(Some(2))?,
            })
        });
        runner
            .run_file_async(&f)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}
