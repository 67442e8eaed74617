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


def test_credentials_are_never_printed(tiny, tmp_path, monkeypatch):
    """A planted password in the STAC URL and in asset hrefs (a server that
    answers 404): no output of floodsql, error, warning or log line
    (FLOODSQL_LOG=trace: everything floodsql logs), shows it."""
    monkeypatch.setenv("FLOODSQL_LOG", "trace")
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
    # the log is on (header reads of the 404 hrefs were logged, masked)
    assert any("DEBUG floodsql::raster::cog: header read: http://***@" in p.stderr for p in outputs)
    for p in outputs:
        assert p.returncode == 1, p.stderr
        assert "error:" in p.stderr
        assert SECRET not in p.stdout + p.stderr, p.stderr
    assert not list(tmp_path.glob("*.tif"))


class SilentServer:
    """Accepts TCP connections and never answers."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.stop = False

        def serve():
            while not self.stop:
                try:
                    c, _ = self.sock.accept()
                    self.held.append(c)
                except OSError:
                    return
        threading.Thread(target=serve, daemon=True).start()

    def close(self):
        self.stop = True
        self.sock.close()
        for c in self.held:
            c.close()


def test_a_silent_cog_server_is_reported_within_a_minute(tiny, tmp_path):
    """A host that accepts connections and never answers: both readers stop
    with an error naming the asset and the timeout, in under 60 s, with the
    default settings; nothing written."""
    import time
    srv = SilentServer()
    try:
        d = json.loads(tiny.items_file.read_text())
        for it in d["features"]:
            a = it["assets"]["ensemble_flood_extent"]
            a["href"] = f"http://127.0.0.1:{srv.port}/cogs/" + os.path.basename(a["href"])
        items = tmp_path / "items.json"
        items.write_text(json.dumps(d))
        def run(reader):
            out = tmp_path / reader / "x.tif"
            out.parent.mkdir()
            t0 = time.time()
            p = extent(items, tiny.bbox, out, "--set", f"floodsql.reader={reader}",
                       "--set", "floodsql.allowed_hosts=127.0.0.1", check=False)
            return p, time.time() - t0, out.parent

        # both readers at once (each waits out its timeouts)
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(2) as pool:
            runs = dict(zip(("native", "gdal"), pool.map(run, ("native", "gdal"))))
        for reader, (p, took, out_dir) in runs.items():
            last = p.stderr.strip().splitlines()[-1]
            print(f"{reader}: {took:.1f} s: {last}")
            assert p.returncode == 1, p.stderr
            assert took < 60, (reader, took, last)
            assert f"127.0.0.1:{srv.port}/cogs/" in last and "timed out" in last, last
            assert os.listdir(out_dir) == []
    finally:
        srv.close()
