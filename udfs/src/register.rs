//! Every floodsql function, in one list: the session factory registers these.

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

use crate::{FloodCount, FloodMaxExtent, PixelCount, ValidCount};

/// All floodsql UDAFs.
pub fn all_udafs() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::from(FloodMaxExtent::default())),
        Arc::new(AggregateUDF::from(FloodCount::default())),
        Arc::new(AggregateUDF::from(ValidCount::default())),
    ]
}

/// All floodsql scalar functions.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![Arc::new(ScalarUDF::from(PixelCount::default()))]
}
