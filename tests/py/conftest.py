"""Fixtures for the end-to-end tests: the floodsql binary, synthetic GFM
scenes, and a real STAC API server (`rustac serve`) per scene."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PY = sys.executable
DT = ("2022-09-01T00:00:00", "2022-10-01T00:00:00")
DT_RFC = f"{DT[0]}Z/{DT[1]}Z"


def floodsql_bin():
    b = os.environ.get("FLOODSQL_BIN")
    if not b:
        target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
        b = str(Path(target) / "debug" / "floodsql")
    assert Path(b).exists(), f"floodsql binary not found at {b}: build it or set FLOODSQL_BIN"
    return b


def run(args, check=True, **kw):
    p = subprocess.run([floodsql_bin(), "--quiet", *map(str, args)], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"floodsql {args} failed ({p.returncode}):\n{p.stderr}")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scene:
    def __init__(self, path, info):
        self.path = Path(path)
        self.items_file = self.path / "items.json"
        self.bbox = info["bbox"]
        self.items = json.loads(self.items_file.read_text())["features"]


def write_scene(dest, doc, bbox):
    """A scene at `dest` from an edited ItemCollection `doc` (items.json and
    items.ndjson; collection.json must be there already)."""
    dest = Path(dest)
    (dest / "items.json").write_text(json.dumps(doc))
    (dest / "items.ndjson").write_text("".join(json.dumps(f) + "\n" for f in doc["features"]))
    return Scene(dest, {"bbox": bbox})


def make_scene(dest, *args):
    out = run(["synth", "--out", dest, *args]).stdout
    bbox = [ln.split(": ")[1] for ln in out.splitlines() if ln.startswith("bbox:")][0]
    return Scene(dest, {"bbox": bbox})


def terminate(proc, grace=10):
    """Stops a server process: SIGTERM, then SIGKILL after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()


def signal_at(proc, d, seen, send, what, seconds=120):
    """Watches directory `d` while `proc` runs; the moment `seen(names)` is
    true — names: what the directory holds, and every file created in it
    since (inotify: a file that lives a millisecond is seen too) — calls
    `send(proc)` (the test signals it). Fails (process killed) when the run
    ends, or hangs, before that stage."""
    import ctypes
    import ctypes.util
    import select
    import struct
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0 and libc.inotify_add_watch(fd, str(d).encode(), 0x100) >= 0  # IN_CREATE
    try:
        deadline = time.time() + seconds
        created = []
        while time.time() < deadline:
            # the process's last events are read even when it has just ended
            ended = proc.poll() is not None
            if select.select([fd], [], [], 0.001)[0]:
                buf = os.read(fd, 1 << 16)
                i = 0
                while i < len(buf):
                    _, _, _, n = struct.unpack_from("iIII", buf, i)
                    created.append(buf[i + 16:i + 16 + n].rstrip(b"\0").decode())
                    i += 16 + n
            if seen(os.listdir(d) + created):
                send(proc)  # does nothing once the process has ended
                return
            if ended:
                break
    finally:
        os.close(fd)
    proc.kill()
    pytest.fail(f"the run ended (or hung) before {what}: {proc.returncode} {proc.communicate()[1]}")


def stderr_within(client, seconds, what):
    """The client's stderr once it ends; the test fails (client killed) when
    it is still running `seconds` after `what`."""
    try:
        return client.communicate(timeout=seconds)[1]
    except subprocess.TimeoutExpired:
        client.kill()
        pytest.fail(f"client still running {seconds} s after {what}")


