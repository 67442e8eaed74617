"""Zonal statistics (`floodsql zonal`, sql/zonal_stats.sql) against an
independent computation written here: the regions file read with json, its
polygons taken to the grid's CRS with pyproj and burned with
`rasterio.features.rasterize` (all_touched=False, in file order) on the
reference grid; reference.py's three-state raster and first/last flood
days (numpy/rasterio); pixel areas from pyproj (res² / the projection's
areal scale at the pixel centre). No floodsql code is imported."""
import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pyproj
import pytest
import rasterio.features
from affine import Affine

from conftest import DT_RFC, reference, run


def grid_crs(scene):
    p = scene.items[0]["properties"]
    return pyproj.CRS.from_user_input(p.get("proj:wkt2") or p.get("proj:projjson") or p["proj:code"])


def areas_m2(crs, gt, shape):
    h, w = shape
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = gt[0] + cols * gt[1], gt[3] + rows * gt[5]
    lon, lat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
    f = pyproj.Proj(crs).get_factors(lon, lat)
    return gt[1] * gt[1] / np.asarray(f.areal_scale)


def zones(regions_file, crs, gt, shape, only=None):
    """Each pixel's region id (1-based, in file order; 0: none)."""
    doc = json.loads(open(regions_file).read())
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)

    def project(coords):
        if isinstance(coords[0], (int, float)):
            return list(to_grid.transform(coords[0], coords[1]))
        return [project(c) for c in coords]

    shapes = []
    for i, f in enumerate(doc["features"], start=1):
        if only is not None and i not in only:
            continue
        g = f["geometry"]
        shapes.append(({"type": g["type"], "coordinates": project(g["coordinates"])}, i))
    return rasterio.features.rasterize(shapes, out_shape=shape, transform=Affine.from_gdal(*gt),
                                       fill=0, all_touched=False, dtype="uint32")


def expected(scene, ref):
    gt, states = ref["geotransform"], ref["states"]
    crs = grid_crs(scene)
    z = zones(scene.path / "regions.geojson", crs, gt, states.shape)
    a = areas_m2(crs, gt, states.shape)
    names = [f["properties"]["name"] for f in json.loads((scene.path / "regions.geojson").read_text())["features"]]
    out = {}
    for i, name in enumerate(names, start=1):
        m = z == i
        fl, ob = m & (states == 1), m & (states != 255)
        first = ref["first_day"][fl & (ref["first_day"] > 0)]
        last = ref["last_day"][fl]
        day = lambda d: str(np.datetime64(int(d), "D"))
        out[name] = {
            "pixels": int(m.sum()), "flooded_pixels": int(fl.sum()), "observed_pixels": int(ob.sum()),
            "region_km2": a[m].sum() / 1e6, "flooded_km2": a[fl].sum() / 1e6, "observed_km2": a[ob].sum() / 1e6,
            "first_flooded": day(first.min()) if first.size else "",
            "last_flooded": day(last.max()) if fl.any() else "",
        }
    return out, z


def zonal(api, scene, tmp_path, *extra):
    out = {"csv": tmp_path / "zonal.csv", "parquet": tmp_path / "zonal.parquet"}
    p = run(["zonal", "--stac-url", api, "--bbox", scene.bbox, "--datetime", DT_RFC,
             "--regions", scene.path / "regions.geojson", "--csv", out["csv"], "--parquet", out["parquet"],
             *extra])
    return p, list(csv.DictReader(out["csv"].open())), out


def check(rows, want):
    assert [r["name"] for r in rows] == list(want)
    for r in rows:
        w = want[r["name"]]
        if w["pixels"] == 0:
            # a region off the grid: no statistics
            assert r["pixels"] == "" and r["flooded_km2"] == "", r
            continue
        for k in ("pixels", "flooded_pixels", "observed_pixels"):
            assert int(r[k]) == w[k], (r["name"], k, r[k], w[k])
        for k in ("region_km2", "flooded_km2", "observed_km2"):
            assert abs(float(r[k]) - w[k]) <= 1e-6 * max(w[k], 1e-3), (r["name"], k, r[k], w[k])
        assert abs(float(r["share_observed"]) - w["observed_km2"] / w["region_km2"]) < 1e-6
        assert r["first_flooded"] == w["first_flooded"] and r["last_flooded"] == w["last_flooded"], (r, w)


@pytest.fixture(scope="module")
def tiny_ref(tiny, tiny_api, tmp_path_factory):
    return reference(tiny_api, tiny.bbox, tmp_path_factory.mktemp("ref") / "ref.npz")


def test_zonal_statistics_equal_rasterize_numpy_pyproj(tiny, tiny_api, tiny_ref, tmp_path):
    want, z = expected(tiny, tiny_ref)
    # the scene's regions exercise what the rules are about
    assert sum(1 for w in want.values() if w["flooded_pixels"] > 0) >= 3
    assert want["Upland district"]["pixels"] == 0
    ward_alone = zones(tiny.path / "regions.geojson", grid_crs(tiny), tiny_ref["geotransform"],
                       tiny_ref["states"].shape, only={3})
    north_alone = zones(tiny.path / "regions.geojson", grid_crs(tiny), tiny_ref["geotransform"],
                        tiny_ref["states"].shape, only={1})
    overlap = (ward_alone == 3) & (north_alone == 1)
    assert overlap.sum() > 100 and (z[overlap] == 3).all(), "the ward (listed later) wins where it overlaps"
    p, rows, out = zonal(tiny_api, tiny, tmp_path, "--chunk", "200")
    check(rows, want)
    # a region off the grid says so (its figures are empty, not zero)
    assert {r["name"]: r["on_grid"] for r in rows} == \
        {n: ("true" if w["pixels"] > 0 else "false") for n, w in want.items()}
    # Parquet holds the same table (pyarrow)
    t = pq.read_table(out["parquet"]).to_pylist()
    assert [r["name"] for r in t] == [r["name"] for r in rows]
    assert [r["flooded_pixels"] for r in t] == [int(r["flooded_pixels"]) if r["flooded_pixels"] else None
                                                for r in rows]
    assert str(t[0]["first_flooded"]) == rows[0]["first_flooded"]
    assert "North district" in p.stdout and "regions: 5" in p.stdout


