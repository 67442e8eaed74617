"""floodsql on a real Ballista cluster: one `floodsql scheduler` and two
`floodsql executor` processes on random localhost ports. The distributed
answer must be byte-for-byte the local one; executors of another floodsql
version are refused; losing an executor mid-query still gives the right answer."""
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from conftest import DT_RFC, extent, floodsql_bin, free_port, run, stderr_within


def _get(url, timeout=2):
    return json.loads(urllib.request.urlopen(url, timeout=timeout).read())


class Cluster:
    """A scheduler and executors as real processes; logs in `tmp`."""

    def __init__(self, tmp, executors=2, executor_env=None, scheduler_env=None, slots=2,
                 default_timeouts=False):
        self.tmp = Path(tmp)
        self.port = free_port()
        self.url = f"df://127.0.0.1:{self.port}"
        self.rest = f"http://127.0.0.1:{self.port}"
        self.procs, self.logs = [], []
        self.scheduler = self._spawn(
            "scheduler", ["scheduler", "--bind", f"127.0.0.1:{self.port}",
                          *([] if default_timeouts else ["--executor-timeout", "10"])],
            scheduler_env)
        self._wait(lambda: urllib.request.urlopen(self.rest + "/healthz", timeout=1).status == 200,
                   "scheduler health check")
        self.executors = []
        for i in range(executors):
            flight, grpc = free_port(), free_port()
            p = self._spawn(f"executor{i}", [
                "executor", "--scheduler", f"127.0.0.1:{self.port}", "--bind", f"127.0.0.1:{flight}",
                "--grpc-port", str(grpc), "--slots", str(slots), "--work-dir", str(self.tmp / f"work{i}"),
                *([] if default_timeouts else ["--heartbeat-interval", "2"])], executor_env)
            self.executors.append((p, self.logs[-1], f"127.0.0.1:{flight}"))
        self._wait(lambda: len(_get(self.rest + "/api/executors")) >= executors,
                   f"{executors} executors registered")

    def _spawn(self, name, args, env_extra):
        log = self.tmp / f"{name}.log"
        env = dict(os.environ, **(env_extra or {}))
        p = subprocess.Popen([floodsql_bin(), *args], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        self.logs.append(log)
        return p

    def _wait(self, ok, what, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p, log in zip(self.procs, self.logs):
                if p.poll() is not None:
                    raise RuntimeError(f"{log.name} exited ({p.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if ok():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"cluster: no {what} within {timeout} s")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def start_medium_extent(cluster_url, medium, medium_api, out, chunk=300):
    """The medium scene's extent on a cluster, in `chunk` px chunks over 32
    partitions (long enough to be interrupted), as a running client process."""
    return subprocess.Popen(
        [floodsql_bin(), "--quiet", "extent", "--stac-url", medium_api, "--collection", "GFM",
         "--bbox", medium.bbox, "--datetime", DT_RFC, "--out", str(out), "--chunk", str(chunk),
         "--cluster", cluster_url, "--partitions", "32"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


def version():
    return subprocess.run([floodsql_bin(), "--version"], capture_output=True, text=True,
                          check=True).stdout.split()[-1]


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform.to_gdal(), ds.crs.to_wkt()


def chunk_table(path):
    t = pq.read_table(path).to_pylist()
    return sorted(t, key=lambda r: (r["y_off"], r["x_off"]))


def test_extent_on_cluster_is_identical_to_local(cluster, tiny, tiny_api, tmp_path):
    la, lp = tmp_path / "local.tif", tmp_path / "local.parquet"
    ca, cp = tmp_path / "cluster.tif", tmp_path / "cluster.parquet"
    extent(tiny_api, tiny.bbox, la, "--parquet", lp, "--chunk", "200")
    marks = [log.stat().st_size for _, log, _ in cluster.executors]
    r = extent(tiny_api, tiny.bbox, ca, "--parquet", cp, "--chunk", "200",
               "--cluster", cluster.url, "--partitions", "8")
    assert np.array_equal(read(la)[0], read(ca)[0])
    assert read(la)[1:] == read(ca)[1:]
    assert read(ca)[0].sum() > 0
    assert la.read_bytes() == ca.read_bytes()          # the COG writer is deterministic
    assert chunk_table(lp) == chunk_table(cp)
    # the scan ran on both executors, and each says which tasks it ran
    for _, log, name in cluster.executors:
        text = log.read_text()[marks.pop(0):]
        assert f"executor {name}: [TID " in text and "scan partition" in text, log.read_text()[-2000:]
    assert "items: " in r.stdout


def test_sql_queries_on_cluster_equal_local(cluster, tiny, tiny_api, tmp_path):
    fc = f"flood_chunks('{tiny_api}', 'GFM', '{tiny.bbox}', '{DT_RFC}', 'ensemble_flood_extent', 256)"
    queries = [
        f"SELECT count(*) AS n, sum(items) AS items, min(datetime) AS t0, max(datetime) AS t1 FROM {fc}",
        f"SELECT chunk_col, chunk_row, count(*) AS slices, pixel_count(flood_max_extent(pixels)) AS flooded "
        f"FROM {fc} GROUP BY chunk_col, chunk_row ORDER BY chunk_row, chunk_col",
        f"SELECT id, datetime FROM stac_items('{tiny_api}', 'GFM', '{tiny.bbox}', '{DT_RFC}') ORDER BY id",
        f"SELECT date_trunc('day', datetime) AS day, count(*) FROM {fc} GROUP BY 1 ORDER BY 1",
        # true areas computed on the executors (sums rounded: their order may differ)
        f"SELECT date_trunc('day', datetime) AS day, round(sum(area_km2(pixels, pixel_areas)), 6) AS f, "
        f"round(sum(observed_km2(pixels, pixel_areas)), 6) AS o, round(max(grid_km2(pixel_areas)), 6) AS g "
        f"FROM {fc} GROUP BY 1 ORDER BY 1",
    ]
    for q in queries:
        local = run(["sql", "-c", q]).stdout
        remote = run(["sql", "-c", q, "--cluster", cluster.url, "--partitions", "4"]).stdout
        assert local == remote, q
        assert len(local.splitlines()) > 4
    for fn in ["flood_count(pixels)", "valid_count(pixels)", "flood_extent_states(pixels)",
               "flood_first_date(pixels, datetime)", "flood_last_date(pixels, datetime)",
               "flood_frequency(pixels)"]:
        q = (f"SELECT x_off, y_off, width, height, {fn} AS pixels FROM {fc} "
             f"GROUP BY x_off, y_off, width, height")
        name = fn.split("(")[0]
        a, b = tmp_path / f"{name}-local.tif", tmp_path / f"{name}-cluster.tif"
        run(["sql", "-c", q, "--out", a])
        run(["sql", "-c", q, "--out", b, "--cluster", cluster.url])
        assert a.read_bytes() == b.read_bytes(), fn
        assert read(b)[0].max() > 1


@pytest.mark.parametrize("query,needle", [
    ("SELECT no_such_fn(pixels) FROM flood_chunks('{api}', 'GFM', '{bbox}', '{dt}', 'ensemble_flood_extent')",
     "no_such_fn"),
    ("SELECT * FROM no_such_table", "no_such_table"),
])
def test_unknown_function_or_table_on_cluster(cluster, tiny, tiny_api, query, needle):
    q = query.format(api=tiny_api, bbox=tiny.bbox, dt=DT_RFC)
    p = run(["sql", "-c", q, "--cluster", cluster.url], check=False, timeout=60)
    assert p.returncode != 0
    assert needle in p.stderr and p.stderr.startswith("error:"), p.stderr


def test_bad_cluster_address(tiny, tiny_api, tmp_path):
    out = tmp_path / "x.tif"
    for url, needle in [("127.0.0.1:1", "invalid cluster URL"),
                        (f"df://127.0.0.1:{free_port()}", "cannot reach the floodsql scheduler")]:
        p = extent(tiny_api, tiny.bbox, out, "--cluster", url, check=False)
        assert p.returncode == 1 and needle in p.stderr, p.stderr
        assert not out.exists()


@pytest.mark.parametrize("role", ["scheduler", "executor"])
def test_process_of_another_version_refuses(role, tiny, tiny_api, tmp_path):
    """A scheduler refuses the client's session, an executor its tasks."""
    other = {"FLOODSQL_VERSION_OVERRIDE": "9.9.9-other"}
    c = Cluster(tmp_path, executors=1, **{f"{role}_env": other})
    try:
        out = tmp_path / "x.tif"
        t0 = time.time()
        p = extent(tiny_api, tiny.bbox, out, "--cluster", c.url, check=False)
        assert time.time() - t0 < 60
        assert p.returncode == 1
        assert "version mismatch" in p.stderr and f"the {role} refuses" in p.stderr, p.stderr
        assert "9.9.9-other" in p.stderr and version() in p.stderr, p.stderr
        assert not out.exists()
    finally:
        c.stop()


def test_losing_an_executor_mid_query_still_gives_the_right_answer(medium, medium_api, tmp_path):
    """Ballista re-runs the tasks of a lost executor: with one executor left
    the query completes, byte-identical to the local run, within the README's
    promise (60 s) — with the default heartbeat and timeout flags."""
    local = tmp_path / "local.tif"
    extent(medium_api, medium.bbox, local, "--chunk", "300")
    c = Cluster(tmp_path, executors=2, slots=1, default_timeouts=True)
    try:
        out = tmp_path / "cluster.tif"
        client = start_medium_extent(c.url, medium, medium_api, out)
        victim, log, _ = c.executors[1]
        deadline = time.time() + 60
        while "Finished task" not in log.read_text() and time.time() < deadline and client.poll() is None:
            time.sleep(0.05)
        assert "Finished task" in log.read_text(), "the executor to kill never finished a task"
        killed_while_running = client.poll() is None
        victim.send_signal(signal.SIGKILL)
        t_kill = time.time()
        err = stderr_within(client, 60, "an executor was killed")
        after = time.time() - t_kill
        print(f"killed while running: {killed_while_running}; client ended {after:.1f} s "
              f"after, exit {client.returncode}: {err.strip()[:300]}")
        assert killed_while_running, "the query ended before an executor could be lost"
        assert client.returncode == 0, err
        assert out.read_bytes() == local.read_bytes()
        assert not list(tmp_path.glob(".*.tmp*"))
    finally:
        c.stop()


def test_a_signal_on_the_client_cancels_its_cluster_job(cluster, medium, medium_api, tmp_path):
    """Ctrl-C on the client: exit 130, nothing written, and the job is
    cancelled on the scheduler rather than left running."""
    before = {j["job_id"] for j in _get(cluster.rest + "/api/jobs")}
    out = tmp_path / "out"
    out.mkdir()
    # small chunks: the job must outlast the half second below (windows of
    # constant blocks cost next to nothing now, so 300 px chunks finish first)
    client = start_medium_extent(cluster.url, medium, medium_api, out / "x.tif", chunk=100)
    job, deadline = None, time.time() + 60
    while job is None and time.time() < deadline and client.poll() is None:
        running = [j for j in _get(cluster.rest + "/api/jobs")
                   if j["job_id"] not in before and j["status"] == "Running"]
        job = running[0]["job_id"] if running else None
        time.sleep(0.05)
    assert job is not None, "the job never ran"
    time.sleep(0.5)  # the client has polled the job's id by now
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=60)
    assert client.returncode == 130, err
    assert f"cancelled cluster job {job}" in err, (err, open(cluster.logs[0]).read()[-3000:])
    assert os.listdir(out) == []
    deadline = time.time() + 30
    status = None
    while time.time() < deadline:
        status = next(j for j in _get(cluster.rest + "/api/jobs") if j["job_id"] == job)
        if status["status"] not in ("Queued", "Running"):
            break
        time.sleep(0.2)
    assert status["status"] == "Failed", status
    # the cluster still works after a cancelled job
    res = run(["extent", "--stac-url", medium_api, "--collection", "GFM", "--bbox", medium.bbox,
               "--datetime", DT_RFC, "--out", str(tmp_path / "after.tif"), "--cluster", cluster.url])
    assert res.returncode == 0


def test_credentials_never_reach_cluster_logs_or_messages(tmp_path_factory, tiny):
    """Asset hrefs carrying a password (served by a range server that ignores
    it, and missing ones): the run on a cluster succeeds and the failing one
    fails clearly, and neither the client's output nor any scheduler or
    executor log shows the password."""
    from conftest import RangeServer
    secret = "pl4nted-clust3r-s3cret"
    tmp = tmp_path_factory.mktemp("secret")
    c = Cluster(tmp)
    srv = RangeServer(tiny.path)
    try:
        d = json.loads(tiny.items_file.read_text())
        good, bad = json.loads(json.dumps(d)), json.loads(json.dumps(d))
        for g, b in zip(good["features"], bad["features"]):
            name = os.path.basename(g["assets"]["ensemble_flood_extent"]["href"])
            g["assets"]["ensemble_flood_extent"]["href"] = \
                f"http://user:{secret}@127.0.0.1:{srv.port}/cogs/{name}"
            b["assets"]["ensemble_flood_extent"]["href"] = \
                f"http://user:{secret}@127.0.0.1:{srv.port}/missing/{name}"
        (tmp / "good.json").write_text(json.dumps(good))
        (tmp / "bad.json").write_text(json.dumps(bad))
        runs = []
        for name in ("good", "bad"):
            runs.append(extent(tmp / f"{name}.json", tiny.bbox, tmp / f"{name}.tif", "--cluster", c.url,
                               "--set", "floodsql.allowed_hosts=127.0.0.1", check=False))
        assert runs[0].returncode == 0, runs[0].stderr
        assert runs[1].returncode == 1 and "/missing/" in runs[1].stderr, runs[1].stderr
        assert srv.stats()["requests"] > 0
    finally:
        srv.stop()
        c.stop()
    texts = [r.stdout + r.stderr for r in runs] + [Path(l).read_text() for l in c.logs]
    assert all(secret not in t for t in texts), [t[t.find(secret) - 200:][:400] for t in texts if secret in t]
    # the logs did record the work (the check above is not vacuous)
    assert any("Finished task" in Path(l).read_text() for l in c.logs)


def test_losing_the_scheduler_mid_query_fails_clearly(medium, medium_api, tmp_path):
    """The scheduler killed while a job runs: the client stops with an error
    naming the cluster, within a minute, and writes nothing."""
    c = Cluster(tmp_path, executors=1, slots=1)
    try:
        out = tmp_path / "out"
        out.mkdir()
        client = start_medium_extent(c.url, medium, medium_api, out / "x.tif")
        log = c.executors[0][1]
        deadline = time.time() + 60
        while "Finished task" not in log.read_text() and time.time() < deadline and client.poll() is None:
            time.sleep(0.05)
        assert client.poll() is None, "the query ended before the scheduler could be lost"
        c.scheduler.send_signal(signal.SIGKILL)
        err = stderr_within(client, 60, "the scheduler was killed")
        last = err.strip().splitlines()[-1]
        print(last)
        assert client.returncode == 1, err
        assert c.url in last, last
        assert os.listdir(out) == []
    finally:
        c.stop()


def test_items_in_another_crs_on_cluster_equal_local(cluster, tiny, tmp_path):
    """Warped items (another CRS) are read on the executors: the result is
    byte-identical to the local run."""
    from conftest import StacServer
    from test_crs_forms import two_crs_scene
    scene, _ = two_crs_scene(tiny, tmp_path / "twocrs")
    api = StacServer(scene, tmp_path)
    try:
        local, remote = tmp_path / "local.tif", tmp_path / "cluster.tif"
        extent(api.url, scene.bbox, local, "--chunk", "300")
        extent(api.url, scene.bbox, remote, "--chunk", "300", "--cluster", cluster.url, "--partitions", "4")
        assert local.read_bytes() == remote.read_bytes()
    finally:
        api.stop()


def test_several_assets_on_cluster_equal_local(cluster, tiny_masks, tiny_masks_api, tmp_path):
    fc = (f"flood_chunks('{tiny_masks_api}', 'GFM', '{tiny_masks.bbox}', '{DT_RFC}', "
          f"'ensemble_flood_extent,reference_water_mask,exclusion_mask', 256)")
    q = (f"SELECT x_off, y_off, width, height, flood_extent_states(replace_where(replace_where(pixels, "
         f"reference_water_mask, 1, 0), exclusion_mask, 1, 255)) AS pixels FROM {fc} "
         f"GROUP BY x_off, y_off, width, height")
    a, b = tmp_path / "local.tif", tmp_path / "cluster.tif"
    run(["sql", "-c", q, "--out", a])
    run(["sql", "-c", q, "--out", b, "--cluster", cluster.url, "--partitions", "4"])
    assert a.read_bytes() == b.read_bytes()
    assert read(b)[0].max() == 255 and (read(b)[0] == 1).any()


def test_update_on_cluster_equals_a_full_local_run(cluster, tiny, tiny_api, tmp_path):
    full, part = tmp_path / "full.tif", tmp_path / "part.tif"
    extent(tiny_api, tiny.bbox, full)
    extent(tiny_api, tiny.bbox, part, "--cluster", cluster.url,
           datetime="2022-09-01T00:00:00Z/2022-09-07T00:00:00Z")
    p = run(["extent", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC,
             "--update", part, "--cluster", cluster.url, "--partitions", "4"])
    assert "new items only" in p.stderr, p.stderr
    assert np.array_equal(read(part)[0], read(full)[0]) and read(part)[1:] == read(full)[1:]


def test_zonal_statistics_on_cluster_equal_local(cluster, tiny, tiny_api, tmp_path):
    """The zonal query (regions read by the client, zones burned by the
    executors' scans, struct fields summed after a shuffle) gives the local
    table."""
    args = ["zonal", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC, "--chunk", "200",
            "--regions", tiny.path / "regions.geojson"]
    local = run([*args, "--csv", tmp_path / "local.csv"])
    remote = run([*args, "--csv", tmp_path / "cluster.csv", "--cluster", cluster.url, "--partitions", "4"])
    assert (tmp_path / "local.csv").read_text() == (tmp_path / "cluster.csv").read_text()
    table = lambda p: [ln for ln in p.stdout.splitlines() if not ln.startswith("wrote ")]  # noqa: E731
    assert table(local) == table(remote) and "North district" in local.stdout


def test_the_real_feeds_options_on_cluster_equal_local(cluster, tiny_masks, tmp_path):
    """Missing assets, solar-day slices and a CQL2 filter, set as session
    options, reach the executors' scans: frames of one pass, items lacking
    exclusion_mask and a filter on a property give the local bytes."""
    import shutil
    from conftest import StacServer, write_scene
    shutil.copytree(tiny_masks.path, tmp_path / "scene")
    doc = json.loads((tmp_path / "scene" / "items.json").read_text())
    for k, f in enumerate(doc["features"]):
        f["properties"]["flooded_pixels"] = k % 4
        f["properties"]["datetime"] = f["properties"]["datetime"][:11] + f"10:00:{(k % 3) * 20:02d}Z"
        if k % 3 == 1:
            del f["assets"]["exclusion_mask"]
    scene = write_scene(tmp_path / "scene", doc, tiny_masks.bbox)
    api = StacServer(scene, tmp_path)
    try:
        fc = (f"flood_chunks('{api.url}', 'GFM', '{scene.bbox}', '{DT_RFC}', "
              f"'ensemble_flood_extent,reference_water_mask,exclusion_mask', 256)")
        q = (f"SELECT x_off, y_off, width, height, flood_count(replace_where(replace_where(pixels, "
             f"reference_water_mask, 1, 0), exclusion_mask, 1, 255)) AS pixels FROM {fc} "
             f"GROUP BY x_off, y_off, width, height")
        sets = ["--set", "floodsql.missing_assets=exclusion_mask=0", "--set", "floodsql.group_by=solar_day",
                "--set", "floodsql.filter=flooded_pixels > 0"]
        a, b = tmp_path / "local.tif", tmp_path / "cluster.tif"
        p = run(["sql", *sets, "-c", q, "--out", a])
        assert "lack exclusion_mask (read as 0)" in p.stderr, p.stderr
        run(["sql", *sets, "-c", q, "--out", b, "--cluster", cluster.url, "--partitions", "4"])
        assert a.read_bytes() == b.read_bytes()
        # the options changed the answer (else the test proves nothing)
        plain = tmp_path / "plain.tif"
        run(["sql", "--set", "floodsql.missing_assets=exclusion_mask=0", "-c", q, "--out", plain])
        assert not np.array_equal(read(plain)[0], read(a)[0])
    finally:
        api.stop()
