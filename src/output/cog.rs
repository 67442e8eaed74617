//! GeoTIFF out as a Cloud-Optimized GeoTIFF: built in a GDAL `MEM` dataset,
//! then `CreateCopy` to the COG driver (tiled 512, DEFLATE, overviews resampled
//! NEAREST so a 0/1 mask stays 0/1), with the items' CRS and the grid's
//! geotransform. No nodata value: 0 is dry land, not missing data.
//! Blocking (GDAL): call from a blocking thread.

use std::path::Path;

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::DriverManager;

use crate::error::{Error, Result};
use crate::output::assemble::Raster;
use crate::output::atomic::write_atomic;
use crate::raster::grid::spatial_ref;

/// Builds the raster as an in-memory GDAL dataset with CRS and geotransform.
pub(crate) fn mem_dataset(r: &Raster) -> Result<gdal::Dataset> {
    let g = &r.grid;
    let mem = DriverManager::get_driver_by_name("MEM")?;
    let mut ds = match r.bytes_per_pixel {
        1 => {
            let ds = mem.create_with_band_type::<u8, _>("", g.width, g.height, 1)?;
            ds.rasterband(1)?.write(
                (0, 0),
                (g.width, g.height),
                &mut Buffer::new((g.width, g.height), r.data.clone()),
            )?;
            ds
        }
        2 => {
            let ds = mem.create_with_band_type::<u16, _>("", g.width, g.height, 1)?;
            let v: Vec<u16> = r
                .data
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            ds.rasterband(1)?.write(
                (0, 0),
                (g.width, g.height),
                &mut Buffer::new((g.width, g.height), v),
            )?;
            ds
        }
        n => {
            return Err(Error::Internal(format!(
                "a raster of {n} bytes per pixel (assembling allows 1 or 2)"
            )))
        }
    };
    ds.set_geo_transform(&g.geotransform())?;
    ds.set_spatial_ref(&spatial_ref(&g.crs)?)?;
    Ok(ds)
}

/// Writes `r` as a COG at `path` (atomically).
pub(crate) fn write_cog(r: &Raster, path: &Path) -> Result<()> {
    let ds = mem_dataset(r)?;
    let cog = DriverManager::get_driver_by_name("COG")?;
    let opts = RasterCreationOptions::from_iter([
        "COMPRESS=DEFLATE",
        "BLOCKSIZE=512",
        "OVERVIEW_RESAMPLING=NEAREST",
        "BIGTIFF=IF_SAFER",
        "NUM_THREADS=ALL_CPUS",
    ]);
    write_atomic(path, |tmp| {
        let mut out = ds
            .create_copy(&cog, tmp, &opts)
            .map_err(|e| Error::Gdal(format!("writing COG '{}': {e}", path.display())))?;
        out.flush_cache()?;
        drop(out);
        Ok(())
    })
}
