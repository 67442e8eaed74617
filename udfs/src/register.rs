//! Every floodsql aggregate, in one list: the session factory registers these.

use std::sync::Arc;

use datafusion::logical_expr::AggregateUDF;

use crate::{FloodCount, FloodMaxExtent, ValidCount};

/// All floodsql UDAFs.
pub fn all_udafs() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::from(FloodMaxExtent::default())),
        Arc::new(AggregateUDF::from(FloodCount::default())),
        Arc::new(AggregateUDF::from(ValidCount::default())),
    ]
}
