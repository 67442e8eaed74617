"""floodsql extent / sql against a real STAC API server, checked against an
independent numpy/rasterio computation and the tutorial's Python stack."""
import json
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from conftest import DT_RFC, REPO, extent, peer, reference, run


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs, ds.nodata, ds.profile


def test_tiny_matches_reference_over_paged_api(tiny, tiny_api, tmp_path):
    out = tmp_path / "x.tif"
    r = extent(tiny_api, tiny.bbox, out, "--page-size", "4", "--chunk", "200")
    ref = reference(tiny_api, tiny.bbox, tmp_path / "ref.npz")
    px, tr, crs, nodata, prof = read(out)
    assert tuple(tr.to_gdal()) == tuple(ref["geotransform"])
    assert px.shape == ref["extent"].shape
    assert np.array_equal(px, ref["extent"])
    assert px.sum() > 0 and (px == 0).sum() > 0          # not trivially all-0/1
    assert f"items: {int(ref['n_items'])}" in r.stdout    # the search paged through all items
    assert f"time slices: {int(ref['n_slices'])}" in r.stdout
    assert crs is not None and "Azimuthal" in crs.to_wkt()
    assert nodata is None
    assert prof["dtype"] == "uint8"


def test_scene_has_the_hard_cases(tiny):
    """The synthetic catalogue really contains what the comparisons are about."""
    by_dt = {}
    for it in tiny.items:
        by_dt.setdefault(it["properties"]["datetime"], []).append(it)
    assert any(len(v) > 1 for v in by_dt.values()), "items sharing a datetime"
    assert any(it["id"].endswith("_B") for it in tiny.items), "overlapping items within a slice"
    assert any("DECOY" in it["id"] for it in tiny.items), "decoys outside AOI/time"
    assert all(it["properties"]["proj:epsg"] is None for it in tiny.items)
    assert all("EPSG\",\"27703" not in it["properties"]["proj:wkt2"] for it in tiny.items)


