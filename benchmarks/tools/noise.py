#!/usr/bin/env python3
"""How much do the quick mode's ratios move across runs of an unchanged tree?

    python3 benchmarks/tools/noise.py RUN1/results.json RUN2/results.json ...

For each case: the median-of-rounds ratio of every run, their spread (max/min - 1), and the largest
drop of a run below the runs' median (what a tolerance must absorb); the same for the ratio of the
fastest samples. Used to choose the baseline's tolerance (benchmarks/README.md)."""
import json
import statistics
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
def key(r):
    return r["id"] if not r.get("threads") else f'{r["id"]} [{r["threads"]} thread{"" if r["threads"] == 1 else "s"}]'


ids = sorted({key(r) for run in runs for r in run["results"]})
print(f"{len(runs)} runs")
print(f"{'case':52} {'median-of-rounds ratio per run':>44}  spread  worst drop | min-sample ratios: spread, worst drop")
worst = 0.0
for case in ids:
    values = [r["ratio"] for run in runs for r in run["results"] if key(r) == case]
    minima = [r.get("ratioOfMinimums") for run in runs for r in run["results"] if key(r) == case]
    minima = [m for m in minima if m is not None]
    mid = statistics.median(values)
    drop = max(0.0, 1 - min(values) / mid)
    worst = max(worst, drop)
    line = f"{case:52} {' '.join(f'{v:6.2f}' for v in values):>44}  {max(values) / min(values) - 1:6.1%}  {drop:6.1%}"
    if minima:
        mm = statistics.median(minima)
        line += f" | {max(minima) / min(minima) - 1:6.1%}  {max(0.0, 1 - min(minima) / mm):6.1%}"
    print(line)
print(f"largest drop of one run below the median of its case: {worst:.1%}")
