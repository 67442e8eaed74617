#!/usr/bin/env bash
# End-to-end benchmark on a synthetic GFM scene served by a real STAC API:
# floodsql extent (local, and on a 2-executor cluster on this machine) vs the
# tutorial's Python stack vs the GDAL decode floor. Wall time (median of RUNS)
# and peak RSS, as ratios to the Python peer measured in the same run. For the
# cluster row, peak MB is the client's only (executors are separate processes).
#
#   benches/e2e.sh [tiny|small|medium|tutorial|gfm]  (default: medium)
#   RUNS=3 (rounds: each round runs the stack, floodsql, floodsql on the
#   cluster and the GDAL floor once, so that they share the machine's slow and
#   fast spells)  PROFILE=release|dev  FLOODSQL_VENV=...
#   BENCH_DIR=/tmp/floodsql-bench  CLUSTER=1
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh "$@"
PORT=$(free_port)
"$VENV/bin/rustac" serve --addr "127.0.0.1:$PORT" --create-collections "$DIR/collection.json" "$DIR/items.json" >/dev/null 2>&1 &
PIDS="$PIDS $!"
API=http://127.0.0.1:$PORT
wait_url "$API/"
[ "${CLUSTER:-1}" != 0 ] && start_cluster

# the physical floor (the needed blocks' compressed bytes inflated, nothing
# else), measured in every round too: the windows the scene needs (from the
# floor script's own search and grid), and the floor's binary (bench_exe)
"$PY" benches/decode_floor.py --windows "$API" "$BBOX" 2022-09-01T00:00:00 2022-10-01T00:00:00 > "$OUT/windows.txt"
FLOOR=$(bench_exe inflate_floor)
{
  # the stack, floodsql (local, on the cluster), GDAL's floor and the
  # inflate floor in rounds, one run of each per round (see measure_rounds):
  # floodsql and the floors share the machine's slow and fast spells
  CMD_python_peer=("$PY" tests/py/peer_tutorial.py "$API" "$BBOX" 2022-09-01T00:00:00 2022-10-01T00:00:00 "$OUT/peer.tif")
  EXTENT=("$BIN" --quiet extent --stac-url "$API" --collection GFM --bbox "$BBOX"
      --datetime 2022-09-01T00:00:00Z/2022-10-01T00:00:00Z)
  CMD_floodsql=("${EXTENT[@]}" --out "$OUT/ours.tif")
  CMD_floodsql_cluster=("${EXTENT[@]}" --out "$OUT/cluster.tif" --cluster "${SCHED:-}")
  CMD_decode_floor=("$PY" benches/decode_floor.py "$API" "$BBOX" 2022-09-01T00:00:00 2022-10-01T00:00:00 2)
  CMD_inflate_floor=("$FLOOR" --round "$OUT/floor_rounds" "$OUT/windows.txt")
  if [ "${CLUSTER:-1}" != 0 ]; then
    measure_rounds python_peer floodsql floodsql_cluster decode_floor inflate_floor
  else
    measure_rounds python_peer floodsql decode_floor inflate_floor
  fi
} > "$OUT/results"
[ "${CLUSTER:-1}" != 0 ] && echo "executors' peak RSS MB: $(executor_peaks)"
# the floor's details (blocks, one thread, every core; best of 3)
"$FLOOR" "$OUT/windows.txt"

"$PY" - "$OUT/results" "$OUT/ours.tif" "$OUT/peer.tif" "$SCALE" "$PROFILE" "$OUT/cluster.tif" "$OUT/rounds_floodsql" "$OUT/floor_rounds" <<'PYEOF'
import os, statistics, sys
import numpy as np, rasterio
rows = {l.split()[0]: (float(l.split()[1]), int(l.split()[2]), l.split()[3:5]) for l in open(sys.argv[1])}
# the inflate floor's row times its block loading (GDAL): its inflate times
# are in its own log, compared round by round below
rows.pop("inflate_floor", None)
a, b = rasterio.open(sys.argv[2]), rasterio.open(sys.argv[3])
same = a.transform == b.transform and np.array_equal(a.read(1), b.read(1))
pt, pm, _ = rows["python_peer"]
print(f"scene={sys.argv[4]} profile={sys.argv[5]} grid={a.width}x{a.height} identical_to_peer={same}")
if os.path.exists(sys.argv[6]):
    print(f"cluster output byte-identical to local: {open(sys.argv[6], 'rb').read() == open(sys.argv[2], 'rb').read()}")
print(f"{'':17}{'wall s':>9}{'peak MB':>9}{'time/peer':>11}{'mem/peer':>10}   runs (fastest-slowest s)")
for k, (t, m, span) in rows.items():
    print(f"{k:17}{t:9.2f}{m:9d}{t / pt:11.3f}{m / pm:10.3f}   {'-'.join(span)}")
# floodsql against the inflate floor on every core, round by round (the same
# spell): the median of the rounds' ratios, and their range
ours = [float(l.split()[0]) for l in open(sys.argv[7])]
floors = [tuple(map(float, l.split())) for l in open(sys.argv[8])]
for i, name in enumerate(["libdeflate", "zlib-rs"]):
    r = sorted(o / f[i] for o, f in zip(ours, floors))
    fl = statistics.median(f[i] for f in floors)
    print(f"floodsql / {name} floor (all cores, {fl:.3f} s median), per round: "
          f"{statistics.median(r):.2f}x ({r[0]:.2f}-{r[-1]:.2f}x)")
PYEOF
