from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from webapp import logs

ACCESS_KEYS = {"ts", "level", "logger", "msg", "method", "path", "route", "status", "duration_ms",
               "remote_addr", "user_agent", "request_id"}


def access_lines(out: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in out.splitlines()]
    return [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]


@pytest.mark.usefixtures("json_logs")
def test_access_log_is_one_json_line_on_stdout(client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    r = client.get("/health", headers={"User-Agent": "probe", "X-Forwarded-For": "203.0.113.9, 10.0.0.1",
                                       "X-Request-ID": "req-1"})
    [entry] = access_lines(capsys.readouterr().out)
    assert set(entry) == ACCESS_KEYS
    assert entry["level"] == "info"
    assert (entry["method"], entry["path"], entry["route"], entry["status"]) == ("GET", "/health", "/health", 200)
    assert entry["remote_addr"] == "203.0.113.9"
    assert entry["user_agent"] == "probe"
    assert entry["request_id"] == r.headers["X-Request-ID"] == "req-1"
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0


@pytest.mark.usefixtures("json_logs")
def test_access_log_of_a_404(client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    r = client.get("/nope", headers={"X-Real-IP": "198.51.100.7"})
    [entry] = access_lines(capsys.readouterr().out)
    assert (entry["path"], entry["route"], entry["status"]) == ("/nope", "unmatched", 404)
    assert entry["remote_addr"] == "198.51.100.7"
    assert entry["request_id"] == r.headers["X-Request-ID"]


@pytest.mark.usefixtures("json_logs")
def test_remote_addr_is_the_peer_without_proxy_headers(client: FlaskClient) -> None:
    out = io.StringIO()
    logs.configure(stream=out)
    client.get("/", environ_base={"REMOTE_ADDR": "192.0.2.1"})
    [entry] = access_lines(out.getvalue())
    assert entry["remote_addr"] == "192.0.2.1"


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
