"""Tiny HTTP servers standing between the bridge and HyperKitty, for the
hyperkitty-bridge fault tests (standard library only; run with any Python 3):

    fake_http.py PORT redirect TARGET      301 to TARGET + the request path, for everything
    fake_http.py PORT block-api UPSTREAM   403 HTML (a WAF) for any path with /api/list,
                                           everything else forwarded to UPSTREAM
    fake_http.py PORT slow-post UPSTREAM   a POST is read and never answered (the
                                           client times out); GETs forwarded to UPSTREAM

Serves on 127.0.0.1:PORT in this process until killed (by its pid).
"""

import http.server
import socketserver
import sys
import time
import urllib.error
import urllib.request

PORT, MODE, ARG = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def answer(self, status, body, content_type="text/html", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def forward(self, data):
        request = urllib.request.Request(
            ARG.rstrip("/") + self.path, data=data, method=self.command)
        for name, value in self.headers.items():
            if name.lower() not in ("host", "content-length", "connection"):
                request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, e.headers, e.read()
        self.answer(status, body, headers.get("Content-Type", "text/html"))

    def handle_any(self):
        data = self.body()
        if MODE == "redirect":
            self.answer(301, b"moved", extra=[("Location", ARG.rstrip("/") + self.path)])
        elif MODE == "block-api" and "/api/list" in self.path:
            self.answer(403, b"<html><body><h1>403 Forbidden</h1>blocked</body></html>")
        elif MODE == "slow-post" and self.command == "POST":
            time.sleep(3600)
        else:
            self.forward(data)

    do_GET = do_POST = do_PUT = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


Server(("127.0.0.1", PORT), Handler).serve_forever()
