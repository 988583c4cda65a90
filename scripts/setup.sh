#!/usr/bin/env bash
# Installs the Debian packages Magnetar needs (only the missing ones, so a second run is quick),
# then configures and builds. Idempotent. Run as root on Debian 12 (or with sudo available).
#
#   scripts/setup.sh [--build-dir DIR] [--sanitize LIST] [--werror] [--no-install] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything the project builds, links or tests against, by Debian package name. clang and
# libfuzzer-14-dev serve only the fuzz build (perf/fuzz.sh, build-fuzz/); the main build is gcc.
# chromium drives the chat page's browser test; nginx with nchan is the peer perf/chat.sh measures
# the chat gateway against, and jq reads its load client's results.
PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format git curl procps iproute2 python3
  libuv1-dev libaio-dev librocksdb-dev libzstd-dev liblz4-dev zlib1g-dev libsnappy-dev
  protobuf-c-compiler libprotobuf-c-dev libmicrohttpd-dev
  libzookeeper-mt-dev zookeeper
  librdkafka-dev kcat
  libcriterion-dev
  clang libfuzzer-14-dev
  fio
  libjansson-dev libbrotli-dev nettle-dev libcurl4-openssl-dev
  chromium nginx libnginx-mod-nchan jq
)

build_dir=build
sanitize=""
werror=OFF
install=1
build=1
[ "${CI:-}" = "true" ] && werror=ON

usage() {
  cat <<USAGE
Usage: scripts/setup.sh [options]

Installs the missing Debian packages, then configures and builds Magnetar with CMake and Ninja.

Options:
  --build-dir DIR    build directory (default: build)
  --sanitize LIST    build with sanitizers, e.g. address,undefined
  --werror           treat compiler warnings as errors (default when CI=true)
  --no-install       do not install packages
  --no-build         install packages only
  -h, --help         show this help
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=${2:?--build-dir needs a directory}; shift 2 ;;
    --sanitize) sanitize=${2:?--sanitize needs a list, e.g. address,undefined}; shift 2 ;;
    --werror) werror=ON; shift ;;
    --no-install) install=0; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

if [ "$install" = 1 ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
      command -v sudo >/dev/null || { echo "setup.sh: run as root to install: ${missing[*]}" >&2; exit 1; }
      SUDO=sudo
    fi
    echo "setup.sh: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup.sh: all ${#PACKAGES[@]} packages present"
  fi
fi

# Node.js and the pulsar-flex client for the broker's integration tests (npm registry).
if [ "$install" = 1 ]; then
  bash scripts/setup-node.sh
fi

if [ "$build" = 1 ]; then
  cmake -S . -B "$build_dir" -G Ninja -DMG_WERROR="$werror" -DMG_SANITIZE="$sanitize" >/dev/null
  cmake --build "$build_dir"
  echo "setup.sh: built $build_dir/magnetar"
fi
