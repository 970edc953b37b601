from __future__ import annotations

import base64
import http.server
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webapp.healthcheck import main

LINE = re.compile(r"^(\S+) (\d{3}) (\S+)$")


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers GET /<code> with that status; /302 redirects to /500."""

    seen: list[str] = []
    authorizations: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        self.authorizations.append(self.headers.get("Authorization"))
        code = int(self.path.strip("/"))
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/500")
        self.send_header("Content-Length", "0")
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
    httpd.server_close()


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    return f"http://127.0.0.1:{port}/health"


@pytest.mark.parametrize(("code", "exit_code"), [(200, 0), (204, 0), (302, 0), (404, 1), (500, 1), (503, 1)])
def test_exit_code_follows_the_answer(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      code: int, exit_code: int) -> None:
    log = tmp_path / "hc.log"
    url = f"{server}/{code}"
    assert main([url, "--log-file", str(log)]) == exit_code
    [line] = log.read_text().splitlines()
    assert capsys.readouterr().out == line + "\n"
    match = LINE.match(line)
    assert match and match.group(2, 3) == (f"{code:03d}", url)
    assert match.group(1).endswith("+00:00")


def test_redirects_are_not_followed(server: str, tmp_path: Path) -> None:
    Handler.seen.clear()
    assert main([f"{server}/302", "--log-file", str(tmp_path / "hc.log")]) == 0
    assert Handler.seen == ["/302"]


def test_no_answer_is_a_failure_with_code_000(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "hc.log"
    url = refused_url()
    assert main([url, "--log-file", str(log), "--timeout", "2"]) == 1
    assert log.read_text().split()[1:] == ["000", url]
    assert " 000 " in capsys.readouterr().out


@pytest.mark.parametrize("url", ["not-a-url", "data:text/plain,ok", "file:///etc/hostname", "ftp://127.0.0.1/x",
                                 "gopher://127.0.0.1/", "http://", "http://[::1/"])
def test_anything_but_an_http_url_is_refused_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            url: str) -> None:
    log = tmp_path / "hc.log"
    assert main([url, "--log-file", str(log)]) == 1
    assert log.read_text().split()[1:] == ["000", url]
    err = capsys.readouterr().err
    assert err.startswith(f"webapp-healthcheck: {url}: ") and "Traceback" not in err


def test_the_scheme_is_named_in_the_refusal(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    main(["file:///etc/hostname", "--log-file", str(tmp_path / "hc.log")])
    assert "scheme file: refused: only http and https URLs are checked" in capsys.readouterr().err


@pytest.fixture
def dripping_server() -> Iterator[str]:
    """Accepts, then sends a status line one byte a second: each read is quick, the whole is slow."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if stop.wait(1):
                    return
                conn.sendall(bytes([byte]))

    threading.Thread(target=drip, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/health"
    stop.set()
    listener.close()


def test_timeout_bounds_the_whole_check(dripping_server: str, tmp_path: Path) -> None:
    started = time.monotonic()
    assert main([dripping_server, "--log-file", str(tmp_path / "hc.log"), "--timeout", "1.5"]) == 1
    assert time.monotonic() - started < 4
    assert (tmp_path / "hc.log").read_text().split()[1] == "000"


@pytest.mark.parametrize("bad", ["0", "-1", "abc"])
def test_a_bad_timeout_is_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["http://127.0.0.1/", "--timeout", bad])
    assert exit_.value.code == 2 and "--timeout" in capsys.readouterr().err


def test_lines_are_appended(server: str, tmp_path: Path) -> None:
    log = tmp_path / "hc.log"
    log.write_text("earlier line\n")
    main([f"{server}/200", "--log-file", str(log)])
    main([f"{server}/500", "--log-file", str(log)])
    main([refused_url(), "--log-file", str(log)])
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert [line.split()[1] for line in lines[1:]] == ["200", "500", "000"]


def test_default_log_file_is_in_the_working_directory(server: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    main([f"{server}/200"])
    assert (tmp_path / "health.log").read_text().split()[1] == "200"


def test_unwritable_log_file_still_reports(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"{server}/200", "--log-file", str(tmp_path / "missing" / "hc.log")]) == 0
    captured = capsys.readouterr()
    assert " 200 " in captured.out and "cannot append" in captured.err


def test_a_password_in_the_url_is_never_written(server: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "hc.log"
    url = server.replace("http://", "http://ops:s3cret-value@") + "/200"
    assert main([url, "--log-file", str(log)]) == 0
    out = capsys.readouterr().out
    written = log.read_text()
    assert "s3cret-value" not in written + out
    [line] = written.splitlines()
    assert LINE.match(line).group(3) == server.replace("http://", "http://ops:***@") + "/200"
    # The credentials went to the server as Basic authentication, not in the request line.
    assert Handler.seen[-1] == "/200"
    assert Handler.authorizations[-1] == "Basic " + base64.b64encode(b"ops:s3cret-value").decode()


def test_a_password_is_hidden_in_a_refusal_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ftp://ops:s3cret-value@host/", "--log-file", str(tmp_path / "hc.log")]) == 1
    captured = capsys.readouterr()
    assert "s3cret-value" not in captured.out + captured.err + (tmp_path / "hc.log").read_text()
    assert "ftp://ops:***@host/" in captured.err


@pytest.mark.parametrize("control", ["\n", "\r", "\t", "\x1b", "\x00", "\x7f", "\u2028"])
def test_a_control_character_is_refused_and_forges_no_line(server: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str], control: str) -> None:
    log = tmp_path / "hc.log"
    fetched = len(Handler.seen)
    forged = f"{server}/500{control}2026-01-01T00:00:00+00:00 200 {server}/200"
    assert main([forged, "--log-file", str(log)]) == 1
    captured = capsys.readouterr()
    assert "control characters" in captured.err
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].split(" ")[1] == "000"
    assert control not in log.read_text().rstrip("\n")
    assert len(Handler.seen) == fetched, "a refused URL was fetched"
