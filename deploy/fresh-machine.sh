#!/usr/bin/env bash
# Runs the README's first command on a fresh Debian bookworm that has only
# Rust: a minimal root filesystem from Debian's package registry
# (debootstrap --variant=minbase), this repository cloned into it, the
# host's Rust toolchain (~/.rustup, ~/.cargo) bind-mounted, then
#   bash deploy/install-deps.sh && cargo run --locked -- demo
# inside it. Needs root and debootstrap; takes ~10 minutes (a clean build).
#   usage: bash deploy/fresh-machine.sh [ROOTFS_DIR]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-/tmp/floodsql-fresh}
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
rm -rf "$R"
debootstrap --variant=minbase bookworm "$R" http://deb.debian.org/debian >/dev/null
git clone -q "$REPO" "$R/repo"
cp /etc/resolv.conf "$R/etc/resolv.conf"
mkdir -p "$R/root/.rustup" "$R/root/.cargo"
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
mount --bind "$HOME/.rustup" "$R/root/.rustup"
mount --bind "$HOME/.cargo" "$R/root/.cargo"
trap 'umount "$R/root/.cargo" "$R/root/.rustup" "$R/dev" "$R/proc"' EXIT
chroot "$R" /usr/bin/env -i HOME=/root PATH=/root/.cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c 'cd /repo && ! command -v gdalinfo && ! command -v cc &&
           bash deploy/install-deps.sh && cargo run --locked -- demo'
