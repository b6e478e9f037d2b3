#!/usr/bin/env python3
"""Compares the l7 sensor's server-side http records with the microsecond
access log of `sonde lab httpd` (src/lab/httpd.c), the finer ground truth.

nginx's request_time is whole milliseconds of a clock cached per event-loop
wake-up (see l7_check.py), so it cannot check a duration to within 1 ms.
httpd reads CLOCK_MONOTONIC right after the read() that returned a request's
first byte and right after the write() that sent its last byte: the issue's
bound is asserted against it as such. Lines httpd marks "preempted" (its
thread was switched out between a syscall and its clock read, so its own
time is late by an unknown amount) are checked for presence and fields but
left out of the duration comparison, and counted. Every log line whose span lies inside
[t0, t1] must have one server-side record in pod POD on PORT with the same
client ip:port, method, URI and status, and a duration within
max(1 ms, 5 %) of request_time_us for at least MIN_DUR of them (default
0.999); at least MIN_PRESENT (0.999) present; none invented.

Usage: l7_check_us.py RECORDS HTTPD_LOG POD PORT T0 T1
Prints one JSON summary; exits 1 when a threshold is missed.
"""
import bisect
import json
import sys

# The same JSON-lines reader as the nginx check (this file's directory is
# on sys.path when run as a script).
from l7_check import load_jsonl


def main():
    records, log, pod, port, t0, t1 = sys.argv[1:7]
    port, t0, t1 = int(port), float(t0), float(t1)
    min_present = float(sys.argv[7]) if len(sys.argv) > 7 else 0.999
    min_dur = float(sys.argv[8]) if len(sys.argv) > 8 else 0.999
    truth = [l for l in load_jsonl(log) if l["start"] >= t0 and l["end"] <= t1]
    server = [r for r in load_jsonl(records)
              if r.get("kind") == "http" and r.get("side") == "server"
              and r.get("dst", {}).get("pod") == pod and r.get("dst", {}).get("port") == port]
    # Per (client ip:port, method, URI, status), records sorted by start.
    # A log line pairs with the unused record whose start or end is
    # nearest its own: a preempted server logs a late end (or start), the
    # other end still lines up.
    index = {}
    for r in server:
        key = (r["src"]["ip"], r["src"]["port"], r.get("method"), r.get("uri"), r.get("status"))
        st = r["time_ns"] / 1e9
        index.setdefault(key, []).append((st, st + r.get("duration_ns", 0) / 1e9, id(r), r))
    starts = {}
    for key, lst in index.items():
        lst.sort(key=lambda x: x[0])
        starts[key] = [x[0] for x in lst]
    used = set()
    matched = dur_bad = ours_longer = preempted = bad_all = 0
    errs = []
    problems = []
    for l in sorted(truth, key=lambda l: l["start"]):
        uri = l["uri"].split("?")[0] + ("?<redacted>" if "?" in l["uri"] else "")
        key = (l["remote_addr"], int(l["remote_port"]), l["method"], uri, int(l["status"]))
        lst = index.get(key, [])
        best = None
        lo = bisect.bisect_left(starts.get(key, []), l["start"] - 0.05)
        for j in range(lo, len(lst)):
            st, en, rid, r = lst[j]
            if st > l["end"] + 0.05:
                break
            if rid in used:
                continue
            d = min(abs(st - l["start"]), abs(en - l["end"]))
            if best is None or d < best[0]:
                best = (d, r)
        if not best:
            if len(problems) < 5:
                problems.append({"missing": l})
            continue
        r = best[1]
        used.add(id(r))
        matched += 1
        if r.get("partial") and len(problems) < 5:
            problems.append({"partial": r})
        ours = r.get("duration_ns", -1) / 1e9
        theirs = l["request_time_us"] / 1e6
        if abs(ours - theirs) > max(0.001, 0.05 * theirs):
            bad_all += 1
        if l.get("preempted"):
            preempted += 1
            continue
        err = ours - theirs
        errs.append(abs(err))
        if abs(err) > max(0.001, 0.05 * theirs):
            dur_bad += 1
            ours_longer += err > 0
            if len(problems) < 5:
                problems.append({"duration_s": [ours, theirs], "uri": l["uri"]})
    invented = [r for r in server if id(r) not in used
                and t0 + 0.5 <= r["time_ns"] / 1e9 <= t1 - 1.5]
    for r in invented[:3]:
        problems.append({"invented": r})
    errs.sort()
    n = len(truth)
    q = lambda p: round(errs[min(len(errs) - 1, int(p * len(errs)))] * 1e6, 1) if errs else None
    summary = {"pod": pod, "port": port, "log": n, "matched": matched,
               "present": round(matched / n, 5) if n else None,
               "preempted": preempted,
               "within_1ms_5pct_incl_preempted": round(1 - bad_all / matched, 5) if matched else None,
               "duration_off_1ms": dur_bad, "off_ours_longer": ours_longer,
               "within_1ms_5pct": round(1 - dur_bad / len(errs), 5) if errs else None,
               "abs_err_us_p50": q(0.5), "abs_err_us_p99": q(0.99), "abs_err_us_max": q(1.0) if errs else None,
               "invented": len(invented), "problems": problems}
    ok = n > 0 and matched >= min_present * n and not invented and dur_bad <= (1 - min_dur) * len(errs)
    summary["ok"] = ok
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
