"""A private STAC API: a reverse proxy in front of a STAC API server that
answers 401 to every request without the header AUTH_PROXY_REQUIRE
("Name: value", from the environment), and forwards the others (method,
path, body), rewriting the upstream's own URL in responses to the proxy's.

    python auth_proxy.py UPSTREAM_URL PORT

GET /__stats: {"forwarded": n, "refused": n, "limited": n, "gaps": [s, ...]}
as JSON.

With AUTH_PROXY_RATE_LIMIT=S (and no AUTH_PROXY_REQUIRE) it is a server that
rate-limits instead: a request sooner than S seconds after the last one it
forwarded is answered 429 with `Retry-After: S`; "gaps" are the seconds
between forwarded requests, "retry_gaps" those from each 429 to the next
request.
"""
import time
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {"forwarded": 0, "refused": 0, "limited": 0, "gaps": [], "retry_gaps": []}
LOCK = threading.Lock()
REQUIRE = os.environ.get("AUTH_PROXY_REQUIRE")
NAME, VALUE = (v.strip() for v in REQUIRE.split(":", 1)) if REQUIRE else (None, None)
RATE = float(os.environ.get("AUTH_PROXY_RATE_LIMIT", "0"))
LAST = [None]
LAST_429 = [None]


class Proxy(BaseHTTPRequestHandler):
    upstream = ""
    own = ""

    def log_message(self, *a):
        pass

    def _send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self):
        if self.path == "/__stats":
            with LOCK:
                return self._send(200, json.dumps(STATS).encode())
        if RATE:
            with LOCK:
                now = time.monotonic()
                if LAST_429[0] is not None:
                    STATS["retry_gaps"].append(now - LAST_429[0])
                    LAST_429[0] = None
                if LAST[0] is not None and now - LAST[0] < RATE:
                    LAST_429[0] = now
                    STATS["limited"] += 1
                    self.send_response(429)
                    self.send_header("Retry-After", str(int(RATE)))
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                if LAST[0] is not None:
                    STATS["gaps"].append(now - LAST[0])
                LAST[0] = now
        elif self.headers.get(NAME) != VALUE:
            with LOCK:
                STATS["refused"] += 1
            return self._send(401, b'{"code": "Unauthorized", "description": "missing or wrong token"}')
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        req = urllib.request.Request(self.upstream + self.path, data=body, method=self.command,
                                     headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                code, data, ctype = r.status, r.read(), r.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as e:
            code, data, ctype = e.code, e.read(), "application/json"
        with LOCK:
            STATS["forwarded"] += 1
        self._send(code, data.replace(self.upstream.encode(), self.own.encode()), ctype)

    do_GET = _forward
    do_POST = _forward


def main():
    upstream, port = sys.argv[1].rstrip("/"), int(sys.argv[2])
    Proxy.upstream, Proxy.own = upstream, f"http://127.0.0.1:{port}"
    srv = ThreadingHTTPServer(("127.0.0.1", port), Proxy)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
