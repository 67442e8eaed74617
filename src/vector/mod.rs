//! Vector data: regions read with OGR and rasterised onto a scan's grid
//! (zonal statistics), and flood polygons vectorised from a class raster.

pub(crate) mod polygons;
pub(crate) mod regions;
pub(crate) mod table;
pub(crate) mod zones;
