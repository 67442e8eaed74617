"""Item variants real catalogues have: no `proj:shape`/`proj:transform` (the
grid then comes from the COG's header, as the tutorial's stack reads the
file), on some items or all, and relative asset hrefs in a static catalogue.
Each must give the plain scene's raster."""
import json
import shutil
import subprocess

import pytest
from conftest import StacServer, extent, same_raster, write_scene


@pytest.fixture(scope="module")
def plain_out(tiny, tiny_api, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "plain.tif"
    extent(tiny_api, tiny.bbox, out)
    return out


def variant(tiny, dest, edit):
    """The tiny scene with its items edited; COGs shared."""
    dest.mkdir()
    shutil.copy(tiny.path / "collection.json", dest / "collection.json")
    doc = json.loads(tiny.items_file.read_text())
    for k, it in enumerate(doc["features"]):
        edit(k, it)
    return write_scene(dest, doc, tiny.bbox)


@pytest.mark.parametrize("which", ["all", "every other"])
def test_items_without_proj_shape_and_transform_use_the_cog_header(which, tiny, plain_out, tmp_path):
    def drop(k, it):
        if which == "all" or k % 2:
            del it["properties"]["proj:shape"], it["properties"]["proj:transform"]
    scene = variant(tiny, tmp_path / "scene", drop)
    api = StacServer(scene, tmp_path)
    try:
        out = tmp_path / "x.tif"
        extent(api.url, scene.bbox, out)
        assert same_raster(out, plain_out)
    finally:
        api.stop()


def test_no_proj_transform_and_no_georeferenced_cog_is_named(tiny, tmp_path):
    bare = tmp_path / "bare.tif"
    first = json.loads(tiny.items_file.read_text())["features"][0]
    src = first["assets"]["ensemble_flood_extent"]["href"].removeprefix("file://")
    # the same pixels with the georeferencing stripped
    subprocess.run(["gdal_translate", "-q", "-of", "GTiff", src, str(bare)], check=True)
    subprocess.run(["gdal_edit.py", "-unsetgt", str(bare)], check=True, capture_output=True)

    def edit(k, it):
        del it["properties"]["proj:transform"]
        if it["id"] == first["id"]:
            it["assets"]["ensemble_flood_extent"]["href"] = bare.as_uri()
    scene = variant(tiny, tmp_path / "scene", edit)
    out = tmp_path / "x.tif"
    r = extent(scene.items_file, scene.bbox, out, check=False)
    assert r.returncode != 0 and first["id"] in r.stderr and "proj:transform" in r.stderr, r.stderr
    assert "panicked" not in r.stderr and not out.exists()


def test_relative_hrefs_in_a_static_catalogue(tiny, plain_out, tmp_path):
    def rel(k, it):
        a = it["assets"]["ensemble_flood_extent"]
        a["href"] = "../cogs/" + a["href"].rsplit("/", 1)[1]
    d = tiny.path / f"rel-{tmp_path.name}"
    scene = variant(tiny, d, rel)
    out = tmp_path / "x.tif"
    extent(scene.items_file, scene.bbox, out)
    assert same_raster(out, plain_out)
