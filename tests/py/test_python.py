"""The Python package (python/, built with maturin by tests/run.sh into the
test venv): identity with the tutorial's cells in one process (both GDALs
and PROJs loaded, either import order), SQL results against the CLI's
files and independent Arrow readers, a cluster connection, Ctrl-C, the
exception kinds, and the example notebook run headless."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rioxarray  # noqa: F401  (.rio)

import floodsql
from conftest import DT, DT_RFC, HERE, REPO, PY, StacServer, extent, run

SQL_EXTENT = (REPO / "sql" / "max_flood_extent.sql").read_text()


def scan_params(api, bbox, chunk=1000):
    return {"source": api, "collection": "GFM", "bbox": bbox, "datetime": DT_RFC,
            "asset": "ensemble_flood_extent", "chunk": chunk}


def py(args, timeout=900, **env):
    return subprocess.run([PY, *map(str, args)], cwd=HERE, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **env))


def identity(api, bbox, order, tmp_path):
    p = py(["py_identity.py", order, api, bbox, DT[0], DT[1], tmp_path])
    assert p.returncode == 0, p.stderr[-4000:]
    facts = json.loads(p.stdout.strip().splitlines()[-1])
    print(facts)
    assert facts["flooded"] > 0 and facts["summary_flooded"] == facts["flooded"]
    return facts


@pytest.mark.parametrize("order", ["floodsql-first", "tutorial-first"])
def test_identity_with_the_tutorial_in_one_process(order, tiny, tiny_api, tmp_path):
    """Values, pixel-centre coordinates (bit for bit), CRS, transform and
    dtype equal the tutorial's, with rasterio/odc-stac's GDAL and PROJ and
    floodsql's in one interpreter, whichever is imported first."""
    identity(tiny_api, tiny.bbox, order, tmp_path)


def test_identity_on_the_tutorial_shaped_scene(medium, medium_api, tmp_path):
    identity(medium_api, medium.bbox, "tutorial-first", tmp_path)


def test_identity_with_items_in_two_crss(tiny, tmp_path):
    from test_crs_forms import two_crs_scene
    scene, _ = two_crs_scene(tiny, tmp_path / "twocrs")
    api = StacServer(scene, tmp_path)
    try:
        identity(api.url, scene.bbox, "floodsql-first", tmp_path)
    finally:
        api.stop()


def test_sql_results_equal_the_clis_files(tiny, tiny_api, tmp_path):
    """The chunk table from Python equals the CLI's Parquet of the same query
    (read by pyarrow); pyarrow, DuckDB and pandas read the result through the
    Arrow PyCapsule stream; write() gives the CLI's GeoTIFF bytes' pixels and
    summary."""
    con = floodsql.connect()
    r = con.sql(SQL_EXTENT, scan_params(tiny_api, tiny.bbox, 300), progress=False)
    table = r.to_arrow_table()
    cli = tmp_path / "cli.parquet"
    run(["sql", "--param", f"source={tiny_api}", "--param", "collection=GFM", "--param", f"bbox={tiny.bbox}",
         "--param", f"datetime={DT_RFC}", "--param", "asset=ensemble_flood_extent", "--param", "chunk=300",
         "--parquet", cli, REPO / "sql" / "max_flood_extent.sql"])
    key = [("chunk_row", "ascending"), ("chunk_col", "ascending")]
    theirs = pq.read_table(cli).sort_by(key)
    ours = table.sort_by(key)
    for c in ("chunk_row", "chunk_col", "x_off", "y_off", "width", "height", "pixels", "observed"):
        assert ours.column(c).to_pylist() == theirs.column(c).to_pylist(), c
    # the PyCapsule stream: pyarrow, DuckDB (a replacement scan of the local
    # variable), a RecordBatchReader
    via_capsule = pa.table(r).sort_by(key)
    assert via_capsule.column("pixels").to_pylist() == ours.column("pixels").to_pylist()
    import duckdb
    stream = con.sql("SELECT chunk_row, chunk_col, pixel_count(pixels, 1) AS n FROM (" + r.sql.rstrip().rstrip(";") + ")")
    n = duckdb.sql("SELECT sum(n) FROM stream").fetchall()[0][0]
    assert n == int(np.sum([np.frombuffer(b, np.uint8).sum() for b in ours.column("pixels").to_pylist()]))
    reader = r.to_arrow_reader()
    assert sum(b.num_rows for b in reader) == ours.num_rows
    assert len(r.to_pandas()) == ours.num_rows
    # write(): the CLI's outputs, all or nothing
    tif = tmp_path / "py.tif"
    s = r.write(tif=tif, png=tmp_path / "py.png")
    assert tif.exists() and (tmp_path / "py.png").exists()
    cli_tif = tmp_path / "cli.tif"
    extent(tiny_api, tiny.bbox, cli_tif, "--chunk", "300")
    import rasterio
    with rasterio.open(tif) as a, rasterio.open(cli_tif) as b:
        assert np.array_equal(a.read(1), b.read(1))
        assert a.profile == b.profile
        assert s["flooded_pixels"] == int((a.read(1) == 1).sum())
    # the dry-run plan
    [plan] = r.plan()
    with rasterio.open(tif) as a:
        assert (plan["width"], plan["height"]) == (a.width, a.height)
    assert (plan["items"], plan["slices"]) == (s["items"], s["slices"]) and plan["read_bytes"] > 0


