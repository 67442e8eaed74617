//! Raster chunks as Arrow: grid maths, GDAL reads, fusing, the chunk scan
//! (`FloodChunksExec`) and its table function `flood_chunks(...)`.

pub mod exec;
pub mod fuse;
pub mod grid;
pub mod plan;
pub mod read;
pub mod table;
