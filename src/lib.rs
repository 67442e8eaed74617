//! floodsql: SQL over flood data.
//!
//! STAC items and raster chunks become Arrow record batches; custom DataFusion
//! aggregates (crate `floodsql-udfs`) do the nodata-filtered flood maths; the
//! results are written as COG, Parquet and PNG.
//!
//! Layers (dependency arrows point down):
//! - [`cli`]: clap commands (`extent`, `sql`, `synth`, `demo`)
//! - [`pipeline`]: SQL → batches → raster outputs
//! - [`session`]: the one SessionContext factory (functions, table functions, options)
//! - [`stac`] (search, items → Arrow, `stac_items`), [`raster`] (grid, GDAL
//!   reads, fusing, `flood_chunks` scan), [`output`] (COG, Parquet, PNG)

pub mod cli;
pub mod cluster;
pub mod datetime;
pub mod error;
pub mod options;
pub mod output;
pub mod pipeline;
pub mod raster;
pub mod session;
pub mod sqlargs;
pub mod stac;
pub mod synth;
pub mod template;
pub mod version;

pub use error::{Error, Result};

/// The canonical query: the tutorial's maximum flood extent.
pub const MAX_FLOOD_EXTENT_SQL: &str = include_str!("../sql/max_flood_extent.sql");
