#!/usr/bin/env bash
# End-to-end benchmark on a synthetic GFM scene served by a real STAC API:
# floodsql extent (local, and on a 2-executor cluster on this machine) vs the
# tutorial's Python stack vs the GDAL decode floor. Wall time (median of RUNS)
# and peak RSS, as ratios to the Python peer measured in the same run. For the
# cluster row, peak MB is the client's only (executors are separate processes).
#
#   benches/e2e.sh [tiny|small|medium|tutorial]      (default: medium)
#   RUNS=3  PROFILE=release|dev  FLOODSQL_VENV=...   BENCH_DIR=/tmp/floodsql-bench  CLUSTER=1
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-medium}
RUNS=${RUNS:-3}
PROFILE=${PROFILE:-release}
VENV=${FLOODSQL_VENV:-$HOME/.cache/floodsql/venv}
DIR=${BENCH_DIR:-/tmp/floodsql-bench}/$SCALE
PY=$VENV/bin/python
[ -x "$PY" ] || { echo "no venv at $VENV: run tests/run.sh once (or set FLOODSQL_VENV)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

if [ "$PROFILE" = release ]; then cargo build --release --locked -q; else cargo build --locked -q; fi
TARGET=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/$([ "$PROFILE" = release ] && echo release || echo debug)/floodsql

mkdir -p "$DIR"; if [ ! -f "$DIR/items.json" ]; then "$BIN" --quiet synth --scale "$SCALE" --out "$DIR" > "$DIR.synth.txt"; fi
BBOX=$(grep '^bbox:' "$DIR.synth.txt" | cut -d' ' -f2)
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VENV/bin/rustac" serve --addr "127.0.0.1:$PORT" --create-collections "$DIR/collection.json" "$DIR/items.json" >/dev/null 2>&1 &
SERVER=$!
PIDS=$SERVER
trap 'kill $PIDS 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.2; done
API=http://127.0.0.1:$PORT
OUT=$(mktemp -d)

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [ "${CLUSTER:-1}" != 0 ]; then
  SP=$(free_port)
  "$BIN" scheduler --bind "127.0.0.1:$SP" > "$OUT/scheduler.log" 2>&1 & PIDS="$PIDS $!"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SP/healthz" >/dev/null && break; sleep 0.2; done
  for i in 1 2; do
    "$BIN" executor --scheduler "127.0.0.1:$SP" --bind "127.0.0.1:$(free_port)" --grpc-port "$(free_port)" \
      --work-dir "$OUT/work$i" > "$OUT/executor$i.log" 2>&1 & PIDS="$PIDS $!"
  done
  for _ in $(seq 100); do
    [ "$(curl -sf "http://127.0.0.1:$SP/api/executors" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 2 ] && break
    sleep 0.2
  done
fi

measure() { # name, command...: prints "name median_s peak_mb"
  local name=$1; shift
  local ts=() mem=0
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$OUT/t" "$@" >/dev/null 2>"$OUT/err" || { cat "$OUT/err" >&2; exit 1; }
    read -r t m < "$OUT/t"; ts+=("$t"); [ "$m" -gt "$mem" ] && mem=$m
  done
  local med; med=$(printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$name $med $((mem / 1024))"
}

{
  measure python_peer "$PY" tests/py/peer_tutorial.py "$API" "$BBOX" 2022-09-01T00:00:00 2022-10-01T00:00:00 "$OUT/peer.tif"
  measure floodsql "$BIN" --quiet extent --stac-url "$API" --collection GFM --bbox "$BBOX" \
      --datetime 2022-09-01T00:00:00Z/2022-10-01T00:00:00Z --out "$OUT/ours.tif"
  if [ "${CLUSTER:-1}" != 0 ]; then
    measure floodsql_cluster "$BIN" --quiet extent --stac-url "$API" --collection GFM --bbox "$BBOX" \
        --datetime 2022-09-01T00:00:00Z/2022-10-01T00:00:00Z --out "$OUT/cluster.tif" --cluster "df://127.0.0.1:$SP"
  fi
  measure decode_floor "$PY" benches/decode_floor.py "$API" "$BBOX" 2022-09-01T00:00:00 2022-10-01T00:00:00 2
} > "$OUT/results"

"$PY" - "$OUT/results" "$OUT/ours.tif" "$OUT/peer.tif" "$SCALE" "$PROFILE" "$OUT/cluster.tif" <<'PYEOF'
import os, sys
import numpy as np, rasterio
rows = {l.split()[0]: (float(l.split()[1]), int(l.split()[2])) for l in open(sys.argv[1])}
a, b = rasterio.open(sys.argv[2]), rasterio.open(sys.argv[3])
same = a.transform == b.transform and np.array_equal(a.read(1), b.read(1))
pt, pm = rows["python_peer"]
print(f"scene={sys.argv[4]} profile={sys.argv[5]} grid={a.width}x{a.height} identical_to_peer={same}")
if os.path.exists(sys.argv[6]):
    print(f"cluster output byte-identical to local: {open(sys.argv[6], 'rb').read() == open(sys.argv[2], 'rb').read()}")
print(f"{'':14}{'wall s':>9}{'peak MB':>9}{'time/peer':>11}{'mem/peer':>10}")
for k, (t, m) in rows.items():
    print(f"{k:14}{t:9.2f}{m:9d}{t / pt:11.3f}{m / pm:10.3f}")
PYEOF
