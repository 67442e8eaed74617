#!/usr/bin/env bash
# Remote COGs: the same query with the scene's COGs on local disk, and served
# over HTTP Range requests with 0, 20 and 100 ms added to every response (a
# stand-in for an object store's latency), read by floodsql's native reader
# (object_store, concurrent and coalesced ranges), by floodsql with GDAL's
# reader (/vsicurl/), and by the tutorial's Python stack. Wall time (median of
# RUNS) and peak RSS; ratios to floodsql on local files measured in the same
# run. Every output is checked pixel-identical, on the same grid and CRS, to
# the local one (not byte-identical: each COG records its catalogue's path).
#
# The COGs are served by benches/range_server.rs (Rust: a stand-in for an
# object store that costs the machine little), or with SERVER=python by the
# tests' tests/py/range_server.py, which shares the benchmark's two cores
# (~0.2 s of CPU per 600 requests and 50 MB: it measures its own cost too).
#
#   benches/remote.sh [tiny|small|medium|tutorial|gfm]    (default: medium)
#   RUNS=3  PROFILE=release|dev  DELAYS="0 20 100"  PEER_DELAYS="20"  READERS="native gdal"
#   SERVER=rust|python  FLOODSQL_VENV=...
#   (READERS=native PEER_DELAYS= : floodsql's own reader only)
set -euo pipefail
cd "$(dirname "$0")/.."
DELAYS=${DELAYS:-0 20 100}
PEER_DELAYS=${PEER_DELAYS-20}
READERS=${READERS:-native gdal}
SERVER=${SERVER:-rust}
source benches/common.sh "$@"
case "$SERVER" in
  rust) RANGE_SERVER=("$(bench_exe range_server)") ;;
  python) RANGE_SERVER=("$PY" tests/py/range_server.py) ;;
  *) echo "SERVER is rust or python, not '$SERVER'" >&2; exit 2 ;;
esac

# items whose hrefs point at the range server (the STAC API itself answers at once)
rewrite() { # items.json out.json base_url
  "$PY" - "$@" <<'PYEOF'
import json, sys
from pathlib import Path
d = json.load(open(sys.argv[1]))
for it in d["features"]:
    for a in it["assets"].values():
        a["href"] = sys.argv[3] + "/" + Path(a["href"]).name
json.dump(d, open(sys.argv[2], "w"))
PYEOF
}


OURS=("$BIN" --quiet extent --collection GFM --bbox "$BBOX" --datetime "$DT")

# one range server per delay, all up before the first round
declare -A PORT
for d in $DELAYS; do
  PORT[$d]=$(free_port); "${RANGE_SERVER[@]}" "$DIR/cogs" "${PORT[$d]}" "$d" & PIDS="$PIDS $!"
  wait_url "http://127.0.0.1:${PORT[$d]}/__stats"
  rewrite "$DIR/items.json" "$OUT/items_$d.json" "http://127.0.0.1:${PORT[$d]}"
done
CMD_local_native=("${OURS[@]}" --stac-url "$DIR/items.json" --out "$OUT/local.tif")
NAMES=(local_native)
if [[ " $READERS " == *" gdal "* ]]; then
  CMD_local_gdal=("${OURS[@]}" --stac-url "$DIR/items.json" --out "$OUT/local_gdal.tif" --set floodsql.reader=gdal)
  NAMES+=(local_gdal)
fi
for d in $DELAYS; do
  for r in $READERS; do
    declare -a "CMD_http${d}ms_$r=(\"\${OURS[@]}\" --stac-url \"\$OUT/items_$d.json\" --out \"\$OUT/http_${d}_$r.tif\" --set floodsql.reader=$r)"
    NAMES+=("http${d}ms_$r")
  done
done
{
  measure_rounds "${NAMES[@]}"
  for d in $PEER_DELAYS; do
    [ -n "${PORT[$d]:-}" ] || continue
    AP=$(free_port)
    "$VENV/bin/rustac" serve --addr "127.0.0.1:$AP" --create-collections "$DIR/collection.json" "$OUT/items_$d.json" >/dev/null 2>&1 & PIDS="$PIDS $!"
    wait_url "http://127.0.0.1:$AP/"
    RUNS=1 measure "http${d}ms_python_peer" "$PY" tests/py/peer_tutorial.py "http://127.0.0.1:$AP" "$BBOX" \
      2022-09-01T00:00:00 2022-10-01T00:00:00 "$OUT/http_${d}_peer.tif"
  done
} > "$OUT/results"

"$PY" - "$OUT" "$SCALE" "$PROFILE" "$RUNS" "$SERVER" <<'PYEOF'
import glob, os, re, statistics, sys
import numpy as np, rasterio
out = sys.argv[1]
rows = [(l.split()[0], float(l.split()[1]), int(l.split()[2])) for l in open(out + "/results")]
with rasterio.open(out + "/local.tif") as a:
    px, tr, crs = a.read(1), a.transform, a.crs
differ = []
for f in sorted(glob.glob(out + "/*.tif")):
    with rasterio.open(f) as b:
        # the tutorial's GeoTIFF loses its CRS: its grid is checked by transform
        same_crs = "peer" in f or b.crs == crs
        if not (b.transform == tr and same_crs and np.array_equal(b.read(1), px)):
            differ.append(os.path.basename(f))
same = not differ
def rounds(n):
    p = f"{out}/rounds_{n}"
    return [float(l.split()[0]) for l in open(p)] if os.path.exists(p) else []
local = rounds("local_native")
print(f"scene={sys.argv[2]} profile={sys.argv[3]} rounds={sys.argv[4]} server={sys.argv[5]} outputs identical={same}" + (f" (differ: {differ})" if differ else ""))
print(f"{'':24}{'wall s':>9}{'peak MB':>9}{'/ local, per round: median (min-max)':>40}{'added s':>9}{'RTTs':>6}")
for n, t, m in rows:
    r = rounds(n)
    if len(r) == len(local) and "python" not in n:
        q = [a / b for a, b in zip(r, local)]
        added = statistics.median(a - b for a, b in zip(r, local))
        ratio = f"{statistics.median(q):.2f} ({min(q):.2f}-{max(q):.2f})"
    else:
        added = t - statistics.median(local)
        ratio = f"{t / statistics.median(local):.2f} (one run)"
    d = re.match(r"http(\d+)ms", n)
    rtts = f"{added / (int(d.group(1)) / 1000):6.1f}" if d and int(d.group(1)) > 0 else f"{'':6}"
    print(f"{n:24}{t:9.2f}{m:9d}{ratio:>40}{added:9.3f}{rtts}")
PYEOF
