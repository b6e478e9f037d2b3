#!/usr/bin/python3
"""Tables for the latency benchmarks (bench/lib_latency.sh, lat_table).

Input: one line per run, "MODE ROUND key=value ...". Output (markdown):
per mode, the mean of each column with its 95 % confidence interval over
rounds (Student t); then, for the columns marked paired, each mode's
difference from BASE paired within a round (the same round's runs are
minutes apart, so slow drifts of a shared machine cancel), with its 95 %
CI and relative to BASE's mean.

With --pairs A/B,C/D also A vs B and C vs D, paired the same way (e.g. a
build against the one before it).

Usage: lat_stats.py [--pairs A/B,...] RUNS BASE key:label[:paired] ...
"""
import math
import sys
from collections import defaultdict

# Student t, 97.5 % quantile, by degrees of freedom
T = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
     8: 2.306, 9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160,
     14: 2.145, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df):
    if df < 1:
        return float("nan")
    return T.get(df) or T[max(k for k in T if k <= df)]


def ci(xs):
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, t975(n - 1) * sd / math.sqrt(n)


def fmt(x):
    a = abs(x)
    if a == 0 or math.isnan(x):
        return f"{x:.4f}"
    if a >= 1000:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.4f}"
    return f"{x:.4g}"


def main():
    args = sys.argv[1:]
    pairs = []
    if args and args[0] == "--pairs":
        pairs = [tuple(x.split("/", 1)) for x in args[1].split(",") if "/" in x]
        args = args[2:]
    runs_file, base = args[0], args[1]
    cols = []
    for spec in args[2:]:
        parts = spec.split(":")
        cols.append((parts[0], parts[1], len(parts) > 2 and parts[2] == "paired"))
    runs = defaultdict(dict)  # round -> mode -> {key: value}
    modes = []
    for line in open(runs_file):
        f = line.split()
        if len(f) < 3:
            continue
        mode, rnd = f[0], f[1]
        if mode not in modes:
            modes.append(mode)
        runs[rnd][mode] = {k: float(v) for k, v in (x.split("=", 1) for x in f[2:])}
    n_rounds = len(runs)

    def col(mode, k):
        return [r[mode][k] for r in runs.values() if mode in r and k in r[mode]]

    print(f"| mode (runs) | " + " | ".join(c[1] + " (mean +- 95 % CI)" for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for mode in modes:
        cells = []
        for k, _, _ in cols:
            m, h = ci(col(mode, k))
            cells.append(f"{fmt(m)} +- {fmt(h)}")
        print(f"| {mode} ({len(col(mode, cols[0][0]))}) | " + " | ".join(cells) + " |")
    paired = [c for c in cols if c[2]]
    if not paired:
        return
    comparisons = [(m, base) for m in modes if m != base and base in modes]
    comparisons += [(a, b) for a, b in pairs if a in modes and b in modes]
    for i, (a, b) in enumerate(comparisons):
        if i == 0 or b != comparisons[i - 1][1]:
            print()
            print(f"| vs {b}, paired per round ({n_rounds} rounds) | "
                  + " | ".join(c[1] + ": difference (95 % CI), relative" for c in paired) + " |")
            print("|---" * (len(paired) + 1) + "|")
        cells = []
        for k, _, _ in paired:
            d = [r[a][k] - r[b][k] for r in runs.values()
                 if a in r and b in r and k in r[a] and k in r[b]]
            bs = col(b, k)
            m, h = ci(d)
            bm = sum(bs) / len(bs) if bs else float("nan")
            rel = 100 * m / bm if bm else float("nan")
            rlo = 100 * (m - h) / bm if bm else float("nan")
            rhi = 100 * (m + h) / bm if bm else float("nan")
            cells.append(f"{m:+.4g} ({m - h:+.4g} .. {m + h:+.4g}), "
                         f"{rel:+.2f} % ({rlo:+.2f} .. {rhi:+.2f} %)")
        print(f"| {a} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
