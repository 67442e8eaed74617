#!/usr/bin/env bash
# Debian packages floodsql needs to build and run: a C toolchain, pkg-config,
# GDAL (headers for gdal-sys, the library at run time, gdalinfo for the
# tests' independent checks). Installs only what is missing; uses sudo when
# not root. Extra package names given as arguments are installed too
# (tests/run.sh adds python3-venv).
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
dpkg -s libgdal-dev >/dev/null 2>&1 || missing+=(libgdal-dev)
command -v gdalinfo >/dev/null 2>&1 || missing+=(gdal-bin)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust first (https://rustup.rs)" >&2; exit 1; }
exit 0
