//! `regions(path [, layer])`: the regions of a vector file as a table —
//! `region_id` (the feature's position in the layer, from 1: the zone ids
//! of `flood_chunks(..., regions)`), one column per attribute, and
//! `geometry` (WKB, in the file's CRS). The file is read once, when the
//! call is planned (on a thread of its own: GDAL), so a cluster's scheduler
//! and executors never need it.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{exec_datafusion_err, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{Error, Result as FsResult};
use crate::sqlargs::{check_arity, opt_str, req_str};
use crate::vector::regions::{AttrKind, AttrValue, RegionSet, RegionsSpec};

/// The SQL name of the table function.
pub(crate) const NAME: &str = "regions";

/// Its arguments, as error messages and `\df` show them.
pub(crate) const SIGNATURE: &str = "path [, layer]";

/// Reads `spec` on a thread of its own (GDAL never runs on the async
/// runtime's threads; table functions are called while planning).
pub(crate) fn read_off_runtime(spec: &RegionsSpec) -> FsResult<RegionSet> {
    std::thread::scope(|s| {
        s.spawn(|| RegionSet::read(spec))
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("reading regions panicked".into())))
    })
}

/// `regions(...)`: the table function.
#[derive(Debug)]
pub(crate) struct RegionsFunction;

impl TableFunctionImpl for RegionsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = NAME;
        let a = args.exprs();
        check_arity(F, SIGNATURE, a, 2)?;
        let spec = RegionsSpec::new(&req_str(F, "path", a, 0)?, opt_str(F, "layer", a, 1)?)?;
        Ok(Arc::new(RegionsTable::new(read_off_runtime(&spec)?)))
    }
}

/// The regions of one file, as a table.
#[derive(Debug)]
pub(crate) struct RegionsTable {
    pub(crate) set: Arc<RegionSet>,
    schema: SchemaRef,
}

impl RegionsTable {
    pub(crate) fn new(set: RegionSet) -> Self {
        let mut fields = vec![Field::new("region_id", DataType::Int64, false)];
        for (name, kind) in &set.fields {
            let t = match kind {
                AttrKind::Int => DataType::Int64,
                AttrKind::Real => DataType::Float64,
                AttrKind::Text => DataType::Utf8,
                AttrKind::Date => DataType::Date32,
            };
            fields.push(Field::new(name, t, true));
        }
        fields.push(Field::new("geometry", DataType::Binary, false));
        Self {
            set: Arc::new(set),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn batch(&self) -> Result<RecordBatch> {
        let rs = &self.set.regions;
        let mut cols: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from_iter_values(1..=rs.len() as i64))];
        for (k, (_, kind)) in self.set.fields.iter().enumerate() {
            let vals = rs
                .iter()
                .map(|r| r.values.get(k).unwrap_or(&AttrValue::Null));
            let col: ArrayRef = match kind {
                AttrKind::Int => Arc::new(Int64Array::from_iter(vals.map(|v| match v {
                    AttrValue::Int(i) => Some(*i),
                    _ => None,
                }))),
                AttrKind::Real => Arc::new(Float64Array::from_iter(vals.map(|v| match v {
                    AttrValue::Real(x) => Some(*x),
                    AttrValue::Int(i) => Some(*i as f64),
                    _ => None,
                }))),
                AttrKind::Date => Arc::new(Date32Array::from_iter(vals.map(|v| match v {
                    AttrValue::Date(d) => Some(*d),
                    _ => None,
                }))),
                AttrKind::Text => Arc::new(StringArray::from_iter(vals.map(|v| match v {
                    AttrValue::Text(s) => Some(s.clone()),
                    _ => None,
                }))),
            };
            cols.push(col);
        }
        cols.push(Arc::new(BinaryArray::from_iter_values(
            rs.iter().map(|r| r.wkb.as_slice()),
        )));
        RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| exec_datafusion_err!("regions '{}': {e}", self.set.spec.path))
    }
}

#[async_trait]
impl TableProvider for RegionsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![self.batch()?]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
