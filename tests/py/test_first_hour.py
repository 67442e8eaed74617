"""A newcomer's first hour: the demo says what it searched and prints the
same job as commands to paste, which reproduce its output; its collection's
extent is the scene's; misspelt --param names are refused."""
import json
import os
import shlex
import subprocess

import rasterio
from conftest import floodsql_bin, run


def test_demo_prints_commands_that_reproduce_it(tmp_path):
    demo = tmp_path / "demo"
    p = run(["demo", "--out", demo])
    err = p.stderr
    assert "searching  catalogue " + str(demo / "catalog" / "items.json") in err, err
    # results on stdout: what it wrote, the summary, the commands to paste
    lines = p.stdout.splitlines()
    assert f"wrote {demo.resolve() / 'max_flood_extent.tif'}" in lines, p.stdout
    err = p.stdout
    i = next(k for k, l in enumerate(lines) if l.startswith("the same by hand"))
    extent_cmd = (lines[i + 1].rstrip("\\") + lines[i + 2]).strip()
    sql_cmd = lines[i + 3].strip()
    # the commands run as printed: the binary the demo ran, by its full path
    # when `floodsql` is not on the PATH (as after `cargo run`), with a hint
    binary = shlex.split(extent_cmd)[0]
    assert os.path.samefile(binary, floodsql_bin()) or binary == "floodsql", err
    if binary != "floodsql":
        assert "floodsql is not on your PATH: `alias floodsql=" in lines[i], lines[i]
    assert shlex.split(extent_cmd)[1] == "extent" and shlex.split(sql_cmd)[:3] == [binary, "sql", "-c"], err
    # the extent command, run from another directory, gives the demo's bytes
    work = tmp_path / "work"
    work.mkdir()
    q = subprocess.run([*shlex.split(extent_cmd), "--quiet"], cwd=work, capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    with rasterio.open(work / "my_extent.tif") as a, rasterio.open(demo / "max_flood_extent.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        assert (a.read(1) == b.read(1)).all()
        flooded = int((b.read(1) == 1).sum())
    assert (work / "my_extent.png").stat().st_size > 0
    # the SQL command lists the slices the demo fused, as many as it
    # reported, with the pixels each saw flooded: together at least the
    # extent's (a pixel flooded in several slices counts in each)
    q = subprocess.run(shlex.split(sql_cmd), cwd=work, capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    slices = int(next(l for l in lines if l.startswith("time slices: ")).split()[-1])
    items = int(next(l for l in lines if l.startswith("items: ")).split()[-1])
    rows = [l for l in q.stdout.splitlines() if l.startswith("| 2022-")]
    assert len(rows) == slices, q.stdout
    per_slice = [int(r.split("|")[3]) for r in rows]
    assert sum(per_slice) >= flooded > 0 and max(per_slice) <= flooded, (per_slice, flooded)
    # the collection's extent covers every item and no more
    coll = json.loads((demo / "catalog" / "collection.json").read_text())
    feats = json.loads((demo / "catalog" / "items.json").read_text())["features"]
    bb = coll["extent"]["spatial"]["bbox"][0]
    assert bb == [min(f["bbox"][0] for f in feats), min(f["bbox"][1] for f in feats),
                  max(f["bbox"][2] for f in feats), max(f["bbox"][3] for f in feats)]
    t = coll["extent"]["temporal"]["interval"][0]
    assert t == [min(f["properties"]["datetime"] for f in feats),
                 max(f["properties"]["datetime"] for f in feats)]
    assert items > 0


def test_a_misspelt_param_is_refused(tmp_path):
    sql = tmp_path / "q.sql"
    sql.write_text("SELECT ${answer} AS a")
    p = run(["sql", sql, "--param", "answer=42"])
    assert "42" in p.stdout
    p = run(["sql", sql, "--param", "answer=42", "--param", "anwser=41"], check=False)
    assert p.returncode == 1 and "--param anwser is given but the SQL has no ${anwser}" in p.stderr, p.stderr
    p = run(["sql", sql], check=False)
    assert p.returncode == 1 and "${answer} is not bound" in p.stderr, p.stderr


def test_extent_defaults_to_eodc_and_gfm(tiny, tmp_path):
    """No --stac-url: EODC's STAC API is asked (no network here: the error
    names it); no --collection: GFM is searched (a catalogue of another
    collection finds nothing, and the message lists what it has)."""
    p = run(["extent", "--bbox", tiny.bbox, "--dry-run", "--set", "floodsql.http_timeout=2"], check=False)
    assert p.returncode == 1 and "https://stac.eodc.eu/api/v1" in p.stderr, p.stderr
    d = json.loads(tiny.items_file.read_text())
    for f in d["features"]:
        f["collection"] = "OTHER"
    items = tmp_path / "items.json"
    items.write_text(json.dumps(d))
    p = run(["extent", "--stac-url", items, "--bbox", tiny.bbox, "--dry-run"], check=False)
    assert p.returncode == 1, p.stderr
    assert "collection GFM" in p.stderr and "the catalogue's collections: OTHER" in p.stderr, p.stderr
    p = run(["extent", "--stac-url", items, "--collection", "", "--bbox", tiny.bbox, "--dry-run"])
    assert "items " in p.stdout
