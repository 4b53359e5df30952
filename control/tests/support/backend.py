"""A backend for the health-check tests: HTTP on ADDRESS:PORT.

GET /health answers 200, or 503 while the file BROKEN exists; anything else 404.

    python3 backend.py ADDRESS PORT BROKEN
"""
import http.server
import os
import sys

address, port, broken = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/health":
            code = 404
        elif os.path.exists(broken):
            code = 503
        else:
            code = 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer((address, port), Handler).serve_forever()
