//! floodsql-udfs: floodsql's flood aggregations as DataFusion UDAFs.
//!
//! Pure Arrow/DataFusion kernels: no GDAL, no I/O. Each SQL function lives in
//! its own file; [`register::all_udafs`] lists them.

pub mod constant;
pub mod flood_count;
pub mod flood_dates;
pub mod flood_extent_states;
pub mod flood_frequency;
pub mod flood_max_extent;
pub mod flood_observed;
pub mod fsum;
pub mod pixel_agg;
pub mod pixel_areas;
pub mod pixel_count;
pub mod register;
pub mod replace_where;
pub mod valid_count;
pub mod zonal_stats;

pub use flood_count::FloodCount;
pub use flood_dates::{FloodFirstDate, FloodLastDate};
pub use flood_extent_states::FloodExtentStates;
pub use flood_frequency::FloodFrequency;
pub use flood_max_extent::FloodMaxExtent;
pub use flood_observed::FloodObserved;
pub use fsum::{ExactSum, Fsum};
pub use pixel_agg::{
    day_of, PixelAggregate, PixelKernel, RasterKind, RasterMeta, DEFAULT_NODATA, META_KIND,
    META_NODATA,
};
pub use pixel_areas::{AreaFunction, PixelAreas};
pub use pixel_count::PixelCount;
pub use register::{all_udafs, all_udfs, register_all};
pub use replace_where::ReplaceWhere;
pub use valid_count::ValidCount;
pub use zonal_stats::ZonalStats;

/// Whether a scalar function argument of type `t` can be a pixel buffer
/// (any binary type, or a NULL literal).
pub(crate) fn is_binary(t: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType;
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::Null
    )
}
