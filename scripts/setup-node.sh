#!/usr/bin/env bash
# Installs what the Node-based integration tests need: node and npm (Debian's nodejs and npm
# packages, only when either command is missing), then the locked npm dependencies of
# tests/pulsar-flex (pulsar-flex and what it pulls in) and of tests/chat/js (ws, and
# puppeteer-core, which drives Debian's chromium) with `npm ci`. The npm step of a folder runs
# only when its node_modules is missing, older than package-lock.json or package.json, or was
# left half-installed, so a second run takes a moment. Idempotent.
#
#   scripts/setup-node.sh [--force] [--no-apt]
set -euo pipefail
cd "$(dirname "$0")/.."

force=0
apt=1

usage() {
  cat <<USAGE
Usage: scripts/setup-node.sh [options]

Installs node and npm if missing (Debian packages nodejs, npm), then runs
'npm ci --no-audit --no-fund' in tests/pulsar-flex and tests/chat/js when their
node_modules is missing or out of date.

Options:
  --force      reinstall node_modules even if they look up to date
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

# One folder: its package.json and lockfile, and a Node expression that loads what it needs.
install_dir() {
  local DIR=$1 check=$2
  local STAMP=$DIR/node_modules/.magnetar-installed # written after a verified install
  [ -f "$DIR/package.json" ] || die "$DIR/package.json is missing"
  [ -f "$DIR/package-lock.json" ] || die "$DIR/package-lock.json is missing (npm ci installs only what it locks)"
  verify() { (cd "$DIR" && node -e "$check"); }
  # Up to date: a stamp from a verified install, newer than the lockfile and package.json.
  if [ "$force" = 0 ] && [ -f "$STAMP" ] && [ ! "$DIR/package-lock.json" -nt "$STAMP" ] \
     && [ ! "$DIR/package.json" -nt "$STAMP" ] && verify 2>/dev/null; then
    echo "setup-node.sh: $DIR/node_modules is up to date"
    return 0
  fi
  echo "setup-node.sh: npm ci in $DIR"
  rm -f "$STAMP"
  (cd "$DIR" && npm ci --no-audit --no-fund) || die "npm ci in $DIR failed (is the npm registry reachable?)"
  verify || die "npm ci in $DIR finished but its packages do not load"
  touch "$STAMP"
  echo "setup-node.sh: installed $DIR/node_modules"
}

# pulsar-flex: the locked version loads and has its producer and consumer.
install_dir tests/pulsar-flex '
  const want = require("./package.json").dependencies["pulsar-flex"];
  const got = require("pulsar-flex/package.json").version;
  if (got !== want) { console.error(`pulsar-flex ${got} installed, ${want} wanted`); process.exit(1); }
  const { Producer, Consumer } = require("pulsar-flex");
  if (typeof Producer !== "function" || typeof Consumer !== "function") process.exit(1);
'
# The chat tests: ws and puppeteer-core load.
install_dir tests/chat/js '
  const WebSocket = require("ws");
  const puppeteer = require("puppeteer-core");
  if (typeof WebSocket !== "function" || typeof puppeteer.launch !== "function") process.exit(1);
'
