"""Private catalogues and assets: a STAC API that wants a bearer token (a
proxy in front of rustac answering 401 without it), COGs on a server that
wants a header, and signed COG hrefs. The secrets reach the servers and never
floodsql's output or messages."""
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import HERE, PY, RangeServer, extent, free_port, same_raster, wait_http

TOKEN = "s3cr3t-t0ken-floodsql-test"
AUTH = f"Authorization: Bearer {TOKEN}"


class AuthProxy:
    def __init__(self, upstream):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([PY, str(HERE / "auth_proxy.py"), upstream, str(self.port)],
                                     env=dict(os.environ, AUTH_PROXY_REQUIRE=AUTH))
        wait_http(self.url + "/__stats", self.proc, "auth proxy")

    def stats(self):
        import urllib.request
        return json.loads(urllib.request.urlopen(self.url + "/__stats").read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def private_api(tiny_api):
    p = AuthProxy(tiny_api)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def public_out(tiny, tiny_api, tmp_path_factory):
    out = tmp_path_factory.mktemp("public") / "public.tif"
    extent(tiny_api, tiny.bbox, out)
    return out


def no_secret(*texts):
    for t in texts:
        assert TOKEN not in t and "sig=" + TOKEN not in t, t[-500:]


def test_a_private_api_without_the_token_is_refused_clearly(tiny, private_api, tmp_path):
    out = tmp_path / "x.tif"
    r = extent(private_api.url, tiny.bbox, out, check=False)
    assert r.returncode != 0 and "401" in r.stderr and private_api.url in r.stderr, r.stderr
    assert not out.exists()
    # a wrong token: refused, and not printed either
    r = extent(private_api.url, tiny.bbox, out, "--header", "Authorization: Bearer wrong-" + TOKEN, check=False)
    assert r.returncode != 0 and "401" in r.stderr
    no_secret(r.stdout, r.stderr)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_private_api_with_the_token(how, tiny, private_api, public_out, tmp_path):
    before = private_api.stats()
    out = tmp_path / "private.tif"
    if how == "flag":
        r = extent(private_api.url, tiny.bbox, out, "--header", AUTH, "--page-size", "4")
    else:
        os.environ["FLOODSQL_STAC_HEADERS"] = AUTH
        try:
            r = extent(private_api.url, tiny.bbox, out, "--page-size", "4")
        finally:
            del os.environ["FLOODSQL_STAC_HEADERS"]
    after = private_api.stats()
    assert after["forwarded"] - before["forwarded"] > 2        # every page carried the token
    assert after["refused"] == before["refused"]
    assert same_raster(out, public_out)
    no_secret(r.stdout, r.stderr)


@pytest.mark.parametrize("reader", ["native", "gdal"])
def test_assets_behind_a_header(reader, tiny, public_out, tmp_path):
    from test_object_store import with_hrefs
    srv = RangeServer(tiny.path / "cogs", env={"RANGE_SERVER_REQUIRE_HEADER": AUTH})
    try:
        items = with_hrefs(tiny, tmp_path / "items.json", lambda n: f"{srv.url}/{n}")
        common = ["--set", f"floodsql.reader={reader}", "--set", "floodsql.allowed_hosts=127.0.0.1"]
        out = tmp_path / "x.tif"
        r = extent(items, tiny.bbox, out, *common, check=False)
        assert r.returncode != 0 and "401" in r.stderr and not out.exists(), r.stderr
        os.environ["GDAL_HTTP_HEADERS"] = AUTH
        try:
            r = extent(items, tiny.bbox, out, *common)
        finally:
            del os.environ["GDAL_HTTP_HEADERS"]
        assert same_raster(out, public_out)
        no_secret(r.stdout, r.stderr)
    finally:
        srv.stop()


@pytest.mark.parametrize("reader", ["native", "gdal"])
def test_signed_hrefs_are_read_as_signed_and_never_printed(reader, tiny, public_out, tmp_path):
    from test_object_store import with_hrefs
    srv = RangeServer(tiny.path / "cogs", env={"RANGE_SERVER_REQUIRE_QUERY": f"sig={TOKEN}"})
    try:
        common = ["--set", f"floodsql.reader={reader}", "--set", "floodsql.allowed_hosts=127.0.0.1"]
        signed = with_hrefs(tiny, tmp_path / "signed.json", lambda n: f"{srv.url}/{n}?X-Expires=1&sig={TOKEN}")
        out = tmp_path / "signed.tif"
        r = extent(signed, tiny.bbox, out, *common)
        assert same_raster(out, public_out) and srv.stats()["refused"] == 0
        no_secret(r.stdout, r.stderr)
        # a wrong signature: the error names the file, not the signature
        bad = with_hrefs(tiny, tmp_path / "bad.json", lambda n: f"{srv.url}/{n}?sig=x{TOKEN}")
        r = extent(bad, tiny.bbox, tmp_path / "bad.tif", *common, check=False)
        assert r.returncode != 0 and srv.url in r.stderr, r.stderr
        no_secret(r.stdout, r.stderr)
        assert not (tmp_path / "bad.tif").exists()
    finally:
        srv.stop()


def test_headers_that_http_refuses_are_named_not_printed(tiny, tmp_path):
    r = extent(tiny.items_file, tiny.bbox, tmp_path / "x.tif", "--header", f"Bad Name: {TOKEN}", check=False)
    assert r.returncode != 0 and "Bad Name" in r.stderr, r.stderr
    no_secret(r.stdout, r.stderr)
    r = extent(tiny.items_file, tiny.bbox, tmp_path / "x.tif", "--header", "no colon here", check=False)
    assert r.returncode != 0 and "Name: value" in r.stderr, r.stderr
    assert Path(tmp_path / "x.tif").exists() is False
