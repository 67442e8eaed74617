"""The CRS in every form catalogues give it. Production GFM items carry a
legacy WKT1 of Equi7Grid Asia; catalogues written by equi7grid >= 1.0 carry
EPSG:27703, whose WKT2 uses EPSG method 1125 that this machine's PROJ (9.1)
cannot compute, as `proj:wkt2`, `proj:code` or `proj:projjson`. Each form must
give the legacy scene's pixels and grid, and the tutorial's stack's (pyproj's
newer PROJ) pixels; a CRS no PROJ can compute is refused by name."""
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import StacServer, extent, make_scene, peer, reference


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    scene = make_scene(tmp_path_factory.mktemp("legacy"), "--scale", "tiny", "--crs-form", "legacy")
    api = StacServer(scene, tmp_path_factory.mktemp("srv"))
    out = tmp_path_factory.mktemp("out") / "legacy.tif"
    extent(api.url, scene.bbox, out)
    yield scene, out
    api.stop()


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs


@pytest.mark.parametrize("form", ["wkt2", "code", "projjson"])
def test_every_crs_form_gives_the_legacy_pixels_and_the_tutorials(form, legacy, tmp_path):
    scene = make_scene(tmp_path / "scene", "--scale", "tiny", "--crs-form", form)
    props = scene.items[0]["properties"]
    assert ("proj:wkt2" in props) == (form == "wkt2") and "proj:epsg" not in props
    api = StacServer(scene, tmp_path)
    try:
        out = tmp_path / f"{form}.tif"
        extent(api.url, scene.bbox, out)
        px, transform, crs = read(out)
        lpx, ltransform, lcrs = read(legacy[1])
        assert np.array_equal(px, lpx) and px.sum() > 0
        assert transform == ltransform
        assert crs == lcrs, (crs.to_wkt(), lcrs.to_wkt())      # pyproj: the same projection
        # the tutorial's own code (odc-stac on pyproj's PROJ 9.5, which knows method 1125)
        tutorial = read(peer(api.url, scene.bbox, tmp_path / "peer.tif"))
        assert np.array_equal(px, tutorial[0])
        assert transform == tutorial[1]
        # and the independent numpy computation
        assert np.array_equal(px, reference(api.url, scene.bbox, tmp_path / "ref.npz")["extent"])
    finally:
        api.stop()


def test_a_crs_no_proj_can_compute_is_refused_by_name(tmp_path):
    scene = make_scene(tmp_path / "scene", "--scale", "tiny", "--crs-form", "wkt2")
    doc = json.loads(scene.items_file.read_text())
    for it in doc["features"]:
        it["properties"]["proj:wkt2"] = it["properties"]["proj:wkt2"] \
            .replace('"Azimuthal Equidistant",ID["EPSG",1125]', '"Floodsql Imaginary Projection",ID["EPSG",99999]')
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = tmp_path / "x.tif"
    r = extent(bad, scene.bbox, out, check=False)
    assert r.returncode != 0
    assert "CRS 'WGS 84 / Equi7 Asia'" in r.stderr and "PROJ" in r.stderr, r.stderr
    assert "panicked" not in r.stderr and not out.exists()


def test_a_catalogue_mixing_legacy_wkt_and_epsg_codes(legacy, tmp_path):
    """During a catalogue's migration: every other item names the CRS by
    EPSG:27703, the others by the legacy WKT — one CRS, so one mosaic, equal
    to the legacy scene's and to the tutorial's code's."""
    import shutil
    from conftest import write_scene
    scene_dir = tmp_path / "mixed"
    src = legacy[0]
    scene_dir.mkdir()
    shutil.copy(src.path / "collection.json", scene_dir / "collection.json")
    doc = json.loads(src.items_file.read_text())
    for k, it in enumerate(doc["features"]):
        if k % 2:
            p = it["properties"]
            p.pop("proj:wkt2"), p.pop("proj:epsg", None)
            p["proj:code"] = "EPSG:27703"
    scene = write_scene(scene_dir, doc, src.bbox)
    api = StacServer(scene, tmp_path)
    try:
        out = tmp_path / "mixed.tif"
        extent(api.url, scene.bbox, out)
        px, transform, _ = read(out)
        lpx, ltransform, _ = read(legacy[1])
        assert np.array_equal(px, lpx) and transform == ltransform
        tutorial = read(peer(api.url, scene.bbox, tmp_path / "peer.tif"))
        assert np.array_equal(px, tutorial[0])
    finally:
        api.stop()


