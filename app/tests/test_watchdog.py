from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webapp import watchdog


class Health(http.server.BaseHTTPRequestHandler):
    """/health answers 200, or hangs while `frozen` is set (a frozen or stuck instance)."""

    frozen = threading.Event()

    def do_GET(self) -> None:  # noqa: N802
        while self.frozen.is_set():
            time.sleep(0.01)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    Health.frozen.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    Health.frozen.clear()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    yield path, sock
    sock.close()


def received(sock: socket.socket, seconds: float) -> list[bytes]:
    found, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found.append(sock.recv(100))
        except TimeoutError:
            pass
    return found


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None), ({"WATCHDOG_USEC": "0"}, None), ({"WATCHDOG_USEC": "x"}, None),
    ({"WATCHDOG_USEC": "3000000"}, 3.0), ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}, 3.0),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "41"}, None),
])
def test_period_is_systemds_for_this_process_only(env: dict[str, str], expected: float | None) -> None:
    assert watchdog.period(env, pid=42) == expected


def test_notify_reaches_the_socket(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    assert watchdog.notify("WATCHDOG=1", {"NOTIFY_SOCKET": path})
    assert sock.recv(100) == b"WATCHDOG=1"


def test_notify_without_a_socket_is_no_error() -> None:
    assert not watchdog.notify("WATCHDOG=1", {})
    assert not watchdog.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "/nonexistent/notify"})


def test_fed_while_the_instance_answers_and_starved_while_it_hangs(server: int, notify_socket) -> None:
    path, sock = notify_socket
    dog = watchdog.Watchdog("127.0.0.1", server, 0.6, send=lambda m: watchdog.notify(m, {"NOTIFY_SOCKET": path}))
    dog.start()
    try:
        assert len(received(sock, 0.6)) >= 3, "no ping while /health answers"
        Health.frozen.set()
        time.sleep(0.25)  # a probe in flight when it froze may still have pinged
        received(sock, 0.05)
        assert received(sock, 0.8) == [], "pinged while /health hangs"
        Health.frozen.clear()
        assert received(sock, 0.6), "no ping once /health answers again"
    finally:
        dog.stop()


def test_a_closed_port_starves_the_watchdog(notify_socket) -> None:
    path, sock = notify_socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dog = watchdog.Watchdog("127.0.0.1", port, 0.6, send=lambda m: watchdog.notify(m, {"NOTIFY_SOCKET": path}))
    dog.start()
    try:
        assert received(sock, 0.6) == []
    finally:
        dog.stop()


@pytest.mark.parametrize(("bound", "host"), [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("10.0.0.5", "10.0.0.5")])
def test_probe_host(bound: str, host: str) -> None:
    assert watchdog.probe_host(bound) == host


def test_the_process_pid_is_read_by_default() -> None:
    assert watchdog.period({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0


def test_the_probe_is_neither_counted_nor_logged_and_cannot_be_forged(capsys: pytest.CaptureFixture[str]) -> None:
    from webapp import logs
    from webapp.app import create_app
    from webapp.config import Config

    logs.configure()
    client = create_app(Config()).test_client()
    before = client.get("/metrics").get_data(as_text=True)
    capsys.readouterr()
    assert client.get("/health", headers={watchdog.PROBE_HEADER: watchdog.TOKEN}).status_code == 200
    assert "/health" not in capsys.readouterr().out
    assert client.get("/health", headers={watchdog.PROBE_HEADER: "forged"}).status_code == 200
    assert '"path": "/health"' in capsys.readouterr().out
    after = client.get("/metrics").get_data(as_text=True)

    def health_count(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("flask_http_request_total{") and 'route="/health"' in line)

    assert health_count(after) - health_count(before) == 1  # the forged one only
