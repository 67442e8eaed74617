"""Flood analytics beyond the tutorial's extent: GFM's three-state extent,
first/last flood date, flood frequency — each checked pixel for pixel against
reference.py (numpy/rasterio, no floodsql code), with the nodata the
GeoTIFF declares read back by rasterio."""
import numpy as np
import pytest
import rasterio
from conftest import DT_RFC, reference, run

CASES = [
    # (SQL expression, reference key, dtype, nodata)
    ("flood_extent_states(pixels)", "states", np.uint8, 255),
    ("flood_first_date(pixels, datetime)", "first_day", np.uint16, 0),
    ("flood_last_date(pixels, datetime)", "last_day", np.uint16, 0),
    ("flood_frequency(pixels)", "frequency", np.uint8, 255),
]


def query(api, bbox, expr, chunk=256):
    return (f"SELECT x_off, y_off, width, height, {expr} AS pixels "
            f"FROM flood_chunks('{api}', 'GFM', '{bbox}', '{DT_RFC}', 'ensemble_flood_extent', {chunk}) "
            f"GROUP BY x_off, y_off, width, height")


@pytest.fixture(scope="module")
def ref(tiny, tiny_api, tmp_path_factory):
    return reference(tiny_api, tiny.bbox, tmp_path_factory.mktemp("ref") / "ref.npz")


@pytest.mark.parametrize("expr,key,dtype,nodata", CASES, ids=[c[1] for c in CASES])
def test_analytic_rasters_match_reference(tiny, tiny_api, ref, tmp_path, expr, key, dtype, nodata):
    out, png = tmp_path / f"{key}.tif", tmp_path / f"{key}.png"
    p = run(["sql", "-c", query(tiny_api, tiny.bbox, expr), "--out", out, "--png", png])
    want = ref[key]
    with rasterio.open(out) as ds:
        px = ds.read(1)
        assert ds.nodata == nodata
        assert px.dtype == dtype
        np.testing.assert_array_equal(px.astype(np.int64), want.astype(np.int64))
        np.testing.assert_array_equal(np.asarray(ds.transform.to_gdal()), ref["geotransform"])
    # the reference scene has every case: flooded, observed dry, never observed
    assert (want != nodata).any() and (want == nodata).any()
    assert png.stat().st_size > 10_000
    if key == "states":
        assert {0, 1, 255} <= set(np.unique(want).tolist())
        flooded, unseen = int((want == 1).sum()), int((want == 255).sum())
        assert f"flooded pixels: {flooded} " in p.stdout, p.stdout
        assert f"never observed: {unseen} " in p.stdout, p.stdout
        # the three-state extent's 1s are the tutorial's extent
        np.testing.assert_array_equal(want == 1, ref["extent"] == 1)
    if key in ("first_day", "last_day"):
        days = want[want > 0]
        assert days.min() < days.max()  # several flood dates in the scene
        first = np.datetime64(int(days.min()), "D")
        last = np.datetime64(int(days.max()), "D")
        assert f"dates {first} .. {last}" in p.stdout, p.stdout
    if key == "frequency":
        assert 0 < int(want[want <= 100].max()) <= 100
        assert ((want > 0) & (want < 100)).any()  # not only 0 and 100


def test_first_date_is_never_after_last(tiny, tiny_api, ref):
    f, l = ref["first_day"], ref["last_day"]
    assert ((f == 0) == (l == 0)).all()
    assert (f[f > 0] <= l[f > 0]).all()
    assert ((f > 0) == (ref["extent"] == 1)).all()


def test_chunking_does_not_change_the_analytics(tiny, tiny_api, ref, tmp_path):
    for chunk in (100, 1000):
        out = tmp_path / f"s{chunk}.tif"
        run(["sql", "-c", query(tiny_api, tiny.bbox, "flood_extent_states(pixels)", chunk), "--out", out,
             "--partitions", "3"])
        with rasterio.open(out) as ds:
            np.testing.assert_array_equal(ds.read(1), ref["states"])


def test_dated_aggregate_needs_a_timestamp(tiny, tiny_api):
    p = run(["sql", "-c", query(tiny_api, tiny.bbox, "flood_first_date(pixels, 3)")], check=False)
    assert p.returncode != 0
    assert "datetime (2nd argument) must be a timestamp" in p.stderr, p.stderr
