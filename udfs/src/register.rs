//! Every floodsql function, in one list: the session factory registers these.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

use crate::{
    AreaFunction, FloodCount, FloodExtentStates, FloodFirstDate, FloodFrequency, FloodLastDate,
    FloodMaxExtent, FloodObserved, Fsum, PixelCount, ReplaceWhere, ValidCount, ZonalStats,
};

/// All floodsql UDAFs.
pub fn all_udafs() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::from(FloodMaxExtent::default())),
        Arc::new(AggregateUDF::from(FloodCount::default())),
        Arc::new(AggregateUDF::from(ValidCount::default())),
        Arc::new(AggregateUDF::from(FloodObserved::default())),
        Arc::new(AggregateUDF::from(FloodExtentStates::default())),
        Arc::new(AggregateUDF::from(FloodFirstDate::default())),
        Arc::new(AggregateUDF::from(FloodLastDate::default())),
        Arc::new(AggregateUDF::from(FloodFrequency::default())),
        Arc::new(AggregateUDF::from(Fsum::default())),
    ]
}

/// All floodsql scalar functions.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(PixelCount::default())),
        Arc::new(ScalarUDF::from(AreaFunction::area_km2())),
        Arc::new(ScalarUDF::from(AreaFunction::observed_km2())),
        Arc::new(ScalarUDF::from(AreaFunction::grid_km2())),
        Arc::new(ScalarUDF::from(ReplaceWhere::default())),
        Arc::new(ScalarUDF::from(ZonalStats::default())),
    ]
}

/// Registers every floodsql function (scalar and aggregate) in `registry`
/// (a `SessionContext`, a `SessionState`, …).
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for f in all_udfs() {
        registry.register_udf(f)?;
    }
    for f in all_udafs() {
        registry.register_udaf(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::execution::registry::MemoryFunctionRegistry;

    use super::*;

    #[test]
    fn registers_every_function_once() {
        let mut reg = MemoryFunctionRegistry::new();
        register_all(&mut reg).unwrap();
        let mut names: Vec<String> = reg.udfs().into_iter().chain(reg.udafs()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "area_km2",
                "flood_count",
                "flood_extent_states",
                "flood_first_date",
                "flood_frequency",
                "flood_last_date",
                "flood_max_extent",
                "flood_observed",
                "fsum",
                "grid_km2",
                "observed_km2",
                "pixel_count",
                "replace_where",
                "valid_count",
                "zonal_stats"
            ]
        );
    }
}