def test_cog_is_valid_and_has_crs(tiny, tiny_api, tmp_path):
    out = tmp_path / "x.tif"
    extent(tiny_api, tiny.bbox, out)
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(out)], capture_output=True, text=True,
                                     check=True).stdout)
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    # an independent validator of the layout (floodsql places the tiles itself)
    from rio_cogeo.cogeo import cog_validate
    valid, errors, warnings = cog_validate(str(out), strict=True)
    assert valid and not errors and not warnings, (errors, warnings)
    band = info["bands"][0]
    assert band["type"] == "Byte"
    assert "noDataValue" not in band
    assert band["overviews"], "COG has overviews"
    assert band["block"] == [512, 512]
    assert "Azimuthal" in info["coordinateSystem"]["wkt"]
    # overviews stay 0/1 (nearest)
    with rasterio.open(out) as ds:
        ov = ds.read(1, out_shape=(ds.height // 2, ds.width // 2))
        assert set(np.unique(ov)) <= {0, 1}


def test_chunk_size_and_partitions_do_not_matter(tiny, tiny_api, tmp_path):
    outs = []
    for chunk, parts in [(97, 1), (256, 2), (1000, 3), (5000, 2)]:
        o = tmp_path / f"c{chunk}.tif"
        extent(tiny_api, tiny.bbox, o, "--chunk", chunk, "--partitions", parts)
        outs.append(read(o)[0])
    for o in outs[1:]:
        assert np.array_equal(outs[0], o)


def test_static_sources_equal_api(tiny, tiny_api, tmp_path):
    api = tmp_path / "api.tif"
    extent(tiny_api, tiny.bbox, api)
    for src in [tiny.items_file, tiny.path / "items.ndjson", tiny.path / "items"]:
        o = tmp_path / (src.name + ".tif")
        extent(src, tiny.bbox, o)
        assert np.array_equal(read(api)[0], read(o)[0]), src


def test_sql_file_gives_the_same_raster_as_extent(tiny, tiny_api, tmp_path):
    """Same pixels, grid and CRS; the metadata differs only in the title
    (extent sets its session options through the session, not in the SQL:
    the query recorded is the same text)."""
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    extent(tiny_api, tiny.bbox, a, "--chunk", "300")
    run(["sql", REPO / "sql" / "max_flood_extent.sql", "--param", f"source={tiny_api}",
         "--param", "collection=GFM", "--param", f"bbox={tiny.bbox}", "--param", f"datetime={DT_RFC}",
         "--param", "asset=ensemble_flood_extent", "--param", "chunk=300", "--out", b])
    assert np.array_equal(read(a)[0], read(b)[0])
    assert read(a)[1:3] == read(b)[1:3]
    with rasterio.open(a) as x, rasterio.open(b) as y:
        ta, tb = x.tags(), y.tags()
        differ = {k for k in ta.keys() | tb.keys() if ta.get(k) != tb.get(k)}
        assert differ == {"TIFFTAG_IMAGEDESCRIPTION"}, (ta, tb)


def test_counts_match_reference(tiny, tiny_api, tmp_path):
    ref = reference(tiny_api, tiny.bbox, tmp_path / "ref.npz")
    for fn, key in [("flood_count", "flood_count"), ("valid_count", "valid_count")]:
        o = tmp_path / f"{fn}.tif"
        sql = (f"SELECT x_off, y_off, width, height, {fn}(pixels) AS pixels "
               f"FROM flood_chunks('{tiny_api}', 'GFM', '{tiny.bbox}', '{DT_RFC}', 'ensemble_flood_extent', 256) "
               f"GROUP BY x_off, y_off, width, height")
        p = run(["sql", "-c", sql, "--out", o])
        px = read(o)[0]
        assert px.dtype == np.uint16
        assert np.array_equal(px, ref[key]), fn
        assert px.max() > 1
        # the summary speaks of counts, not of "flooded pixels: 0"
        want = f"pixels above 0: {int((ref[key] > 0).sum())} "
        assert want in p.stdout and f"largest value: {int(ref[key].max())} (16-bit" in p.stdout, p.stdout
        assert "flooded pixels" not in p.stdout


def test_parquet_and_png(tiny, tiny_api, tmp_path):
    import duckdb
    import pyarrow.parquet as pq
    tif, pqf, png = tmp_path / "x.tif", tmp_path / "x.parquet", tmp_path / "x.png"
    extent(tiny_api, tiny.bbox, tif, "--parquet", pqf, "--png", png, "--chunk", "256")
    px, tr, *_ = read(tif)
    f = pq.ParquetFile(pqf)
    meta = {k.decode(): v.decode() for k, v in f.metadata.metadata.items()}
    assert json.loads(meta["floodsql:geotransform"]) == list(tr.to_gdal())
    assert int(meta["floodsql:width"]) == px.shape[1]
    assert "Azimuthal" in meta["floodsql:crs"]
    t = f.read().to_pylist()
    arr = np.zeros_like(px)
    for r in t:
        arr[r["y_off"]:r["y_off"] + r["height"], r["x_off"]:r["x_off"] + r["width"]] = \
            np.frombuffer(r["pixels"], np.uint8).reshape(r["height"], r["width"])
    assert np.array_equal(arr, px)
    n, flooded = duckdb.connect().execute(
        f"SELECT count(*), sum(width * height) FROM read_parquet('{pqf}')").fetchall()[0]
    assert n == len(t) and flooded == sum(r["width"] * r["height"] for r in t)
    head = png.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"
    with rasterio.open(png) as ds:
        assert ds.count == 3 and ds.width >= px.shape[1]


@pytest.mark.parametrize("which", ["tiny", "medium"])
def test_same_as_python_peer_stack(which, request, tmp_path):
    """The tutorial's own code (pystac-client + odc-stac + xarray + rioxarray)
    on the same catalogue and server: same pixels, same geotransform."""
    scene, api = request.getfixturevalue(which), request.getfixturevalue(which + "_api")
    ours, theirs = tmp_path / "ours.tif", tmp_path / "peer.tif"
    extent(api, scene.bbox, ours, "--page-size", "10")
    peer(api, scene.bbox, theirs)
    a, ta, *_ = read(ours)
    b, tb, crs_b, *_ = read(theirs)
    assert ta == tb
    assert a.shape == b.shape
    assert np.array_equal(a, b)
    assert a.sum() > 0


def _edge_bbox(scene, frac):
    """The scene's bbox with its west edge moved so that the projected grid's
    left edge lies `frac` px off a grid line."""
    import pyproj
    wkt = scene.items[0]["properties"]["proj:wkt2"]
    t = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_wkt(wkt), always_xy=True)
    minx, miny, maxx, maxy = map(float, scene.bbox.split(","))

    def left(mx):
        xs, _ = t.transform([mx, mx, maxx, maxx], [miny, maxy, miny, maxy])
        return min(xs)

    target = (np.floor(left(minx) / 20.0) + frac) * 20.0
    a, b = minx - 0.01, minx + 0.01
    for _ in range(200):  # bisection: left() increases with mx
        m = (a + b) / 2
        a, b = (m, b) if left(m) < target else (a, m)
    mx = (a + b) / 2
    return f"{mx!r},{miny!r},{maxx!r},{maxy!r}", left(mx) / 20.0


@pytest.mark.parametrize("frac,snaps", [(0.004, True), (0.996, True), (0.02, False)])
def test_aoi_edge_near_a_grid_line(tiny, tiny_api, tmp_path, frac, snaps):
    """An AOI whose projected left edge lies `frac` px east of a grid line:
    within 0.01 px of a line it snaps to that line (odc-geo's tolerance, so
    0.996 snaps east, up to the next line), beyond it the edge is floored."""
    import math
    bbox, left_px = _edge_bbox(tiny, frac)
    assert abs(left_px % 1.0 - frac) < 1e-4
    ours, theirs = tmp_path / "ours.tif", tmp_path / "peer.tif"
    extent(tiny_api, bbox, ours)
    ref = reference(tiny_api, bbox, tmp_path / "ref.npz")
    peer(tiny_api, bbox, theirs)
    a, ta, *_ = read(ours)
    b, tb, *_ = read(theirs)
    assert tuple(ta.to_gdal()) == tuple(ref["geotransform"]) and ta == tb
    assert np.array_equal(a, ref["extent"]) and np.array_equal(a, b)
    expected = round(left_px) if snaps else math.floor(left_px)
    assert ta.c / 20.0 == expected, (ta.c / 20.0, left_px)
    if frac > 0.5:  # snapped east: one column fewer than the plain floor
        assert expected == math.floor(left_px) + 1


def test_result_larger_than_the_session_memory_limit(medium, medium_api, tmp_path):
    """With a DataFusion memory limit far below the result (16 MiB for a
    35 Mpx mask), the query still runs: chunks stream from the aggregate to
    the writers instead of being held (before streaming it failed with
    'Failed to allocate … for FinalHashAggregateStream')."""
    ref, out = tmp_path / "ref.tif", tmp_path / "limited.tif"
    extent(medium_api, medium.bbox, ref)
    sql = (f"SET datafusion.runtime.memory_limit = '16M'; "
           f"SELECT x_off, y_off, width, height, flood_max_extent(pixels) AS pixels "
           f"FROM flood_chunks('{medium_api}', 'GFM', '{medium.bbox}', '{DT_RFC}', 'ensemble_flood_extent', 1000) "
           f"GROUP BY x_off, y_off, width, height")
    run(["sql", "-c", sql, "--out", out])
    px, *_ = read(out)
    assert px.size > 16 * 2**20, px.shape
    assert np.array_equal(px, read(ref)[0]) and read(out)[1:3] == read(ref)[1:3]


# --- bad input: clear error, non-zero exit, no output file -------------------

def _fails(args_out, *needles):
    p, out = args_out
    assert p.returncode != 0
    assert "panicked" not in p.stderr
    for n in needles:
        assert n.lower() in p.stderr.lower(), p.stderr
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp*"))


def test_unreachable_api(tiny, tmp_path):
    from conftest import free_port
    out = tmp_path / "x.tif"
    p = extent(f"http://127.0.0.1:{free_port()}", tiny.bbox, out, check=False)
    _fails((p, out), "127.0.0.1")


def test_no_items_found(tiny, tiny_api, tmp_path):
    out = tmp_path / "x.tif"
    p = extent(tiny_api, tiny.bbox, out, check=False, datetime="2010-01-01/2010-02-01")
    _fails((p, out), "no STAC items")
    last = p.stderr.strip().splitlines()[-1]
    assert f"bbox {tiny.bbox} (degrees: west,south,east,north), datetime 2010-01-01T00:00:00Z/" in last, last
    assert "Some(" not in last and "lat,lon" not in last and "collections:" not in last, last
    # a bbox written lat,lon: the message says so, with the lon,lat order
    w, s, e, n = tiny.bbox.split(",")
    p = extent(tiny_api, f"{s},{w},{n},{e}", out, check=False)
    _fails((p, out), "no STAC items", f"in lon,lat order ({w},{s},{e},{n}) the search finds items")
    # an unknown collection: the catalogue's are listed (API and static file)
    for src in (tiny_api, tiny.items_file):
        p = run(["extent", "--stac-url", src, "--collection", "GFN", "--bbox", tiny.bbox,
                 "--out", out], check=False)
        _fails((p, out), "collection GFN", "the catalogue's collections: GFM")


def test_unknown_asset(tiny, tiny_api, tmp_path):
    out = tmp_path / "x.tif"
    p = run(["extent", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC,
             "--asset", "no_such_asset", "--out", out], check=False)
    _fails((p, out), "no_such_asset", "ensemble_flood_extent")


def _copy_scene(tiny, tmp_path):
    """A copy of the tiny scene whose items point at its own COGs; returns
    its directory, its items and (item id -> COG path)."""
    scene = tmp_path / "scene"
    shutil.copytree(tiny.path, scene)
    items = json.loads((scene / "items.json").read_text())
    for it in items["features"]:
        a = it["assets"]["ensemble_flood_extent"]
        a["href"] = a["href"].replace(str(tiny.path), str(scene))
    (scene / "items.json").write_text(json.dumps(items))
    cogs = {it["id"]: scene / "cogs" / f"{it['id']}_ensemble_flood_extent.tif"
            for it in items["features"]}
    return scene, items, cogs


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_cog(tiny, tmp_path, damage):
    # damage one COG the query needs
    scene, items, cogs = _copy_scene(tiny, tmp_path)
    victim = next(it for it in items["features"] if "DECOY" not in it["id"])
    cog = cogs[victim["id"]]
    if damage == "missing":
        cog.unlink()
    else:
        data = cog.read_bytes()
        cog.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "x.tif"
    p = extent(scene / "items.json", tiny.bbox, out, check=False)
    _fails((p, out), victim["id"][:20])


def _entries(data):
    """The first IFD's entries of a little-endian classic TIFF: tag -> (entry
    offset, field type, count, value field)."""
    import struct
    assert data[:4] == b"II*\x00"
    at = struct.unpack_from("<I", data, 4)[0]
    n = struct.unpack_from("<H", data, at)[0]
    out = {}
    for i in range(n):
        e = at + 2 + 12 * i
        tag, typ, count, value = struct.unpack_from("<HHII", data, e)
        out[tag] = (e, typ, count, value)
    return out


def _lie(data, lie):
    """A COG's bytes with its header lying as `lie` says."""
    import struct
    data = bytearray(data)
    ents = _entries(data)
    if lie == "field_type":        # ImageWidth of a type TIFF does not define
        struct.pack_into("<H", data, ents[256][0] + 2, 99)
    elif lie == "huge_count":      # 2^31 - 1 tile offsets (an 8 GB array)
        struct.pack_into("<I", data, ents[324][0] + 4, 0x7FFFFFFF)
    elif lie == "block_bytes":     # the first tile said to take 2^32 - 1 bytes
        e, typ, count, value = ents[325]
        assert typ == 4, typ
        struct.pack_into("<I", data, e + 8 if count == 1 else value, 0xFFFFFFFF)
    elif lie == "past_end":        # the tile offsets (one tile: the tile) past the end
        struct.pack_into("<I", data, ents[324][0] + 8, len(data) + 4096)
    return bytes(data)


@pytest.mark.parametrize("lie", ["field_type", "huge_count", "block_bytes", "past_end"])
def test_cog_header_that_lies(tiny, tmp_path, lie):
    """A catalogue is untrusted, and so are the files it points at: a COG
    whose header lies (a field type TIFF does not define, a count of 2^31
    values, a tile of 4 GB, data past the end of the file) is an error
    naming the item and the file, a non-zero exit and no output — never a
    panic, an abort or a read of gigabytes."""
    scene, items, cogs = _copy_scene(tiny, tmp_path)
    victim = next(it for it in items["features"] if "DECOY" not in it["id"])
    cog = cogs[victim["id"]]
    cog.write_bytes(_lie(cog.read_bytes(), lie))
    out = tmp_path / "x.tif"
    p = extent(scene / "items.json", tiny.bbox, out, check=False)
    _fails((p, out), victim["id"][:20], cog.name)
    assert p.returncode == 1, (p.returncode, p.stderr)     # an error, not a signal


def test_cog_with_its_ifd_far_into_the_file(tiny, tmp_path):
    """A GeoTIFF whose IFD lies 40 MB into the file (a plain GeoTIFF puts it
    at the end) reads as it did before, pixel for pixel."""
    import struct
    scene, items, cogs = _copy_scene(tiny, tmp_path)
    for cog in cogs.values():
        data = bytearray(cog.read_bytes())
        at = struct.unpack_from("<I", data, 4)[0]
        n = struct.unpack_from("<H", data, at)[0]
        ifd = bytes(data[at:at + 2 + 12 * n + 4])
        far = 40 << 20
        struct.pack_into("<I", data, 4, far)
        with open(cog, "wb") as f:
            f.write(data)
            f.seek(far)
            f.write(ifd)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    extent(tiny.items_file, tiny.bbox, a)
    extent(scene / "items.json", tiny.bbox, b)
    pa, ta, ca = read(a)[:3]
    pb, tb, cb = read(b)[:3]
    assert np.array_equal(pa, pb) and ta == tb and ca == cb
    assert pa.sum() > 0


@pytest.mark.parametrize("shift", [(6.0, 0.0), (10.0, -10.0), (-14.0, 10.0), (-10.0, 30.0)])
def test_sub_pixel_shifted_items_are_pasted_like_the_tutorial(shift, tiny, tmp_path):
    """Items off the output's 20 m lattice (COGs and proj:transform shifted by
    `shift` metres, 0.3 to 1.5 px): the tutorial's stack pastes them at the
    offset rounded to whole pixels (odc-loader's nearest rule; exact halves
    toward zero), and so must floodsql."""
    from conftest import StacServer, write_scene
    scene = tmp_path / "scene"
    shutil.copytree(tiny.path, scene)
    items = json.loads(tiny.items_file.read_text())
    victims = items["features"]          # every item: the whole mosaic moves
    dx, dy = shift
    for it in items["features"]:
        a = it["assets"]["ensemble_flood_extent"]
        a["href"] = a["href"].replace(str(tiny.path), str(scene))
        if it in victims:
            t = it["properties"]["proj:transform"]
            t[2] += dx
            t[5] += dy
            rows, cols = it["properties"]["proj:shape"]
            cog = a["href"].removeprefix("file://")
            subprocess.run(["gdal_edit.py", "-a_ullr", str(t[2]), str(t[5]), str(t[2] + cols * t[0]),
                            str(t[5] + rows * t[4]), cog], check=True)
    s = write_scene(scene, items, tiny.bbox)
    api = StacServer(s, tmp_path)
    try:
        out = tmp_path / "x.tif"
        extent(api.url, tiny.bbox, out)
        with rasterio.open(out) as a, rasterio.open(peer(api.url, tiny.bbox, tmp_path / "peer.tif")) as b:
            ours, theirs = a.read(1), b.read(1)
            assert a.transform == b.transform
        assert np.array_equal(ours, theirs), f"{int((ours != theirs).sum())} pixels differ"
        # a shift over half a pixel moves the mosaic: the test sees placement
        plain = tmp_path / "plain.tif"
        extent(tiny.items_file, tiny.bbox, plain)
        with rasterio.open(plain) as p:
            moved = int((p.read(1) != ours).sum())
        print(f"shift {shift} m: {moved} pixels differ from the unshifted scene")
        assert (moved > 0) == (max(abs(dx), abs(dy)) >= 10.0)
    finally:
        api.stop()


@pytest.mark.parametrize("field,value,needle", [
    ("proj:shape", [18446744073709551000, 500], "proj:shape"),
    ("proj:shape", [0, 500], "proj:shape"),
    ("proj:transform", [20.0, 0.0, 1e300, 0.0, -20.0, 3.0e6], "not a position"),
])
def test_absurd_asset_grids_are_refused(field, value, needle, tiny, tmp_path):
    """Before: a proj:shape near u64::MAX wrapped in the pixel arithmetic and
    the item was silently dropped (exit 0)."""
    items = json.loads(tiny.items_file.read_text())
    victim = next(it for it in items["features"] if "DECOY" not in it["id"])
    victim["properties"][field] = value
    f = tmp_path / "items.json"
    f.write_text(json.dumps(items))
    out = tmp_path / "x.tif"
    p = extent(f, tiny.bbox, out, check=False)
    _fails((p, out), victim["id"], needle)


def test_server_errors_are_reported_after_retries(tiny, tmp_path):
    """A STAC API answering 500: bounded retries, then a clear error."""
    import http.server
    import threading

    hits = []

    class H(http.server.BaseHTTPRequestHandler):
        def _fail(self):
            hits.append(self.path)
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")

        do_GET = do_POST = _fail

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "x.tif"
        p = extent(f"http://127.0.0.1:{srv.server_address[1]}/search", tiny.bbox, out, check=False)
        _fails((p, out), "500")
        assert 2 <= len(hits) <= 5, hits  # retried, but boundedly
    finally:
        srv.shutdown()


def test_failed_run_leaves_no_outputs(tiny, tmp_path):
    pqf = tmp_path / "x.parquet"
    p = extent(tiny.items_file, tiny.bbox, tmp_path / "missing-dir" / "x.tif", "--parquet", pqf, check=False)
    assert p.returncode != 0 and "does not exist" in p.stderr
    assert list(tmp_path.iterdir()) == []
