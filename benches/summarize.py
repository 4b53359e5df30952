#!/usr/bin/env python3
"""Prints criterion's medians as a Markdown table, with ratios against a baseline.

Usage: benches/summarize.py [CRITERION_DIR] [--baseline NAME]

Reads CRITERION_DIR/<group>/<function>[/<parameter>]/new/estimates.json (default
target/criterion) and prints, per group and parameter, each function's median time and its
ratio to the baseline function of the same group and parameter (default: any function
that is not "vipgate"; the ratio is baseline / vipgate, so 5.0 means vipgate is 5 times
faster).
"""
import json
import os
import sys


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else "target/criterion"
    rows = {}
    for dirpath, _, files in os.walk(root):
        if "estimates.json" in files and os.path.basename(dirpath) == "new":
            bench = os.path.relpath(os.path.dirname(dirpath), root).split(os.sep)
            if bench[0] == "report" or len(bench) < 2:
                continue
            with open(os.path.join(dirpath, "estimates.json")) as f:
                median = json.load(f)["median"]["point_estimate"]
            group, function, param = bench[0], bench[1], "/".join(bench[2:])
            rows.setdefault((group, param), {})[function] = median
    print("| group | parameter | vipgate (median) | other (median) | other / vipgate |")
    print("|---|---|---|---|---|")
    for (group, param), funcs in sorted(rows.items()):
        ours = funcs.get("vipgate")
        others = {k: v for k, v in funcs.items() if k != "vipgate"}
        if not others:
            print(f"| {group} | {param or '-'} | {human(ours)} | | |")
        for name, ns in sorted(others.items()):
            ratio = f"{ns / ours:.2f}" if ours else ""
            print(f"| {group} | {param or '-'} | {human(ours) if ours else ''} | {name}: {human(ns)} | {ratio} |")


if __name__ == "__main__":
    main()
