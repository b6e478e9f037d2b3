#!/usr/bin/python3
"""A local stand-in for Elasticsearch's _bulk API (none is packaged here).

It checks every request against the documented format: POST /_bulk,
Content-Type application/x-ndjson, newline-terminated NDJSON of action and
source line pairs; actions `index` with `_index` sonde-YYYY.MM.DD matching
the document's own day (UTC) and an `_id`; sources with seed 000's Fig. 12
fields and types. It answers like Elasticsearch does:
- the first request: 429 for the whole request (cluster busy);
- afterwards, per item: 201 created (200 when the _id exists: an overwrite),
  429 es_rejected_execution_exception the first time a document whose
  startTimeMillis is divisible by 7 comes, and 400 mapper_parsing_exception
  (for good) for documents whose startTimeMillis is divisible by 13.
Format violations are answered 400 and recorded. State goes to a JSON file
at exit (SIGTERM)."""
import json, re, signal, sys, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, out = int(sys.argv[1]), sys.argv[2]
state = {"requests": 0, "violations": [], "docs": {}, "overwrites": 0,
         "rejected_ids": [], "busy_429": 0, "item_429": 0}
seen_429 = set()
FIELDS = {"SRCNode": str, "DSTNode": str, "SRCworkload": str, "DSTworkload": str,
          "sensorType": str, "serviceName": str, "startTimeMillis": int}
INDEX = re.compile(r"^sonde-\d{4}\.\d{2}\.\d{2}$")

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def violation(self, what):
        state["violations"].append(what)
        self.reply(400, {"error": {"type": "illegal_argument_exception", "reason": what}, "status": 400})

    def do_POST(self):
        state["requests"] += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/_bulk":
            return self.violation("path " + self.path)
        if not (self.headers.get("Content-Type") or "").startswith("application/x-ndjson"):
            return self.violation("content-type " + str(self.headers.get("Content-Type")))
        if not body.endswith(b"\n"):
            return self.violation("body not newline-terminated")
        if state["requests"] == 1:
            state["busy_429"] += 1
            return self.reply(429, {"error": {"type": "es_rejected_execution_exception"}, "status": 429})
        lines = body.decode().split("\n")[:-1]
        if len(lines) % 2:
            return self.violation("odd number of lines")
        items, errors = [], False
        for a, s in zip(lines[0::2], lines[1::2]):
            act, src = json.loads(a), json.loads(s)
            op = act.get("index")
            if not op or not INDEX.match(op.get("_index", "")) or not op.get("_id"):
                return self.violation("bad action " + a)
            for f, t in FIELDS.items():
                if not isinstance(src.get(f), t):
                    return self.violation(f"field {f} in {s}")
            if "duration" in src and not isinstance(src["duration"], int):
                return self.violation("duration " + s)
            day = datetime.datetime.fromtimestamp(src["startTimeMillis"] / 1000, datetime.timezone.utc)
            if op["_index"] != day.strftime("sonde-%Y.%m.%d"):
                return self.violation(f"index {op['_index']} for {day}")
            ms, _id = src["startTimeMillis"], op["_id"]
            if ms % 13 == 0:
                errors = True
                state["rejected_ids"].append(_id)
                items.append({"index": {"_index": op["_index"], "_id": _id, "status": 400,
                              "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"}}})
            elif ms % 7 == 0 and _id not in seen_429:
                errors = True
                seen_429.add(_id)
                state["item_429"] += 1
                items.append({"index": {"_index": op["_index"], "_id": _id, "status": 429,
                              "error": {"type": "es_rejected_execution_exception"}}})
            else:
                status = 200 if _id in state["docs"] else 201
                if status == 200:
                    state["overwrites"] += 1
                state["docs"][_id] = src
                items.append({"index": {"_index": op["_index"], "_id": _id, "status": status,
                              "result": "created" if status == 201 else "updated"}})
        self.reply(200, {"took": 3, "errors": errors, "items": items})

def stop(*_):
    json.dump(state, open(out, "w"))
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
srv = ThreadingHTTPServer(("127.0.0.1", port), H)
srv.serve_forever()
