#!/usr/bin/env bash
# Peak memory against the size of the job (issue 8's "flat" goals): the same
# `floodsql extent` over
#   * AOIs of 1/4, 1x and 4x the medium scene's area (one scene built around
#     the 4x AOI), and
#   * time ranges holding 1x, 2x and 4x the time slices (one scene with 48
#     acquisitions over the month; the first week, two weeks, the month).
# Wall time (median of RUNS) and peak RSS, as ratios to the smallest job of
# each series, measured in the same run. The outputs are cross-checked: inside
# the small AOIs the rasters equal the large one's on the same cells, and a
# longer time range never un-floods a pixel.
#
#   benches/scale.sh            RUNS=3  PROFILE=release|dev  BENCH_DIR=/tmp/floodsql-bench
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh medium
C=(68.2127 26.8942)   # the medium AOI's centre
box() { awk -v x="${C[0]}" -v y="${C[1]}" -v w="$1" -v h="$2" 'BEGIN { printf "%.6f,%.6f,%.6f,%.6f", x-w, y-h, x+w, y+h }'; }
AOI4=$(box 1.0 0.8)
AOI_DIR=$(scene aoi4x --scale medium --bbox "$AOI4")
TIME_DIR=$(scene time48 --scale medium --acquisitions 48)
RUN=("$BIN" --quiet extent --collection GFM)

{
  measure aoi_quarter "${RUN[@]}" --stac-url "$AOI_DIR/items.json" --bbox "$(box 0.25 0.2)" --datetime "$DT" --out "$OUT/aoi_q.tif"
  measure aoi_1x "${RUN[@]}" --stac-url "$AOI_DIR/items.json" --bbox "$(box 0.5 0.4)" --datetime "$DT" --out "$OUT/aoi_1.tif"
  measure aoi_4x "${RUN[@]}" --stac-url "$AOI_DIR/items.json" --bbox "$AOI4" --datetime "$DT" --out "$OUT/aoi_4.tif"
  for d in 08:1x 15:2x; do
    measure "time_${d#*:}" "${RUN[@]}" --stac-url "$TIME_DIR/items.json" --bbox "$BBOX" \
      --datetime "2022-09-01T00:00:00Z/2022-09-${d%:*}T00:00:00Z" --out "$OUT/time_${d#*:}.tif"
  done
  measure time_4x "${RUN[@]}" --stac-url "$TIME_DIR/items.json" --bbox "$BBOX" --datetime "$DT" --out "$OUT/time_4x.tif"
} > "$OUT/results"

"$PY" - "$OUT" "$PROFILE" "$RUNS" "$(box 0.25 0.2)" "$(box 0.5 0.4)" <<'PYEOF'
import sys
import numpy as np, rasterio
out = sys.argv[1]
rows = [(l.split()[0], float(l.split()[1]), int(l.split()[2])) for l in open(out + "/results")]

def inside_aoi_equal(small, large, bbox):
    """small's pixels equal the large run's over the same cells, inside the
    small AOI (2 px in from its edge). Outside the AOI the small grid's
    cells may be covered by items the small search rightly did not return
    (the grid is the bounding box of the projected AOI)."""
    import pyproj
    from rasterio.features import geometry_mask
    from shapely.geometry import Polygon
    with rasterio.open(small) as s, rasterio.open(large) as l:
        ts, tl = s.transform, l.transform
        col, row = (ts.c - tl.c) / tl.a, (ts.f - tl.f) / tl.e
        if ts.a != tl.a or ts.e != tl.e or col != int(col) or row != int(row):
            return False
        a, b = s.read(1), l.read(1)[int(row):int(row) + s.height, int(col):int(col) + s.width]
        x0, y0, x1, y1 = bbox
        n = 200
        ring = ([(x0 + (x1 - x0) * i / n, y0) for i in range(n)] + [(x1, y0 + (y1 - y0) * i / n) for i in range(n)]
                + [(x1 - (x1 - x0) * i / n, y1) for i in range(n)] + [(x0, y1 - (y1 - y0) * i / n) for i in range(n)])
        t = pyproj.Transformer.from_crs("EPSG:4326", s.crs.to_wkt(), always_xy=True)
        xs, ys = t.transform([p[0] for p in ring], [p[1] for p in ring])
        m = geometry_mask([Polygon(zip(xs, ys))], (s.height, s.width), ts, invert=True)
        for _ in range(2):
            m[1:, :] &= m[:-1, :].copy(); m[:-1, :] &= m[1:, :].copy()
            m[:, 1:] &= m[:, :-1].copy(); m[:, :-1] &= m[:, 1:].copy()
        return b.shape == a.shape and m.sum() > 0 and np.array_equal(a[m], b[m])

def sizes(f):
    with rasterio.open(f) as d:
        return f"{d.width}x{d.height}"

def flooded(f):
    with rasterio.open(f) as d:
        return d.read(1)

a = flooded(out + "/time_1x.tif"); b = flooded(out + "/time_2x.tif"); c = flooded(out + "/time_4x.tif")
print(f"profile={sys.argv[2]} runs={sys.argv[3]}")
print(f"grids: aoi 1/4 {sizes(out + '/aoi_q.tif')}, 1x {sizes(out + '/aoi_1.tif')}, 4x {sizes(out + '/aoi_4.tif')}; time {sizes(out + '/time_1x.tif')}")
bb = lambda s: [float(v) for v in s.split(",")]
print(f"1/4 and 1x AOI rasters equal the 4x one inside their AOI: "
      f"{inside_aoi_equal(out + '/aoi_q.tif', out + '/aoi_4.tif', bb(sys.argv[4])) and inside_aoi_equal(out + '/aoi_1.tif', out + '/aoi_4.tif', bb(sys.argv[5]))}")
print(f"longer time ranges only add flooded pixels: {bool(np.all(a <= b) and np.all(b <= c))} "
      f"(flooded: {int(a.sum())}, {int(b.sum())}, {int(c.sum())})")
base = {}
print(f"{'':14}{'wall s':>9}{'peak MB':>9}{'time/small':>12}{'mem/small':>11}")
for n, t, m in rows:
    series = n.split("_")[0]
    base.setdefault(series, (t, m))
    bt, bm = base[series]
    print(f"{n:14}{t:9.2f}{m:9d}{t / bt:12.2f}{m / bm:11.2f}")
PYEOF