def test_other_aggregates_as_dataarrays(tiny, tiny_api, tmp_path):
    """The general raster path: three states and first dates equal the CLI's
    GeoTIFFs of the same aggregate, nodata declared as the GeoTIFF does."""
    import rasterio
    for expr in ("flood_extent_states(pixels)", "flood_first_date(pixels, datetime)"):
        da = floodsql.raster(expr, tiny_api, tiny.bbox, DT_RFC, chunk=300, progress=False)
        out = tmp_path / "cli.tif"
        run(["sql", "--out", out, "-c",
             f"SELECT x_off, y_off, width, height, {expr} AS pixels FROM flood_chunks('{tiny_api}', 'GFM', "
             f"'{tiny.bbox}', '{DT_RFC}', 'ensemble_flood_extent', 300) GROUP BY x_off, y_off, width, height"])
        with rasterio.open(out) as ds:
            px = ds.read(1)
            assert da.dtype == px.dtype, expr
            assert np.array_equal(da.values, px), expr
            assert da.attrs["nodata"] == ds.nodata, expr
            assert da.rio.transform() == ds.transform and da.rio.crs == ds.crs


def test_tables_as_dataframes(tiny, tiny_api, tmp_path):
    """stac_items and daily_series as DataFrames: the items the catalogue
    holds, and the CLI's series CSV to the last bit."""
    import csv
    items = floodsql.stac_items(tiny_api, tiny.bbox, DT_RFC, progress=False)
    start, end = (np.datetime64(t) for t in DT)
    from shapely.geometry import box, shape
    aoi = box(*map(float, tiny.bbox.split(",")))
    in_range = [i["id"] for i in tiny.items if start <= np.datetime64(i["properties"]["datetime"].rstrip("Z")) <= end
                and shape(i["geometry"]).intersects(aoi)]
    assert sorted(items["id"]) == sorted(in_range)
    series = floodsql.daily_series(tiny_api, tiny.bbox, DT_RFC, progress=False)
    out = tmp_path / "s.csv"
    run(["series", "--stac-url", tiny_api, "--bbox", tiny.bbox, "--datetime", DT_RFC, "--csv", out])
    rows = list(csv.DictReader(out.open()))
    assert len(series) == len(rows) >= 3
    for col in ("flooded_km2", "observed_km2", "share_observed"):
        assert [float(r[col]) for r in rows] == series[col].tolist(), col


def test_the_gil_is_released_while_a_query_runs(medium, medium_api):
    """Another Python thread keeps running while a query runs: a 10 ms
    sleep loop in this thread wakes close to 100 times a second (the GIL
    held through the 0.1 s wait slices would allow about 10)."""
    import threading
    con = floodsql.connect()
    r = con.sql(SQL_EXTENT, scan_params(medium_api, medium.bbox, 200), progress=False)
    box = {}

    def queries():  # three runs: long enough to count wakeups over
        for _ in range(3):
            box["a"] = r.to_xarray()

    t = threading.Thread(target=queries)
    wakeups = 0
    t.start()
    t0 = time.monotonic()
    while t.is_alive():
        time.sleep(0.01)
        wakeups += 1
    seconds = time.monotonic() - t0
    t.join()
    assert box["a"].sum() > 0
    print(f"{wakeups} wakeups in {seconds:.2f} s")
    assert seconds > 0.5, "the queries ended too soon to tell"
    assert wakeups / seconds > 40, (wakeups, seconds)


