"""Bounds and estimates: a query planned too large is refused before any
pixel is read (no allocation abort, nothing written), and `--dry-run` prints
an estimate that an independent computation (reference.py's search and grid,
plain numpy arithmetic on the items' proj:transform/proj:shape) confirms."""
import os
import re

import reference
from conftest import DT, RangeServer, extent


def last_line(p):
    return p.stderr.strip().splitlines()[-1]


def test_a_continent_sized_bbox_is_refused_before_reading(tiny, tmp_path):
    """The issue's 40,0,100,50 bbox: once an allocation abort with a
    backtrace; now a clear error naming the limit, the bbox and the grid."""
    out = tmp_path / "huge.tif"
    p = extent(tiny.items_file, "40,0,100,50", out, "--parquet", str(tmp_path / "h.parquet"),
               "--png", str(tmp_path / "h.png"), check=False)
    assert p.returncode == 1, p.stderr
    msg = last_line(p)
    assert "floodsql.max_grid_pixels" in msg and "40,0,100,50" in msg and "Gpx" in msg, msg
    assert "panicked" not in p.stderr and "memory allocation" not in p.stderr
    assert os.listdir(tmp_path) == []
    # a limit given by the user, lower than the tutorial-sized grid: refused too
    p = extent(tiny.items_file, tiny.bbox, out, "--set", "floodsql.max_grid_pixels=100k", check=False)
    assert p.returncode == 1 and "over floodsql.max_grid_pixels = 100000" in last_line(p), p.stderr
    # and with no limit the grid is planned (dry run: nothing read or written)
    p = extent(tiny.items_file, "40,0,100,50", out, "--dry-run", "--set", "floodsql.max_grid_pixels=0")
    assert re.search(r"output grid\s+\d+ x \d+ px = 124\.\d+ Gpx", p.stdout), p.stdout
    assert os.listdir(tmp_path) == []


def test_the_read_volume_limit(tiny, tmp_path):
    out = tmp_path / "a.tif"
    p = extent(tiny.items_file, tiny.bbox, out, "--set", "floodsql.max_read_bytes=1M", check=False)
    assert p.returncode == 1, p.stderr
    assert "over floodsql.max_read_bytes = 1000000" in last_line(p), p.stderr
    assert os.listdir(tmp_path) == []
    for bad in ("lots", "-5", "1.5G"):
        p = extent(tiny.items_file, tiny.bbox, out, "--set", f"floodsql.max_read_bytes={bad}",
                   check=False)
        assert p.returncode == 1 and "floodsql.max_read_bytes must be" in p.stderr, p.stderr


def test_dry_run_estimate_matches_an_independent_count(tiny, tiny_api, tmp_path):
    """Items, slices, grid and decoded bytes of `--dry-run` on the STAC API
    equal reference.py's search and grid plus numpy overlap arithmetic; the
    COGs (served over HTTP here) receive no request, nothing is written."""
    srv = RangeServer(tiny.path)
    try:
        # the same catalogue, its assets on the range server
        import json
        d = json.loads(tiny.items_file.read_text())
        for it in d["features"]:
            a = it["assets"]["ensemble_flood_extent"]
            a["href"] = srv.url + "/cogs/" + os.path.basename(a["href"])
        items_file = tmp_path / "items.json"
        items_file.write_text(json.dumps(d))
        out = tmp_path / "out" / "x.tif"
        p = extent(items_file, tiny.bbox, out, "--dry-run", "--set",
                   "floodsql.allowed_hosts=127.0.0.1")
        assert srv.stats()["requests"] == 0, srv.stats()
    finally:
        srv.stop()
    assert not out.parent.exists()
    got = p.stdout
    # the independent side: search the API, grid from pyproj, overlaps in numpy
    bbox = [float(v) for v in tiny.bbox.split(",")]
    found = reference.search(tiny_api, bbox, DT[0], DT[1])
    import pyproj
    crs = pyproj.CRS.from_wkt(found[0]["properties"]["proj:wkt2"])
    res = found[0]["properties"]["gsd"]
    left, top, w, h = reference.grid(bbox, crs, res)
    on_grid, read = [], 0
    for it in found:
        rows, cols = it["properties"]["proj:shape"]
        t = it["properties"]["proj:transform"]
        col, row = round(t[2] / res - left), round(top - t[5] / res)
        ow = min(col + cols, w) - max(col, 0)
        oh = min(row + rows, h) - max(row, 0)
        if ow > 0 and oh > 0:
            on_grid.append(it)
            read += ow * oh
    slices = {it["properties"]["datetime"] for it in on_grid}
    assert f"items             {len(on_grid)} in {len(slices)} time slices" in got, got
    assert f"output grid       {w} x {h} px" in got, got
    m = re.search(r"to read\s+([\d.]+) (k|M|G)?B", got)
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, None: 1}[m.group(2)]
    assert abs(float(m.group(1)) * scale - read) <= 0.0005 * scale, (m.group(0), read)
    # the plan line a real run prints agrees with the dry run
    p = extent(tiny.items_file, tiny.bbox, tmp_path / "real.tif")
    plan = [l for l in p.stderr.splitlines() if l.startswith("plan: ")]
    assert plan and f"{len(on_grid)} items in {len(slices)} slices; grid {w} x {h} px" in plan[0], p.stderr
