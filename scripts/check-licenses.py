#!/usr/bin/env python3
"""Checks that every dependency's licence fits an Apache-2.0 project.

Reads `cargo metadata` and accepts a package when its SPDX expression can be
satisfied by the allowed licences (for `A OR B` one side is enough, for
`A AND B` both are needed). Prints the packages that fail and exits 1.
"""
import json
import re
import subprocess
import sys

ALLOWED = {
    "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "MIT", "MIT-0", "BSD-2-Clause",
    "BSD-3-Clause", "ISC", "Zlib", "Unicode-3.0", "Unicode-DFS-2016", "CC0-1.0",
    "Unlicense", "BSL-1.0", "0BSD", "CDLA-Permissive-2.0", "MPL-2.0",
}


def tokens(expr):
    return re.findall(r"\(|\)|[A-Za-z0-9.\-+]+(?: WITH [A-Za-z0-9.\-+]+)?", expr)


def satisfied(expr):
    # Recursive descent over OR (lowest), AND, parentheses.
    toks = tokens(expr.replace("/", " OR "))
    pos = 0

    def parse_or():
        nonlocal pos
        ok = parse_and()
        while pos < len(toks) and toks[pos] == "OR":
            pos += 1
            ok = parse_and() or ok
        return ok

    def parse_and():
        nonlocal pos
        ok = parse_atom()
        while pos < len(toks) and toks[pos] == "AND":
            pos += 1
            ok = parse_atom() and ok
        return ok

    def parse_atom():
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok == "(":
            ok = parse_or()
            pos += 1  # ")"
            return ok
        return tok in ALLOWED

    return parse_or()


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"]))
    workspace = set(meta["workspace_members"])
    resolved = {n["id"] for n in meta["resolve"]["nodes"]}
    bad = []
    count = 0
    for pkg in meta["packages"]:
        if pkg["id"] in workspace or pkg["id"] not in resolved:
            continue
        count += 1
        lic = pkg.get("license")
        if not lic or not satisfied(lic):
            bad.append(f"{pkg['name']} {pkg['version']}: {lic or 'no licence field'}")
    if bad:
        print("dependencies with licences that do not fit Apache-2.0:")
        print("\n".join("  " + b for b in bad))
        sys.exit(1)
    print(f"{count} dependencies, all with licences that fit Apache-2.0")


if __name__ == "__main__":
    main()
