#!/usr/bin/env python3
# Prints the before/after tables of README.md from the results.json files in this folder:
#   python3 tables.py            (run from this folder)
import json, os, re

ORDER = ["tanh/cpu/1M", "tanh/cpu/16M", "tanh/cpu/64M", "column-sum/cpu/2048x512", "column-sum/cpu/32768x512",
         "column-sum/cpu/131072x512", "softmax/cpu/128x10", "softmax/cpu/1024x1024", "softmax/cpu/16384x1024",
         "softmax/cpu/65536x1024"]

def load(folder):
    path = os.path.join(folder, "results.json")
    if not os.path.exists(path):
        return None, None
    d = json.load(open(path))
    return {r["id"]: r for r in d["results"]}, d["machine"].get("note", "")

def t(s):
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"

def cell(r):
    return f"{r['ratio']:.2f}x ({r['ratioLow']:.2f}-{r['ratioHigh']:.2f})"

def load_of(note):
    m = re.search(r"load average: ([0-9.]+)", note)
    return m.group(1) if m else "?"

for simd in ["avx512", "avx2"]:
    b, bn = load(f"before-{simd}")
    a, an = load(f"after-{simd}")
    if not b or not a:
        continue
    print(f"{simd}: before = `{bn}`, after = `{an}`\n")
    print("| case | before: time | GB/s | ratio | after: time | GB/s | ratio | memcpy GB/s (after) |")
    print("|---|---|---|---|---|---|---|---|")
    for c in ORDER:
        if c in b and c in a:
            rb, ra = b[c], a[c]
            print(f"| `{c}` | {t(rb['kernelsSeconds'])} | {rb['kernelsThroughput']:.1f} | {cell(rb)} | "
                  f"{t(ra['kernelsSeconds'])} | {ra['kernelsThroughput']:.1f} | **{cell(ra)}** | {ra['referenceThroughput']:.1f} |")
    print()

runs = [("", "run 1"), ("-run2", "run 2")]
for simd in ["avx512", "avx2"]:
    cols = []
    for suffix, name in runs:
        for side in ["before", "after"]:
            res, note = load(f"{side}-{simd}{suffix}")
            if res:
                cols.append((f"{side} ({name})", res, note))
    if len(cols) < 3:
        continue
    print(f"{simd}:\n")
    print("| case | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    print("| load at start | " + " | ".join(load_of(c[2]) for c in cols) + " |")
    for c in ["softmax/cpu/65536x1024", "tanh/cpu/64M", "column-sum/cpu/131072x512", "softmax/cpu/16384x1024",
              "tanh/cpu/16M", "column-sum/cpu/32768x512", "tanh/cpu/1M"]:
        print(f"| `{c}` | " + " | ".join(cell(col[1][c]) if c in col[1] else "-" for col in cols) + " |")
    print()
