#!/usr/bin/env bash
# Country scale: a synthetic scene over ~7.5 x 5.5 degrees (an output grid of
# more than a gigapixel at 20 m, about the 2022 Pakistan floods' extent) with
# 3 acquisitions of 15000 px tiles, computed locally and on a 2-executor
# cluster on this machine. Wall time, peak RSS of the client and of each
# executor (VmHWM of the executor processes, started for this run). The
# cluster's COG must be byte-identical to the local one. Generating the scene
# takes a few minutes once (kept under BENCH_DIR); it needs ~3 GB of disk for
# the scene and as much again for the run's temp files.
#
#   benches/country.sh          RUNS=1  PROFILE=release|dev  BENCH_DIR=/tmp/floodsql-bench
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
source benches/common.sh tiny
C_BBOX=64.4627,24.1442,71.9627,29.6442
C_DIR=$(scene country --scale tutorial --bbox "$C_BBOX" --acquisitions 3)
start_cluster
RUN=("$BIN" --quiet extent --collection GFM --stac-url "$C_DIR/items.json" --bbox "$C_BBOX" --datetime "$DT")
{
  measure local "${RUN[@]}" --out "$OUT/local.tif"
  measure cluster "${RUN[@]}" --out "$OUT/cluster.tif" --cluster "$SCHED"
} > "$OUT/results"
PEAKS=$(executor_peaks)

"$PY" - "$OUT" "$PROFILE" "$RUNS" "$PEAKS" <<'PYEOF'
import sys
import rasterio
out = sys.argv[1]
rows = [(l.split()[0], float(l.split()[1]), int(l.split()[2])) for l in open(out + "/results")]
same = open(out + "/local.tif", "rb").read() == open(out + "/cluster.tif", "rb").read()
with rasterio.open(out + "/local.tif") as d:
    grid = f"{d.width}x{d.height} ({d.width * d.height / 1e9:.2f} Gpx)"
print(f"profile={sys.argv[2]} runs={sys.argv[3]} grid={grid} cluster COG byte-identical to local: {same}")
base = rows[0][1]
print(f"{'':10}{'wall s':>9}{'peak MB':>9}{'time/local':>12}")
for n, t, m in rows:
    print(f"{n:10}{t:9.2f}{m:9d}{t / base:12.2f}")
print(f"executors' peak RSS MB (cluster run): {sys.argv[4]}")
PYEOF
