# Shared by the bench scripts (sourced, from the repository root): settings,
# the build, the synthetic scenes, a timing helper and a local cluster.
#   SCALE (first argument)  RUNS=3  PROFILE=release|dev  FLOODSQL_VENV=...  BENCH_DIR=/tmp/floodsql-bench
SCALE=${1:-medium}
RUNS=${RUNS:-3}
PROFILE=${PROFILE:-release}
VENV=${FLOODSQL_VENV:-$HOME/.cache/floodsql/venv}
ROOT=${BENCH_DIR:-/tmp/floodsql-bench}
DIR=$ROOT/$SCALE
PY=$VENV/bin/python
DT=2022-09-01T00:00:00Z/2022-10-01T00:00:00Z
[ -x "$PY" ] || { echo "no venv at $VENV: run tests/run.sh once (or set FLOODSQL_VENV)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

if [ "$PROFILE" = release ]; then cargo build --release --locked -q; else cargo build --locked -q; fi
TARGET=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/$([ "$PROFILE" = release ] && echo release || echo debug)/floodsql

# bench_exe NAME: builds the bench target NAME (benches/NAME.rs) and prints
# its executable. The dev profile: its per-package opt-levels build zlib-rs
# and libdeflate at opt-level 3, as release does, and it shares the test
# build's dependencies (the bench profile would rebuild every dependency
# with the dev-dependencies' features).
bench_exe() {
  local exe
  exe=$(cargo bench --locked -q --profile dev --bench "$1" --no-run --message-format=json \
    | "$PY" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1")
  [ -x "$exe" ] || { echo "the $1 bench did not build" >&2; return 1; }
  echo "$exe"
}

# scene NAME [synth options]: generates $ROOT/NAME once (kept between runs)
# and prints its directory; its AOI is on the "bbox:" line of NAME.synth.txt.
scene() {
  local name=$1; shift
  mkdir -p "$ROOT/$name"
  if [ ! -f "$ROOT/$name/items.json" ]; then
    "$BIN" --quiet synth "$@" --out "$ROOT/$name" > "$ROOT/$name.synth.txt"
  fi
  echo "$ROOT/$name"
}
scene_bbox() { grep '^bbox:' "$ROOT/$1.synth.txt" | cut -d' ' -f2; }

# the scenes' COGs are local files served by a local STAC API (file:// hrefs)
# or by a local HTTP server: the read policy's allowances a user would give
export FLOODSQL_ALLOWED_PATHS=$ROOT FLOODSQL_ALLOWED_HOSTS=127.0.0.1
scene "$SCALE" --scale "$SCALE" >/dev/null
BBOX=$(scene_bbox "$SCALE")
OUT=$(mktemp -d)
PIDS=""
trap 'kill $PIDS 2>/dev/null || true; rm -rf "$OUT"' EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_url() { for _ in $(seq 150); do curl -sf "$1" >/dev/null && return; sleep 0.2; done; echo "$1 did not come up" >&2; exit 1; }

measure() { # name, command...: prints "name median_s peak_mb fastest_s slowest_s"
  local name=$1; shift
  declare -ga "CMD_$name"
  local -n cmd_of_name="CMD_$name"
  cmd_of_name=("$@")
  measure_rounds "$name"
}

# measure_rounds NAME...: runs the commands in the arrays CMD_NAME in rounds,
# one of each per round (RUNS rounds), and prints for each "name median_s
# peak_mb fastest_s slowest_s". This machine is a VM whose speed comes in
# spells (the same binary took 0.92 s or 1.45-1.55 s on one scene, its user
# CPU time doubling): interleaved, the commands compared share the spells.
measure_rounds() {
  local n r
  for n in "$@"; do : > "$OUT/rounds_$n"; done
  for r in $(seq "$RUNS"); do
    for n in "$@"; do
      local -n cmd="CMD_$n"
      /usr/bin/time -f "%e %M" -o "$OUT/t" "${cmd[@]}" >/dev/null 2>"$OUT/err" || { cat "$OUT/err" >&2; exit 1; }
      cat "$OUT/t" >> "$OUT/rounds_$n"
    done
  done
  for n in "$@"; do
    sort -g "$OUT/rounds_$n" | awk -v n="$n" '{t[NR]=$1; if ($2 > m) m = $2} END {print n, t[int((NR+1)/2)], int(m / 1024), t[1], t[NR]}'
  done
}

# start_cluster: a scheduler and 2 executors on this machine; sets SCHED
# (df://host:port) and EXECUTORS (their pids, for executor_peaks).
start_cluster() {
  local sp; sp=$(free_port)
  "$BIN" scheduler --bind "127.0.0.1:$sp" > "$OUT/scheduler.log" 2>&1 & PIDS="$PIDS $!"
  wait_url "http://127.0.0.1:$sp/healthz"
  EXECUTORS=""
  for i in 1 2; do
    "$BIN" executor --scheduler "127.0.0.1:$sp" --bind "127.0.0.1:$(free_port)" --grpc-port "$(free_port)" \
      --work-dir "$OUT/work$i" > "$OUT/executor$i.log" 2>&1 & PIDS="$PIDS $!"; EXECUTORS="$EXECUTORS $!"
  done
  for _ in $(seq 100); do
    [ "$(curl -sf "http://127.0.0.1:$sp/api/executors" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 2 ] && break
    sleep 0.2
  done
  SCHED=df://127.0.0.1:$sp
}
# executor_peaks: each executor's peak RSS so far, in MB ("410 299")
executor_peaks() {
  local p out=""
  for p in $EXECUTORS; do out="$out $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$p/status")"; done
  echo "${out# }"
}
