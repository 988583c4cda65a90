#!/usr/bin/env bash
# Installs what is missing, builds, and starts `magnetar standalone` in the foreground.
# Extra arguments go to `magnetar standalone` (see `build/magnetar standalone --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec ./build/magnetar standalone "$@"
