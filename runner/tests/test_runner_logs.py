from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime, timedelta

import pytest

from runner_support import BufferedClient, make_flask_app, serve
from stack_runner import logs
from stack_runner.config import Config

ACCESS_KEYS = {"ts", "level", "logger", "msg", "method", "path", "route", "status", "duration_ms",
               "remote_addr", "user_agent", "request_id"}


def access_lines(out: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in out.splitlines()]
    return [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]


@pytest.mark.usefixtures("json_logs")
def test_access_log_is_one_json_line_on_stdout(client: BufferedClient, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    r = client.get("/health", headers={"User-Agent": "probe", "X-Request-ID": "req-1"},
                   environ_base={"REMOTE_ADDR": "203.0.113.9"})
    [entry] = access_lines(capsys.readouterr().out)
    assert set(entry) == ACCESS_KEYS
    assert entry["level"] == "info"
    assert (entry["method"], entry["path"], entry["route"], entry["status"]) == ("GET", "/health", "/health", 200)
    assert entry["remote_addr"] == "203.0.113.9"
    assert entry["user_agent"] == "probe"
    assert entry["request_id"] == r.headers["X-Request-ID"] == "req-1"
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0


@pytest.mark.usefixtures("json_logs")
def test_access_log_of_a_404(client: BufferedClient, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    r = client.get("/nope")
    [entry] = access_lines(capsys.readouterr().out)
    assert (entry["path"], entry["route"], entry["status"]) == ("/nope", "unmatched", 404)
    assert entry["request_id"] == r.headers["X-Request-ID"]


@pytest.mark.usefixtures("json_logs")
def test_access_log_of_a_plain_wsgi_app(plain: BufferedClient, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    plain.get("/caf%C3%A9/1")
    [entry] = access_lines(capsys.readouterr().out)
    assert (entry["path"], entry["route"], entry["status"]) == ("/café/1", "*", 200)


@pytest.mark.usefixtures("json_logs")
def test_remote_addr_is_the_peer_without_proxy_headers(client: BufferedClient) -> None:
    out = io.StringIO()
    logs.configure(stream=out)
    client.get("/", environ_base={"REMOTE_ADDR": "192.0.2.1"})
    [entry] = access_lines(out.getvalue())
    assert entry["remote_addr"] == "192.0.2.1"


LB = "10.0.0.11"


def behind_lb(trusted: str) -> BufferedClient:
    proxies = Config.from_env({"STACK_TRUSTED_PROXIES": trusted}).trusted_proxies
    return serve(make_flask_app(), trusted_proxies=proxies)


def logged_addr(client: BufferedClient, peer: str, headers: dict[str, str]) -> object:
    out = io.StringIO()
    logs.configure(stream=out)
    client.get("/", headers=headers, environ_base={"REMOTE_ADDR": peer})
    [entry] = access_lines(out.getvalue())
    return entry["remote_addr"]


@pytest.mark.usefixtures("json_logs")
@pytest.mark.parametrize("headers", [{"X-Forwarded-For": "6.6.6.6"}, {"X-Real-IP": "6.6.6.6"},
                                     {"Forwarded": "for=6.6.6.6"}])
def test_proxy_headers_of_an_untrusted_peer_are_ignored(headers: dict[str, str]) -> None:
    assert logged_addr(behind_lb(LB), "192.0.2.1", headers) == "192.0.2.1"


@pytest.mark.usefixtures("json_logs")
def test_no_peer_is_trusted_by_default(client: BufferedClient) -> None:
    assert logged_addr(client, LB, {"X-Forwarded-For": "203.0.113.9"}) == LB


@pytest.mark.usefixtures("json_logs")
@pytest.mark.parametrize(("trusted", "forwarded", "expected"), [
    (LB, "203.0.113.9", "203.0.113.9"),                      # what the edge LB sends: the client it saw
    ("10.0.0.0/24", "203.0.113.9", "203.0.113.9"),           # trusted by network
    (LB, "6.6.6.6, 203.0.113.9", "203.0.113.9"),             # a spoofed left hop is never read
    (f"{LB}, 10.0.0.12", "203.0.113.9, 10.0.0.12", "203.0.113.9"),  # trusted hops are skipped
    (LB, "2001:db8::1", "2001:db8::1"),
    (LB, "", LB),                                            # no header: the proxy itself
    (LB, "not-an-address", LB),                              # garbage: the proxy itself
    (f"{LB} 10.0.0.12", "10.0.0.12", LB),                    # only trusted hops: the peer
])
def test_trusted_proxy_names_the_client(trusted: str, forwarded: str, expected: str) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert logged_addr(behind_lb(trusted), LB, headers) == expected


@pytest.mark.usefixtures("json_logs")
def test_x_real_ip_is_not_read_even_from_a_trusted_proxy() -> None:
    assert logged_addr(behind_lb(LB), LB, {"X-Real-IP": "203.0.113.9"}) == LB


def test_formatter_fields_and_utc_timestamp() -> None:
    record = logging.makeLogRecord({"name": "x.y", "levelname": "WARNING", "msg": "hi %s", "args": ("there",),
                                    "port": 8000})
    line = json.loads(logs.JsonFormatter().format(record))
    assert line == {"ts": line["ts"], "level": "warning", "logger": "x.y", "msg": "hi there", "port": 8000}
    ts = datetime.fromisoformat(str(line["ts"]))
    assert ts.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - ts) < timedelta(minutes=1)


def test_formatter_keeps_the_traceback() -> None:
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        record = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(logs.JsonFormatter().format(record))
    assert "RuntimeError: bad" in line["exc"]


@pytest.mark.usefixtures("json_logs")
def test_long_client_fields_are_cut_with_a_marker_never_dropped(client: BufferedClient,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    agent, path = '"' * 20_000, "/" + "p" * 9_000
    client.get(path, headers={"User-Agent": agent, "X-Request-ID": "req-long"})
    out = capsys.readouterr().out
    [entry] = access_lines(out)
    assert entry["request_id"] == "req-long"
    assert entry["user_agent"] == agent[:logs.FIELD_MAX_LENGTH] + logs.CUT_MARKER
    assert entry["path"] == path[:logs.FIELD_MAX_LENGTH] + logs.CUT_MARKER
    assert entry["msg"] == f"GET {entry['path']} 404"
    longest = max(len(line.encode()) for line in out.splitlines())
    assert longest < 8 * logs.FIELD_MAX_LENGTH, f"an access line of {longest} bytes"


@pytest.mark.parametrize(("value", "expected"), [("", ""), ("abc", "abc"), ("x" * 1024, "x" * 1024),
                                                 ("x" * 1025, "x" * 1024 + logs.CUT_MARKER)])
def test_clip(value: str, expected: str) -> None:
    assert logs.clip(value) == expected


@pytest.mark.parametrize(("given", "kept"), [("abc-123", True), ("x" * 128, True), ("x" * 129, False),
                                             ("has space", False), ("", False), ("caf\u00e9", False)])
def test_request_id(given: str, kept: bool) -> None:
    rid = logs.request_id(given)
    assert (rid == given) is kept
    if not kept:
        assert len(rid) == 32 and int(rid, 16) >= 0
