"""COGs read through object_store: local files, an HTTP server honouring Range
requests, and an S3-compatible server (moto's standalone server), with the
native reader (the default) and GDAL's, and COGs re-encoded with other codecs,
predictors, block sizes and overviews. Every variant must give the bytes of
the plain local run."""
import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PY, RangeServer, extent, free_port, run, same_raster, wait_http


def with_hrefs(scene, dest, href_of):
    """The scene's items with every asset href rewritten by href_of(cog file name)."""
    items = json.loads(scene.items_file.read_text())
    for it in items["features"]:
        a = it["assets"]["ensemble_flood_extent"]
        a["href"] = href_of(Path(a["href"]).name)
    dest.write_text(json.dumps(items))
    return dest


@pytest.fixture(scope="module")
def local_out(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "local.tif"
    extent(tiny.items_file, tiny.bbox, out, "--chunk", "200")
    return out


def test_gdal_reader_gives_the_same_bytes(tiny, local_out, tmp_path):
    out = tmp_path / "gdal.tif"
    extent(tiny.items_file, tiny.bbox, out, "--chunk", "200", "--set", "floodsql.reader=gdal")
    assert out.read_bytes() == local_out.read_bytes()  # same source: same bytes


def test_unknown_reader_is_refused(tiny, tmp_path):
    out = tmp_path / "x.tif"
    p = extent(tiny.items_file, tiny.bbox, out, "--set", "floodsql.reader=rasterio", check=False)
    assert p.returncode != 0 and "floodsql.reader" in p.stderr and "native" in p.stderr
    assert not out.exists()


@pytest.mark.parametrize("reader", ["native", "gdal"])
def test_http_range_reads_give_the_same_bytes(tiny, local_out, tmp_path, reader):
    srv = RangeServer(tiny.path / "cogs")
    try:
        items = with_hrefs(tiny, tmp_path / "items.json", lambda n: f"{srv.url}/{n}")
        out = tmp_path / "http.tif"
        extent(items, tiny.bbox, out, "--chunk", "200", "--set", f"floodsql.reader={reader}",
               "--set", "floodsql.allowed_hosts=127.0.0.1")
        assert same_raster(out, local_out)
        st = srv.stats()
        # only byte ranges were asked for
        assert st["range_requests"] > 0
        if reader == "native":
            assert st["requests"] == st["range_requests"], st
            # each file's header read once (a 32 KiB read-ahead: the whole of
            # these small COGs) and each block once (windows in flight share
            # header reads and block fetches, later ones take the block cache):
            # at most twice the bytes of the files. Without the sharing and
            # the cache, 200 px chunks over 500 px COGs fetch over 4 times.
            total = sum(f.stat().st_size for f in (tiny.path / "cogs").iterdir())
            assert st["bytes"] <= 2 * total, (st, total)
            print("range server:", st, "files:", total)
    finally:
        srv.stop()


def test_headers_are_read_ahead_by_file_within_one_round_trip(medium, tmp_path):
    """Latency hidden: with small chunks a partition has thousands of rows,
    and every COG's header read (its first 128 KB: the whole of these COGs,
    so one request per file) must go out before the first response comes
    back, however far down the rows its first use is. Reading ahead by rows
    (the 128 next) sent the last files' reads several round trips late
    (at 100 ms: 0.45 s after the first)."""
    delay = 500
    log = tmp_path / "requests.log"
    srv = RangeServer(medium.path / "cogs", delay_ms=delay, env={"RANGE_SERVER_LOG": str(log)})
    try:
        items = with_hrefs(medium, tmp_path / "items.json", lambda n: f"{srv.url}/{n}")
        out = tmp_path / "http.tif"
        p = extent(items, medium.bbox, out, "--chunk", "256", "--set", "floodsql.allowed_hosts=127.0.0.1")
    finally:
        srv.stop()
    local = tmp_path / "local.tif"
    extent(medium.items_file, medium.bbox, local, "--chunk", "256")
    assert same_raster(out, local)
    assert all(f.stat().st_size <= 128 << 10 for f in (medium.path / "cogs").iterdir())
    reads = [r for r in (line.split() for line in log.read_text().splitlines()) if r[1] != "/__stats"]
    # one read per file the search found, each asking for its first 128 KB
    found = int(next(line for line in p.stdout.splitlines() if line.startswith("items:")).split()[1])
    assert len(reads) == len({r[1] for r in reads}) == found > 64, (len(reads), found)
    assert {r[2] for r in reads} == {"bytes=0-131071"}, {r[2] for r in reads}
    arrivals = [float(r[0]) for r in reads]
    spread = max(arrivals) - min(arrivals)
    assert spread < delay / 1000, f"the last header read went out {spread:.3f} s after the first"


def test_a_missing_remote_cog_is_named(tiny, tmp_path):
    srv = RangeServer(tiny.path / "cogs")
    try:
        items = json.loads(tiny.items_file.read_text())
        victim = next(it for it in items["features"] if "DECOY" not in it["id"])
        f = with_hrefs(tiny, tmp_path / "items.json", lambda n: f"{srv.url}/{n}")
        items = json.loads(f.read_text())
        for it in items["features"]:
            if it["id"] == victim["id"]:
                it["assets"]["ensemble_flood_extent"]["href"] = f"{srv.url}/gone.tif"
        f.write_text(json.dumps(items))
        out = tmp_path / "x.tif"
        p = extent(f, tiny.bbox, out, "--set", "floodsql.allowed_hosts=127.0.0.1", check=False)
        assert p.returncode != 0, p.stderr
        assert victim["id"] in p.stderr and "gone.tif" in p.stderr, p.stderr
        assert "panicked" not in p.stderr
        assert not out.exists()
    finally:
        srv.stop()


@contextlib.contextmanager
def environ(env):
    """os.environ with `env` set, restored afterwards."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def s3_client(url):
    import boto3
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def bucket_with_cogs(url, bucket, scene):
    """A new bucket holding the scene's COGs under cogs/; its client."""
    client = s3_client(url)
    client.create_bucket(Bucket=bucket)
    for f in (scene.path / "cogs").iterdir():
        client.upload_file(str(f), bucket, f"cogs/{f.name}")
    return client


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's standalone S3-compatible server with the tiny scene's COGs in a bucket."""
    port = free_port()
    moto = shutil.which("moto_server") or str(Path(PY).parent / "moto_server")
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/moto-api/", proc, "moto_server")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": url, "AWS_ALLOW_HTTP": "true"}
    yield url, env
    proc.terminate()
    proc.wait(10)
    log.close()


def test_s3_reads_give_the_same_bytes(tiny, local_out, s3, tmp_path):
    url, env = s3
    client = bucket_with_cogs(url, "gfm", tiny)
    items = with_hrefs(tiny, tmp_path / "items.json", lambda n: f"s3://gfm/cogs/{n}")
    out = tmp_path / "s3.tif"
    with environ(env):
        allow = ("--set", "floodsql.allowed_hosts=s3://gfm,s3://no-such-bucket")
        extent(items, tiny.bbox, out, "--chunk", "200", *allow)
        assert same_raster(out, local_out)
        # wrong credentials: a clear error naming the object, no output
        os.environ["AWS_SECRET_ACCESS_KEY"] = "wrong"
        bad = with_hrefs(tiny, tmp_path / "bad.json", lambda n: f"s3://no-such-bucket/cogs/{n}")
        out2 = tmp_path / "s3b.tif"
        p = extent(bad, tiny.bbox, out2, *allow, check=False)
        assert p.returncode != 0 and "s3://no-such-bucket/cogs/" in p.stderr, p.stderr
        assert "panicked" not in p.stderr and not out2.exists()


# (codec options, what it exercises)
ENCODINGS = [
    (["-co", "COMPRESS=LZW", "-co", "PREDICTOR=YES"], "lzw+predictor"),
    (["-co", "COMPRESS=ZSTD"], "zstd"),
    (["-co", "COMPRESS=DEFLATE", "-co", "PREDICTOR=YES", "-co", "BLOCKSIZE=256"],
     "deflate+predictor, partial edge tiles, overviews"),
    (["-co", "COMPRESS=NONE", "-co", "BLOCKSIZE=128"], "uncompressed"),
]


@pytest.mark.parametrize("opts,what", ENCODINGS, ids=[e[1] for e in ENCODINGS])
def test_other_encodings_give_the_same_bytes(tiny, local_out, tmp_path, opts, what):
    cogs = tmp_path / "cogs"
    cogs.mkdir()
    for f in (tiny.path / "cogs").iterdir():
        subprocess.run(["gdal_translate", "-q", "-of", "COG", *opts, str(f), str(cogs / f.name)],
                       check=True)
    if "overviews" in what:
        info = subprocess.run(["gdalinfo", str(next(cogs.iterdir()))], capture_output=True, text=True).stdout
        assert "Overviews:" in info and "Block=256x256" in info
    items = with_hrefs(tiny, tmp_path / "items.json", lambda n: str(cogs / n))
    out = tmp_path / "x.tif"
    extent(items, tiny.bbox, out, "--chunk", "200")
    assert same_raster(out, local_out), what


def test_outputs_go_to_s3_all_or_nothing(tiny, local_out, s3, tmp_path):
    """--out/--parquet/--png on s3:// (moto): the objects equal a local run's
    files, read back with boto3; a bad bucket among the outputs fails the run
    with an error naming it and leaves no object of the run behind."""
    url, env = s3
    client = s3_client(url)
    client.create_bucket(Bucket="results")
    with environ(env):
        local = tmp_path / "local"
        local.mkdir()
        extent(tiny.items_file, tiny.bbox, local / "x.tif", "--chunk", "200", "--parquet",
               local / "x.parquet", "--png", local / "x.png")
        extent(tiny.items_file, tiny.bbox, "s3://results/run/x.tif", "--chunk", "200",
               "--parquet", "s3://results/run/x.parquet", "--png", "s3://results/run/x.png")
        got = tmp_path / "got"
        got.mkdir()
        for name in ("x.tif", "x.parquet", "x.png"):
            client.download_file("results", f"run/{name}", str(got / name))
        assert same_raster(got / "x.tif", local / "x.tif")
        assert (got / "x.tif").read_bytes() == (local / "x.tif").read_bytes()
        assert (got / "x.png").read_bytes() == (local / "x.png").read_bytes()
        import pyarrow.parquet as pq
        order = [("chunk_row", "ascending"), ("chunk_col", "ascending")]  # rows come in scan order
        assert pq.read_table(got / "x.parquet").sort_by(order).equals(
            pq.read_table(local / "x.parquet").sort_by(order))
        # one output in a bucket that does not exist: nothing of the run stays
        p = extent(tiny.items_file, tiny.bbox, "s3://results/run2/x.tif", "--png",
                   "s3://no-such-bucket/x.png", check=False)
        assert p.returncode == 1, p.stderr
        assert "no-such-bucket" in p.stderr.strip().splitlines()[-1], p.stderr
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="results").get("Contents", [])]
        assert not [k for k in keys if k.startswith("run2/")], keys
        # the same over the first run's objects: they are put back byte for byte
        def objects():
            out = {}
            for o in client.list_objects_v2(Bucket="results").get("Contents", []):
                out[o["Key"]] = client.get_object(Bucket="results", Key=o["Key"])["Body"].read()
            return out
        before = objects()
        assert "run/x.tif" in before and "run/x.stac.json" in before
        p = extent(tiny.items_file, tiny.bbox, "s3://results/run/x.tif", "--datetime",
                   "2022-09-01T00:00:00Z/2022-09-10T00:00:00Z", "--png", "s3://no-such-bucket/x.png",
                   check=False, datetime=None)
        assert p.returncode == 1 and "no-such-bucket" in p.stderr, p.stderr
        assert objects() == before, "an object of the earlier run changed, or one was left"
        # a URL scheme results cannot go to
        p = extent(tiny.items_file, tiny.bbox, "ftp://host/x.tif", check=False)
        assert p.returncode == 1 and "ftp://host/x.tif" in p.stderr, p.stderr


def test_a_static_catalogue_on_s3(tiny, local_out, s3, tmp_path):
    """An ItemCollection on s3:// whose hrefs are relative (../cogs/NAME):
    resolved against the catalogue's own bucket, read without naming that
    bucket in floodsql.allowed_hosts; same raster as the local run. Assets in
    another bucket are refused by the read policy."""
    url, env = s3
    client = bucket_with_cogs(url, "stac", tiny)
    rel = with_hrefs(tiny, tmp_path / "rel.json", lambda n: f"../cogs/{n}")
    client.upload_file(str(rel), "stac", "catalog/items.json")
    other = with_hrefs(tiny, tmp_path / "other.json", lambda n: f"s3://gfm/cogs/{n}")
    client.upload_file(str(other), "stac", "catalog/other.json")
    with environ(env):
        out = tmp_path / "s3cat.tif"
        extent("s3://stac/catalog/items.json", tiny.bbox, out, "--chunk", "200")
        assert same_raster(out, local_out)
        p = extent("s3://stac/catalog/other.json", tiny.bbox, tmp_path / "o.tif", check=False)
        assert p.returncode == 1 and "bucket 's3://gfm'" in p.stderr, p.stderr
        p = extent("s3://stac/catalog/missing.json", tiny.bbox, tmp_path / "m.tif", check=False)
        assert p.returncode == 1 and "s3://stac/catalog/missing.json" in p.stderr, p.stderr


def test_copy_to_and_external_tables_on_s3(s3, tmp_path):
    """DataFusion's own COPY TO and CREATE EXTERNAL TABLE on s3:// (moto):
    floodsql registers the bucket's store from the environment."""
    import pyarrow.parquet as pq
    url, env = s3
    client = s3_client(url)
    client.create_bucket(Bucket="tables")
    with environ(env):
        run(["sql", "-c", "COPY (SELECT 7 AS a, 'x' AS b) TO 's3://tables/copy/t.parquet' STORED AS PARQUET"])
        client.download_file("tables", "copy/t.parquet", str(tmp_path / "t.parquet"))
        assert pq.read_table(tmp_path / "t.parquet").to_pylist() == [{"a": 7, "b": "x"}]
        p = run(["sql", "-c", "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://tables/copy/t.parquet'; "
                              "SELECT a * 6 AS answer FROM t"])
        assert "| 42 " in p.stdout, p.stdout


def test_outputs_go_to_an_http_server_that_accepts_put(tiny, local_out, tmp_path):
    """--out/--png on http:// (the tests' range server takes PUT under
    /upload/): the files it stores equal a local run's."""
    root = tmp_path / "srv"
    root.mkdir()
    srv = RangeServer(root)
    try:
        local = tmp_path / "local"
        local.mkdir()
        extent(tiny.items_file, tiny.bbox, local / "x.tif", "--chunk", "200", "--png", local / "x.png")
        extent(tiny.items_file, tiny.bbox, f"{srv.url}/upload/run/x.tif", "--chunk", "200",
               "--png", f"{srv.url}/upload/run/x.png")
        assert (root / "upload/run/x.tif").read_bytes() == (local / "x.tif").read_bytes()
        assert (root / "upload/run/x.png").read_bytes() == (local / "x.png").read_bytes()
        # a target that refuses the upload: an error naming it, nothing kept
        p = extent(tiny.items_file, tiny.bbox, f"{srv.url}/upload/run2/x.tif", "--png",
                   f"{srv.url}/elsewhere/x.png", check=False)
        assert p.returncode == 1 and "/elsewhere/x.png" in p.stderr, p.stderr
        assert not (root / "upload/run2/x.tif").exists()
    finally:
        srv.stop()
