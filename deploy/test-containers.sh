#!/usr/bin/env bash
# deploy/ for real, from a fresh clone, in one command:
#
#   bash deploy/test-containers.sh
#
# 1. podman (+ runc, debootstrap) installed when missing (root, Debian);
# 2. a Debian bookworm base image built from Debian's package registry
#    (debootstrap --variant=minbase, imported as localhost/floodsql-base:bookworm;
#    kept for later runs) — or RUNTIME_IMAGE=… to use an image you have;
# 3. floodsql built (release mode; dev with FLOODSQL_CONTAINER_PROFILE=dev) on
#    this (bookworm) host and the image built
#    from deploy/Dockerfile with BINARY=prebuilt (size reported);
# 4. tests/py/test_containers.py: deploy/compose.yaml started with
#    podman-compose, health checks run until healthy, the tutorial query on a
#    synthetic scene through --cluster from the host compared byte for byte
#    with the local run, an executor container killed mid-query, `down`
#    leaving nothing; then the Kubernetes manifests rendered and run as
#    containers (see the test's KubeEmulation);
# 5. a summary: image size, time to healthy, query wall time local vs compose.
#
# When this machine cannot run containers (no podman and no way to install
# it, or podman refuses to start one), it says so and exits 0: SKIPPED, never
# silently. Anything failing after that fails the script.
#
#   CONTAINERS_CONF   podman configuration (default: podman's, or the fallback
#                     below when the defaults cannot start a container here)
#   RUNTIME_IMAGE     runtime base image (default: the debootstrapped one)
#   FLOODSQL_BUILD_IN_IMAGE=1
#                     build floodsql inside the image instead (the Dockerfile's
#                     default `build` stage; a clean release build: ~20 min on
#                     2 cores), on RUST_IMAGE — default: a stand-in for
#                     rust:1.95-bookworm made of the base image, Debian's
#                     build-essential, this host's Rust toolchain and CA bundle
#   FLOODSQL_CONTAINER_PROFILE=dev
#                     put the dev-profile binary in the image (the one
#                     tests/run.sh builds; what CI does) instead of a
#                     release build
#   CARGO_TARGET_DIR, FLOODSQL_VENV  as for tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
skip() {
  echo "== container tests SKIPPED: $*"
  exit 0
}

echo "== container tests (deploy/test-containers.sh)"
# 1. podman
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
[ -x /usr/sbin/runc ] || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -n "${RUNTIME_IMAGE:-}" ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
      skip "could not install ${missing[*]} (apt-get failed)"
  else
    skip "${missing[*]} not installed, and this is not a root Debian shell to install them"
  fi
fi

# 2. the base image
BASE="${RUNTIME_IMAGE:-localhost/floodsql-base:bookworm}"
if [ -z "${RUNTIME_IMAGE:-}" ] && ! podman image exists "$BASE"; then
  [ "$(id -u)" -eq 0 ] || skip "building the base image needs root (debootstrap); or set RUNTIME_IMAGE"
  rootfs=$(mktemp -d /tmp/floodsql-rootfs.XXXXXX)
  echo "== base image $BASE: debootstrap --variant=minbase bookworm"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | podman import -q - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi

# can this machine start a container? podman's defaults first, then the
# settings some sandboxed kernels need (runc, cgroupfs, no default ulimits)
if [ -z "${CONTAINERS_CONF:-}" ] && ! podman run --rm "$BASE" true >/dev/null 2>&1; then
  conf="$HOME/.cache/floodsql/containers.conf"
  mkdir -p "$(dirname "$conf")"
  printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' >"$conf"
  export CONTAINERS_CONF="$conf"
  echo "== podman's defaults cannot start a container here; using $conf (runc, cgroupfs, no default ulimits)"
fi
if ! err=$(podman run --rm "$BASE" true 2>&1); then
  skip "podman cannot start a container on this machine: $(echo "$err" | tail -1)"
fi

# 3. the binary and the image
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/floodsql/target}"
if [ "${FLOODSQL_CONTAINER_PROFILE:-release}" = dev ]; then
  # the binary tests/run.sh built (CI: a cold release build would add ~20 min)
  echo "== cargo build (dev profile)"
  cargo build --locked --bin floodsql
  BIN="$CARGO_TARGET_DIR/debug/floodsql"