def interrupted(*args):
    """py_interrupt.py's facts, after checking what every interrupted run
    must show: KeyboardInterrupt raised within 3 s of the signal (the wait
    slices are 0.1 s), no file left in the output directory."""
    p = py(["py_interrupt.py", *args], timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    facts = json.loads(p.stdout.strip().splitlines()[-1])
    print(facts)
    assert facts["raised"] == "KeyboardInterrupt"
    assert facts["seconds_to_raise"] < 3
    assert facts["files_left"] == []
    return facts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from test_cluster import Cluster
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


def test_a_cluster_connection_gives_the_local_bytes(cluster, tiny, tiny_api):
    p = scan_params(tiny_api, tiny.bbox, 300)
    local = floodsql.connect().sql(SQL_EXTENT, p, progress=False).to_xarray()
    remote = floodsql.connect(cluster.url, partitions=4).sql(SQL_EXTENT, p, progress=False).to_xarray()
    assert remote.dtype == local.dtype and np.array_equal(remote.values, local.values)
    assert remote.odc.geobox == local.odc.geobox
    table = floodsql.connect(cluster.url, partitions=4).sql(SQL_EXTENT, p, progress=False).to_arrow_table()
    assert table.num_rows > 0


def test_keyboard_interrupt_cancels_the_cluster_job(cluster, medium, medium_api, tmp_path):
    """On a cluster, the KeyboardInterrupt also cancels the job on the
    scheduler (it ends Failed, not Running), and nothing is written."""
    facts = interrupted(medium_api, medium.bbox, DT_RFC, tmp_path / "out", cluster.url, cluster.rest)
    assert facts["cluster_jobs"] == ["Failed"], facts


def test_cancelling_an_ended_cluster_job_is_not_an_error(cluster, medium, medium_api):
    """A cancel that comes when the job has already ended on the scheduler
    (an interrupt racing the job's end: the scheduler answers 409 Conflict)
    leaves the job as it ended and raises nothing. (The medium scene in
    small chunks: long enough for the client to learn the job's id, which
    it polls for every 0.3 s.)"""
    import urllib.request
    con = floodsql.connect(cluster.url, partitions=32)
    r = con.sql(SQL_EXTENT, scan_params(medium_api, medium.bbox, 100), progress=False)
    job = con._inner.start_collect(r.sql)
    while not job.wait(0.1):
        pass
    jid = job.cancel()  # raised QueryError('... the scheduler answered 409 Conflict')
    assert jid, "the client never learnt the job's id: the query was too short"
    jobs = json.loads(urllib.request.urlopen(cluster.rest + "/api/jobs", timeout=5).read())
    assert [j["status"] for j in jobs if j["job_id"] == jid] == ["Completed"], jobs


def test_keyboard_interrupt_cancels_the_query_and_leaves_nothing(medium, medium_api, tmp_path):
    """A SIGINT (Ctrl-C) from a timer thread mid-query ends the call
    promptly with KeyboardInterrupt, the query's threads stop working, and
    no output file exists."""
    facts = interrupted(medium_api, medium.bbox, DT_RFC, tmp_path / "out")
    # the runtime's threads went idle: less than a fifth of a core over the
    # second after the call returned
    assert facts["cpu_seconds_after"] < 0.2


@pytest.mark.parametrize("call,kind,builtin", [
    (lambda api, bbox: floodsql.max_flood_extent(api, "1,2,3", DT_RFC), floodsql.InvalidInputError, ValueError),
    (lambda api, bbox: floodsql.max_flood_extent(api, bbox, "2022-13-45"), floodsql.InvalidInputError, ValueError),
    (lambda api, bbox: floodsql.max_flood_extent(api, bbox, DT_RFC, chunk=3), floodsql.InvalidInputError,
     ValueError),
    # an asset no item has: a misspelt name (some items lacking one is the
    # catalogue's data: DataError, see test_gfm_feed)
    (lambda api, bbox: floodsql.max_flood_extent(api, bbox, DT_RFC, asset="nope"), floodsql.InvalidInputError,
     ValueError),
    (lambda api, bbox: floodsql.connect().sql("SELEC 1").to_arrow_table(), floodsql.InvalidInputError, ValueError),
    (lambda api, bbox: floodsql.connect(options={"floodsql.page_sise": 10}), floodsql.InvalidInputError, ValueError),
    (lambda api, bbox: floodsql.connect("http://x:1"), floodsql.InvalidInputError, ValueError),
    (lambda api, bbox: floodsql.max_flood_extent("http://127.0.0.1:9", bbox, DT_RFC), floodsql.DataError, OSError),
])
def test_errors_are_python_exceptions_of_fitting_kinds(call, kind, builtin, tiny, tiny_api):
    with pytest.raises(kind) as e:
        call(tiny_api, tiny.bbox)
    assert isinstance(e.value, builtin) and isinstance(e.value, floodsql.Error)
    assert str(e.value) and "QueryError" not in str(e.value)
    print(type(e.value).__name__, e.value)


def test_the_example_notebook_runs(tiny, tiny_api, tmp_path):
    """examples/max_flood_extent.ipynb, executed headless (nbclient) against
    the test STAC API: the tutorial's search and plot, floodsql's load and
    reduction; its cells' assertions hold."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(REPO / "examples" / "max_flood_extent.ipynb", as_version=4)
    os.environ["FLOODSQL_EXAMPLE_STAC_URL"] = tiny_api
    os.environ["FLOODSQL_EXAMPLE_BBOX"] = tiny.bbox
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.pop("FLOODSQL_EXAMPLE_STAC_URL")
        os.environ.pop("FLOODSQL_EXAMPLE_BBOX")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    for o in outputs:
        if o.get("output_type") == "stream":
            print(o["name"], o["text"][:300])
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot cell drew nothing"
