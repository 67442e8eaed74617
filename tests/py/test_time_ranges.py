"""Items whose `datetime` is null and whose time is a `start_datetime` /
`end_datetime` range (allowed by the STAC spec): matched by their range (as
STAC APIs match them) and placed at `start_datetime` (odc-stac's
`nominal_datetime`, what the tutorial's stack does). Once refused, even when
their range lay outside the query."""
import copy
import json
import types

import numpy as np
import rasterio
from conftest import StacServer, extent, peer

ASSET = "ensemble_flood_extent"


def pixels(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def ranged_catalogue(scene, tmp_path):
    d = json.loads(scene.items_file.read_text())
    feats = d["features"]
    by_dt = {}
    for it in feats:
        by_dt.setdefault(it["properties"]["datetime"], []).append(it)
    # a whole slice of several items becomes ranges starting at its datetime
    target = next(dt for dt, its in sorted(by_dt.items())
                  if len(its) > 1 and dt.startswith("2022-09") and "DECOY" not in its[0]["id"])
    for it in by_dt[target]:
        p = it["properties"]
        p["start_datetime"], p["end_datetime"], p["datetime"] = target, "2022-09-30T00:00:00Z", None
    first = by_dt[target][0]
    # a range wholly before the query: not part of the search
    before = copy.deepcopy(first)
    before["id"] = "RANGE_BEFORE_" + first["id"]
    before["properties"].update(start_datetime="2022-07-01T00:00:00Z",
                                end_datetime="2022-07-31T00:00:00Z")
    # a range that starts before the query and ends inside it: found, and
    # placed at its start (its own slice, fused first)
    straddle = copy.deepcopy(first)
    straddle["id"] = "RANGE_STRADDLE_" + first["id"]
    straddle["properties"].update(start_datetime="2022-08-25T00:00:00Z",
                                  end_datetime="2022-09-02T00:00:00Z")
    feats += [before, straddle]
    items = tmp_path / "items.json"
    items.write_text(json.dumps(d))
    return items, len(by_dt[target])


def test_null_datetime_items_are_placed_at_their_start_like_the_peer(tiny, tmp_path):
    items, n = ranged_catalogue(tiny, tmp_path)
    s = StacServer(types.SimpleNamespace(path=tiny.path, items_file=items), tmp_path)
    try:
        ours, theirs = tmp_path / "ours.tif", tmp_path / "peer.tif"
        p = extent(s.url, tiny.bbox, ours)
        peer(s.url, tiny.bbox, theirs)
        assert np.array_equal(pixels(ours), pixels(theirs))
        # the static catalogue matches ranges the same way as the API
        static = tmp_path / "static.tif"
        q = extent(items, tiny.bbox, static)
        assert np.array_equal(pixels(static), pixels(ours))
    finally:
        s.stop()
    # the straddling item is in, the earlier one not
    found = [l for l in p.stdout.splitlines() if l.startswith("items: ")]
    original = extent(tiny.items_file, tiny.bbox, tmp_path / "orig.tif")
    before = [l for l in original.stdout.splitlines() if l.startswith("items: ")]
    assert int(found[0].split()[1]) == int(before[0].split()[1]) + 1, (found, before)
    assert "items: " in q.stdout


def test_an_item_with_no_time_at_all_is_refused_naming_it(tiny, tmp_path):
    d = json.loads(tiny.items_file.read_text())
    victim = next(it for it in d["features"] if it["properties"]["datetime"].startswith("2022-09"))
    victim["properties"]["datetime"] = None
    items = tmp_path / "items.json"
    items.write_text(json.dumps(d))
    p = extent(items, tiny.bbox, tmp_path / "x.tif", check=False)
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert victim["id"] in last and "start_datetime" in last, last
