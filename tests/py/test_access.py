"""A hostile catalogue must not make floodsql read anything but the COGs it is
allowed to: local files outside a local catalogue's directory, GDAL virtual
paths, VRTs, FIFOs, hosts the user did not allow and redirects to them are
refused with an error naming the item and the rule, with both readers. The
catalogue is a real STAC API on 127.0.0.1; the "internal" service is a real
HTTP server on another loopback address (127.0.0.3), which must receive no
request at all."""
import json
import os
import shutil
import subprocess
import types
from pathlib import Path

import pytest
from conftest import DT_RFC, RangeServer, StacServer, run, same_raster

ASSET = "ensemble_flood_extent"
READERS = ["native", "gdal"]


def no_allowances():
    """The environment without the tests' standing allowance of their temp dir."""
    env = dict(os.environ)
    env.pop("FLOODSQL_ALLOWED_PATHS", None)
    env.pop("FLOODSQL_ALLOWED_HOSTS", None)
    return env


def extent(source, bbox, out, reader, *extra):
    return run(["extent", "--stac-url", source, "--collection", "GFM", "--bbox", bbox,
                "--datetime", DT_RFC, "--out", out, "--set", f"floodsql.reader={reader}", *extra],
               check=False, env=no_allowances(), timeout=120)


def items_with(scene, dest, href_of):
    """The scene's items with every asset href = href_of(cog file name)."""
    d = json.loads(scene.items_file.read_text())
    for it in d["features"]:
        a = it["assets"][ASSET]
        a["href"] = href_of(Path(a["href"]).name)
    dest.write_text(json.dumps(d))
    return dest


@pytest.fixture(scope="module")
def servers(tiny, tmp_path_factory):
    """The internal server (127.0.0.3) and an asset server on the
    catalogue's host (127.0.0.1, another port), both serving the scene's COGs
    and a VRT whose raw band reads /etc/passwd."""
    root = tmp_path_factory.mktemp("assets")
    for f in (tiny.path / "cogs").iterdir():
        shutil.copy(f, root / f.name)
    (root / "evil.vrt").write_text(
        '<VRTDataset rasterXSize="500" rasterYSize="500"><VRTRasterBand dataType="Byte" band="1" '
        'subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">/etc/passwd</SourceFilename>'
        '<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>500</LineOffset>'
        '</VRTRasterBand></VRTDataset>')
    internal = RangeServer(root, host="127.0.0.3")
    assets = RangeServer(root)
    yield types.SimpleNamespace(internal=internal, assets=assets, root=root)
    internal.stop()
    assets.stop()


def refused(p, out, *needles):
    assert p.returncode == 1, (p.returncode, p.stderr)
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "STAC item 'ENSEMBLE_FLOOD_" in last, p.stderr
    for n in needles:
        assert n in last, (n, last)
    assert "panicked" not in p.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


# (case, href of a COG file name, what the error says: native, gdal)
def api_cases(servers):
    i, a = servers.internal.url, servers.assets.url
    return [
        ("absolute_path", lambda n: "/etc/passwd", ["outside"], ["outside"]),
        ("file_uri", lambda n: "file:///etc/passwd", ["outside"], ["outside"]),
        ("scene_cog_by_path", lambda n: str(servers.root / n), ["outside"], ["outside"]),
        ("vsizip", lambda n: "/vsizip//tmp/x.zip/a.tif", ["virtual file system"], ["virtual file system"]),
        ("vsicurl", lambda n: f"/vsicurl/{i}/{n}", ["virtual file system"], ["virtual file system"]),
        ("internal_host", lambda n: f"{i}/{n}", ["127.0.0.3", "allowed hosts"], ["127.0.0.3", "allowed hosts"]),
        ("metadata_address", lambda n: "http://169.254.169.254/latest/meta-data/x.tif",
         ["169.254.169.254", "allowed hosts"], ["169.254.169.254"]),
        ("redirect_to_internal", lambda n: f"{a}/__redirect/{i.split('://')[1]}/{n}", ["redirect refused", "127.0.0.3"],
         ["allowed by name"]),
        ("vrt_on_catalogue_host", lambda n: f"{a}/evil.vrt", ["TIFF"], ["allowed by name"]),
        ("ftp", lambda n: f"ftp://127.0.0.3/{n}", ["unsupported scheme"], ["unsupported scheme"]),
    ]


