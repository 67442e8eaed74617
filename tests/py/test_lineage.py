"""Lineage and incremental updates.

Every raster run writes a STAC Item beside its outputs (NAME.stac.json): checked
against the STAC 1.1.0 item schema (pystac's bundled JSON schemas; the
extension schemas live online, so the projection and raster fields are read
with pystac's extension classes and compared with what rasterio and pyproj
read from the GeoTIFF), and its item list against a plain search of the
STAC API. `floodsql extent --update` reads only the items the lineage lacks
and must give the full run's raster."""
import json
import shutil
import subprocess

import numpy as np
import pyproj
import pystac
import pystac.validation
import pytest
import rasterio
from conftest import DT, DT_RFC, PY, REPO, HERE, StacServer, extent, floodsql_bin, run, write_scene
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension

sys_path = str(HERE)
import sys  # noqa: E402

sys.path.insert(0, sys_path)
from reference import search  # noqa: E402  (test code: a plain POST /search)

FIRST_HALF = "2022-09-01T00:00:00Z/2022-09-07T00:00:00Z"  # 2 of the tiny scene's 5 slices


def pixels(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs


def expected_items(api, bbox, tif):
    """Ids a full run reads: the search's items whose asset grid overlaps
    the output grid (rasterio's view of the GeoTIFF)."""
    with rasterio.open(tif) as ds:
        gx0, gy1 = ds.transform.c, ds.transform.f
        gx1, gy0 = gx0 + ds.width * ds.transform.a, gy1 + ds.height * ds.transform.e
    out = set()
    for it in search(api, [float(v) for v in bbox.split(",")], *DT):
        p = it["properties"]
        t, (h, w) = p["proj:transform"], p["proj:shape"]
        x0, y1 = t[2], t[5]
        x1, y0 = x0 + w * t[0], y1 + h * t[4]
        if x0 < gx1 and x1 > gx0 and y0 < gy1 and y1 > gy0:
            out.add(it["id"])
    return out


def test_every_output_gets_a_valid_stac_item(tiny, tiny_api, tmp_path):
    tif, pq, png = tmp_path / "x.tif", tmp_path / "x.parquet", tmp_path / "x.png"
    extent(tiny_api, tiny.bbox, tif, "--parquet", pq, "--png", png)
    d = json.loads((tmp_path / "x.stac.json").read_text())
    # core schema, offline (pystac's bundled STAC 1.1.0 schemas)
    core = {**d, "stac_extensions": []}
    assert pystac.validation.validate_dict(core)
    broken = {**core, "bbox": "nope"}
    with pytest.raises(pystac.errors.STACValidationError):
        pystac.validation.validate_dict(broken)
    item = pystac.Item.from_dict(d)
    # the projection extension = the GeoTIFF's grid
    px, transform, crs = pixels(tif)
    proj = ProjectionExtension.ext(item)
    assert proj.shape == list(px.shape)
    assert proj.transform[:6] == pytest.approx(list(transform)[:6])
    # the same projection (PROJ 9.1 names Equi7's method "Modified Azimuthal
    # Equidistant", pyproj's PROJ "Azimuthal Equidistant": compare numerically)
    theirs = pyproj.CRS.from_json_dict(proj.projjson)
    xs = [transform.c, transform.c + 600 * transform.a]
    ys = [transform.f, transform.f + 600 * transform.e]
    for c in (theirs, pyproj.CRS.from_user_input(crs.to_wkt())):
        t = pyproj.Transformer.from_crs(c, "EPSG:4326", always_xy=True)
        lon, lat = t.transform(xs, ys)
        if c is theirs:
            first = (lon, lat)
    np.testing.assert_allclose(first, (lon, lat), atol=1e-9)
    band = RasterExtension.ext(item.assets["data"]).bands[0]
    assert str(getattr(band.data_type, "value", band.data_type)) == str(px.dtype)
    assert band.spatial_resolution == 20
    # assets resolve to the files
    for key, f in [("data", tif), ("chunks", pq), ("quicklook", png)]:
        assert (tmp_path / item.assets[key].href).resolve() == f.resolve()
    assert item.assets["quicklook"].roles == ["overview"]
    # geometry/bbox in lon/lat cover the AOI
    minx, miny, maxx, maxy = (float(v) for v in tiny.bbox.split(","))
    assert item.bbox[0] <= minx and item.bbox[1] <= miny and item.bbox[2] >= maxx and item.bbox[3] >= maxy
    # what was read: every overlapping item of the search, its time range
    props = d["properties"]
    want = expected_items(tiny_api, tiny.bbox, tif)
    assert set(props["floodsql:items"]) == want and len(want) > 5
    times = sorted(it["properties"]["datetime"] for it in tiny.items if it["id"] in want)
    assert (props["start_datetime"], props["end_datetime"]) == (times[0], times[-1])
    assert props["datetime"] is None
    version = subprocess.run([floodsql_bin(), "--version"], capture_output=True, text=True).stdout.split()[-1]
    assert props["floodsql:version"] == version
    assert "flood_max_extent(pixels)" in props["floodsql:sql"]
    assert props["floodsql:parameters"]["bbox"] == tiny.bbox
    assert props["floodsql:parameters"]["source"] == tiny_api


def test_sql_runs_record_their_parameters(tiny, tiny_api, tmp_path):
    out = tmp_path / "q.tif"
    run(["sql", REPO / "sql" / "max_flood_extent.sql", "--out", out, "--param", f"source={tiny_api}", "--param", "collection=GFM",
         "--param", f"bbox={tiny.bbox}", "--param", f"datetime={DT_RFC}",
         "--param", "asset=ensemble_flood_extent", "--param", "chunk=256"])
    props = json.loads((tmp_path / "q.stac.json").read_text())["properties"]
    assert props["floodsql:parameters"]["chunk"] == "256"
    assert props["floodsql:parameters"]["datetime"] == DT_RFC


def test_update_reads_only_new_items_and_equals_a_full_run(tiny, tiny_api, tmp_path):
    full, part = tmp_path / "full.tif", tmp_path / "part.tif"
    extent(tiny_api, tiny.bbox, full)
    p1 = extent(tiny_api, tiny.bbox, part, datetime=FIRST_HALF)
    n_full = len(json.loads((tmp_path / "full.stac.json").read_text())["properties"]["floodsql:items"])
    n_part = len(json.loads((tmp_path / "part.stac.json").read_text())["properties"]["floodsql:items"])
    assert 0 < n_part < n_full
    assert not np.array_equal(pixels(part)[0], pixels(full)[0])  # the update has work to do
    p = run(["extent", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC,
             "--update", part, "--png", tmp_path / "part.png"])
    # only the new items were planned and read
    assert f"plan: {n_full - n_part} items" in p.stderr, p.stderr
    assert f"read the {n_full - n_part} new items only" in p.stderr
    a, b = pixels(part), pixels(full)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    props = json.loads((tmp_path / "part.stac.json").read_text())["properties"]
    assert props["floodsql:items"] == json.loads((tmp_path / "full.stac.json").read_text())["properties"]["floodsql:items"]
    assert props["floodsql:parameters"]["datetime"] == DT_RFC
    # again: nothing new, the file is left as it is
    before = part.read_bytes()
    p = run(["extent", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC, "--update", part])
    assert "nothing new" in p.stderr and "is up to date" in p.stderr
    assert part.read_bytes() == before


def test_update_that_cannot_merge_recomputes_in_full(tiny, tmp_path):
    """A new item in a time slice the earlier result read (another frame of
    the same acquisition, ingested late): merging would not fuse the slice
    as a full run does, so floodsql recomputes it in full."""
    scene = tmp_path / "scene"
    shutil.copytree(tiny.path, scene)
    doc = json.loads((scene / "items.json").read_text())
    first = write_scene(scene, doc, tiny.bbox)
    out, full = tmp_path / "x.tif", tmp_path / "full.tif"
    extent(str(first.items_file), tiny.bbox, out)
    late = json.loads(json.dumps(doc["features"][3]))
    late["id"] = late["id"] + "-late"
    doc["features"].append(late)
    write_scene(scene, doc, tiny.bbox)
    extent(str(first.items_file), tiny.bbox, full)
    p = run(["extent", "--stac-url", first.items_file, "--bbox", tiny.bbox, "--datetime", DT_RFC,
             "--update", out])
    assert "not incremental: new item" in p.stderr and "recomputing" in p.stderr, p.stderr
    assert np.array_equal(pixels(out)[0], pixels(full)[0])
    ids = json.loads((tmp_path / "x.stac.json").read_text())["properties"]["floodsql:items"]
    assert late["id"] in ids


def test_update_refusals(tiny, tiny_api, tmp_path):
    out = tmp_path / "x.tif"
    base = ["extent", "--stac-url", tiny_api, "--datetime", DT_RFC]
    p = run(base + ["--bbox", tiny.bbox, "--update", out], check=False)
    assert p.returncode == 1 and "no such file" in p.stderr
    extent(tiny_api, tiny.bbox, out, datetime=FIRST_HALF)
    before = out.read_bytes()
    other = ",".join(str(float(v) + 0.01) for v in tiny.bbox.split(","))
    p = run(base + ["--bbox", other, "--update", out], check=False)
    assert p.returncode == 1 and "made with bbox" in p.stderr and "not the same query" in p.stderr, p.stderr
    p = run(base + ["--bbox", tiny.bbox, "--update", out, "--parquet", tmp_path / "x.parquet"], check=False)
    assert p.returncode == 1 and "--parquet" in p.stderr, p.stderr
    (tmp_path / "x.stac.json").rename(tmp_path / "moved.json")
    p = run(base + ["--bbox", tiny.bbox, "--update", out], check=False)
    assert p.returncode == 1 and "x.stac.json" in p.stderr and "lineage" in p.stderr, p.stderr
    assert out.read_bytes() == before


def test_a_run_failing_at_the_end_puts_back_what_it_replaced(tiny, tiny_api, tmp_path):
    tif, pq = tmp_path / "x.tif", tmp_path / "x.parquet"
    extent(tiny_api, tiny.bbox, tif, "--parquet", pq, datetime=FIRST_HALF)
    before = {f: f.read_bytes() for f in (tif, pq, tmp_path / "x.stac.json")}
    # the quicklook cannot be written (a directory is in its place): the run
    # fails after replacing the Parquet file, which must come back
    (tmp_path / "x.png").mkdir()
    p = extent(tiny_api, tiny.bbox, tif, "--parquet", pq, "--png", tmp_path / "x.png", check=False)
    assert p.returncode == 1, p.stderr
    assert {f: f.read_bytes() for f in before} == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["x.parquet", "x.png", "x.stac.json", "x.tif"]


def test_a_json_file_of_the_users_is_never_overwritten(tiny, tiny_api, tmp_path):
    mine = tmp_path / "x.stac.json"
    mine.write_text('{"my": "notes"}')
    p = extent(tiny_api, tiny.bbox, tmp_path / "x.tif", check=False)
    assert p.returncode == 1 and "not a floodsql lineage item" in p.stderr, p.stderr
    assert mine.read_text() == '{"my": "notes"}'
    assert not (tmp_path / "x.tif").exists()


def test_lineage_never_lands_on_a_catalogue_named_like_the_output(tiny, tmp_path):
    """A static catalogue `scene.json` and `--out scene.tif` side by side:
    the lineage item is scene.stac.json; the catalogue is untouched."""
    cat = tmp_path / "scene.json"
    shutil.copy(tiny.items_file, cat)
    before = cat.read_bytes()
    extent(str(cat), tiny.bbox, tmp_path / "scene.tif")
    assert cat.read_bytes() == before
    assert json.loads((tmp_path / "scene.stac.json").read_text())["type"] == "Feature"
