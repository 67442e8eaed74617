//! Raster chunks as Arrow: grid maths, COG reads (native and GDAL), fusing, the chunk scan
//! (`FloodChunksExec`) and its table function `flood_chunks(...)`.

pub(crate) mod area;
pub(crate) mod byte_cache;
pub(crate) mod cog;
pub(crate) mod constant;
pub(crate) mod exec;
pub(crate) mod fuse;
pub(crate) mod grid;
pub(crate) mod plan;
pub(crate) mod read;
pub(crate) mod resolve;
pub(crate) mod table;
pub(crate) mod tiff;
pub(crate) mod warp;
