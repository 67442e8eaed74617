# Shared by the bench scripts (sourced, from the repository root): settings,
# the build, the synthetic scene, and a timing helper.
#   SCALE (first argument)  RUNS=3  PROFILE=release|dev  FLOODSQL_VENV=...  BENCH_DIR=/tmp/floodsql-bench
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
OUT=$(mktemp -d)

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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
