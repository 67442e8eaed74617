"""`floodsql series`: the daily flood series (flooded / observed km² per UTC
day, share of the grid observed) against an independent computation —
reference.py's per-day masks (numpy/rasterio) weighted by each pixel's
ellipsoidal area from pyproj (res² / the projection's areal scale at the
pixel centre: another method than floodsql's geodesic polygons); CSV and
Parquet read back with pyarrow, the chart as a PNG."""
import csv

import numpy as np
import pyarrow.parquet as pq
import pyproj
import pytest
import rasterio
from conftest import DT_RFC, reference, run


@pytest.fixture(scope="module")
def ref(tiny, tiny_api, tmp_path_factory):
    return reference(tiny_api, tiny.bbox, tmp_path_factory.mktemp("ref") / "ref.npz")


def areas_m2(tiny, ref):
    p = tiny.items[0]["properties"]
    crs = pyproj.CRS.from_user_input(p.get("proj:wkt2") or p.get("proj:projjson") or p["proj:code"])
    gt = ref["geotransform"]
    h, w = ref["extent"].shape
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = gt[0] + cols * gt[1], gt[3] + rows * gt[5]
    lon, lat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
    f = pyproj.Proj(crs).get_factors(lon, lat)
    return gt[1] * gt[1] / np.asarray(f.areal_scale)


def series(api, bbox, tmp_path, *extra):
    out = {k: tmp_path / f"series.{k}" for k in ("csv", "parquet", "png")}
    p = run(["series", "--stac-url", api, "--bbox", bbox, "--datetime", DT_RFC, "--chunk", "200",
             "--csv", out["csv"], "--parquet", out["parquet"], "--png", out["png"], *extra])
    return p, out


def test_daily_series_matches_reference(tiny, tiny_api, ref, tmp_path):
    p, out = series(tiny_api, tiny.bbox, tmp_path)
    a = areas_m2(tiny, ref)
    grid_km2 = a.sum() / 1e6
    rows = list(csv.DictReader(out["csv"].open()))
    days = [np.datetime64(int(d), "D") for d in ref["days"]]
    assert [r["day"][:10] for r in rows] == [str(d) for d in days]
    assert len(rows) >= 3
    for r, fl, ob in zip(rows, ref["day_flooded"], ref["day_observed"]):
        want_f, want_o = a[fl].sum() / 1e6, a[ob].sum() / 1e6
        assert abs(float(r["flooded_km2"]) / want_f - 1) < 1e-6, (r, want_f)
        assert abs(float(r["observed_km2"]) / want_o - 1) < 1e-6, (r, want_o)
        assert abs(float(r["share_observed"]) - want_o / grid_km2) < 1e-6
        assert int(r["slices"]) >= 1
    # the series is not flat (the scene floods and recedes)
    fl = [float(r["flooded_km2"]) for r in rows]
    assert max(fl) > 1.5 * min(fl)
    # Parquet = CSV; the chart is a PNG
    t = pq.read_table(out["parquet"]).to_pylist()
    assert [round(x["flooded_km2"], 9) for x in t] == [round(float(r["flooded_km2"]), 9) for r in rows]
    with rasterio.open(out["png"]) as png:
        assert png.driver == "PNG" and png.count == 3 and png.width >= 800
    assert f"days with an acquisition: {len(rows)}" in p.stdout


def test_series_is_the_same_sql(tiny, tiny_api, tmp_path):
    """`floodsql series` runs sql/daily_series.sql: --print-sql shows it, and
    the same SQL through `floodsql sql` prints the same table."""
    p = run(["series", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC, "--print-sql",
             "--dry-run"])
    assert "date_trunc('day', datetime)" in p.stdout and "area_km2(flooded, areas)" in p.stdout
    sql = p.stdout.split("\nscan 1 of 1")[0]  # then the dry run's plan
    a = run(["sql", "-c", sql]).stdout
    b = run(["series", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC]).stdout
    table, count = b.strip().rsplit("\n", 1)  # series ends with its row count
    assert a.strip() == table and "flooded_km2" in a
    assert count == f"days with an acquisition: {a.count('T00:00:00Z')}"


def test_series_output_errors_leave_nothing(tiny, tiny_api, tmp_path):
    p = run(["series", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC,
             "--csv", tmp_path / "s.csv", "--png", tmp_path / "no" / "dir" / "s.png"], check=False)
    assert p.returncode == 1 and "no/dir" in p.stderr, p.stderr
    assert not (tmp_path / "s.csv").exists()
