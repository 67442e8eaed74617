"""The EODC tutorial's code (docs/tutorial.md), unchanged but for the API URL, AOI
and dates (and a CRS read from proj:projjson or proj:code where an item has no
proj:wkt2), run on a local Dask scheduler instead of Dask Gateway: the Python
peer stack floodsql must match pixel for pixel.

usage: peer_tutorial.py API_URL MINX,MINY,MAXX,MAXY START END OUT.tif
(or import it: `tutorial(...)` runs the cells and returns the extent and the cube)
(START/END: ISO datetimes, passed as datetime objects like the tutorial does)
"""
import sys
import time
from datetime import datetime

import pyproj
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from odc import stac as odc_stac
from pystac_client import Client
from shapely.geometry import box


def tutorial(api_url, bbox_s, start_s, end_s):
    """The tutorial's cells: (the computed extent, the loaded cube)."""
    collection_id = "GFM"
    aoi = box(*[float(v) for v in bbox_s.split(",")])
    time_range = (datetime.fromisoformat(start_s), datetime.fromisoformat(end_s))

    eodc_catalog = Client.open(api_url)
    search = eodc_catalog.search(
        max_items=1000,
        collections=collection_id,
        intersects=aoi,
        datetime=time_range,
    )
    items = search.item_collection()
    print(f"found {len(items)} items", file=sys.stderr)

    p = items[0].properties
    # the tutorial reads proj:wkt2; catalogues without it give proj:projjson or proj:code
    crs = pyproj.CRS.from_user_input(p.get("proj:wkt2") or p.get("proj:projjson") or p["proj:code"])
    resolution = items[0].properties["gsd"]
    bands = ["ensemble_flood_extent"]
    xx = odc_stac.load(
        items,
        bbox=aoi.bounds,
        crs=crs,
        bands=bands,
        resolution=resolution,
        dtype="uint8",
        chunks={"x": 1000, "y": 1000, "time": -1},
    )
    data = xx.ensemble_flood_extent

    result = data.where((data != 255) & (data != 0)).sum(dim="time")
    result = xr.where(result > 0, 1, 0).astype("uint8")
    computed_result = result.compute(sync=True)
    return computed_result, data


if __name__ == "__main__":
    api_url, bbox_s, start_s, end_s, out = sys.argv[1:6]
    t0 = time.time()
    computed_result, data = tutorial(api_url, bbox_s, start_s, end_s)
    computed_result.rio.to_raster(out, compress="LZW")
    print(f"time slices: {data.sizes['time']}, grid {computed_result.shape}, "
          f"flooded {int(computed_result.sum())}, {time.time() - t0:.2f} s", file=sys.stderr)
