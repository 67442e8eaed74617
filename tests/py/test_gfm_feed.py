"""The real GFM feed, as EODC's catalogue serves it (issue 25): items missing
assets, frames of one pass grouped by solar day, CQL2 filters, reprocessed
items and rate limits. Each against a real server (rustac, stac-fastapi-pgstac,
a proxy that rate-limits) and, where the tutorial's stack has the same option
(a band an item lacks; groupby="solar_day"), against that stack."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
import pyproj
import pytest
import rasterio
from conftest import (DT, DT_RFC, HERE, PY, PgstacServer, StacServer, extent, free_port, peer,
                      run, wait_http, write_scene)

sys.path.insert(0, str(HERE))
from reference import paste, path_of, search, slices_on_grid  # noqa: E402  (test code, no floodsql)

MASKED = ("replace_where(replace_where(pixels, reference_water_mask, 1, 0), "
          "exclusion_mask, 1, 255)")
ASSETS = "ensemble_flood_extent,reference_water_mask,exclusion_mask"


def copy_scene(scene, dest):
    shutil.copytree(scene.path, dest)
    return json.loads((dest / "items.json").read_text())


def band(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def masked_sql(api, bbox):
    fc = f"flood_chunks('{api}', 'GFM', '{bbox}', '{DT_RFC}', '{ASSETS}', 256)"
    return (f"SELECT x_off, y_off, width, height, flood_max_extent({MASKED}) AS pixels "
            f"FROM {fc} GROUP BY x_off, y_off, width, height")


def independent_masked_extent(api, bbox, mask_fill, observed=False):
    """The masked extent from a plain search, rasterio and numpy: per slice
    each asset fused first-valid-wins in id order; an item lacking
    exclusion_mask stands as `mask_fill` over its footprint. With
    `observed`: the pixels any slice observed after masking instead."""
    slices, (left, top, w, h) = slices_on_grid(api, [float(v) for v in bbox.split(",")], *DT)
    extent = np.zeros((h, w), bool)
    for dt in sorted(slices):
        fused = {}
        for asset in ASSETS.split(","):
            nodata = 255
            out = np.full((h, w), nodata, np.uint8)
            for it in sorted(slices[dt], key=lambda i: i["id"]):
                with rasterio.open(path_of(it["assets"]["ensemble_flood_extent"]["href"])) as src:
                    tr, shape = src.transform, src.shape
                if asset in it["assets"]:
                    with rasterio.open(path_of(it["assets"][asset]["href"])) as src:
                        data = src.read(1)
                else:
                    data = np.full(shape, mask_fill, np.uint8)
                paste(out, data, tr, left, top, 20, nodata, fill=nodata)
            fused[asset] = out
        e, r, x = fused["ensemble_flood_extent"], fused["reference_water_mask"], fused["exclusion_mask"]
        m = np.where(x == 1, 255, np.where(r == 1, 0, e))
        extent |= (m != 255) if observed else (m != 0) & (m != 255)
    return extent.astype(np.uint8)


def test_missing_exclusion_masks_read_as_the_policy_says(tiny_masks, tmp_path):
    """27 of 178 real items lacked exclusion_mask: by default an error naming
    the item and asset; with `exclusion_mask=0` they exclude nothing, and the
    result equals the independent computation; the plan line and the lineage
    item say how many items lacked what."""
    doc = copy_scene(tiny_masks, tmp_path / "scene")
    feats = doc["features"]
    lacking = [f["id"] for f in feats[1::3]]
    for f in feats[1::3]:
        del f["assets"]["exclusion_mask"]
    scene = write_scene(tmp_path / "scene", doc, tiny_masks.bbox)
    srv = StacServer(scene, tmp_path)
    try:
        api, bbox = srv.url, scene.bbox
        out = tmp_path / "m.tif"
        p = run(["sql", "--out", out, "-c", masked_sql(api, bbox)], check=False)
        assert p.returncode == 1 and "exclusion_mask" in p.stderr and "lacks" in p.stderr, p.stderr
        assert any(i in p.stderr for i in lacking), p.stderr
        assert not out.exists()

        p = run(["sql", "--out", out, "--set", "floodsql.missing_assets=exclusion_mask=0",
                 "-c", masked_sql(api, bbox)])
        want = independent_masked_extent(api, bbox, mask_fill=0)
        np.testing.assert_array_equal(band(out), want)
        on_grid = json.loads((tmp_path / "m.stac.json").read_text())["properties"]
        missing = on_grid["floodsql:missing_assets"]["exclusion_mask"]
        assert missing["read_as"] == 0 and set(missing["items"]) <= set(lacking) and missing["items"]
        assert f"{len(missing['items'])} items lack exclusion_mask (read as 0)" in p.stderr, p.stderr
        # the pixels observed after masking: missing masks as 0 or as 1
        # (everything those items cover excluded) give two answers, each exact
        observed = {}
        for fill in (0, 1):
            o = tmp_path / f"observed{fill}.tif"
            run(["sql", "--out", o, "--set", f"floodsql.missing_assets=exclusion_mask={fill}", "-c",
                 masked_sql(api, bbox).replace("flood_max_extent(", "flood_observed(")])
            observed[fill] = band(o)
            np.testing.assert_array_equal(observed[fill],
                                          independent_masked_extent(api, bbox, fill, observed=True))
        assert observed[0].sum() > observed[1].sum() > 0
    finally:
        srv.stop()


def test_a_missing_band_as_nodata_equals_the_tutorials_stack(tiny, tmp_path):
    """odc-stac skips a band an item lacks (its pixels stay nodata):
    `--missing-assets ensemble_flood_extent=nodata` gives the tutorial's
    extent pixel for pixel; without it, an error and no output."""
    doc = copy_scene(tiny, tmp_path / "scene")
    scene = write_scene(tmp_path / "scene", doc, tiny.bbox)
    srv = StacServer(scene, tmp_path)
    try:
        order = [it["id"] for it in search(srv.url, [float(v) for v in tiny.bbox.split(",")], *DT)]
    finally:
        srv.stop()
    # odc-stac learns the bands from the items: the first keeps its asset
    drop = set(order[2::3])
    for f in doc["features"]:
        if f["id"] in drop:
            del f["assets"]["ensemble_flood_extent"]
    scene = write_scene(tmp_path / "scene", doc, tiny.bbox)
    srv = StacServer(scene, tmp_path)
    try:
        out = tmp_path / "x.tif"
        p = extent(srv.url, scene.bbox, out, check=False)
        assert p.returncode == 1 and "ensemble_flood_extent" in p.stderr and not out.exists(), p.stderr
        p = extent(srv.url, scene.bbox, out, "--missing-assets", "ensemble_flood_extent=nodata")
        assert "items lack ensemble_flood_extent (read as nodata)" in p.stderr, p.stderr
        theirs = peer(srv.url, scene.bbox, tmp_path / "peer.tif")
        with rasterio.open(out) as a, rasterio.open(theirs) as b:
            assert (a.width, a.height) == (b.width, b.height)
            assert a.transform.almost_equals(b.transform, 1e-9)
            np.testing.assert_array_equal(a.read(1), b.read(1))
        full = tmp_path / "full.tif"
        extent(str(tiny.items_file), tiny.bbox, full)
        assert not np.array_equal(band(full), band(out))  # the dropped items mattered
    finally:
        srv.stop()


def framed_scene(tiny, dest):
    """The tiny scene with its passes split into frames: an acquisition's
    items 25 s apart; one pass at 19:59:40Z (at the scene's 68 E, 23:59:40
    solar: its second frame falls on the next solar day), one at 23:59:50Z
    (its frames on two UTC days, one solar day); and one late frame
    overlapping another pass's tile with other pixels (the fusing order
    within a solar day matters)."""
    doc = copy_scene(tiny, dest)
    feats = doc["features"]
    by_time = defaultdict(list)
    for f in feats:
        by_time[f["properties"]["datetime"]].append(f)
    times = sorted(by_time)
    assert len(times) >= 3
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    for n, t in enumerate(times):
        base = datetime.fromisoformat(t.replace("Z", "+00:00"))
        if n == 0:
            base = base.replace(hour=19, minute=59, second=40)
        elif n == 1:
            base = base.replace(hour=23, minute=59, second=50)
        for k, f in enumerate(sorted(by_time[t], key=lambda f: f["id"])):
            f["properties"]["datetime"] = iso(base + timedelta(seconds=25 * k))
    # a frame of pass 1 on the tile of an item of pass 2 (other pixels)
    donor = sorted(by_time[times[2]], key=lambda f: f["id"])[0]
    frame = json.loads(json.dumps(donor))
    frame["id"] = donor["id"] + "-frame"
    t1 = datetime.fromisoformat(by_time[times[1]][0]["properties"]["datetime"].replace("Z", "+00:00"))
    frame["properties"]["datetime"] = iso(t1 + timedelta(seconds=40))
    feats.append(frame)
    return write_scene(dest, doc, tiny.bbox)


def odc_cube(api, bbox, groupby):
    from odc import stac as odc_stac
    from pystac_client import Client
    from shapely.geometry import box
    aoi = box(*[float(v) for v in bbox.split(",")])
    items = Client.open(api).search(collections="GFM", intersects=aoi, max_items=1000,
                                    datetime=(datetime.fromisoformat(DT[0]),
                                              datetime.fromisoformat(DT[1]))).item_collection()
    p = items[0].properties
    crs = pyproj.CRS.from_user_input(p.get("proj:wkt2") or p.get("proj:projjson") or p["proj:code"])
    xx = odc_stac.load(items, bbox=aoi.bounds, crs=crs, bands=["ensemble_flood_extent"],
                       resolution=p["gsd"], dtype="uint8", groupby=groupby)
    return xx.ensemble_flood_extent.compute()


def counts_sql(api, bbox, f):
    return (f"SELECT x_off, y_off, width, height, {f}(pixels) AS pixels FROM "
            f"flood_chunks('{api}', 'GFM', '{bbox}', '{DT_RFC}', 'ensemble_flood_extent', 256) "
            f"GROUP BY x_off, y_off, width, height")


def slice_times(api, bbox, *setting):
    p = run(["sql", *setting, "--format", "csv", "-c",
             f"SELECT DISTINCT datetime FROM flood_chunks('{api}', 'GFM', '{bbox}', '{DT_RFC}', "
             f"'ensemble_flood_extent', 256) ORDER BY datetime"])
    rows = list(csv.reader(io.StringIO(p.stdout)))[1:]
    return [datetime.fromisoformat(r[0].replace("Z", "+00:00")).replace(tzinfo=None) for r in rows]


def test_solar_day_grouping_equals_odc_stac(tiny, tmp_path):
    """`floodsql.group_by = 'solar_day'` makes odc-stac's groupby="solar_day"
    slices: the same number, at the same times (each its first frame's), and
    fused first-valid-wins the same way — observation and flood counts per
    pixel equal odc-stac's cube, which differ from the per-time slicing."""
    scene = framed_scene(tiny, tmp_path / "scene")
    srv = StacServer(scene, tmp_path)
    try:
        api, bbox = srv.url, scene.bbox
        solar = ["--set", "floodsql.group_by=solar_day"]
        for grouping, setting in (("solar_day", solar), ("time", [])):
            cube = odc_cube(api, bbox, grouping)
            theirs = [np.datetime64(t, "us").astype(datetime) for t in cube.time.values]
            assert slice_times(api, bbox, *setting) == theirs, grouping
            data = cube.values
            for f, want in (("valid_count", (data != 255).sum(0)),
                            ("flood_count", ((data != 255) & (data != 0)).sum(0))):
                out = tmp_path / f"{grouping}-{f}.tif"
                run(["sql", *setting, "--out", out, "-c", counts_sql(api, bbox, f)])
                np.testing.assert_array_equal(band(out), want.astype(np.uint16), f"{grouping} {f}")
        # the frames made a difference: fewer slices by solar day, and the
        # 19:59:40 pass split across two solar days
        assert len(slice_times(api, bbox, *solar)) < len(slice_times(api, bbox))
        days = {t.date() for t in slice_times(api, bbox, *solar)}
        assert len(days) == len(slice_times(api, bbox, *solar))
    finally:
        srv.stop()


def item_ids(source, bbox, *setting):
    p = run(["sql", *setting, "--format", "csv", "-c",
             f"SELECT id FROM stac_items('{source}', 'GFM', '{bbox}', '{DT_RFC}') ORDER BY id"])
    return [r[0] for r in list(csv.reader(io.StringIO(p.stdout)))[1:]]


def test_cql2_filters_on_an_api_and_on_a_static_catalogue(tiny, tmp_path):
    """A CQL2 filter goes to stac-fastapi-pgstac's filter extension and is
    evaluated by floodsql on a static catalogue: the same items both ways,
    equal to the filter applied by hand; the extent of the filtered search
    equals the extent over a catalogue holding only those items."""
    doc = copy_scene(tiny, tmp_path / "scene")
    for k, f in enumerate(doc["features"]):
        f["properties"]["flooded_pixels"] = (k * 7919) % 5000 - 1000
        f["properties"]["Equi7Tile"] = f"E05{k % 3}N015T3"
    scene = write_scene(tmp_path / "scene", doc, tiny.bbox)
    bbox = scene.bbox
    srv = PgstacServer(scene, tmp_path)
    try:
        every = set(item_ids(srv.url, bbox))
        filters = {
            "flooded_pixels > 0": lambda p: p["flooded_pixels"] > 0,
            "flooded_pixels > 0 AND \"Equi7Tile\" = 'E051N015T3'":
                lambda p: p["flooded_pixels"] > 0 and p["Equi7Tile"] == "E051N015T3",
            '{"op": "<=", "args": [{"property": "flooded_pixels"}, 0]}': lambda p: p["flooded_pixels"] <= 0,
        }
        for text, keep in filters.items():
            want = sorted(f["id"] for f in doc["features"] if f["id"] in every and keep(f["properties"]))
            assert 0 < len(want) < len(every), text
            assert item_ids(srv.url, bbox, "--set", f"floodsql.filter={text}") == want, text
            assert item_ids(str(scene.items_file), bbox, "--set", f"floodsql.filter={text}") == want, text
        # the properties users filter on, in SQL: the JSON functions over
        # stac_items' properties agree with the filter
        p = run(["sql", "--format", "csv", "-c",
                 f"SELECT id, item_property(properties, 'flooded_pixels') AS fp, "
                 f"item_property(properties, 'Equi7Tile') AS tile "
                 f"FROM stac_items('{srv.url}', 'GFM', '{bbox}', '{DT_RFC}') "
                 f"WHERE CAST(item_property(properties, 'flooded_pixels') AS BIGINT) > 0 ORDER BY id"])
        rows = list(csv.reader(io.StringIO(p.stdout)))[1:]
        assert [r[0] for r in rows] == item_ids(srv.url, bbox, "--set", "floodsql.filter=flooded_pixels > 0")
        by_id = {f["id"]: f["properties"] for f in doc["features"]}
        assert all(int(r[1]) == by_id[r[0]]["flooded_pixels"] and r[2] == by_id[r[0]]["Equi7Tile"] for r in rows)
        # the extent of a filtered search is the extent of those items alone
        text = "flooded_pixels > 0"
        out = tmp_path / "f.tif"
        p = extent(srv.url, bbox, out, "--filter", text)
        kept = [f for f in doc["features"] if f["properties"]["flooded_pixels"] > 0]
        only = write_scene(tmp_path / "scene", {**doc, "features": kept}, bbox)
        extent(str(only.items_file), bbox, tmp_path / "only.tif")
        np.testing.assert_array_equal(band(out), band(tmp_path / "only.tif"))
        props = json.loads((tmp_path / "f.stac.json").read_text())["properties"]
        assert props["floodsql:parameters"]["filter"] == text
        # a bad filter: one clear error before any request
        p = extent(srv.url, bbox, tmp_path / "bad.tif", "--filter", "flooded_pixels >", check=False)
        assert p.returncode == 1 and "floodsql.filter" in p.stderr and "CQL2" in p.stderr, p.stderr
    finally:
        srv.stop()


def test_a_reprocessed_item_makes_the_update_equal_a_full_run(tiny, tmp_path):
    """A reprocessing republishes an item under its id with new pixels and a
    new `created`: `--update` notices it (the lineage records each item's
    version) and recomputes, equal to a full run — where knowing items by id
    alone would skip it and keep the old pixels."""
    doc = copy_scene(tiny, tmp_path / "scene")
    scene = write_scene(tmp_path / "scene", doc, tiny.bbox)
    out = tmp_path / "x.tif"
    extent(str(scene.items_file), scene.bbox, out)
    versions = json.loads((tmp_path / "x.stac.json").read_text())["properties"]["floodsql:item_versions"]
    assert set(versions) == set(json.loads((tmp_path / "x.stac.json").read_text())["properties"]["floodsql:items"])
    # republish one item: new pixels and a new `created`
    target = [f for f in doc["features"] if f["id"] in versions][0]
    # the reprocessing: every pixel it observed now flooded
    src = path_of(target["assets"]["ensemble_flood_extent"]["href"])
    new = tmp_path / "scene" / "reprocessed.tif"
    with rasterio.open(src) as ds:
        profile, data = ds.profile, ds.read(1)
    data[data != 255] = 1
    with rasterio.open(new, "w", **profile) as ds:
        ds.write(data, 1)
    target["assets"]["ensemble_flood_extent"]["href"] = str(new)
    target["properties"]["created"] = "2022-10-15T08:00:00Z"
    scene = write_scene(tmp_path / "scene", doc, tiny.bbox)
    full = tmp_path / "full.tif"
    extent(str(scene.items_file), scene.bbox, full)
    assert not np.array_equal(band(full), band(out))  # the reprocessing changed the extent
    p = run(["extent", "--stac-url", scene.items_file, "--bbox", scene.bbox, "--datetime", DT_RFC,
             "--update", out])
    assert "republished" in p.stderr and target["id"] in p.stderr and "recomputing" in p.stderr, p.stderr
    np.testing.assert_array_equal(band(out), band(full))
    after = json.loads((tmp_path / "x.stac.json").read_text())["properties"]["floodsql:item_versions"]
    assert after[target["id"]] != versions[target["id"]]
    assert {k: v for k, v in after.items() if k != target["id"]} == \
        {k: v for k, v in versions.items() if k != target["id"]}
    # and once recomputed, nothing is new
    p = run(["extent", "--stac-url", scene.items_file, "--bbox", scene.bbox, "--datetime", DT_RFC,
             "--update", out])
    assert "is up to date" in p.stderr, p.stderr


class RateLimitedProxy:
    """tests/py/auth_proxy.py in front of a STAC API, answering 429 with
    `Retry-After: S` to a request that comes sooner than S seconds after the
    last one it forwarded."""

    def __init__(self, upstream, seconds):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, AUTH_PROXY_RATE_LIMIT=str(seconds))
        env.pop("AUTH_PROXY_REQUIRE", None)
        self.proc = subprocess.Popen([PY, str(HERE / "auth_proxy.py"), upstream, str(self.port)], env=env)
        wait_http(self.url + "/__stats", self.proc, "rate-limiting proxy")

    def stats(self):
        import urllib.request
        return json.loads(urllib.request.urlopen(self.url + "/__stats").read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def test_rate_limits_are_waited_out(tiny, tiny_api, tmp_path):
    """A server that allows one request a second answers 429 + Retry-After
    to the pages asked sooner: floodsql waits as told (never sooner: every
    forwarded request is at least a second after the previous) and gives the
    same extent; a server asking for an hour is reported at once, naming
    the limit, with no output."""
    proxy = RateLimitedProxy(tiny_api, 1)
    try:
        out, direct = tmp_path / "x.tif", tmp_path / "direct.tif"
        extent(proxy.url, tiny.bbox, out, "--page-size", "3")
        s = proxy.stats()
        assert s["limited"] >= 1 and s["forwarded"] >= 3, s
        assert min(s["retry_gaps"]) >= 0.99, s  # waited as asked, never sooner
        extent(tiny_api, tiny.bbox, direct)
        np.testing.assert_array_equal(band(out), band(direct))
    finally:
        proxy.stop()
    proxy = RateLimitedProxy(tiny_api, 3600)
    try:
        import urllib.request
        urllib.request.urlopen(proxy.url + "/", timeout=10).read()  # the one request it lets through
        p = extent(proxy.url, tiny.bbox, tmp_path / "no.tif", check=False)
        assert p.returncode == 1 and "429" in p.stderr and "3600 s" in p.stderr, p.stderr
        assert not (tmp_path / "no.tif").exists()
    finally:
        proxy.stop()


def test_the_python_package_takes_the_same_options(tiny, tiny_masks, tmp_path):
    """`floodsql.raster(..., groupby=, missing_assets=, filter=)` gives the
    CLI's pixels with the same options, and `plan()` says who lacks what."""
    import floodsql
    scene = framed_scene(tiny, tmp_path / "framed")
    cli = tmp_path / "cli.tif"
    run(["sql", "--set", "floodsql.group_by=solar_day", "--out", cli, "-c",
         counts_sql(str(scene.items_file), scene.bbox, "valid_count")])
    arr = floodsql.raster("valid_count(pixels)", scene.items_file, scene.bbox, DT_RFC, groupby="solar_day",
                          chunk=256)
    np.testing.assert_array_equal(arr.values, band(cli))
    per_time = floodsql.raster("valid_count(pixels)", scene.items_file, scene.bbox, DT_RFC, chunk=256)
    assert not np.array_equal(per_time.values, arr.values)

    doc = copy_scene(tiny_masks, tmp_path / "masks")
    for f in doc["features"][1::2]:
        del f["assets"]["exclusion_mask"]
    masks = write_scene(tmp_path / "masks", doc, tiny_masks.bbox)
    con = floodsql.connect(options={"floodsql.missing_assets": "exclusion_mask=0"})
    sql = masked_sql(str(masks.items_file), masks.bbox)
    (plan,) = con.sql(sql).plan()
    lacking = plan["missing_assets"]["exclusion_mask"]
    assert lacking["read_as"] == 0 and lacking["items"], plan
    out = tmp_path / "py.tif"
    con.sql(sql).write(tif=out)
    cli = tmp_path / "cli-masks.tif"
    run(["sql", "--set", "floodsql.missing_assets=exclusion_mask=0", "--out", cli, "-c", sql])
    np.testing.assert_array_equal(band(out), band(cli))
    with pytest.raises(floodsql.InvalidInputError, match="ASSET=POLICY"):
        floodsql.max_flood_extent(masks.items_file, masks.bbox, DT_RFC, missing_assets={"exclusion_mask": "maybe"})
    items = floodsql.stac_items(scene.items_file, scene.bbox, DT_RFC, filter={"op": "like", "args": [
        {"property": "id"}, "%-frame"]})
    assert list(items["id"]) and all(i.endswith("-frame") for i in items["id"])
