"""SIGINT / SIGTERM while a run writes its outputs: the query stops, every temp
file goes and no output of the run is left (they are renamed into place
together, at the end), and the exit status is 130 / 143. The stage a signal lands in is chosen by watching
the output directory of a real run (no hooks in floodsql)."""
import os
import signal
import subprocess

import pytest
from conftest import DT_RFC, floodsql_bin, signal_at


def start(scene, out_dir):
    return subprocess.Popen(
        [floodsql_bin(), "--quiet", "extent", "--stac-url", str(scene.items_file), "--collection", "GFM",
         "--bbox", scene.bbox, "--datetime", DT_RFC, "--out", str(out_dir / "x.tif"),
         "--parquet", str(out_dir / "x.parquet"), "--png", str(out_dir / "x.png")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# stage: when the directory shows it
STAGES = {
    # chunks are being written (the COG's tile store and the Parquet temp exist)
    "writing_chunks": lambda names: any(n.endswith(".tiles") for n in names),
    # the COG is being written from its tiles (the Parquet file is staged)
    "making_the_cog": lambda names: any(n.startswith(".x.tif.tmp-") and not n.endswith((".tiles", ".spill"))
                                        for n in names),
    # the PNG is being drawn (the COG is staged)
    "making_the_png": lambda names: any(n.startswith(".x.png.tmp-") for n in names),
}


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_signal_leaves_nothing_behind(stage, sig, code, medium, tmp_path):
    p = start(medium, tmp_path)
    signal_at(p, tmp_path, STAGES[stage], lambda p: p.send_signal(sig), f"stage {stage}")
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, (p.returncode, err)
    assert "interrupted by" in err and "panicked" not in err, err
    assert os.listdir(tmp_path) == [], f"left behind at {stage}: {os.listdir(tmp_path)}"


def test_temp_files_of_dead_runs_are_removed_by_the_next(tiny, tmp_path):
    dead = 2 ** 22 + 12345  # above Linux's default pid_max: no such process
    stale = [f".x.tif.tmp-{dead}.tiles", f".x.tif.tmp-{dead}.spill", f".x.tif.tmp-{dead}",
             f".x.parquet.tmp-{dead}"]
    live = f".x.tif.tmp-{os.getpid()}.tiles"  # a run still going: kept
    for n in stale + [live, "unrelated.tif"]:
        (tmp_path / n).write_bytes(b"x")
    p = subprocess.run(
        [floodsql_bin(), "--quiet", "extent", "--stac-url", str(tiny.items_file), "--collection", "GFM",
         "--bbox", tiny.bbox, "--datetime", DT_RFC, "--out", str(tmp_path / "x.tif"),
         "--parquet", str(tmp_path / "x.parquet")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path)) == sorted([live, "unrelated.tif", "x.tif", "x.parquet", "x.stac.json"])