# Equi7 Europe as PROJ 9.1 (Debian's gdalwarp) can compute it: EPSG:27704's
# parameters (the items then say "EPSG:27704", which pyproj's PROJ 9.5 knows)
EQUI7_EU_PROJ = ("+proj=aeqd +lat_0=53 +lon_0=24 +x_0=5837287.82 +y_0=2121415.696 +datum=WGS84 "
                 "+units=m +no_defs")


def two_crs_scene(src, dest, code="EPSG:32642", srs="EPSG:32642"):
    """`src` with the items of its middle acquisition warped (gdalwarp,
    nearest, on the 20 m lattice of `srs`) into that CRS, and described by
    `proj:code` = `code`."""
    import shutil
    import subprocess
    from conftest import write_scene
    dest.mkdir()
    shutil.copy(src.path / "collection.json", dest / "collection.json")
    doc = json.loads(src.items_file.read_text())
    dts = sorted({f["properties"]["datetime"] for f in doc["features"]})
    middle = dts[len(dts) // 2]
    warped = 0
    for it in doc["features"]:
        p = it["properties"]
        if p["datetime"] != middle:
            continue
        a = it["assets"]["ensemble_flood_extent"]
        cog = a["href"].removeprefix("file://")
        out = dest / Path(cog).name
        subprocess.run(["gdalwarp", "-q", "-t_srs", srs, "-tr", "20", "20", "-tap", "-r", "near",
                        "-srcnodata", "255", "-dstnodata", "255", "-co", "TILED=YES", cog, str(out)], check=True)
        info = json.loads(subprocess.run(["gdalinfo", "-json", str(out)], capture_output=True, text=True,
                                         check=True).stdout)
        g = info["geoTransform"]
        p.pop("proj:wkt2"), p.pop("proj:epsg", None)
        p["proj:code"] = code
        p["proj:shape"] = [info["size"][1], info["size"][0]]
        p["proj:transform"] = [g[1], g[2], g[0], g[4], g[5], g[3]]
        a["href"] = out.as_uri()
        warped += 1
    assert warped >= 2
    return write_scene(dest, doc, src.bbox), warped


@pytest.mark.parametrize("which,code,srs", [
    ("tiny", "EPSG:32642", "EPSG:32642"),
    ("medium", "EPSG:32642", "EPSG:32642"),
    ("medium", "EPSG:27704", EQUI7_EU_PROJ),      # an Equi7 zone border: Europe next to Asia
])
def test_items_in_another_crs_are_warped_like_the_tutorial(which, code, srs, request, tmp_path):
    """A search returning items in two CRSs (one acquisition in UTM 42N or in
    Equi7 Europe, the rest in Equi7 Asia): the tutorial's stack reprojects
    them into the first item's CRS per 1000 px chunk with GDAL's warper
    (nearest, approximate transformer 0.125 px). floodsql must give its
    pixels; the count of differing pixels is printed."""
    src = request.getfixturevalue(which)
    scene, warped = two_crs_scene(src, tmp_path / "twocrs", code, srs)
    api = StacServer(scene, tmp_path)
    try:
        out = tmp_path / "twocrs.tif"
        extent(api.url, scene.bbox, out)
        px, transform, _ = read(out)
        tutorial = read(peer(api.url, scene.bbox, tmp_path / "peer.tif"))
        assert transform == tutorial[1]
        differ = int((px != tutorial[0]).sum())
        plain = tmp_path / "plain.tif"
        extent(src.items_file, src.bbox, plain)
        moved = int((px != read(plain)[0]).sum())
        print(f"{which}: {warped} items in {code}; pixels differing from the tutorial's: {differ} "
              f"of {px.size}; from the single-CRS scene: {moved}")
        assert differ == 0
        assert moved > 0                    # the warped items were read (warping moves edges)
        # GDAL's reader takes the same path for the warped items
        gd = tmp_path / "gdal.tif"
        extent(api.url, scene.bbox, gd, "--set", "floodsql.reader=gdal")
        assert np.array_equal(read(gd)[0], px)
        # the warp windows are the tutorial's 1000 px dask chunks whatever the
        # scan's chunks (warping per 500 px chunk instead gave 1382 differing
        # pixels on the medium scene: GDAL's approximate transformer picks
        # neighbours per window)
        c500 = tmp_path / "c500.tif"
        extent(api.url, scene.bbox, c500, "--chunk", "500")
        assert np.array_equal(read(c500)[0], px)
    finally:
        api.stop()
