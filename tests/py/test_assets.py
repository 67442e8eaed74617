"""Several assets in one scan: `flood_chunks(…, 'ensemble_flood_extent,
reference_water_mask,exclusion_mask')` gives one column per asset on the
same grid and slices, each fused with its own nodata; `replace_where`
combines them. Checked against an independent computation: a plain STAC
search, every asset's COG read whole with rasterio, fused first-valid-wins in
(datetime, id) order per asset, combined with numpy."""
import sys

import numpy as np
import pytest
import rasterio
from conftest import DT, DT_RFC, HERE, run

sys.path.insert(0, str(HERE))
from reference import paste, path_of, slices_on_grid  # noqa: E402  (test code, no floodsql)

ASSETS = ["ensemble_flood_extent", "reference_water_mask", "exclusion_mask"]


def fused_slices(api, bbox):
    """{datetime: {asset: fused uint8 array}} on the output grid."""
    slices, (left, top, w, h) = slices_on_grid(api, [float(v) for v in bbox.split(",")], *DT)
    out = {}
    for dt in sorted(slices):
        per = {}
        for asset in ASSETS:
            nodata = slices[dt][0]["assets"][asset]["raster:bands"][0]["nodata"]
            fused = np.full((h, w), nodata, np.uint8)
            for it in sorted(slices[dt], key=lambda i: i["id"]):
                with rasterio.open(path_of(it["assets"][asset]["href"])) as src:
                    data, tr = src.read(1), src.transform
                paste(fused, data, tr, left, top, 20, nodata, fill=nodata)
            per[asset] = fused
        out[dt] = per
    return out


def fc(api, bbox, assets=",".join(ASSETS)):
    return f"flood_chunks('{api}', 'GFM', '{bbox}', '{DT_RFC}', '{assets}', 256)"


def test_masked_extent_matches_independent_computation(tiny_masks, tiny_masks_api, tmp_path):
    api, bbox = tiny_masks_api, tiny_masks.bbox
    expr = "replace_where(replace_where(pixels, reference_water_mask, 1, 0), exclusion_mask, 1, 255)"
    out = tmp_path / "masked.tif"
    p = run(["sql", "--out", out, "-c",
             f"SELECT x_off, y_off, width, height, flood_max_extent({expr}) AS pixels, "
             f"flood_observed({expr}) AS observed FROM {fc(api, bbox)} GROUP BY x_off, y_off, width, height"])
    slices = fused_slices(api, bbox)
    want = None
    plain = None
    for per in slices.values():
        e, r, x = per["ensemble_flood_extent"], per["reference_water_mask"], per["exclusion_mask"]
        m = np.where(x == 1, 255, np.where(r == 1, 0, e))
        wet = (m != 0) & (m != 255)
        want = wet if want is None else want | wet
        raw = (e != 0) & (e != 255)
        plain = raw if plain is None else plain | raw
    with rasterio.open(out) as ds:
        got = ds.read(1)
    np.testing.assert_array_equal(got, want.astype(np.uint8))
    # the masks matter: permanent water is taken out of the tutorial's extent
    assert plain.sum() > want.sum() > 0
    assert "flooded pixels" in p.stdout


def test_each_asset_column_is_its_fused_slice(tiny_masks, tiny_masks_api):
    """Per (slice, chunk) row, every asset column equals that asset's fused
    slice: pixel counts per value, slice by slice."""
    api, bbox = tiny_masks_api, tiny_masks.bbox
    sql = (f"SELECT datetime, sum(pixel_count(reference_water_mask, 1)) AS water, "
           f"sum(pixel_count(exclusion_mask, 1)) AS excluded, sum(pixel_count(pixels, 1)) AS flooded "
           f"FROM {fc(api, bbox)} GROUP BY datetime ORDER BY datetime")
    rows = [ln.split(",") for ln in run(["sql", "--format", "csv", "-c", sql]).stdout.split("\n")[1:] if ln]
    slices = fused_slices(api, bbox)
    assert len(rows) == len(slices) >= 3
    for (dt, water, excluded, flooded), (t, per) in zip(rows, sorted(slices.items())):
        assert dt[:19] == t[:19]
        assert int(water) == int((per["reference_water_mask"] == 1).sum()) > 0
        assert int(excluded) == int((per["exclusion_mask"] == 1).sum()) > 0
        assert int(flooded) == int((per["ensemble_flood_extent"] == 1).sum())


def test_asset_errors(tiny_masks, tiny_masks_api, tiny, tiny_api):
    p = run(["sql", "-c", f"SELECT count(*) FROM {fc(tiny_api, tiny.bbox, 'ensemble_flood_extent,reference_water_mask')}"],
            check=False)
    assert p.returncode == 1 and "reference_water_mask" in p.stderr, p.stderr
    for bad, needle in [("ensemble_flood_extent,pixels", "already has a column 'pixels'"),
                        ("ensemble_flood_extent,exclusion_mask,exclusion_mask", "given twice"),
                        ("ensemble_flood_extent,", "empty")]:
        p = run(["sql", "-c", f"SELECT count(*) FROM {fc(tiny_masks_api, tiny_masks.bbox, bad)}"], check=False)
        assert p.returncode == 1 and needle in p.stderr, (bad, p.stderr)
    p = run(["sql", "-c", f"SELECT replace_where(pixels, X'00', 1, 0) FROM {fc(tiny_masks_api, tiny_masks.bbox)}"],
            check=False)
    assert p.returncode == 1 and "differ in length" in p.stderr, p.stderr