CASES = ["absolute_path", "file_uri", "scene_cog_by_path", "vsizip", "vsicurl", "internal_host",
         "metadata_address", "redirect_to_internal", "vrt_on_catalogue_host", "ftp"]


@pytest.mark.parametrize("case", CASES)
def test_a_remote_catalogue_cannot_point_elsewhere(case, tiny, servers, tmp_path):
    name, href, native, gdal = next(c for c in api_cases(servers) if c[0] == case)
    items = items_with(tiny, tmp_path / "items.json", href)
    api = StacServer(types.SimpleNamespace(path=tiny.path, items_file=items), tmp_path)
    try:
        for reader, needles in zip(READERS, (native, gdal)):
            out = tmp_path / f"{reader}.tif"
            refused(extent(api.url, tiny.bbox, out, reader), out, *needles)
    finally:
        api.stop()
    assert servers.internal.stats()["requests"] == 0


def test_the_catalogue_hosts_assets_are_read(tiny, servers, tmp_path):
    """The allowed case: COGs on the catalogue's own host (another port) with
    the native reader; GDAL's reader needs the host named."""
    items = items_with(tiny, tmp_path / "items.json", lambda n: f"{servers.assets.url}/{n}")
    api = StacServer(types.SimpleNamespace(path=tiny.path, items_file=items), tmp_path)
    try:
        ref = tmp_path / "ref.tif"
        assert run(["extent", "--stac-url", str(tiny.items_file), "--collection", "GFM", "--bbox", tiny.bbox,
                    "--datetime", DT_RFC, "--out", ref]).returncode == 0
        out = tmp_path / "native.tif"
        p = extent(api.url, tiny.bbox, out, "native")
        assert p.returncode == 0, p.stderr
        assert same_raster(out, ref)
        out = tmp_path / "gdal.tif"
        p = extent(api.url, tiny.bbox, out, "gdal", "--set", "floodsql.allowed_hosts=127.0.0.1")
        assert p.returncode == 0, p.stderr
        assert same_raster(out, ref)
    finally:
        api.stop()
    assert servers.internal.stats()["requests"] == 0


@pytest.mark.parametrize("reader", READERS)
def test_a_local_catalogue_reads_below_its_directory_only(tiny, tmp_path, reader):
    cat = tmp_path / "cat"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny.path / "cogs", elsewhere)
    cat.mkdir()
    items = items_with(tiny, cat / "items.json", lambda n: str(elsewhere / n))
    out = tmp_path / "x.tif"
    refused(extent(str(items), tiny.bbox, out, reader), out, "outside the catalogue's directory",
            "floodsql.allowed_paths")
    # a link inside the catalogue's directory to a file outside it
    (cat / "cogs").mkdir()
    for f in elsewhere.iterdir():
        (cat / "cogs" / f.name).symlink_to(f)
    items = items_with(tiny, cat / "items.json", lambda n: f"cogs/{n}")
    refused(extent(str(items), tiny.bbox, out, reader), out, "outside the catalogue's directory")
    # the user widens the rule
    p = extent(str(items), tiny.bbox, out, reader, "--set", f"floodsql.allowed_paths={elsewhere}")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("reader", READERS)
def test_vrts_and_fifos_in_the_catalogue_directory_are_not_read(tiny, servers, tmp_path, reader):
    cat = tmp_path / "cat"
    cat.mkdir()
    shutil.copy(servers.root / "evil.vrt", cat / "evil.vrt")
    items = items_with(tiny, cat / "items.json", lambda n: "evil.vrt")
    out = tmp_path / "x.tif"
    p = extent(str(items), tiny.bbox, out, reader)
    refused(p, out, "TIFF" if reader == "native" else "GeoTIFF")
    assert "root:" not in p.stderr
    os.mkfifo(cat / "pipe.tif")
    items = items_with(tiny, cat / "items.json", lambda n: "pipe.tif")
    refused(extent(str(items), tiny.bbox, out, reader), out, "not a regular file")
