"""The decode floor: GDAL (rasterio) alone reading, once, the window of every
item that the output grid needs, on N threads. No fusing, no aggregation.

usage: decode_floor.py API_URL MINX,MINY,MAXX,MAXY START END [THREADS]
       decode_floor.py --windows API_URL MINX,MINY,MAXX,MAXY START END
         prints each item's needed window instead ("PATH COL ROW WIDTH HEIGHT",
         file pixels), for the physical floor (benches/inflate_floor.rs)
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import rasterio
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "py"))
from reference import grid, path_of, search  # noqa: E402


def main():
    args = sys.argv[1:]
    list_windows = args[:1] == ["--windows"]
    if list_windows:
        args = args[1:]
    api, bbox_s, start, end = args[:4]
    threads = int(args[4]) if len(args) > 4 else 2
    bbox = [float(v) for v in bbox_s.split(",")]
    items = search(api, bbox, start, end, page=100)
    import pyproj
    crs = pyproj.CRS.from_wkt(items[0]["properties"]["proj:wkt2"])
    res = items[0]["properties"]["gsd"]
    left, top, w, h = grid(bbox, crs, res)
    t0 = time.time()

    def window(it):
        a = it["assets"]["ensemble_flood_extent"]
        tr = it["properties"]["proj:transform"]
        rows, cols = it["properties"]["proj:shape"]
        col, row = round(tr[2] / res - left), round(top - tr[5] / res)
        x0, y0 = max(col, 0), max(row, 0)
        x1, y1 = min(col + cols, w), min(row + rows, h)
        if x0 >= x1 or y0 >= y1:
            return None
        return path_of(a["href"]), x0 - col, y0 - row, x1 - x0, y1 - y0

    if list_windows:
        for it in items:
            if (win := window(it)) is not None:
                print(*win)
        return

    def read(it):
        if (win := window(it)) is None:
            return 0
        path, col, row, width, height = win
        with rasterio.open(path) as src:
            return src.read(1, window=Window(col, row, width, height)).size

    with ThreadPoolExecutor(threads) as ex:
        px = sum(ex.map(read, items))
    print(f"decode floor: {len(items)} items, {px} pixels read in {time.time() - t0:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
