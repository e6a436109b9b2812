#!/usr/bin/env python3
"""How much does the A/B check's new/old move across runs of an unchanged tree?

    python3 benchmarks/tools/ab_spread.py RUN1/ab.json RUN2/ab.json ...

For each quick case: new time / old time (median over the interleaved rounds) of every run's first
measurement, their range, and the largest excess over 1 (what the case's tolerance in
Catalog.QuickSet must absorb when both libraries are the same code). Used to choose those
tolerances (benchmarks/README.md, "A/B check")."""
import json
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
print(f"{len(runs)} runs, load average at their starts: {', '.join(r['load'] for r in runs)}")
keys = []
for run in runs:
    for m in run["measurements"]:
        if " (again " not in m["key"] and m["key"] not in keys:
            keys.append(m["key"])
print(f"{'case':48} {'new/old per run':>40}   min - max   worst above 1")
for key in keys:
    values = [m["ratio"] for run in runs for m in run["measurements"]
              if m["key"] == key and m.get("notComparableBecause") is None and m.get("failedBecause") is None]
    if not values:
        print(f"{key:48} not measured")
        continue
    print(f"{key:48} {' '.join(f'{v:5.3f}' for v in values):>40}   {min(values):.3f} - {max(values):.3f}   {max(0.0, max(values) - 1):6.1%}")
