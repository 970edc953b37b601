"""A stand-in HTTP server on loopback for the unit tests of what probes HTTP (the app's instances,
Prometheus for the canary, a service's readiness URL): each test says what it answers, nothing
else differs. Only 127.0.0.1, on a port the kernel picks; stopped with `shutdown()`."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable

# answer(path) -> (status, headers, body)
Answer = Callable[[str], tuple[int, dict[str, str], bytes]]


class Loopback(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Answer) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N802, N805
                status, headers, body = answer(handler.path)
                handler.send_response(status)
                for name, value in headers.items():
                    handler.send_header(name, value)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"
