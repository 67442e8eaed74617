"""`floodsql polygons`: flood outlines vectorised block by block and merged
across block edges, checked against an independent vectorisation of the
whole raster at once (`rasterio.features.shapes`, 4-connected, shapely) and
read back with GeoPandas (GeoParquet 1.1), pyarrow and json (GeoJSON, RFC
7946); areas against pyproj (res² / areal scale at each pixel centre)."""
import json

import geopandas
import numpy as np
import pyarrow.parquet as pq
import pyproj
import pytest
import rasterio
import rasterio.features
import shapely
from shapely.geometry import shape

from conftest import extent, make_scene, run


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("poly") / "scene", "--scale", "small")


@pytest.fixture(scope="module")
def raster(small):
    """The maximum flood extent of the demo-sized scene (20 flood polygons)."""
    out = small.path.parent / "extent.tif"
    extent(small.items_file, small.bbox, out)
    return out


def whole_raster_polygons(path, value=1):
    """Every 4-connected polygon of `value`, in pixel coordinates."""
    with rasterio.open(path) as r:
        a = r.read(1)
    return [shape(g) for g, v in rasterio.features.shapes(a, mask=a == value, connectivity=4) if v == value]


def same_crs(a, b):
    """Same projection: PROJ 9.1 (floodsql's PROJJSON) names Equi7's method
    "Modified Azimuthal Equidistant", numerically the same: compare points."""
    pts = ([68.0, 68.3, 68.6], [26.7, 26.9, 27.1])
    xa, ya = pyproj.Transformer.from_crs("EPSG:4326", a, always_xy=True).transform(*pts)
    xb, yb = pyproj.Transformer.from_crs("EPSG:4326", b, always_xy=True).transform(*pts)
    return np.allclose(xa, xb, atol=1e-3, rtol=0) and np.allclose(ya, yb, atol=1e-3, rtol=0)


def to_pixels(geom, transform):
    inv = ~transform
    return shapely.transform(geom, lambda xy: np.column_stack(inv * (xy[:, 0], xy[:, 1])))


def polygons(raster, tmp_path, *extra):
    pq_out, gj_out = tmp_path / "p.parquet", tmp_path / "p.geojson"
    p = run(["polygons", raster, "--parquet", pq_out, "--geojson", gj_out, *extra])
    return p, pq_out, gj_out


@pytest.mark.parametrize("block", [64, 200, 4096])
def test_polygons_equal_a_whole_raster_vectorisation(raster, tmp_path, block):
    want = whole_raster_polygons(raster)
    assert len(want) > 5
    _, pq_out, gj_out = polygons(raster, tmp_path, "--block", str(block))
    df = geopandas.read_parquet(pq_out)
    with rasterio.open(raster) as r:
        transform, crs = r.transform, pyproj.CRS(r.crs.to_wkt())
        flooded = int((r.read(1) == 1).sum())
    assert same_crs(pyproj.CRS(df.crs), crs)
    got = [to_pixels(g, transform) for g in df.geometry]
    # one polygon per connected component: no duplicates, no seams at block edges
    assert len(got) == len(want)
    assert sorted(round(g.area) for g in got) == sorted(round(g.area) for g in want)
    assert sorted(df["pixels"]) == sorted(round(g.area) for g in want)
    assert int(df["pixels"].sum()) == flooded
    # the same shapes: each floodsql polygon equals one whole-raster polygon
    idx = shapely.STRtree(want)
    for g in got:
        cands = [want[i] for i in idx.query(g)]
        assert any(c.equals(g) for c in cands), g.bounds
    assert all(g.is_valid for g in df.geometry)


def test_areas_and_geoparquet_metadata(raster, tmp_path):
    p, pq_out, gj_out = polygons(raster, tmp_path, "--block", "128")
    meta = json.loads(pq.read_metadata(pq_out).metadata[b"geo"])
    assert meta["version"] == "1.1.0" and meta["primary_column"] == "geometry"
    col = meta["columns"]["geometry"]
    assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"]
    t = pq.read_table(pq_out)
    assert t.column_names == ["polygon_id", "class", "pixels", "area_km2", "geometry"]
    assert set(t["class"].to_pylist()) == {1}
    # true areas: the pixels' ellipsoidal areas (pyproj areal scale at centres)
    with rasterio.open(raster) as r:
        a, gt = r.read(1), r.transform.to_gdal()
        crs = pyproj.CRS(r.crs.to_wkt())
    rows, cols = np.nonzero(a == 1)
    x, y = gt[0] + (cols + 0.5) * gt[1], gt[3] + (rows + 0.5) * gt[5]
    lon, lat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
    m2 = gt[1] * gt[1] / np.asarray(pyproj.Proj(crs).get_factors(lon, lat).areal_scale)
    total = sum(t["area_km2"].to_pylist())
    assert abs(total / (m2.sum() / 1e6) - 1) < 1e-5, (total, m2.sum() / 1e6)
    assert f"{total:.3f} km²" in p.stdout
    # GeoJSON: RFC 7946 lon/lat, the same polygons
    gj = json.loads(gj_out.read_text())
    assert len(gj["features"]) == t.num_rows
    assert "crs" not in gj  # RFC 7946: WGS 84 implied
    lons = [c[0] for f in gj["features"] for c in f["geometry"]["coordinates"][0]]
    lats = [c[1] for f in gj["features"] for c in f["geometry"]["coordinates"][0]]
    assert lon.min() - 0.01 < min(lons) and max(lons) < lon.max() + 0.01
    assert lat.min() - 0.01 < min(lats) and max(lats) < lat.max() + 0.01
    assert sorted(f["properties"]["pixels"] for f in gj["features"]) == sorted(t["pixels"].to_pylist())


