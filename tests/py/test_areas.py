"""True pixel areas: floodsql's `area_km2` / `observed_km2` / `grid_km2`
against an independent computation — every pixel's four corners taken to
the CRS's geodetic CRS with pyproj and measured as a geodesic polygon with
pyproj's `Geod` (GeographicLib) on the CRS's ellipsoid."""
import numpy as np
import pyproj
import pytest
import re

from conftest import DT_RFC, extent, reference, run


def fc(api, bbox, chunk=256):
    return f"flood_chunks('{api}', 'GFM', '{bbox}', '{DT_RFC}', 'ensemble_flood_extent', {chunk})"


def csv_rows(text):
    lines = [l for l in text.strip().splitlines() if l]
    head = lines[0].split(",")
    return [dict(zip(head, l.split(","))) for l in lines[1:]]


@pytest.fixture(scope="module")
def ref(tiny, tiny_api, tmp_path_factory):
    return reference(tiny_api, tiny.bbox, tmp_path_factory.mktemp("ref") / "ref.npz")


@pytest.fixture(scope="module")
def geo(tiny):
    p = tiny.items[0]["properties"]
    crs = pyproj.CRS.from_user_input(p.get("proj:wkt2") or p.get("proj:projjson") or p["proj:code"])
    to_geo = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    return to_geo, crs.get_geod()


def pixel_areas(geo, gt, rows, cols):
    """Geodesic area (m²) of each pixel (row, col) of the grid `gt`."""
    to_geo, geod = geo
    out = np.empty(len(rows))
    corners = [(0, 0), (0, 1), (1, 1), (1, 0)]
    xs = np.stack([gt[0] + (cols + dc) * gt[1] for dc, dr in corners], axis=1)
    ys = np.stack([gt[3] + (rows + dr) * gt[5] for dc, dr in corners], axis=1)
    lon, lat = to_geo.transform(xs, ys)
    for i in range(len(rows)):
        out[i] = abs(geod.polygon_area_perimeter(lon[i], lat[i])[0])
    return out


def test_flooded_area_is_the_sum_of_geodesic_pixel_areas(tiny, tiny_api, ref, geo, tmp_path):
    sql = (f"SELECT sum(area_km2(e, a)) AS km2, sum(pixel_count(e, 1)) AS px FROM ("
           f"SELECT flood_max_extent(pixels) AS e, first_value(pixel_areas) AS a "
           f"FROM {fc(tiny_api, tiny.bbox)} GROUP BY x_off, y_off)")
    got = csv_rows(run(["sql", "--format", "csv", "-c", sql]).stdout)[0]
    rows, cols = np.nonzero(ref["extent"] == 1)
    assert int(got["px"]) == len(rows) > 1000
    want = pixel_areas(geo, ref["geotransform"], rows, cols).sum() / 1e6
    assert abs(float(got["km2"]) / want - 1) < 1e-7, (got, want)
    # and it is not res² x count: the Equi7 grid is not equal-area
    res2 = len(rows) * ref["geotransform"][1] ** 2 / 1e6
    assert abs(want / res2 - 1) > 1e-3
    # the summary of `floodsql extent` says both figures
    p = extent(tiny_api, tiny.bbox, tmp_path / "x.tif", "--png", tmp_path / "x.png")
    m = re.search(r"flooded pixels: (\d+) \(([\d.]+) km² on the ellipsoid; ([\d.]+) km² as 20 m x 20 m pixels\)",
                  p.stdout)
    assert m, p.stdout
    assert int(m[1]) == len(rows)
    assert abs(float(m[2]) - want) < 0.0006 and abs(float(m[3]) - res2) < 0.0006, (m.groups(), want, res2)


def test_per_chunk_observed_area_and_grid_area(tiny, tiny_api, ref, geo):
    sql = (f"SELECT x_off, y_off, width, height, sum(area_km2(o, a)) AS km2, max(grid_km2(a)) AS grid FROM ("
           f"SELECT x_off, y_off, width, height, flood_observed(pixels) AS o, first_value(pixel_areas) AS a "
           f"FROM {fc(tiny_api, tiny.bbox, 200)} GROUP BY x_off, y_off, width, height) "
           f"GROUP BY x_off, y_off, width, height ORDER BY y_off, x_off")
    rows = csv_rows(run(["sql", "--format", "csv", "-c", sql]).stdout)
    assert len(rows) > 4
    observed = ref["valid_count"] > 0
    gt = ref["geotransform"]
    for r in rows:
        x, y, w, h = (int(r[k]) for k in ("x_off", "y_off", "width", "height"))
        rr, cc = np.nonzero(observed[y:y + h, x:x + w])
        want = pixel_areas(geo, gt, rr + y, cc + x).sum() / 1e6
        assert abs(float(r["km2"]) - want) <= 1e-7 * max(want, 1e-3), (r, want)
    # the whole grid: its outline through every boundary pixel corner
    h, w = observed.shape
    to_geo, geod = geo
    ring = ([(0, r) for r in range(h + 1)] + [(c, h) for c in range(1, w + 1)]
            + [(w, r) for r in range(h - 1, -1, -1)] + [(c, 0) for c in range(w - 1, 0, -1)])
    xs = np.array([gt[0] + c * gt[1] for c, _ in ring])
    ys = np.array([gt[3] + r * gt[5] for _, r in ring])
    lon, lat = to_geo.transform(xs, ys)
    grid_km2 = abs(geod.polygon_area_perimeter(lon, lat)[0]) / 1e6
    assert all(abs(float(r["grid"]) / grid_km2 - 1) < 1e-8 for r in rows), (rows[0]["grid"], grid_km2)


def test_area_functions_refuse_what_is_not_theirs(tiny, tiny_api):
    p = run(["sql", "-c", f"SELECT area_km2(pixels, pixels) FROM {fc(tiny_api, tiny.bbox)}"], check=False)
    assert p.returncode != 0 and "not a pixel_areas value" in p.stderr, p.stderr
    p = run(["sql", "-c", f"SELECT area_km2(pixels) FROM {fc(tiny_api, tiny.bbox)}"], check=False)
    assert p.returncode != 0 and "area_km2 takes area_km2(pixels, pixel_areas [, value])" in p.stderr, p.stderr


def test_fsum_is_python_fsum_on_any_partitioning():
    """`fsum` (which the shipped SQL adds areas with) gives math.fsum's bits,
    on one partition or several, where a plain float sum's last digits
    depend on the order of its additions."""
    import math
    values = [1.0 / n for n in range(1, 200_001)] + [(-1.0) ** n * 1e10 / n for n in range(1, 1001)]
    want = math.fsum(values)
    for parts in ("1", "2", "7"):
        p = run(["sql", "--format", "csv", "--set", f"datafusion.execution.target_partitions={parts}", "-c",
                 "SELECT fsum(x) AS s, count(*) AS n FROM ("
                 "SELECT 1.0 / CAST(value AS DOUBLE) AS x FROM range(1, 200001) "
                 "UNION ALL SELECT power(-1.0, value) * 1e10 / value FROM range(1, 1001))"])
        s, n = p.stdout.strip().splitlines()[1].split(",")
        assert int(n) == len(values) and float(s) == want, (parts, s, repr(want))
    p = run(["sql", "-c", "SELECT fsum('a')"], check=False)
    assert p.returncode != 0 and "fsum takes a number, got Utf8" in p.stderr, p.stderr
