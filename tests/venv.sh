# Sourced by tests/run.sh and deploy/test-containers.sh: the Python venv of
# the tests (a STAC server, the tutorial's peer stack, independent readers,
# podman-compose), created or updated when tests/py/requirements.txt changes.
# Sets VENV.
VENV="${FLOODSQL_VENV:-$HOME/.cache/floodsql/venv}"
_req="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/py/requirements.txt"
_stamp="$VENV/.floodsql-req-$(sha256sum "$_req" | cut -c1-16)"
if [ ! -f "$_stamp" ]; then
  echo "== Python venv at $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$_req"
  touch "$_stamp"
fi
unset _req _stamp