def test_simplify_and_minimum_size(raster, tmp_path):
    want = whole_raster_polygons(raster)
    big = sum(1 for g in want if round(g.area) >= 50)
    _, pq_out, _ = polygons(raster, tmp_path, "--min-pixels", "50", "--simplify", "30")
    df = geopandas.read_parquet(pq_out)
    assert len(df) == big and (df["pixels"] >= 50).all()
    _, plain, _ = polygons(raster, tmp_path / "..", "--min-pixels", "50")
    full = geopandas.read_parquet(plain)
    # fewer vertices, about the same area, pixel counts unchanged
    nv = lambda s: sum(shapely.get_num_coordinates(g) for g in s.geometry)
    assert nv(df) < nv(full)
    assert abs(df.geometry.area.sum() / full.geometry.area.sum() - 1) < 0.02
    assert list(df["pixels"]) == list(full["pixels"])


def test_polygon_dates_from_date_rasters(small, raster, tmp_path):
    """--first-date/--last-date: each polygon's earliest and latest flood day
    equal the date rasters' min/max over that polygon's pixels (each
    whole-raster polygon burned with rasterio)."""
    dates = {}
    for name, expr in (("first", "flood_first_date"), ("last", "flood_last_date")):
        dates[name] = tmp_path / f"{name}.tif"
        run(["sql", "-c", f"SELECT x_off, y_off, width, height, {expr}(pixels, datetime) AS pixels "
                          f"FROM flood_chunks('{small.items_file}', 'GFM', '{small.bbox}', "
                          f"'2022-09-01T00:00:00Z/2022-10-01T00:00:00Z', 'ensemble_flood_extent', 700) "
                          f"GROUP BY x_off, y_off, width, height", "--out", dates[name]])
    _, pq_out, gj_out = polygons(raster, tmp_path, "--block", "300", "--first-date", dates["first"],
                                 "--last-date", dates["last"])
    df = geopandas.read_parquet(pq_out)
    with rasterio.open(dates["first"]) as r:
        first = r.read(1)
    with rasterio.open(dates["last"]) as r:
        last = r.read(1)
    with rasterio.open(raster) as r:
        transform = r.transform
    want = whole_raster_polygons(raster)
    day = lambda d: np.datetime64(int(d), "D")
    checked = 0
    for g, f0, f1 in zip(df.geometry, df["first_flooded"], df["last_flooded"]):
        px = to_pixels(g, transform)
        w = next(c for c in want if c.equals(px))
        m = rasterio.features.rasterize([(w, 1)], out_shape=first.shape, fill=0, dtype="uint8") == 1
        assert m.sum() == round(w.area)
        nz = first[m][first[m] > 0]
        assert np.datetime64(f0, "D") == day(nz.min()) and np.datetime64(f1, "D") == day(last[m].max())
        checked += 1
    assert checked == len(want) > 5
    gj = json.loads(gj_out.read_text())
    assert all(len(f["properties"]["first_flooded"]) == 10 for f in gj["features"])
    # a date raster on another grid is refused, naming it
    p = run(["polygons", raster, "--parquet", tmp_path / "x.parquet", "--first-date", raster,
             "--last-date", dates["last"]], check=False)
    assert p.returncode != 0 and "16-bit" in p.stderr, p.stderr


@pytest.mark.parametrize("args,needle", [
    (["missing.tif"], "cannot open"),
    (["{raster}", "--block", "4"], "invalid --block"),
    (["{raster}", "--simplify=-1"], "invalid --simplify"),
    (["{raster}"], "nothing to write"),
])
def test_bad_input_is_named(raster, tmp_path, args, needle):
    args = [a.replace("{raster}", str(raster)) for a in args]
    out = ["--parquet", tmp_path / "x.parquet"] if len(args) > 1 or "missing" in args[0] else []
    p = run(["polygons", *args, *out], check=False)
    assert p.returncode != 0 and needle in p.stderr, p.stderr
    assert not (tmp_path / "x.parquet").exists()
