"""Faults a user or a catalogue can cause, each with a clear error, a
non-zero exit and nothing written: outputs that collide with each other or
with an input, and credentials that must never be printed."""
import json
import os
from pathlib import Path

from conftest import RangeServer, StacServer, extent

SECRET = "pl4nted-s3cret"


def test_two_outputs_on_one_file_are_refused(tiny, tmp_path):
    out = tmp_path / "x.tif"
    p = extent(tiny.items_file, tiny.bbox, out, "--parquet", str(tmp_path / "." / "x.tif"), check=False)
    assert p.returncode == 1, p.stderr
    assert "given for two outputs" in p.stderr and "panicked" not in p.stderr
    assert os.listdir(tmp_path) == []


def test_an_output_on_an_input_cog_is_refused(tiny, tmp_path):
    # an item of the query whose COG is `victim`: take the first non-decoy
    items = json.loads(tiny.items_file.read_text())["features"]
    used = [Path(it["assets"]["ensemble_flood_extent"]["href"].removeprefix("file://")).name
            for it in items if "DECOY" not in it["id"]]
    victim = tiny.path / "cogs" / used[0]
    before = victim.read_bytes()
    p = extent(tiny.items_file, tiny.bbox, victim, check=False)
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "is an input of the query" in last and victim.name in last, last
    assert victim.read_bytes() == before


def test_credentials_are_never_printed(tiny, tmp_path):
    """A planted password in the STAC URL and in asset hrefs (a server that
    answers 404): no output of floodsql, error or warning, shows it."""
    outputs = []
    # the STAC API URL (nothing listens there)
    p = extent(f"http://user:{SECRET}@127.0.0.1:9/api", tiny.bbox, tmp_path / "a.tif", check=False)
    outputs.append(p)
    # asset hrefs with credentials, on an allowed host that has no such files
    srv = RangeServer(tmp_path)
    try:
        d = json.loads(tiny.items_file.read_text())
        for it in d["features"]:
            it["assets"]["ensemble_flood_extent"]["href"] = \
                f"http://user:{SECRET}@127.0.0.1:{srv.port}/missing.tif"
        items = tmp_path / "items.json"
        items.write_text(json.dumps(d))
        for reader in ("native", "gdal"):
            outputs.append(extent(items, tiny.bbox, tmp_path / f"{reader}.tif", "--set",
                                  f"floodsql.reader={reader}", "--set",
                                  "floodsql.allowed_hosts=127.0.0.1", check=False))
        # the same through a STAC API
        api = StacServer(type("S", (), {"path": tiny.path, "items_file": items})(), tmp_path)
        try:
            outputs.append(extent(api.url, tiny.bbox, tmp_path / "api.tif", "--set",
                                  "floodsql.allowed_hosts=127.0.0.1", check=False))
        finally:
            api.stop()
    finally:
        srv.stop()
    for p in outputs:
        assert p.returncode == 1, p.stderr
        assert "error:" in p.stderr
        assert SECRET not in p.stdout + p.stderr, p.stderr
    assert not list(tmp_path.glob("*.tif"))
