"""One Python process runs the tutorial's cells (peer_tutorial.tutorial: its
odc-stac/rasterio/pyproj wheels with their own GDAL and PROJ) and
floodsql.max_flood_extent (the system's GDAL and PROJ), imported in the
order given, and checks the two results are the same array on the same grid.
Then it writes floodsql's GeoTIFF and reads it back with rasterio, in the
same process. Prints a JSON line of facts; exits non-zero on a difference.

usage: py_identity.py floodsql-first|tutorial-first API_URL BBOX START END OUT_DIR
"""
import json
import sys
from datetime import datetime
from pathlib import Path

order, api, bbox, start, end, out = sys.argv[1:7]
if order == "floodsql-first":
    import floodsql
    import peer_tutorial
else:
    import peer_tutorial
    import floodsql

import numpy as np
import odc.geo.xr  # noqa: F401  (.odc)
import rasterio
import rioxarray  # noqa: F401  (.rio)

result, data = peer_tutorial.tutorial(api, bbox, start, end)
ours = floodsql.max_flood_extent(
    stac_url=api,
    bbox=tuple(float(v) for v in bbox.split(",")),
    datetime=(datetime.fromisoformat(start), datetime.fromisoformat(end)),
    progress=False,
)

assert ours.dtype == np.uint8 and result.dtype == np.uint8, (ours.dtype, result.dtype)
assert ours.dims == result.dims, (ours.dims, result.dims)
assert ours.shape == result.shape, (ours.shape, result.shape)
assert np.array_equal(ours.values, result.values), "pixels differ"
for d in result.dims:
    # the coordinates, bit for bit (pixel centres)
    assert ours[d].values.dtype == result[d].values.dtype
    assert np.array_equal(ours[d].values.view(np.uint64), result[d].values.view(np.uint64)), d
# the grid: odc-geo's view and rioxarray's (the tutorial's result lost its
# CRS in xr.where, so compare with the cube it loaded)
assert ours.odc.geobox == data.odc.geobox, (ours.odc.geobox, data.odc.geobox)
assert ours.rio.crs == data.rio.crs, (ours.rio.crs, data.rio.crs)
assert ours.rio.transform() == data.rio.transform(), (ours.rio.transform(), data.rio.transform())
assert "nodata" not in ours.attrs and ours.rio.nodata is None
ours.values[0, 0] ^= 1  # a plain, writable numpy array
ours.values[0, 0] ^= 1

# both GDALs at work in one process: floodsql writes, rasterio reads
tif = Path(out) / f"{order}.tif"
summary = floodsql.connect().sql(
    floodsql._SQL["max_flood_extent"],
    floodsql._scan_params(api, bbox, (datetime.fromisoformat(start), datetime.fromisoformat(end)),
                          "GFM", "ensemble_flood_extent", None),
    progress=False,
).write(tif=tif)
with rasterio.open(tif) as ds:
    assert np.array_equal(ds.read(1), result.values), "the GeoTIFF differs"
    assert ds.crs == data.rio.crs and ds.transform == data.rio.transform()

print(json.dumps({
    "order": order, "shape": list(ours.shape), "flooded": int(ours.sum()),
    "summary_flooded": summary["flooded_pixels"], "crs": ours.rio.crs.to_string(),
    "gdal_rasterio": rasterio.__gdal_version__,
}))
