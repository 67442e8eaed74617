"""Outputs a flood analyst shows a colleague: the GeoTIFF says what it is
(band description, colour table, provenance metadata read back by gdalinfo),
the Parquet table's `observed` column and the PNG's three classes agree with
an independent computation (reference.py: rasterio + numpy)."""
import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import rasterio
from conftest import DT, extent, reference

WET, DRY, UNSEEN = (20, 90, 200), (236, 232, 214), (175, 175, 175)


def test_geotiff_parquet_and_png_say_what_they_are(tiny, tiny_api, tmp_path):
    tif, pqf, png = tmp_path / "x.tif", tmp_path / "x.parquet", tmp_path / "x.png"
    extent(tiny_api, tiny.bbox, tif, "--parquet", pqf, "--png", png, "--chunk", "256")
    ref = reference(tiny_api, tiny.bbox, tmp_path / "ref.npz")
    # GeoTIFF: gdalinfo's JSON
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(tif)], capture_output=True, text=True,
                                     check=True).stdout)
    md = info["metadata"][""]
    band = info["bands"][0]
    assert band["description"].startswith("Maximum flood extent: 1 = flooded"), band
    assert band["colorInterpretation"] == "Palette"
    entries = band["colorTable"]["entries"]
    assert entries[0][:3] == list(DRY) and entries[1] == [*WET, 255], entries[:2]
    assert md["FLOODSQL_SOURCE"] == f"{tiny_api}, collection GFM"
    assert md["FLOODSQL_ASSET"] == "ensemble_flood_extent"
    assert "flood_max_extent(pixels)" in md["FLOODSQL_QUERY"]
    assert md["TIFFTAG_SOFTWARE"].startswith("floodsql ")
    # the time range: first and last datetime of the items on the grid
    import reference as refmod
    found = refmod.search(tiny_api, [float(v) for v in tiny.bbox.split(",")], DT[0], DT[1])
    assert int(md["FLOODSQL_ITEMS"]) == len(found)
    times = sorted(it["properties"]["datetime"] for it in found)
    assert md["FLOODSQL_TIME_START"] == times[0] and md["FLOODSQL_TIME_END"] == times[-1], md
    # still the tutorial's pixels, with the layout of a COG
    with rasterio.open(tif) as ds:
        assert np.array_equal(ds.read(1), ref["extent"])
    # Parquet: `observed` = some slice saw the pixel (reference valid_count > 0)
    observed = np.zeros_like(ref["extent"])
    for r in pq.read_table(pqf).to_pylist():
        observed[r["y_off"]:r["y_off"] + r["height"], r["x_off"]:r["x_off"] + r["width"]] = \
            np.frombuffer(r["observed"], np.uint8).reshape(r["height"], r["width"])
    assert np.array_equal(observed, (ref["valid_count"] > 0).astype(np.uint8))
    assert 0 < observed.sum() < observed.size  # the scene has unobserved pixels
    # PNG: the three classes are drawn, in proportions close to the truth
    with rasterio.open(png) as ds:
        rgb = np.dstack([ds.read(i) for i in (1, 2, 3)])
    # a class's pixels are its colour, or its colour under a line of the
    # lon/lat graticule: dark grey (40, 40, 40) at up to 45 %, antialiased,
    # i.e. on the segment from the class colour towards that grey
    rgb = rgb.astype(np.float64)

    def shown(c):
        c = np.array(c, np.float64)
        d = np.array([40.0, 40.0, 40.0]) - c
        t = ((rgb - c) @ d) / (d @ d)
        off = np.abs(rgb - (c + t[..., None] * d)).max(axis=2)
        return int(((t >= 0) & (t <= 0.5) & (off <= 3)).sum())
    counts = {name: shown(c) for name, c in (("wet", WET), ("dry", DRY), ("unseen", UNSEEN))}
    assert all(v > 0 for v in counts.values()), counts
    n = ref["extent"].size  # the tiny grid is shown 1:1
    truth = {"wet": int(ref["extent"].sum()),
             "dry": int(((ref["valid_count"] > 0) & (ref["extent"] == 0)).sum()),
             "unseen": int((ref["valid_count"] == 0).sum())}
    for k in truth:  # legend swatches add a few pixels of each colour
        assert abs(counts[k] - truth[k]) <= 0.01 * n + 400, (k, counts, truth)