def wait_http(url, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited")
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start in 60 s")


class RangeServer:
    """tests/py/range_server.py: files under `root` by HTTP Range requests,
    on `host` (any loopback address), counting requests."""

    def __init__(self, root, delay_ms=0, host="127.0.0.1", env=None):
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.proc = subprocess.Popen([PY, str(HERE / "range_server.py"), str(root), str(self.port),
                                      str(delay_ms), host], env=dict(os.environ, **(env or {})))
        wait_http(self.url + "/__stats", self.proc, "range server")

    def stats(self):
        return json.loads(urllib.request.urlopen(self.url + "/__stats").read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class StacServer:
    def __init__(self, scene, tmp):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rustac = shutil.which("rustac") or str(Path(PY).parent / "rustac")
        self.log = open(Path(tmp) / f"rustac-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [rustac, "serve", "--addr", f"127.0.0.1:{self.port}", "--create-collections",
             str(scene.path / "collection.json"), str(scene.items_file)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/", timeout=2).read()
                return
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"rustac serve exited: {Path(self.log.name).read_text()}")
                time.sleep(0.2)
        raise RuntimeError("rustac serve did not start in 60 s")

    def stop(self):
        terminate(self.proc)
        self.log.close()


class PgstacServer:
    """stac-fastapi-pgstac, the server behind most public STAC APIs, on a
    throwaway PostgreSQL + PostGIS cluster (Debian's) with the scene loaded by
    pypgstac. It pages with tokens, returns items newest first and drops null
    fields (`proj:epsg: null`)."""

    def __init__(self, scene, tmp):
        import glob
        import tempfile
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            pytest.fail("PostgreSQL not installed (tests/run.sh installs postgresql-15 and postgresql-15-postgis-3)")
        pg = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="floodsql-pgstac-"))
        as_pg = []
        if os.geteuid() == 0:       # PostgreSQL refuses to run as root
            shutil.chown(self.dir, "postgres")
            as_pg = ["runuser", "-u", "postgres", "--"]
        self.pg_port = free_port()
        self.log = open(Path(tmp) / f"pgstac-{self.pg_port}.log", "w")
        data = self.dir / "data"
        subprocess.run([*as_pg, str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, stdout=self.log, stderr=subprocess.STDOUT)
        subprocess.run([*as_pg, str(pg / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "pg.log"), "-w", "-o",
                        f"-p {self.pg_port} -k {self.dir} -c listen_addresses=127.0.0.1", "start"],
                       check=True, stdout=self.log, stderr=subprocess.STDOUT)
        self._pg = (as_pg, pg, data)
        dsn = f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"
        bin_dir = Path(PY).parent
        for args in (["migrate"], ["load", "collections", str(scene.path / "collection.json")],
                     ["load", "items", str(scene.path / "items.ndjson")]):
            extra = ["--method", "upsert"] if args[0] == "load" else []
            subprocess.run([str(bin_dir / "pypgstac"), *args, "--dsn", dsn, *extra], check=True,
                           stdout=self.log, stderr=subprocess.STDOUT)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PGUSER="postgres", PGPASSWORD="unused", PGHOST="127.0.0.1",
                   PGPORT=str(self.pg_port), PGDATABASE="postgres")
        self.proc = subprocess.Popen(
            [str(bin_dir / "uvicorn"), "stac_fastapi.pgstac.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port)], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.url + "/collections", self.proc, "stac-fastapi-pgstac")

    def requests(self, method="POST", path="/search"):
        """Requests the server logged (uvicorn's access log)."""
        return Path(self.log.name).read_text().count(f'"{method} {path}')

    def stop(self):
        terminate(self.proc)
        as_pg, pg, data = self._pg
        subprocess.run([*as_pg, str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       stdout=self.log, stderr=subprocess.STDOUT)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def allow_scene_files(tmp_path_factory):
    """The scenes' COGs live in pytest's temp dirs and the STAC API serves
    their file:// hrefs: floodsql's read policy allows local files below a
    local catalogue only, so the tests allow that directory the way a user
    would (test_access.py checks the refusals, without it)."""
    os.environ["FLOODSQL_ALLOWED_PATHS"] = str(tmp_path_factory.getbasetemp())
    yield
    os.environ.pop("FLOODSQL_ALLOWED_PATHS", None)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("tiny"), "--scale", "tiny")


@pytest.fixture(scope="session")
def tiny_masks(tmp_path_factory):
    """The tiny scene with GFM's reference_water_mask and exclusion_mask assets."""
    return make_scene(tmp_path_factory.mktemp("tinymasks"), "--scale", "tiny", "--masks")


@pytest.fixture(scope="session")
def tiny_masks_api(tiny_masks, tmp_path_factory):
    s = StacServer(tiny_masks, tmp_path_factory.mktemp("srv"))
    yield s.url
    s.stop()


@pytest.fixture(scope="session")
def medium(tmp_path_factory):
    """Tutorial-shaped: AOI over 1 degree, 3000 px tiles, 12 acquisitions."""
    return make_scene(tmp_path_factory.mktemp("medium"), "--scale", "medium")


@pytest.fixture(scope="session")
def tiny_api(tiny, tmp_path_factory):
    s = StacServer(tiny, tmp_path_factory.mktemp("srv"))
    yield s.url
    s.stop()


@pytest.fixture(scope="session")
def medium_api(medium, tmp_path_factory):
    s = StacServer(medium, tmp_path_factory.mktemp("srv"))
    yield s.url
    s.stop()


def extent(source, bbox, out, *extra, check=True, datetime=DT_RFC):
    args = ["extent", "--stac-url", source, "--collection", "GFM", "--bbox", bbox,
            "--asset", "ensemble_flood_extent", "--out", out, *extra]
    if datetime:
        args += ["--datetime", datetime]
    return run(args, check=check)


def reference(api, bbox, out):
    subprocess.run([PY, str(HERE / "reference.py"), api, bbox, DT[0], DT[1], str(out)], check=True,
                   capture_output=True)
    import numpy as np
    return np.load(out)


def peer(api, bbox, out):
    p = subprocess.run([PY, str(HERE / "peer_tutorial.py"), api, bbox, DT[0], DT[1], str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out


PROVENANCE_TAGS = {"FLOODSQL_SOURCE", "FLOODSQL_QUERY", "TIFFTAG_IMAGEDESCRIPTION"}


def same_raster(a, b):
    """Two floodsql COGs hold the same raster: pixels (and every overview),
    grid, CRS, layout, band description, colour table and metadata — all but
    the provenance tags that name the catalogue and the query, which differ
    when the same COGs are read through another source (a file, HTTP, S3)."""
    import numpy as np
    import rasterio
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.profile == y.profile, (x.profile, y.profile)
        assert np.array_equal(x.read(1), y.read(1))
        assert x.overviews(1) == y.overviews(1)
        for f in x.overviews(1):
            shape = (1, x.height // f, x.width // f)
            assert np.array_equal(x.read(out_shape=shape), y.read(out_shape=shape)), f
        assert x.descriptions == y.descriptions
        assert x.colormap(1) == y.colormap(1)
        ta = {k: v for k, v in x.tags().items() if k not in PROVENANCE_TAGS}
        tb = {k: v for k, v in y.tags().items() if k not in PROVENANCE_TAGS}
        assert ta == tb, (ta, tb)
    return True
