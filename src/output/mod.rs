//! Results out: the aggregated chunks assembled into a raster, written as a
//! COG, a Parquet chunk table and a PNG quicklook. Every writer is atomic:
//! it writes a temp file beside the target and renames it into place.

pub mod assemble;
pub mod atomic;
pub mod cog;
pub mod font;
pub mod parquet;
pub mod png;
