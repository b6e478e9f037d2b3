#!/usr/bin/python3
"""Writes N Bookinfo-like records as zlib-compressed JSON-lines batches (the
agent's wire format) into DIR, spread evenly over SPAN seconds ending now.
Usage: store_gen.py DIR N BATCH SPAN_S"""
import os, random, sys, time, zlib

out, n, batch, span = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out, exist_ok=True)
pairs = [("loadgen", "", "productpage-v1", "productpage"),
         ("productpage-v1", "productpage", "details-v1", "details"),
         ("productpage-v1", "productpage", "reviews-v1", "reviews"),
         ("productpage-v1", "productpage", "reviews-v2", "reviews"),
         ("productpage-v1", "productpage", "reviews-v3", "reviews"),
         ("reviews-v2", "reviews", "ratings-v1", "ratings"),
         ("reviews-v3", "reviews", "ratings-v1", "ratings")]
end = time.time_ns()
start = end - span * 1_000_000_000
step = span * 1_000_000_000 // n
rnd = random.Random(1)
tmpl = ('{"kind":"flow","time_ns":%d,"node":"node-%d","event":"%s","proto":"tcp","ip_version":4,'
        '"side":"%s","src":{"ip":"10.244.1.%d","port":%d,"pod":"%s-6d4f9c-abcde","namespace":"bookinfo",'
        '"workload":"%s","service":%s},"dst":{"ip":"10.244.2.%d","port":9080,"pod":"%s-7c9d8b-fghij",'
        '"namespace":"bookinfo","workload":"%s","service":"%s"},"netns":4026532%03d,"pid":%d,"comm":"nginx",'
        '"handshake_ns":%d%s}')
for b in range(0, n, batch):
    lines = []
    for i in range(b, min(n, b + batch)):
        sw, ss, dw, ds = pairs[i % len(pairs)]
        ev = "close" if i % 2 else "open"
        extra = ',"established":true,"duration_ns":%d' % rnd.randint(200_000, 20_000_000) if ev == "close" else ""
        lines.append(tmpl % (start + i * step, 1 + i % 2, ev, "server" if i % 4 < 2 else "client",
                             i % 250 + 2, 30000 + i % 30000, sw, sw, '"%s"' % ss if ss else "null",
                             i % 250 + 2, dw, dw, ds, i % 1000, 1000 + i % 5000,
                             rnd.randint(20_000, 400_000), extra))
    with open(os.path.join(out, "b%08d.zb" % (b // batch)), "wb") as f:
        f.write(zlib.compress(("\n".join(lines) + "\n").encode(), 1))
