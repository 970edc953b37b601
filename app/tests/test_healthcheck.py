from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from webapp.healthcheck import main


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        code = int(self.path.strip("/"))
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/500")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(("code", "exit_code"), [(200, 0), (204, 0), (302, 0), (404, 1), (500, 1), (503, 1)])
def test_exit_code_follows_the_answer(server: str, tmp_path: Path, code: int, exit_code: int) -> None:
    log = tmp_path / "hc.log"
    assert main([f"{server}/{code}", "--log-file", str(log)]) == exit_code
    assert log.read_text().split()[1:] == [f"{code:03d}", f"{server}/{code}"]


def test_no_answer_is_a_failure(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "hc.log"
    assert main([f"http://127.0.0.1:{port}/", "--log-file", str(log), "--timeout", "2"]) == 1
    assert " 000 " in log.read_text()


def test_lines_are_appended(server: str, tmp_path: Path) -> None:
    log = tmp_path / "hc.log"
    main([f"{server}/200", "--log-file", str(log)])
    main([f"{server}/500", "--log-file", str(log)])
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["200", "500"]
