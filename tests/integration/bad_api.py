#!/usr/bin/env python3
"""A misbehaving Kubernetes API server on loopback, for k8s_bad_api.sh.

Speaks the list/watch protocol of the real API server for pods, and answers
nodes, services and endpoints with empty lists and idle watches; the pods
script goes through the failures a client meets in the field, in order:

  list 1: 500 with a Status;  list 2: 200 that is not JSON;
  list 3: 200 whose items hold a pod without metadata (no uid) between two
          good pods (A, B), resourceVersion 10;
  watch from 10: a line that is not JSON, an event without object, an event
          of unknown type, then ADDED C (rv 11), DELETED A (rv 12), and the
          stream is cut without its final chunk;
  watch from 12: 503 once;  watch from 12 again: MODIFIED B (rv 13, with a
          new IP), then idle with bookmarks until the client leaves.

Wrong token: 401. Every request is appended to LOG (one JSON line each) so
that the test checks what the client asked, and when.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, TOKEN, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
counts = {}


def pod(name, uid, ip, rv):
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "bookinfo", "uid": uid,
                         "resourceVersion": str(rv), "labels": {"app": name}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip, "hostIP": "172.30.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


A = pod("a", "uid-a", "10.244.1.10", 5)
B = pod("b", "uid-b", "10.244.1.11", 6)
C = pod("c", "uid-c", "10.244.1.12", 11)
B2 = pod("b", "uid-b", "10.244.1.21", 13)


def status(code, reason, msg):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": msg, "reason": reason, "code": code}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # streams end by closing the connection

    def log_message(self, *a):
        pass

    def send_json(self, code, doc, raw=None):
        body = raw if raw is not None else json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def line(self, doc):
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.wfile.write(data + b"\n")
        self.wfile.flush()

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        res = u.path.rsplit("/", 1)[-1]
        watch = q.get("watch", ["0"])[0] in ("1", "true", "True")
        rv = q.get("resourceVersion", [""])[0]
        with lock:
            key = (res, watch)
            counts[key] = counts.get(key, 0) + 1
            n = counts[key]
            with open(LOG, "a") as f:
                f.write(json.dumps({"t": time.time(), "res": res, "watch": watch,
                                    "rv": rv, "n": n}) + "\n")
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        if res != "pods":
            if not watch:
                return self.send_json(200, {"kind": "List", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": "10"},
                                            "items": []})
            return self.idle()
        if not watch:
            if n == 1:
                return self.send_json(500, status(500, "InternalError",
                                                  "etcdserver: request timed out"))
            if n == 2:
                return self.send_json(200, None, raw=b"<html>bad gateway</html>")
            return self.send_json(200, {
                "kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": "10"},
                "items": [A, {"kind": "Pod", "spec": {}}, B]})
        if rv == "10":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.line(b"{this is not json")
            self.line({"type": "ADDED"})
            self.line({"type": "SURPRISE", "object": C})
            self.line({"type": "ADDED", "object": C})
            deleted = json.loads(json.dumps(A))
            deleted["metadata"]["resourceVersion"] = "12"
            self.line({"type": "DELETED", "object": deleted})
            time.sleep(0.3)
            return  # connection closed mid-stream
        if rv == "12" and counts.get(("pods-12", True), 0) == 0:
            with lock:
                counts[("pods-12", True)] = 1
            return self.send_json(503, status(503, "ServiceUnavailable",
                                              "the server is shutting down"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if rv == "12":
            self.line({"type": "MODIFIED", "object": B2})
        return self.idle(stream_started=True)

    def idle(self, stream_started=False):
        if not stream_started:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
        try:
            for _ in range(600):
                time.sleep(0.5)
                self.line({"type": "BOOKMARK", "object": {
                    "kind": "Pod", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "13"}}})
        except (BrokenPipeError, ConnectionResetError):
            pass


srv = ThreadingHTTPServer(("127.0.0.1", PORT), H)
srv.daemon_threads = True
srv.serve_forever()
