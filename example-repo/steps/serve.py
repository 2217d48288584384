#!/usr/bin/env python3
"""Serve: the model over HTTP, with the standard library's http.server.

    python3 steps/serve.py --model build/model.json --port 8080
    python3 steps/serve.py --model build/mlflow-model --port 8080   # the packaged model

    GET  /health   -> 200 {"status": "ok", "features": n}
    POST /predict  {"rows": [{order fields...}, ...]}
                   -> 200 {"scores": [4.213, ...]}

`rows` may also be a single order object, and the body may be a bare list
of orders or a single order. Each order needs the raw numeric fields of
steps/features.py (`order_id` and `review_score` are ignored). Scores are
clipped to [1, 5] and rounded to 3 decimals. Bad input gets a 400 with
{"error": "..."} saying what is wrong.

runner starts it with `--port {{ port }}` and waits for /health; it logs
one line per request to stdout.

Standard library only.
"""

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import features

MAX_BODY = 10 * 1024 * 1024  # bytes


class BadRequest(Exception):
    pass


def load_model(path):
    """The model at `path`, checked; exits with a clear message if unusable.
    `path` may be the MLflow model directory steps/package.py writes."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.json")
    try:
        with open(path, encoding="utf-8") as f:
            model = json.load(f)
    except OSError as e:
        sys.exit("serve: cannot read the model %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        sys.exit("serve: %s is not JSON: %s" % (path, e))
    if not isinstance(model, dict) or model.get("kind") != "ridge":
        sys.exit("serve: %s is not a ridge model (kind %r)" % (path, model.get("kind") if isinstance(model, dict) else None))
    for key in ["features", "means", "stds", "weights", "intercept"]:
        if key not in model:
            sys.exit("serve: %s has no %r" % (path, key))
    if model["features"] != features.FEATURES:
        sys.exit("serve: %s was trained on other features than steps/features.py makes; retrain it" % path)
    n = len(model["features"])
    if not (len(model["means"]) == len(model["stds"]) == len(model["weights"]) == n):
        sys.exit("serve: %s has %d features but %d means, %d stds, %d weights"
                 % (path, n, len(model["means"]), len(model["stds"]), len(model["weights"])))
    return model


def score(model, order):
    s = model["intercept"]
    for xi, m, sd, w in zip(features.vector(order), model["means"], model["stds"], model["weights"]):
        s += w * (xi - m) / sd
    return round(min(5.0, max(1.0, s)), 3)


def rows_of(body):
    """The orders of a request body: {"rows": [...]}, {"rows": {...}}, [...] or {...}."""
    if isinstance(body, dict) and "rows" in body:
        rows = body["rows"]
    else:
        rows = body
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list):
        raise BadRequest('expected {"rows": [{order fields...}, ...]}, got %s' % type(rows).__name__)
    if not rows:
        raise BadRequest('"rows" is empty')
    return rows


def make_handler(model):
    class Handler(BaseHTTPRequestHandler):
        server_version = "customer-satisfaction/1"
        protocol_version = "HTTP/1.1"

        def send_json(self, status, value):
            data = (json.dumps(value) + "\n").encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.status = status

        def do_GET(self):
            started = time.time()
            self.rows = 0
            if self.path.split("?")[0] == "/health":
                self.send_json(200, {"status": "ok", "features": len(model["features"])})
            else:
                self.send_json(404, {"error": "no such path %s; try GET /health or POST /predict" % self.path})
            self.log_request_line(started)

        def do_POST(self):
            started = time.time()
            self.rows = 0
            if self.path.split("?")[0] != "/predict":
                self.send_json(404, {"error": "no such path %s; try POST /predict" % self.path})
                return self.log_request_line(started)
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length <= 0 or length > MAX_BODY:
                self.close_connection = True
                self.send_json(400, {"error": "send a JSON body (Content-Length 1..%d)" % MAX_BODY})
                return self.log_request_line(started)
            raw = self.rfile.read(length)
            try:
                try:
                    body = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    raise BadRequest("the body is not JSON: %s" % e)
                rows = rows_of(body)
                scores = []
                for i, order in enumerate(rows):
                    try:
                        scores.append(score(model, order))
                    except features.FeatureError as e:
                        raise BadRequest("row %d: %s" % (i, e))
            except BadRequest as e:
                self.send_json(400, {"error": str(e)})
            else:
                self.rows = len(scores)
                self.send_json(200, {"scores": scores})
            self.log_request_line(started)

        def log_request_line(self, started):
            extra = " rows=%d" % self.rows if self.rows else ""
            print("%s %s %s %d %.1fms%s" % (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), self.command, self.path,
                getattr(self, "status", 0), (time.time() - started) * 1000, extra), flush=True)

        def log_message(self, format, *args):
            pass  # one line per request, from log_request_line

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the review-score model over HTTP.")
    parser.add_argument("--model", required=True, help="model JSON from the train step")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    model = load_model(args.model)
    try:
        server = ThreadingHTTPServer((args.host, args.port), make_handler(model))
    except OSError as e:
        sys.exit("serve: cannot listen on %s:%d: %s" % (args.host, args.port, e.strerror or e))
    server.daemon_threads = True

    # Stop cleanly on SIGTERM (what runner sends) as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print("serving %s (%d features, trained on %s rows) on http://%s:%d"
          % (args.model, len(model["features"]), model.get("trained_rows", "?"), args.host, args.port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
