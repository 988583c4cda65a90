#!/usr/bin/env bash
# Installs what the Node-based integration tests need: node and npm (Debian's nodejs and npm
# packages, only when either command is missing), then the locked npm dependencies of
# tests/pulsar-flex (pulsar-flex and what it pulls in) with `npm ci`. The npm step runs only
# when tests/pulsar-flex/node_modules is missing, older than package-lock.json or package.json,
# or was left half-installed, so a second run takes a moment. Idempotent.
#
#   scripts/setup-node.sh [--force] [--no-apt]
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=tests/pulsar-flex
STAMP=$DIR/node_modules/.magnetar-installed # written after a verified install
force=0
apt=1

usage() {
  cat <<USAGE
Usage: scripts/setup-node.sh [options]

Installs node and npm if missing (Debian packages nodejs, npm), then runs
'npm ci --no-audit --no-fund' in $DIR when its node_modules is missing or out of date.

Options:
  --force      reinstall $DIR/node_modules even if it looks up to date
  --no-apt     never install Debian packages; fail if node or npm is missing
  -h, --help   show this help
USAGE
}

die() { echo "setup-node.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1; shift ;;
    --no-apt) apt=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup-node.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  [ "$apt" = 1 ] || die "node or npm is missing and --no-apt was given; install the Debian packages nodejs and npm"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "node or npm is missing; run as root to install nodejs and npm"
    SUDO=sudo
  fi
  echo "setup-node.sh: installing the Debian packages nodejs and npm"
  $SUDO apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm \
    || die "apt-get install nodejs npm failed"
  command -v node >/dev/null 2>&1 || die "node is still missing after installing nodejs"
  command -v npm >/dev/null 2>&1 || die "npm is still missing after installing npm"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || die "node does not run"
[ "$node_major" -ge 18 ] 2>/dev/null || die "node $(node --version) is too old; the tests need node 18 or newer"
echo "setup-node.sh: node $(node --version), npm $(npm --version 2>/dev/null)"

[ -f "$DIR/package.json" ] || die "$DIR/package.json is missing"
[ -f "$DIR/package-lock.json" ] || die "$DIR/package-lock.json is missing (npm ci installs only what it locks)"

# Up to date: a stamp from a verified install, newer than the lockfile and package.json.
up_to_date() {
  [ -f "$STAMP" ] && [ ! "$DIR/package-lock.json" -nt "$STAMP" ] && [ ! "$DIR/package.json" -nt "$STAMP" ]
}

# The install works when the locked pulsar-flex loads.
verify() {
  (cd "$DIR" && node -e '
    const want = require("./package.json").dependencies["pulsar-flex"];
    const got = require("pulsar-flex/package.json").version;
    if (got !== want) { console.error(`pulsar-flex ${got} installed, ${want} wanted`); process.exit(1); }
    const { Producer, Consumer } = require("pulsar-flex");
    if (typeof Producer !== "function" || typeof Consumer !== "function") process.exit(1);
  ')
}

if [ "$force" = 0 ] && up_to_date && verify 2>/dev/null; then
  echo "setup-node.sh: $DIR/node_modules is up to date"
  exit 0
fi

echo "setup-node.sh: npm ci in $DIR"
rm -f "$STAMP"
(cd "$DIR" && npm ci --no-audit --no-fund) || die "npm ci in $DIR failed (is the npm registry reachable?)"
verify || die "npm ci in $DIR finished but pulsar-flex does not load"
touch "$STAMP"
echo "setup-node.sh: installed $DIR/node_modules (pulsar-flex $(cd "$DIR" && node -p 'require("pulsar-flex/package.json").version'))"
