"""The same jobs against stac-fastapi-pgstac, the STAC server most public
catalogues run (PostgreSQL + PostGIS, items loaded with pypgstac), with a page
size below the result: the outputs equal those through `rustac serve` and the
tutorial's own code on the same server."""
import json
import math
import urllib.request

import numpy as np
import pytest
import rasterio
from conftest import DT_RFC, PgstacServer, extent, peer, run, same_raster


@pytest.fixture(scope="module")
def tiny_pg(tiny, tmp_path_factory):
    s = PgstacServer(tiny, tmp_path_factory.mktemp("pgstac"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def medium_pg(medium, tmp_path_factory):
    s = PgstacServer(medium, tmp_path_factory.mktemp("pgstac"))
    yield s
    s.stop()


def post(url, body):
    req = urllib.request.Request(url + "/search", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


def matching(server_url, bbox):
    """Items the search matches, counted by paging the server directly."""
    body = {"collections": ["GFM"], "bbox": [float(v) for v in bbox.split(",")], "datetime": DT_RFC,
            "limit": 100}
    n = 0
    while True:
        page = post(server_url, body)
        n += len(page["features"])
        nxt = [link for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            return n
        body = nxt[0]["body"]


def test_the_server_speaks_pgstacs_dialect(tiny_pg, tiny):
    """What differs from rustac: tokens, newest first, null fields dropped."""
    page = post(tiny_pg.url, {"collections": ["GFM"], "limit": 4})
    dts = [f["properties"]["datetime"] for f in page["features"]]
    assert dts == sorted(dts, reverse=True) and dts != sorted(dts)
    nxt = [link for link in page["links"] if link["rel"] == "next"][0]
    assert "token" in json.dumps(nxt)
    assert "proj:epsg" in tiny.items[0]["properties"]             # null in the scene…
    assert all("proj:epsg" not in f["properties"] for f in page["features"])   # …dropped


@pytest.mark.parametrize("which", ["tiny", "medium"])
def test_extent_through_pgstac_equals_rustac_and_the_tutorial(which, request, tmp_path):
    scene = request.getfixturevalue(which)
    api = request.getfixturevalue(f"{which}_api")
    pg = request.getfixturevalue(f"{which}_pg")
    n = matching(pg.url, scene.bbox)
    page = max(2, n // 3)                       # several pages
    before = pg.requests()
    via_pg, via_rustac = tmp_path / "pg.tif", tmp_path / "rustac.tif"
    extent(pg.url, scene.bbox, via_pg, "--page-size", str(page))
    assert pg.requests() - before >= math.ceil(n / page) > 1
    extent(api, scene.bbox, via_rustac)
    assert same_raster(via_pg, via_rustac)
    # the tutorial's code against the same pgstac server
    with rasterio.open(via_pg) as a, rasterio.open(peer(pg.url, scene.bbox, tmp_path / "peer.tif")) as b:
        assert np.array_equal(a.read(1), b.read(1)) and a.transform == b.transform


def test_stac_items_through_pgstac_lists_what_rustac_lists(tiny, tiny_api, tiny_pg):
    def items(url):
        sql = (f"SELECT id, datetime FROM stac_items('{url}', 'GFM', '{tiny.bbox}', '{DT_RFC}') "
               "ORDER BY datetime, id")
        return run(["sql", "-c", sql, "--set", "floodsql.page_size=3"]).stdout
    via_pg = items(tiny_pg.url)
    assert via_pg == items(tiny_api) and via_pg.count("\n") > 5