def test_chunk_size_does_not_change_the_answer(tiny, tiny_api, tmp_path):
    _, a, _ = zonal(tiny_api, tiny, tmp_path, "--chunk", "97")
    _, b, _ = zonal(tiny_api, tiny, tmp_path, "--chunk", "1000")
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if not k.endswith("km2") and k != "share_observed"} == \
               {k: v for k, v in y.items() if not k.endswith("km2") and k != "share_observed"}
        for k in ("region_km2", "flooded_km2", "observed_km2"):
            if x[k]:
                assert abs(float(x[k]) / float(y[k]) - 1) < 1e-7


def test_zonal_on_a_tutorial_shaped_scene(medium, medium_api, tmp_path_factory, tmp_path):
    ref = reference(medium_api, medium.bbox, tmp_path_factory.mktemp("ref") / "ref.npz")
    want, _ = expected(medium, ref)
    _, rows, _ = zonal(medium_api, medium, tmp_path)
    check(rows, want)


def test_regions_in_another_crs_and_format(tiny, tiny_api, tiny_ref, tmp_path):
    """The same regions as a GeoPackage in Web Mercator (ogr2ogr): same pixels."""
    gpkg = tmp_path / "regions.gpkg"
    import subprocess
    subprocess.run(["ogr2ogr", "-t_srs", "EPSG:3857", gpkg, tiny.path / "regions.geojson"], check=True)
    sql = (f"SELECT r.name, sum(z['pixels']) AS px FROM (SELECT unnest(zonal_stats(zones, states, areas)) AS z FROM ("
           f"SELECT x_off, y_off, flood_extent_states(pixels) AS states, first_value(zones) AS zones, "
           f"first_value(pixel_areas) AS areas FROM flood_chunks('{tiny_api}', 'GFM', '{tiny.bbox}', '{DT_RFC}', "
           f"'ensemble_flood_extent', 256, '{gpkg}') GROUP BY x_off, y_off)) "
           f"JOIN regions('{gpkg}') r ON r.region_id = z['region_id'] GROUP BY r.name ORDER BY r.name")
    got = {l.split(",")[0]: int(l.split(",")[1])
           for l in run(["sql", "--format", "csv", "-c", sql]).stdout.strip().splitlines()[1:]}
    want, _ = expected(tiny, tiny_ref)
    # vertices go 4326 -> 3857 -> grid: not the same floating-point path, so
    # a pixel centre within a hair of an edge may flip; none does here
    assert got == {k: v["pixels"] for k, v in want.items() if v["pixels"]}


def test_regions_as_geoparquet(tiny, tiny_api, tmp_path):
    """GeoParquet written by GeoPandas (WKB, PROJJSON) gives the GeoJSON's table."""
    import geopandas
    gpq = tmp_path / "regions.parquet"
    geopandas.read_file(tiny.path / "regions.geojson").to_parquet(gpq)
    base = ["zonal", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC, "--chunk", "300"]
    run([*base, "--regions", tiny.path / "regions.geojson", "--csv", tmp_path / "a.csv"])
    run([*base, "--regions", gpq, "--csv", tmp_path / "b.csv"])
    a, b = (tmp_path / "a.csv").read_text(), (tmp_path / "b.csv").read_text()
    assert a == b and "North district" in a
    # a plain Parquet file (no 'geo' metadata) is named as such
    import pyarrow as pa
    import pyarrow.parquet as pqw
    plain = tmp_path / "plain.parquet"
    pqw.write_table(pa.table({"name": ["x"]}), plain)
    p = run([*base, "--regions", plain, "--csv", tmp_path / "c.csv"], check=False)
    assert p.returncode != 0 and "without GeoParquet 'geo' metadata" in p.stderr, p.stderr


BAD_REGIONS = {
    "points.geojson": json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a"}, "geometry": {"type": "Point", "coordinates": [68.2, 26.9]}}]}),
    "corrupt.geojson": '{"type": "FeatureCollection", "features": [',
    "named.geojson": json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"region_id": 3},
         "geometry": {"type": "Polygon", "coordinates": [[[68, 26], [69, 26], [69, 27], [68, 26]]]}}]}),
}


@pytest.mark.parametrize("regions,needle", [
    ("missing.geojson", "no such file"),
    ("https://example.com/r.geojson", "local file"),
    ("points.geojson", "is a POINT, not a polygon"),
    ("corrupt.geojson", "cannot open it as vector data"),
    ("named.geojson", "an attribute is named 'region_id'"),
])
def test_bad_regions_are_named(tiny, tiny_api, regions, needle, tmp_path):
    path = regions if "://" in regions else str(tmp_path / regions)
    if regions in BAD_REGIONS:
        (tmp_path / regions).write_text(BAD_REGIONS[regions])
    p = run(["zonal", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC,
             "--regions", path, "--csv", tmp_path / "z.csv"], check=False)
    assert p.returncode != 0 and needle in p.stderr, p.stderr
    assert "panicked" not in p.stderr
    assert not (tmp_path / "z.csv").exists()
