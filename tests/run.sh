#!/usr/bin/env bash
# The test command: one command on a fresh Debian machine. Installs what the
# tests need (GDAL from Debian, a Python venv with the STAC server and the
# tutorial's peer stack), builds floodsql and its Python package, runs the
# Rust tests (unit, integration, sqllogictest) and the end-to-end tests
# (pytest, the Python package's included).
#
#   FLOODSQL_VENV     venv to (re)use         (default ~/.cache/floodsql/venv)
#   CARGO_TARGET_DIR  cargo target dir to (re)use
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# Debian packages (GDAL, toolchain; PostgreSQL + PostGIS for the pgstac STAC
# server) and python3-venv when missing
extra=(postgresql-15 postgresql-15-postgis-3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || extra+=(python3-venv)
bash "$ROOT/deploy/install-deps.sh" "${extra[@]}"

source "$ROOT/tests/venv.sh"

echo "== cargo build"
cargo build --locked --workspace --all-targets
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export FLOODSQL_BIN="$TARGET_DIR/debug/floodsql"

echo "== Python package (maturin develop: the debug build, into the venv)"
# the same workspace and target dir as above: only the extension links anew
(cd "$ROOT/python" && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --locked -q >/dev/null)

echo "== cargo test"
cargo test --locked --workspace

echo "== end-to-end tests (pytest)"
cd "$ROOT/tests/py"
PATH="$VENV/bin:$PATH" "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider .
