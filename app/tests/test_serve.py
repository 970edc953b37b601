from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "APP_PORT": str(port), "APP_MESSAGE": "served", "APP_RELEASE_ID": "r-serve"}
    proc = subprocess.Popen([sys.executable, "-m", "webapp.serve"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    assert r.read().decode() == "served"
                    break
            except OSError:
                assert time.monotonic() < deadline, "webapp-serve did not answer within 10 s"
                time.sleep(0.1)
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        first = json.loads(out.splitlines()[0])
        assert first["msg"] == "starting" and first["port"] == port and first["release"] == "r-serve"
    finally:
        proc.kill()


def test_serve_refuses_a_bad_port() -> None:
    proc = subprocess.run([sys.executable, "-m", "webapp.serve"], env={**os.environ, "APP_PORT": "nope"},
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    assert "APP_PORT" in proc.stdout
