"""A static file server that honours HTTP Range requests (one range per
request, as object stores do) and can add a fixed delay to every response:
a stand-in for a remote object store's latency.

    python range_server.py ROOT PORT [DELAY_MS [HOST]]

Counts requests (every one but /__stats, found or not) and bytes sent (GET
/__stats as JSON) so tests can check how reads were made — or that none was.
GET /__redirect/HOST:PORT/PATH answers 302 to http://HOST:PORT/PATH (a host
bouncing a read elsewhere; a path, since object stores drop query strings).
PUT and DELETE under /upload/ store and remove files below ROOT/upload (a
WebDAV-like target for results written over HTTP); MKCOL makes directories.

A private store: with RANGE_SERVER_REQUIRE_HEADER="Name: value" in the
environment every file request without that header is answered 401; with
RANGE_SERVER_REQUIRE_QUERY="k=v" (a signed URL's signature) every one whose
query lacks it is answered 403; both are counted as "refused".
With RANGE_SERVER_LOG=path every request is logged there as it arrives.
"""
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {"requests": 0, "range_requests": 0, "bytes": 0, "refused": 0}
REQUIRE_HEADER = os.environ.get("RANGE_SERVER_REQUIRE_HEADER")
REQUIRE_QUERY = os.environ.get("RANGE_SERVER_REQUIRE_QUERY")
LOCK = threading.Lock()
# RANGE_SERVER_LOG=path: every request's arrival (monotonic seconds), path
# and Range header, one line each (for timelines of how reads were made)
LOG = open(os.environ["RANGE_SERVER_LOG"], "a") if os.environ.get("RANGE_SERVER_LOG") else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body leave in one segment, without Nagle: otherwise every
    # keep-alive response waits ~40 ms for a delayed ACK (a latency the
    # benchmark would measure instead of its own)
    disable_nagle_algorithm = True
    wbufsize = -1
    root = "."
    delay = 0.0

    def log_message(self, *a):
        pass

    def _file(self):
        rel = self.path.split("?", 1)[0].lstrip("/")
        p = os.path.realpath(os.path.join(self.root, rel))
        if not p.startswith(os.path.realpath(self.root) + os.sep) or not os.path.isfile(p):
            return None
        return p

    def _send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def do_HEAD(self):
        self.do_GET()

    def _upload_path(self):
        rel = self.path.split("?", 1)[0].lstrip("/")
        base = os.path.realpath(os.path.join(self.root, "upload"))
        p = os.path.realpath(os.path.join(self.root, rel))
        return p if p.startswith(base + os.sep) else None

    def do_PUT(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        p = self._upload_path()
        if p is None:
            return self._send(403)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(body)
        self._send(201)

    def do_MKCOL(self):
        p = self._upload_path()
        if p is None:
            return self._send(403)
        os.makedirs(p, exist_ok=True)
        self._send(201)

    def do_DELETE(self):
        p = self._upload_path()
        if p is None or not os.path.isfile(p):
            return self._send(404)
        os.remove(p)
        self._send(204)

    def do_GET(self):
        if LOG:
            with LOCK:
                LOG.write(f"{time.monotonic():.4f} {self.path} {self.headers.get('Range', '')}\n")
                LOG.flush()
        if self.delay:
            time.sleep(self.delay)
        if self.path == "/__stats":
            with LOCK:
                return self._send(200, json.dumps(STATS).encode(), [("Content-Type", "application/json")])
        with LOCK:
            STATS["requests"] += 1
        if self.path.startswith("/__redirect/"):
            return self._send(302, headers=[("Location", "http://" + self.path[len("/__redirect/"):])])
        if REQUIRE_HEADER:
            name, value = (v.strip() for v in REQUIRE_HEADER.split(":", 1))
            if self.headers.get(name) != value:
                with LOCK:
                    STATS["refused"] += 1
                return self._send(401, b"unauthorised")
        if REQUIRE_QUERY:
            query = self.path.split("?", 1)[1] if "?" in self.path else ""
            if REQUIRE_QUERY not in query.split("&"):
                with LOCK:
                    STATS["refused"] += 1
                return self._send(403, b"signature does not match")
        p = self._file()
        if p is None:
            return self._send(404, b"not found")
        size = os.path.getsize(p)
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self._send(416, headers=[("Content-Range", f"bytes */{size}")])
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            else:
                start, end = max(size - int(m.group(2)), 0), size - 1
            if start >= size or start > end:
                return self._send(416, headers=[("Content-Range", f"bytes */{size}")])
            with open(p, "rb") as f:
                f.seek(start)
                body = f.read(end - start + 1)
            with LOCK:
                STATS["range_requests"] += 1
                STATS["bytes"] += len(body)
            return self._send(206, body, [("Content-Range", f"bytes {start}-{end}/{size}"),
                                          ("Accept-Ranges", "bytes"),
                                          ("Content-Type", "image/tiff")])
        with open(p, "rb") as f:
            body = f.read()
        with LOCK:
            STATS["bytes"] += len(body)
        self._send(200, body, [("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream")])


def main():
    root, port = sys.argv[1], int(sys.argv[2])
    Handler.root = root
    Handler.delay = (float(sys.argv[3]) / 1000.0) if len(sys.argv) > 3 else 0.0
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    # a listen backlog like a real server's (socketserver's default is 5:
    # a client opening 100 connections at once would see SYNs dropped and
    # retried a second later, a stall no object store shows)
    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
