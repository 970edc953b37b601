from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner_support import BufferedClient, make_flask_app, serve
from stack_runner import logs, watchdog


class Health(http.server.BaseHTTPRequestHandler):
    """Any path answers `status` (200), or hangs while `frozen` is set (a frozen or stuck instance)."""

    frozen = threading.Event()
    status = 200
    delay = 0.0  # seconds each answer takes
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        while self.frozen.is_set():
            time.sleep(0.01)
        time.sleep(Health.delay)
        Health.paths.append(self.path)
        self.send_response(Health.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    Health.frozen.clear()
    Health.status, Health.paths, Health.delay = 200, [], 0.0
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


def dog(port: int, notify_path: str, **options: object) -> watchdog.Watchdog:
    send = lambda m: watchdog.notify(m, {"NOTIFY_SOCKET": notify_path})  # noqa: E731
    return watchdog.Watchdog("127.0.0.1", port, 0.6, send=send, **options)  # type: ignore[arg-type]


def pinged(port: int, notify_socket: tuple[str, socket.socket], seconds: float) -> list[bytes]:
    """What a watchdog of the instance on `port` sends systemd within `seconds`."""
    path, sock = notify_socket
    fed = dog(port, path)
    fed.start()
    try:
        return received(sock, seconds)
    finally:
        fed.stop()


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
    fed = dog(server, path)
    fed.start()
    try:
        assert len(received(sock, 0.6)) >= 3, "no ping while /health answers"
        Health.frozen.set()
        time.sleep(0.25)  # a probe in flight when it froze may still have pinged
        received(sock, 0.05)
        assert received(sock, 0.8) == [], "pinged while /health hangs"
        Health.frozen.clear()
        assert received(sock, 0.6), "no ping once /health answers again"
    finally:
        fed.stop()
    assert set(Health.paths) == {"/health"}


def test_a_slow_answer_within_half_the_period_still_feeds_it(server: int, notify_socket) -> None:
    """A starved host answers late, not never: an answer after 0.2 s (a third of the 0.6 s period,
    twice the time between probes) is still an answer, and systemd is still pinged."""
    Health.delay = 0.2
    got = pinged(server, notify_socket, 1.2)
    assert got.count(b"WATCHDOG=1") >= 3, got


def test_the_first_healthy_answer_puts_systemds_period_back_then_pings(server: int, notify_socket) -> None:
    got = pinged(server, notify_socket, 0.4)
    assert got[:2] == [b"WATCHDOG_USEC=600000", b"WATCHDOG=1"], got
    assert set(got[2:]) == {b"WATCHDOG=1"}, got


def test_allow_start_stretches_the_timeout_while_the_app_loads(notify_socket) -> None:
    path, sock = notify_socket
    assert watchdog.allow_start(60, lambda m: watchdog.notify(m, {"NOTIFY_SOCKET": path}))
    assert sock.recv(100) == b"WATCHDOG_USEC=60000000"
    assert not watchdog.allow_start(60, lambda m: watchdog.notify(m, {}))


def test_a_closed_port_starves_the_watchdog(notify_socket) -> None:
    path, sock = notify_socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    starved = dog(port, path)
    starved.start()
    try:
        assert received(sock, 0.6) == []
    finally:
        starved.stop()


@pytest.mark.parametrize(("status", "statuses", "fed"), [
    (200, {200}, True), (503, {200}, False), (204, {200}, False), (204, {200, 204}, True),
    (301, {200, 301}, True), (500, {200, 301}, False),
])
def test_fed_only_while_the_status_is_a_healthy_one(server: int, notify_socket, status: int,
                                                    statuses: set[int], fed: bool) -> None:
    notify_path, sock = notify_socket
    Health.status = status
    probing = dog(server, notify_path, path="/-/ready", statuses=statuses)
    probing.start()
    try:
        assert bool(received(sock, 0.5)) is fed
    finally:
        probing.stop()
    assert set(Health.paths) == {"/-/ready"}


def test_status_of_names_no_answer_as_zero() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert watchdog.status_of("127.0.0.1", port, "/health", 0.5) == watchdog.NO_ANSWER


@pytest.mark.parametrize(("bound", "host"), [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("10.0.0.5", "10.0.0.5")])
def test_probe_host(bound: str, host: str) -> None:
    assert watchdog.probe_host(bound) == host


def test_the_process_pid_is_read_by_default() -> None:
    assert watchdog.period({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0


@pytest.mark.usefixtures("json_logs")
def test_the_probe_reaches_the_app_but_is_neither_counted_nor_logged_and_cannot_be_forged(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    asked: list[str] = []
    app = make_flask_app()
    app.before_request(lambda: asked.append("yes") and None)
    client: BufferedClient = serve(app)
    before = client.get("/metrics").get_data(as_text=True)
    capsys.readouterr()
    r = client.get("/health", headers={watchdog.PROBE_HEADER: watchdog.TOKEN})
    assert r.status_code == 200 and asked == ["yes"]
    assert capsys.readouterr().out == ""
    assert client.get("/health", headers={watchdog.PROBE_HEADER: "forged"}).status_code == 200
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entry["path"] == "/health"
    after = client.get("/metrics").get_data(as_text=True)

    def health_count(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("flask_http_request_total{") and 'route="/health"' in line)

    assert health_count(after) - health_count(before) == 1  # the forged one only
