#!/usr/bin/env bash
# The layering check (scripts/check-layers.py): the tree keeps to src/modules.txt, and the check
# finds each kind of breach in a small tree built here (so it cannot pass by finding nothing).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
check="$here/scripts/check-layers.py"
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== the tree"
python3 "$check" --root "$here"

t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mk() { mkdir -p "$(dirname "$t/$1")"; printf '%s\n' "$2" > "$t/$1"; }
mk src/modules.txt "module common mg_common
public common *
module low mg_low
public low low.h
uses low common
module high mg_high
public high high.h
uses high common low"
mk src/common/c.h '/* common */'
mk src/low/low.h '#include "common/c.h"'
mk src/low/low_int.h '#include "low/low.h"'
mk src/low/CMakeLists.txt 'mg_add_module(NAME mg_low SOURCES x.c LIBS mg_common)'
mk src/high/high.c '#include "common/c.h"
#include "low/low.h"'
mk src/high/CMakeLists.txt 'mg_add_module(NAME mg_high SOURCES high.c LIBS mg_low mg_common)'
mk tests/unit/low/test_low.c '#include "low/low_int.h"'

echo "== a tree that keeps to its graph"
out=$(python3 "$check" --root "$t") || fail "a clean tree was refused: $out"

expect() { # expect WHAT PATTERN: the check fails and names the breach
    local out
    if out=$(python3 "$check" --root "$t"); then fail "$1 went unnoticed"; fi
    grep -q -- "$2" <<<"$out" || fail "$1: expected '$2' in: $out"
    echo "found: $1"
}

mk src/low/up.c '#include "high/high.h"'
expect "a module including a module above it" 'src/low/up.c: includes "high/high.h": low may not use high'
rm "$t/src/low/up.c"

mk src/high/peek.c '#include "low/low_int.h"'
expect "a private header of another module" 'src/high/peek.c: includes "low/low_int.h": low/low_int.h is private to low'
rm "$t/src/high/peek.c"

mk tests/fault/test_x.c '#include "low/low_int.h"'
expect "a test outside the module including its private header" 'tests/fault/test_x.c: includes "low/low_int.h": private to low'
rm "$t/tests/fault/test_x.c"

mk src/high/CMakeLists.txt 'mg_add_module(NAME mg_high SOURCES high.c LIBS mg_low mg_common)
target_link_libraries(mg_high PRIVATE mg_other)'
mk src/low/CMakeLists.txt 'mg_add_module(NAME mg_low SOURCES x.c LIBS mg_high mg_common)'
expect "a link to a module above" 'mg_low links mg_high: low may not use high'
mk src/low/CMakeLists.txt 'mg_add_module(NAME mg_low SOURCES x.c LIBS mg_common)'

rm "$t/src/high/high.c"
mk src/high/high.c '#include "common/c.h"'
expect "a link to a module no source uses" 'mg_high links mg_low, but no file of src/high includes a header of low'

printf '%s\n' "exception tests/fault/test_x.c low/low_int.h" >> "$t/src/modules.txt"
expect "an exception nothing needs" 'exception tests/fault/test_x.c low/low_int.h is not needed any more'

echo "PASS"
