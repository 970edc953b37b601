"""The load generator counts what it sees and refuses targets outside the lab."""

from __future__ import annotations

import ipaddress
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    calls = 0
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802
        with _Handler.lock:
            _Handler.calls += 1
            n = _Handler.calls
        if self.path == "/drop":  # closes without answering, every time
            self.close_connection = True
            return
        status = 503 if self.path == "/flaky" and n % 5 == 0 else 200
        body = b"ok\n"
        self.send_response(status)
        if self.path == "/cut":  # an answer cut after it began
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/close-idle":  # keep-alive announced, then the idle connection is closed
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.calls = 0
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("url", ["http://192.0.2.10/", "http://10.99.0.5/", "ftp://127.0.0.1/"])
def test_refuses_targets_outside_the_lab(url: str) -> None:
    with pytest.raises(ValueError):
        loadgen.Load(url, allowed=[ipaddress.ip_network("10.77.0.0/24")])


def test_accepts_the_lab_network() -> None:
    loadgen.check_target("http://10.77.0.11/", [ipaddress.ip_network("10.77.0.0/24")])


def test_stops_at_the_request_bound(server: str) -> None:
    result = loadgen.Load(server + "/", workers=3, max_requests=50, max_seconds=30).start().wait()
    assert result.requests == 50
    assert result.failures == []
    assert _Handler.calls == 50


def test_counts_http_errors_as_failures(server: str) -> None:
    result = loadgen.Load(server + "/flaky", workers=1, max_requests=20, max_seconds=30).start().wait()
    assert len(result.failures) == 4
    assert result.summary()["errors"] == {"HTTP 503": 4}


def test_counts_refused_connections_as_failures() -> None:
    result = loadgen.Load("http://127.0.0.1:9/", workers=1, max_requests=3, max_seconds=10).start().wait()
    assert result.requests == 3
    assert len(result.failures) == 3


def test_a_closed_keep_alive_connection_is_retried_once_on_a_new_one(server: str) -> None:
    """As a browser does: the server closed the idle connection, the GET goes again, anew."""
    result = loadgen.Load(server + "/close-idle", workers=1, max_requests=10, max_seconds=30).start().wait()
    assert result.requests == 10 and result.failures == [], result.summary()
    assert result.summary()["retried"] == 9, result.summary()  # every request after the first found it closed
    assert not result.samples[0].retried


def test_an_answer_cut_after_it_began_is_a_failure_not_retried(server: str) -> None:
    result = loadgen.Load(server + "/cut", workers=1, max_requests=4, max_seconds=30).start().wait()
    assert len(result.failures) == 4 and not any(s.retried for s in result.failures), result.summary()


def test_a_new_connection_closed_without_an_answer_is_a_failure(server: str) -> None:
    result = loadgen.Load(server + "/drop", workers=1, max_requests=4, max_seconds=30).start().wait()
    assert len(result.failures) == 4, result.summary()
    assert _Handler.calls == 4, "a request on a new connection was sent twice"


def test_percentiles_are_nearest_rank() -> None:
    result = loadgen.Result([loadgen.Sample(i, i / 100, 200) for i in range(1, 101)])
    assert result.percentile(50) == pytest.approx(0.50)
    assert result.percentile(99) == pytest.approx(0.99)
