#!/usr/bin/env bash
# The Python package against the CLI and the tutorial's cells, on a synthetic
# GFM scene served by a real STAC API: wall time (median of RUNS) and peak
# RSS of whole processes — `floodsql extent` (COG written), a Python process
# that imports floodsql and calls max_flood_extent (the array returned), and
# the tutorial's cells (pystac-client + odc-stac + xarray/dask). Ratios are
# to the CLI measured in the same run; the Python result is checked against
# the CLI's GeoTIFF. A Python process that only imports floodsql, xarray and
# odc-geo is measured too: what a notebook pays before its first call. Installs the package's extension in the venv with
# `maturin develop` in the same profile as the CLI (tests/run.sh puts the
# debug build back).
#
#   benches/python.sh [tiny|small|medium|tutorial]   (default: tutorial)
#   RUNS=3  PEER_RUNS=1  PROFILE=release|dev  FLOODSQL_VENV=...  BENCH_DIR=/tmp/floodsql-bench
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh "${1:-tutorial}"
(cd python && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --locked -q \
   $([ "$PROFILE" = release ] && echo --release) >/dev/null)
PORT=$(free_port)
"$VENV/bin/rustac" serve --addr "127.0.0.1:$PORT" --create-collections "$DIR/collection.json" "$DIR/items.json" >/dev/null 2>&1 &
PIDS="$PIDS $!"
API=http://127.0.0.1:$PORT
wait_url "$API/"
START=2022-09-01T00:00:00 END=2022-10-01T00:00:00

{
  measure cli "$BIN" --quiet extent --stac-url "$API" --collection GFM --bbox "$BBOX" --datetime "$DT" --out "$OUT/cli.tif"
  measure python "$PY" benches/py_extent.py "$API" "$BBOX" "$START" "$END"
  # what a notebook has paid before it calls floodsql: the imports the
  # DataArray needs (a user of the tutorial's stack has them already)
  measure imports "$PY" -c "import floodsql, xarray, odc.geo.xr"
  RUNS=${PEER_RUNS:-1} measure tutorial "$PY" tests/py/peer_tutorial.py "$API" "$BBOX" "$START" "$END" "$OUT/peer.tif"
} > "$OUT/results"
"$PY" benches/py_extent.py "$API" "$BBOX" "$START" "$END" > "$OUT/py.txt"

"$PY" - "$OUT/results" "$OUT/cli.tif" "$OUT/py.txt" "$SCALE" "$PROFILE" <<'PYEOF'
import sys
import numpy as np, rasterio
rows = {l.split()[0]: (float(l.split()[1]), int(l.split()[2])) for l in open(sys.argv[1])}
flooded, nbytes = map(int, open(sys.argv[3]).read().split())
with rasterio.open(sys.argv[2]) as ds:
    same = int((ds.read(1) == 1).sum()) == flooded
ct, cm = rows["cli"]
pt, pm = rows["python"]
tt, tm = rows["tutorial"]
it, im = rows["imports"]
print(f"scene={sys.argv[4]} profile={sys.argv[5]} array={nbytes / 1e6:.1f} MB python_flooded_equals_cli={same}")
print(f"{'':10}{'wall s':>9}{'peak MB':>9}{'time/cli':>10}{'mem/cli':>9}")
for k, (t, m) in rows.items():
    print(f"{k:10}{t:9.2f}{m:9d}{t / ct:10.3f}{m / cm:9.3f}")
print(f"python vs cli: time {pt / ct:.2f}x (goal <= 1.1x); peak RSS {pm} MB vs cli + array "
      f"{cm + nbytes / 2**20:.0f} MB (goal: at most that)")
print(f"python net of the imports ({it:.2f} s, {im} MB): time {(pt - it) / ct:.2f}x the cli's; "
      f"peak RSS {pm - im} MB above the imports' vs cli + array {cm + nbytes / 2**20:.0f} MB")
print(f"tutorial vs python: {tt / pt:.1f}x the time (goal >= 15x), {tm / pm:.2f}x the memory")
PYEOF
