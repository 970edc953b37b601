from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

_names = itertools.count()

# A tiny WSGI app: logs a line at import (the runner's JSON logging must already be in place),
# answers /health, and elsewhere what it saw of its environment.
TINY_APP = '''
import logging
import os

logging.getLogger("tinyapp").info("imported", extra={"seen_release": os.environ.get("STACK_RELEASE"),
                                                     "seen_listen": "LISTEN_PID" in os.environ})


def app(environ, start_response):
    if environ["PATH_INFO"] == "/health":
        body = b"ok"
    else:
        body = os.environ.get("TINY_MESSAGE", "hello").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def broken_factory():
    raise RuntimeError("no database")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command() -> list[str]:
    """The installed console script when there is one, else the module."""
    script = Path(sys.executable).with_name("stack-runner")
    if script.exists():
        return [str(script)]
    found = shutil.which("stack-runner")
    return [found] if found else [sys.executable, "-m", "stack_runner.boot"]


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, str]:
    """The environment of a runner serving the tiny app (its module written to tmp_path)."""
    name = f"tinyapp_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(TINY_APP)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "STACK_WSGI": f"{name}:app", "TINY_MODULE": name}


def wait_for(url: str, proc: subprocess.Popen[str], seconds: float = 8.0) -> str:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return str(r.read().decode())
        except OSError:
            assert proc.poll() is None, "stack-runner exited early"
            assert time.monotonic() < deadline, f"stack-runner did not answer within {seconds} s"
            time.sleep(0.05)


def test_serve_answers_and_stops_on_sigterm(tiny: dict[str, str]) -> None:
    port = free_port()
    env = {**tiny, "STACK_PORT": str(port), "TINY_MESSAGE": "served", "STACK_RELEASE_ID": "r-serve"}
    proc = subprocess.Popen(serve_command(), env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/", proc) == "served"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=5) as r:
            assert r.headers["X-Release"] == "r-serve"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    first = lines[0]
    assert first["msg"] == "starting"
    assert (first["bind"], first["port"], first["release"], first["wsgi"]) == ("127.0.0.1", port, "r-serve",
                                                                              tiny["STACK_WSGI"])
    assert (first["version"], first["threads"], first["socket"]) == ("unknown", 4, "own")
    [imported] = [line for line in lines if line.get("msg") == "imported"]
    assert (imported["logger"], imported["seen_release"], imported["seen_listen"]) == ("tinyapp", "r-serve", False)
    assert any(line.get("route") == "*" and line.get("status") == 200 for line in lines)
    # An access line is written once its answer is sent, by the thread that served it: it may
    # come after "stopping" (the answer was out before SIGTERM); nothing else may.
    [stopping] = [i for i, line in enumerate(lines) if line.get("msg") == "stopping"]
    assert all("route" in line for line in lines[stopping + 1:]), lines[stopping:]


def test_serve_refuses_a_bad_port(tiny: dict[str, str]) -> None:
    proc = subprocess.run(serve_command(), env={**tiny, "STACK_PORT": "nope"}, capture_output=True, text=True,
                          timeout=20)
    assert proc.returncode == 2
    [line] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert line["level"] == "error" and "STACK_PORT" in line["msg"]


@pytest.mark.parametrize(("variable", "value"), [("STACK_HEALTH_PATH", "health"), ("STACK_HEALTH_STATUSES", "ok")])
def test_serve_refuses_a_bad_health_setting(tiny: dict[str, str], variable: str, value: str) -> None:
    proc = subprocess.run(serve_command(), env={**tiny, variable: value}, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    [line] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert variable in line["msg"]


@pytest.mark.parametrize(("wsgi", "reason"), [
    (None, "must be module:attribute"),
    ("{module}", "must be module:attribute"),
    ("no_such_module_anywhere:app", "ModuleNotFoundError"),
    ("{module}:missing", "no attribute 'missing'"),
    ("{module}:broken_factory()", "RuntimeError: no database"),
    ("{module}:logging", "is not callable"),
])
def test_an_app_that_cannot_be_loaded_exits_3_naming_stack_wsgi(tiny: dict[str, str], wsgi: str | None,
                                                                reason: str) -> None:
    env = {k: v for k, v in tiny.items() if k != "STACK_WSGI"}
    if wsgi is not None:
        env["STACK_WSGI"] = wsgi.format(module=tiny["TINY_MODULE"])
    proc = subprocess.run(serve_command(), env=env, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    [error] = [line for line in map(json.loads, proc.stdout.splitlines()) if line["level"] == "error"]
    assert "STACK_WSGI (the inventory's app_wsgi)" in error["msg"]
    assert reason in error["msg"]


def serve_on_socket(sock: socket.socket, env: dict[str, str]) -> subprocess.Popen[str]:
    """stack-runner handed `sock` as systemd's socket activation does (fd 3, LISTEN_PID, LISTEN_FDS)."""
    command = ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", *serve_command()]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, pass_fds=(3,),
                            preexec_fn=lambda: os.dup2(sock.fileno(), 3))


def test_serve_takes_a_socket_from_systemd_and_a_restart_refuses_no_connection(tiny: dict[str, str]) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    env = {**tiny, "TINY_MESSAGE": "activated", "STACK_RELEASE_ID": "r-socket", "STACK_PORT": "1"}
    first = serve_on_socket(listener, env)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/", first) == "activated"
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=10)
        assert first.returncode == 0
        lines = [json.loads(line) for line in out.splitlines()]
        assert (lines[0]["socket"], lines[0]["port"]) == ("systemd", port), lines[0]
        [imported] = [line for line in lines if line.get("msg") == "imported"]
        assert imported["seen_listen"] is False  # LISTEN_* gone before the app was loaded
        # No process serves now, yet the socket still takes connections: they wait in the
        # backlog until the next process accepts them, as during a restart under systemd.
        waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        second = serve_on_socket(listener, {**env, "TINY_MESSAGE": "after restart"})
        try:
            answer = b""
            while chunk := waiting.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            assert answer.endswith(b"after restart")
            assert b"\r\nX-Release: r-socket\r\n" in answer
        finally:
            waiting.close()
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=10)
    finally:
        for proc in (first,):
            proc.kill()
            proc.wait()
        listener.close()


def test_serve_refuses_more_than_one_socket(tiny: dict[str, str]) -> None:
    env = {**tiny, "LISTEN_FDS": "2"}
    proc = subprocess.run(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *serve_command()], env=env,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    [line] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "LISTEN_FDS" in line["msg"]


def access_addr_under_waitress(tiny: dict[str, str], env: dict[str, str]) -> str:
    """remote_addr logged by a real stack-runner for a request carrying X-Forwarded-For."""
    port = free_port()
    proc = subprocess.Popen(serve_command(), env={**tiny, "STACK_PORT": str(port), **env},
                            stdout=subprocess.PIPE, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.5"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
        proc.wait()
    [addr] = [line["remote_addr"] for line in map(json.loads, out.splitlines()) if line.get("path") == "/"]
    return str(addr)


def test_waitress_passes_x_forwarded_for_to_the_runner_which_trusts_only_its_proxies(tiny: dict[str, str]) -> None:
    assert access_addr_under_waitress(tiny, {"STACK_TRUSTED_PROXIES": "127.0.0.1"}) == "203.0.113.5"
    assert access_addr_under_waitress(tiny, {}) == "127.0.0.1"


@pytest.mark.parametrize(("statuses", "fed"), [("200", True), ("204 503", False)])
def test_the_watchdog_of_a_real_runner_is_fed_by_its_health_statuses(tiny: dict[str, str], tmp_path: Path,
                                                                     statuses: str, fed: bool) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(3)
    port = free_port()
    env = {**tiny, "STACK_PORT": str(port), "WATCHDOG_USEC": "600000", "NOTIFY_SOCKET": str(tmp_path / "notify"),
           "STACK_HEALTH_STATUSES": statuses}
    proc = subprocess.Popen(serve_command(), env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc)
        # First the time to load (STACK_START_SECONDS, 60 by default), then, at the first healthy
        # answer, systemd's own period (WATCHDOG_USEC) back and a ping.
        assert notify.recv(100) == b"WATCHDOG_USEC=60000000"
        try:
            pinged = [notify.recv(100), notify.recv(100)] == [b"WATCHDOG_USEC=600000", b"WATCHDOG=1"]
        except TimeoutError:
            pinged = False
        assert pinged is fed
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
        proc.wait()
        notify.close()
    logged = [line for line in map(json.loads, out.splitlines()) if line["logger"] == "webapp.access"]
    assert logged and all(line["user_agent"].startswith("Python-urllib/") for line in logged)  # no probe logged
