"""The CRS in every form catalogues give it. Production GFM items carry a
legacy WKT1 of Equi7Grid Asia; catalogues written by equi7grid >= 1.0 carry
EPSG:27703, whose WKT2 uses EPSG method 1125 that this machine's PROJ (9.1)
cannot compute, as `proj:wkt2`, `proj:code` or `proj:projjson`. Each form must
give the legacy scene's pixels and grid, and the tutorial's stack's (pyproj's
newer PROJ) pixels; a CRS no PROJ can compute is refused by name."""
import json

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