else
  echo "== cargo build --release"
  cargo build --release --locked --bin floodsql
  BIN="$CARGO_TARGET_DIR/release/floodsql"
fi
IMAGE=localhost/floodsql:test
build_args=(--build-arg "RUNTIME_IMAGE=$BASE")
quiet=(-q)
if [ -n "${FLOODSQL_BUILD_IN_IMAGE:-}" ]; then
  RUST_IMAGE="${RUST_IMAGE:-localhost/floodsql-rust:bookworm}"
  if ! podman image exists "$RUST_IMAGE"; then
    ctx=$(mktemp -d /tmp/floodsql-rust.XXXXXX)
    mkdir "$ctx/rust"
    cp -a "$(rustc --print sysroot)"/{bin,lib} "$ctx/rust/"
    # cargo trusts the host's CA bundle (a TLS proxy in front of crates.io is
    # trusted there, not by Debian's ca-certificates)
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
    printf '%s\n' "FROM $BASE" \
      "RUN apt-get update && apt-get install -y --no-install-recommends build-essential ca-certificates && rm -rf /var/lib/apt/lists/*" \
      "COPY rust /usr/local/rust" \
      "COPY host-ca.crt /usr/local/share/host-ca.crt" \
      "ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin CARGO_HOME=/usr/local/cargo CARGO_HTTP_CAINFO=/usr/local/share/host-ca.crt" \
      >"$ctx/Containerfile"
    echo "== builder base $RUST_IMAGE: $BASE + build-essential + $(rustc --version)"
    podman build -q -t "$RUST_IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
  build_args+=(--build-arg "RUST_IMAGE=$RUST_IMAGE")
  quiet=()
else
  mkdir -p deploy/prebuilt
  strip -o deploy/prebuilt/floodsql "$BIN"
  trap 'rm -rf "$ROOT/deploy/prebuilt"' EXIT
  # the builder stage only copies the binary: the runtime base will do
  build_args+=(--build-arg BINARY=prebuilt --build-arg "RUST_IMAGE=$BASE")
fi
old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
echo "== podman build -f deploy/Dockerfile ${build_args[*]}"
t0=$(date +%s)
podman build "${quiet[@]}" -f deploy/Dockerfile "${build_args[@]}" -t "$IMAGE" . | tail -3
build_s=$(($(date +%s) - t0))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
new=$(podman image inspect --format '{{.Id}}' "$IMAGE")
# the previous run's image (now untagged) and the builder stage's
[ -n "$old" ] && [ "$old" != "$new" ] && podman rmi "$old" >/dev/null 2>&1 || true
podman image prune -f --filter label=org.floodsql.stage=build >/dev/null

# 4. the tests
source "$ROOT/tests/venv.sh"
REPORT=$(mktemp /tmp/floodsql-containers.XXXXXX.json)
echo "== pytest tests/py/test_containers.py"
(cd tests/py && FLOODSQL_IMAGE="$IMAGE" FLOODSQL_BIN="$BIN" PODMAN_COMPOSE="$VENV/bin/podman-compose" \
  FLOODSQL_CONTAINER_REPORT="$REPORT" PATH="$VENV/bin:$PATH" \
  "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider test_containers.py)

# 5. the figures
binary=$(podman run --rm --entrypoint stat "$IMAGE" -c %s /usr/local/bin/floodsql)
"$VENV/bin/python" - "$REPORT" "$size" "$build_s" "$binary" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
size, build_s, binary = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
print(f"image: {size / 1e6:.0f} MB (floodsql binary {binary / 1e6:.0f} MB), built in {build_s} s")
print(f"compose cluster: up and healthy in {r['seconds_to_healthy']} s "
      f"(health checks passing {r['seconds_health_checks']} s after `up` returned)")
print(f"query (medium scene, 24 slices): local {r['query_seconds_local']} s, "
      f"compose cluster {r['query_seconds_compose']} s "
      f"({r['query_seconds_compose'] / r['query_seconds_local']:.2f}x)")
print(f"executor container killed mid-query: {r['executor_loss']}")
EOF
rm -f "$REPORT"
