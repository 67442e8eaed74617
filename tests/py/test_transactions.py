"""One output transaction for every writer. For `series`, `zonal`,
`polygons` and `extent --update`:

- a run whose last output fails (a directory stands where the file goes, so
  its rename fails after the others were renamed) leaves every output file
  that existed before byte-identical and no new file;
- a run stopped by SIGINT while it writes (frozen with SIGSTOP the moment
  one of its staged files appears, signalled, resumed) either stops (exit
  130: every earlier file byte-identical, nothing new) or had already
  committed (exit 0: every output new) — never a mix, never a temp file.

The stage is found by watching the directory of a real run (no hooks)."""
import os
import signal
import subprocess

import pytest

from conftest import DT_RFC, extent, floodsql_bin, run, signal_at

FIRST_HALF = "2022-09-01T00:00:00Z/2022-09-15T00:00:00Z"


def snapshot(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def raster(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("class") / "extent.tif"
    extent(tiny.items_file, tiny.bbox, out)
    return out


def commands(kind, tiny, tiny_api, raster, d):
    """(the command, its outputs in commit order) for `kind` writing into `d`."""
    scan = ["--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC]
    if kind == "series":
        outs = [d / "s.csv", d / "s.parquet", d / "s.png"]
        return ["series", *scan, "--csv", outs[0], "--parquet", outs[1], "--png", outs[2]], outs
    if kind == "zonal":
        outs = [d / "z.csv", d / "z.parquet"]
        return ["zonal", *scan, "--regions", tiny.path / "regions.geojson", "--csv", outs[0],
                "--parquet", outs[1]], outs
    if kind == "polygons":
        outs = [d / "p.parquet", d / "p.geojson"]
        return ["polygons", raster, "--parquet", outs[0], "--geojson", outs[1]], outs
    assert kind == "update"
    # an earlier extent of the first half of the month, updated with the rest
    tif = d / "x.tif"
    extent(tiny_api, tiny.bbox, tif, datetime=FIRST_HALF)
    return (["extent", "--stac-url", tiny_api, "--collection", "GFM", "--bbox", tiny.bbox,
             "--datetime", DT_RFC, "--update", tif, "--png", d / "x.png"],
            [tif, d / "x.png", d / "x.stac.json"])


def previous(outs, last_fails):
    """Files of an earlier run at every output (the last one a directory
    when it must fail); returns what the directory held."""
    for p in outs:
        if p.exists():
            continue  # --update's own earlier result
        if p == outs[-1] and last_fails:
            p.mkdir()
            (p / "keep").write_text("mine")
        else:
            p.write_bytes(b"yesterday's " + p.name.encode())


KINDS = ["series", "zonal", "polygons", "update"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_last_output_puts_every_file_back(kind, tiny, tiny_api, raster, tmp_path):
    args, outs = commands(kind, tiny, tiny_api, raster, tmp_path)
    if kind == "update":
        # the PNG is the output the update cannot write; the GeoTIFF and the
        # lineage item (renamed before and after it) must stay as they were
        outs = [outs[0], outs[2], outs[1]]
    previous(outs, last_fails=True)
    before = snapshot(tmp_path)
    p = run(args, check=False)
    assert p.returncode == 1, p.stderr
    assert "panicked" not in p.stderr and outs[-1].name in p.stderr, p.stderr
    assert snapshot(tmp_path) == before, f"{kind}: files changed"
    assert sorted(os.listdir(tmp_path)) == sorted([*before, outs[-1].name]), os.listdir(tmp_path)
    assert os.listdir(outs[-1]) == ["keep"]


def staged(names, outs):
    """Whether a staged temp file (`.NAME.tmp-PID…`) of an output is there."""
    ours = {p.name for p in outs}
    return any(n.startswith(".") and ".tmp-" in n and n[1:].split(".tmp-")[0] in ours for n in names)


@pytest.mark.parametrize("kind", KINDS)
def test_sigint_while_writing_is_all_or_nothing(kind, tiny, tiny_api, raster, tmp_path):
    args, outs = commands(kind, tiny, tiny_api, raster, tmp_path)
    previous(outs, last_fails=False)
    before = snapshot(tmp_path)
    p = subprocess.Popen([floodsql_bin(), "--quiet", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)

    def interrupt(p):
        # frozen mid-write, signalled, resumed
        for sig in (signal.SIGSTOP, signal.SIGINT, signal.SIGCONT):
            p.send_signal(sig)

    signal_at(p, tmp_path, lambda names: staged(names, outs), interrupt, "writing")
    _, err = p.communicate(timeout=120)
    print(f"{kind}: exit {p.returncode}")
    after = snapshot(tmp_path)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n], os.listdir(tmp_path)
    assert sorted(after) == sorted(before), "a new file or a file gone"
    changed = {n for n in before if after[n] != before[n]}
    if p.returncode == 130:
        assert "interrupted by SIGINT" in err and not changed, (changed, err)
    else:
        # the signal came after the commit: every output is the new one
        assert p.returncode == 0 and changed == set(before), (p.returncode, changed, err)
