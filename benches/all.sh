#!/usr/bin/env bash
# Every series of BENCHMARKS.md, one after the other (release build, ~40 min
# on 2 cores once the scenes exist; they are kept under BENCH_DIR):
#   e2e.sh tutorial   floodsql vs the tutorial's Python stack vs the decode floor, local and cluster
#   e2e.sh gfm        the same on COGs shaped like GFM's (mostly constant blocks, DEFLATE and ZSTD)
#   remote.sh medium  local files vs HTTP with 0 / 20 / 100 ms per response
#   remote.sh tutorial, remote.sh gfm   the same, floodsql's own reader only
#                     (the latency goals' scenes)
#   scale.sh          AOI 1/4 / 1x / 4x and time range 1x / 2x / 4x: peak RSS
#   country.sh        a > 1 Gpx grid, local and on the cluster: client and executor RSS
#   analytics.sh      zonal statistics (5 and 400 regions) and flood polygons vs the extent
#   python.sh         the Python package vs the CLI vs the tutorial's cells (tutorial-sized scene)
#
#   benches/all.sh     RUNS=3  PROFILE=release|dev  BENCH_DIR=/tmp/floodsql-bench
set -euo pipefail
cd "$(dirname "$0")/.."
for s in "e2e.sh tutorial" "e2e.sh gfm" "remote.sh medium" "remote.sh tutorial" "remote.sh gfm" \
  "scale.sh" "country.sh" "analytics.sh" "python.sh tutorial"; do
  echo "== benches/$s"
  # shellcheck disable=SC2086
  case "$s" in
    "remote.sh medium") bash benches/remote.sh medium ;;
    remote.sh*) READERS=native PEER_DELAYS= bash benches/$s ;;
    *) bash benches/$s ;;
  esac
  echo
done
