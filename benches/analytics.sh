#!/usr/bin/env bash
# Zonal statistics and flood polygons against the plain extent, on one scene
# (default: medium, 35 Mpx, 12 slices), measured in the same run:
#   extent          floodsql extent (the baseline: same search, same scan)
#   zonal_5         floodsql zonal with the scene's 5 regions
#   zonal_400       floodsql zonal with 400 regions (a 20 x 20 lattice of
#                   quadrilaterals over the AOI): cost should follow chunks,
#                   not regions
#   polygons_1024   floodsql polygons of the extent, 1024 px blocks
#   polygons_256    the same with 256 px blocks (more pieces to merge)
# Median wall time of RUNS and peak RSS, as ratios to `extent`. Outputs are
# cross-checked: the regions' flooded pixels never exceed the extent's, and
# both block sizes give as many polygons, holding every flooded pixel.
#
#   benches/analytics.sh [SCALE]   RUNS=3  PROFILE=release|dev  BENCH_DIR=/tmp/floodsql-bench
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh "${1:-medium}"
DIR=$(scene "analytics-$SCALE" --scale "$SCALE")
BBOX=$(scene_bbox "analytics-$SCALE")
"$PY" - "$BBOX" "$OUT/lattice.geojson" <<'PYEOF'
import json, sys
x0, y0, x1, y1 = map(float, sys.argv[1].split(","))
n, feats = 20, []
for j in range(n):
    for i in range(n):
        a, b = x0 + (x1 - x0) * i / n, x0 + (x1 - x0) * (i + 1) / n
        c, d = y0 + (y1 - y0) * j / n, y0 + (y1 - y0) * (j + 1) / n
        feats.append({"type": "Feature", "properties": {"name": f"cell {i},{j}"},
                      "geometry": {"type": "Polygon", "coordinates": [[[a, c], [b, c], [b, d], [a, d], [a, c]]]}})
json.dump({"type": "FeatureCollection", "features": feats}, open(sys.argv[2], "w"))
PYEOF
S=(--stac-url "$DIR/items.json" --collection GFM --bbox "$BBOX" --datetime "$DT")
{
  measure extent "$BIN" --quiet extent "${S[@]}" --out "$OUT/extent.tif"
  measure zonal_5 "$BIN" --quiet zonal "${S[@]}" --regions "$DIR/regions.geojson" --csv "$OUT/z5.csv"
  measure zonal_400 "$BIN" --quiet zonal "${S[@]}" --regions "$OUT/lattice.geojson" --csv "$OUT/z400.csv"
  measure polygons_1024 "$BIN" --quiet polygons "$OUT/extent.tif" --parquet "$OUT/p1024.parquet" --block 1024
  measure polygons_256 "$BIN" --quiet polygons "$OUT/extent.tif" --parquet "$OUT/p256.parquet" --block 256
} > "$OUT/results"

"$PY" - "$OUT" "$PROFILE" "$RUNS" "$SCALE" <<'PYEOF'
import csv, sys
import numpy as np, pyarrow.parquet as pq, rasterio
out, profile, runs, scale = sys.argv[1:]
rows = [(l.split()[0], float(l.split()[1]), int(l.split()[2])) for l in open(out + "/results")]
base_t, base_m = rows[0][1], rows[0][2]
print(f"analytics on the {scale} scene ({profile} build, median of {runs}; ratios to `extent` in the same run)")
print(f"{'run':<15}{'wall s':>9}{'x extent':>10}{'peak MB':>9}{'x extent':>10}")
for name, t, m in rows:
    print(f"{name:<15}{t:>9.2f}{t / base_t:>10.2f}{m:>9}{m / base_m:>10.2f}")
flooded = int((rasterio.open(out + "/extent.tif").read(1) == 1).sum())
z5 = sum(int(r["flooded_pixels"] or 0) for r in csv.DictReader(open(out + "/z5.csv")))
z400 = sum(int(r["flooded_pixels"] or 0) for r in csv.DictReader(open(out + "/z400.csv")))
p1 = pq.read_table(out + "/p1024.parquet")
p2 = pq.read_table(out + "/p256.parquet")
assert z5 <= flooded and z400 <= flooded, (z5, z400, flooded)
assert sum(p1["pixels"].to_pylist()) == sum(p2["pixels"].to_pylist()) == flooded
assert p1.num_rows == p2.num_rows
print(f"checks: flooded px {flooded}; in the 5 regions {z5}; in the 400 cells {z400}; "
      f"{p1.num_rows} polygons with either block size, {flooded} px")
PYEOF
