"""Nodata declared by the catalogue (`raster:bands[0].nodata` of the asset):
one nodata per scan. Items that agree (or say nothing) give the tutorial's
stack's result; items that disagree, or declare a value a uint8 raster cannot
hold, are refused with a message naming the item, and `floodsql.nodata`
overrides every declaration. Each case is served by a real STAC API and run
through the tutorial's own stack for comparison."""
import copy
import json
import types

import numpy as np
import pytest
import rasterio
from conftest import StacServer, extent, peer

ASSET = "ensemble_flood_extent"


def first_item(scene):
    """The item the search returns first: earliest datetime in the query's
    range, then smallest id (the order the peer's odc-stac takes the fill
    value from)."""
    inside = [it for it in scene.items if it["properties"]["datetime"].startswith("2022-09")]
    return min(inside, key=lambda it: (it["properties"]["datetime"], it["id"]))["id"]


def second_of_a_slice(scene):
    """An item whose slice has an earlier item (fused second)."""
    by_dt = {}
    for it in scene.items:
        by_dt.setdefault(it["properties"]["datetime"], []).append(it["id"])
    ids = next(sorted(v) for v in by_dt.values() if len(v) > 1 and "DECOY" not in v[0])
    return ids[1]


def serve(scene, tmp_path, nodata):
    """The scene's catalogue with `nodata` = {item id (or "*"): value, or
    None to delete the declaration}, served by rustac."""
    d = json.loads(scene.items_file.read_text())
    for it in d["features"]:
        for key in (it["id"], "*"):
            if key in nodata:
                band = it["assets"][ASSET]["raster:bands"][0]
                if nodata[key] is None:
                    band.pop("nodata", None)
                else:
                    band["nodata"] = nodata[key]
    items = tmp_path / "items.json"
    items.write_text(json.dumps(d))
    s = StacServer(types.SimpleNamespace(path=scene.path, items_file=items), tmp_path)
    return s


def pixels(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def control(tiny, tiny_api, tmp_path_factory):
    """The peer's answer on the unmodified catalogue."""
    out = tmp_path_factory.mktemp("control") / "peer.tif"
    peer(tiny_api, tiny.bbox, out)
    return pixels(out)


@pytest.mark.parametrize("case", ["first_missing", "all_zero", "all_null"])
def test_agreeing_items_give_the_peers_result(case, tiny, control, tmp_path):
    first = first_item(tiny)
    nodata = {"first_missing": {first: None}, "all_zero": {"*": 0}, "all_null": {"*": None}}[case]
    s = serve(tiny, tmp_path, nodata)
    try:
        ours, theirs = tmp_path / "ours.tif", tmp_path / "peer.tif"
        extent(s.url, tiny.bbox, ours)
        peer(s.url, tiny.bbox, theirs)
        assert np.array_equal(pixels(ours), pixels(theirs))
        assert np.array_equal(pixels(ours), control)
    finally:
        s.stop()


@pytest.mark.parametrize("value", [0, 1, "nan", 300, 2.5, "x"])
@pytest.mark.parametrize("where", ["first", "second_of_a_slice"])
def test_disagreeing_or_invalid_nodata_is_refused(value, where, tiny, control, tmp_path):
    """Before: the first item of a slice set the slice's fill, so nodata 1 on
    it turned every pixel no item covers into flood (exit 0)."""
    target = first_item(tiny) if where == "first" else second_of_a_slice(tiny)
    s = serve(tiny, tmp_path, {target: value})
    try:
        out = tmp_path / "ours.tif"
        r = extent(s.url, tiny.bbox, out, check=False)
        assert r.returncode == 1, r.stderr
        assert not out.exists() and not list(tmp_path.glob(".ours*"))
        msg = r.stderr.strip().splitlines()[-1]
        assert msg.startswith("error:") and "nodata" in msg and target in msg, msg
        assert "panicked" not in r.stderr
        # the override reads the catalogue with one nodata: the peer's
        # answer on the unmodified catalogue
        extent(s.url, tiny.bbox, out, "--set", "floodsql.nodata=255")
        assert np.array_equal(pixels(out), control)
    finally:
        s.stop()


def test_a_shared_nodata_other_than_255_fills_and_masks(tiny, tmp_path):
    """Every item declaring nodata 7: pixels no item covers are 7 in the slices
    (flood_chunks' pixels), and 255 in the files is then data."""
    s = serve(tiny, tmp_path, {"*": 7})
    try:
        from conftest import run
        q = ("SELECT count(*) AS n FROM flood_chunks('{u}', 'GFM', '{b}', "
             "'2022-09-01T00:00:00Z/2022-10-01T00:00:00Z', '{a}') "
             "WHERE pixel_count(pixels, 7) > 0").format(u=s.url, b=tiny.bbox, a=ASSET)
        r = run(["sql", "-c", q])
        cells = [ln.strip("| ") for ln in r.stdout.splitlines() if ln.startswith("|")]
        assert cells[0] == "n" and int(cells[1]) > 0, r.stdout
    finally:
        s.stop()
