#!/usr/bin/env python3
"""Checks that the code keeps to the module graph written in src/modules.txt.

  python3 scripts/check-layers.py [--root DIR]

Fails (exit 1, one line per finding) when
  - a file in src/<m> includes a header of a module that m may not use, or a header of another
    module that is not one of that module's public headers;
  - a test or benchmark file includes a module's private header (tests/unit/<m> and tests/<m>
    may include every header of m; the exceptions written in src/modules.txt may include theirs,
    and an exception no file needs any more is a finding too);
  - a CMake target of src/<m> links an mg_* library of a module that m may not use, or of a
    module whose headers no source of m includes (a module links exactly what it uses).

Written here rather than taken from a tool: include-what-you-use and clang-tidy check single
files, not a project's own layering, and the graph is a short text file this script reads.
"""
import argparse
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
CMAKE_CALL = re.compile(r'\b(mg_add_module|target_link_libraries)\s*\(([^)]*)\)', re.S)
MG_LIB = re.compile(r'\bmg_[a-z0-9_]+\b')


def load_graph(path):
    g = {"order": [], "targets": {}, "public": {}, "uses": {}, "provides": {}, "exceptions": {}}
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.split("#", 1)[0].split()
        if not line:
            continue
        kind, rest = line[0], line[1:]
        if kind == "module" and len(rest) >= 2:
            g["order"].append(rest[0])
            g["targets"][rest[0]] = rest[1:]
        elif kind == "public" and rest:
            g["public"][rest[0]] = set(rest[1:])
        elif kind == "uses" and rest:
            g["uses"][rest[0]] = rest[1:]
        elif kind == "provides" and len(rest) >= 2:
            g["provides"][rest[0]] = set(rest[1:])
        elif kind == "exception" and len(rest) == 2:
            g["exceptions"].setdefault(rest[0], set()).add(rest[1])
        else:
            sys.exit(f"{path}:{n}: cannot read this line")
    for m, uses in g["uses"].items():
        for u in uses:
            um = u.split("/", 1)[0]
            if um not in g["targets"]:
                sys.exit(f"{path}: {m} uses {u}, which is not a module")
            if g["order"].index(um) >= g["order"].index(m):
                sys.exit(f"{path}: {m} uses {u}, which is not below it")
    return g


def is_public(g, module, header):
    pub = g["public"].get(module, set())
    return "*" in pub or header in pub


def may_include(g, m, inc):
    """Whether module m may include inc ("x/y.h"); returns a reason string when not."""
    im, _, h = inc.partition("/")
    if im == m:
        return None
    allowed = g["uses"].get(m, [])
    if im not in allowed and inc not in allowed:
        return f"{m} may not use {im}"
    if not is_public(g, im, h):
        return f"{inc} is private to {im}"
    return None


def source_files(root, sub):
    out = []
    for d, _, files in os.walk(os.path.join(root, sub)):
        if "node_modules" in d:
            continue
        for f in files:
            if f.endswith((".c", ".h")):
                out.append(os.path.join(d, f))
    return sorted(out)


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return INCLUDE.findall(f.read())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    root = os.path.abspath(ap.parse_args().root)
    g = load_graph(os.path.join(root, "src", "modules.txt"))
    modules = [m for m in g["order"] if os.path.isdir(os.path.join(root, "src", m))]
    target_module = {t: m for m, ts in g["targets"].items() for t in ts}
    bad = []

    # Includes in src/.
    used = {m: set() for m in modules}
    for m in modules:
        for p in source_files(root, os.path.join("src", m)):
            rel = os.path.relpath(p, root)
            for inc in includes(p):
                if "/" not in inc:
                    continue
                im = inc.split("/", 1)[0]
                if im not in g["targets"]:
                    continue
                used[m].add(im)
                used[m].add(inc)
                why = may_include(g, m, inc)
                if why:
                    bad.append(f"{rel}: includes \"{inc}\": {why}")

    # Includes in tests/ and perf/: public headers only, but a module's own unit tests.
    used_exceptions = set()
    for sub in ("tests", "perf"):
        for p in source_files(root, sub):
            rel = os.path.relpath(p, root)
            parts = rel.split(os.sep)
            own = None
            if len(parts) > 3 and parts[:2] == ["tests", "unit"]:
                own = parts[2]
            elif len(parts) > 2 and parts[0] == "tests" and parts[1] in g["targets"]:
                own = parts[1]
            for inc in includes(p):
                im, _, h = inc.partition("/")
                if im not in g["targets"] or im == own or is_public(g, im, h):
                    continue
                if inc in g["exceptions"].get(rel, set()):
                    used_exceptions.add((rel, inc))
                    continue
                bad.append(f"{rel}: includes \"{inc}\": private to {im}")

    for rel, incs in sorted(g["exceptions"].items()):
        for inc in sorted(incs):
            if (rel, inc) not in used_exceptions:
                bad.append(f"src/modules.txt: exception {rel} {inc} is not needed any more")

    # Links: every mg_* library a module's targets link.
    for m in modules:
        cm = os.path.join(root, "src", m, "CMakeLists.txt")
        if not os.path.exists(cm):
            continue
        text = re.sub(r"#[^\n]*", "", open(cm, encoding="utf-8").read())
        for _, args in CMAKE_CALL.findall(text):
            words = args.split()
            if not words:
                continue
            libs = words[words.index("LIBS") + 1:] if "LIBS" in words else words[1:]
            target = words[1] if words[0] == "NAME" else words[0]
            for lib in MG_LIB.findall(" ".join(libs)):
                lm = target_module.get(lib)
                if lm is None or lm == m:
                    continue
                allowed = g["uses"].get(m, [])
                by_header = [u for u in allowed if u.startswith(lm + "/")]
                if lm not in allowed and not any(
                        u.split("/", 1)[1] in g["provides"].get(lib, set()) for u in by_header):
                    bad.append(f"src/{m}/CMakeLists.txt: {target} links {lib}: {m} may not use {lm}")
                elif lm not in used[m]:
                    bad.append(f"src/{m}/CMakeLists.txt: {target} links {lib}, "
                               f"but no file of src/{m} includes a header of {lm}")

    for b in bad:
        print(b)
    if bad:
        print(f"check-layers: {len(bad)} finding(s) against src/modules.txt")
        return 1
    print(f"check-layers: {len(modules)} modules keep to src/modules.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
