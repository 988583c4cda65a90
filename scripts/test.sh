#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test:
#   1. clang-format check of every C file, and the layering check (src/modules.txt);
#   2. the whole ctest suite (unit, integration) in build/;
#   3. the unit tests again in build-asan/ under AddressSanitizer and UBSan, with the fault tests
#      labelled sanitize (tests/CMakeLists.txt), which run that build's magnetar.
# Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

bash scripts/setup.sh --werror
bash scripts/check-format.sh
python3 scripts/check-layers.py

echo "== test suite (build/)"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== unit and sanitize-labelled tests under address,undefined sanitizers (build-asan/)"
bash scripts/setup.sh --no-install --werror --build-dir build-asan --sanitize address,undefined
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan -L '^(unit|sanitize)$' -LE prefetch_off --output-on-failure -j "$jobs"
