from __future__ import annotations

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command() -> list[str]:
    """The installed console script when there is one, else the module."""
    script = Path(sys.executable).with_name("webapp-serve")
    if script.exists():
        return [str(script)]
    found = shutil.which("webapp-serve")
    return [found] if found else [sys.executable, "-m", "webapp.serve"]


def wait_for(url: str, proc: subprocess.Popen[str], seconds: float = 8.0) -> str:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return str(r.read().decode())
        except OSError:
            assert proc.poll() is None, "webapp-serve exited early"
            assert time.monotonic() < deadline, f"webapp-serve did not answer within {seconds} s"
            time.sleep(0.05)


def test_serve_answers_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "APP_PORT": str(port), "APP_MESSAGE": "served", "APP_RELEASE_ID": "r-serve"}
    proc = subprocess.Popen(serve_command(), env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/", proc) == "served"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    first = lines[0]
    assert first["msg"] == "starting"
    assert (first["bind"], first["port"], first["release"]) == ("127.0.0.1", port, "r-serve")
    assert first["version"]
    assert any(line.get("route") == "/" and line.get("status") == 200 for line in lines)
    assert lines[-1]["msg"] == "stopping"


def test_serve_refuses_a_bad_port() -> None:
    proc = subprocess.run(serve_command(), env={**os.environ, "APP_PORT": "nope"},
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    [line] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert line["level"] == "error" and "APP_PORT" in line["msg"]


def serve_on_socket(sock: socket.socket, env: dict[str, str]) -> subprocess.Popen[str]:
    """webapp-serve handed `sock` as systemd's socket activation does (fd 3, LISTEN_PID, LISTEN_FDS)."""
    command = ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", *serve_command()]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, pass_fds=(3,),
                            preexec_fn=lambda: os.dup2(sock.fileno(), 3))


def test_serve_takes_a_socket_from_systemd_and_a_restart_refuses_no_connection() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    env = {**os.environ, "APP_MESSAGE": "activated", "APP_RELEASE_ID": "r-socket", "APP_PORT": "1"}
    first = serve_on_socket(listener, env)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/", first) == "activated"
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=10)
        assert first.returncode == 0
        start = json.loads(out.splitlines()[0])
        assert (start["socket"], start["port"]) == ("systemd", port), start
        # No process serves now, yet the socket still takes connections: they wait in the
        # backlog until the next process accepts them, as during a restart under systemd.
        waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        second = serve_on_socket(listener, {**env, "APP_MESSAGE": "after restart"})
        try:
            answer = b""
            while chunk := waiting.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            assert answer.endswith(b"after restart")
        finally:
            waiting.close()
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=10)
    finally:
        for proc in (first,):
            proc.kill()
            proc.wait()
        listener.close()


def test_serve_refuses_more_than_one_socket() -> None:
    env = {**os.environ, "LISTEN_FDS": "2"}
    proc = subprocess.run(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *serve_command()], env=env,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    [line] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "LISTEN_FDS" in line["msg"]


def access_addr_under_waitress(env: dict[str, str]) -> str:
    """remote_addr logged by a real webapp-serve for a request carrying X-Forwarded-For."""
    port = free_port()
    proc = subprocess.Popen(serve_command(), env={**os.environ, "APP_PORT": str(port), **env},
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
    [addr] = [line["remote_addr"] for line in map(json.loads, out.splitlines()) if line.get("route") == "/"]
    return str(addr)


def test_waitress_passes_x_forwarded_for_to_the_app_which_trusts_only_its_proxies() -> None:
    assert access_addr_under_waitress({"APP_TRUSTED_PROXIES": "127.0.0.1"}) == "203.0.113.5"
    assert access_addr_under_waitress({}) == "127.0.0.1"
