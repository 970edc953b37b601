from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from webapp.app import create_app
from webapp.config import Config


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_index_returns_the_message(client: FlaskClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.get_data(as_text=True) == "Hello, World!"
    assert r.mimetype == "text/plain"


def test_index_returns_a_configured_message() -> None:
    r = create_app(Config(message="Bonjour")).test_client().get("/")
    assert r.get_data(as_text=True) == "Bonjour"


def test_health(client: FlaskClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "version": Config().version, "release": "20260101T000000Z-abc1234"}


def test_requests_are_counted_by_method_route_and_status(client: FlaskClient) -> None:
    before = sample("app_requests_total", method="GET", route="/", status="200")
    client.get("/")
    assert sample("app_requests_total", method="GET", route="/", status="200") == before + 1


def test_unknown_paths_count_as_unmatched(client: FlaskClient) -> None:
    before = sample("app_requests_total", method="GET", route="unmatched", status="404")
    assert client.get("/no/such/page").status_code == 404
    assert sample("app_requests_total", method="GET", route="unmatched", status="404") == before + 1


def test_latency_histogram(client: FlaskClient) -> None:
    before = sample("app_request_duration_seconds_count", method="GET", route="/health")
    client.get("/health")
    assert sample("app_request_duration_seconds_count", method="GET", route="/health") == before + 1
    assert sample("app_request_duration_seconds_bucket", method="GET", route="/health", le="+Inf") >= before + 1


def test_metrics_endpoint(client: FlaskClient) -> None:
    client.get("/")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert 'app_requests_total{method="GET",route="/",status="200"}' in text
    assert "app_request_duration_seconds_bucket" in text
    assert f'app_build_info{{release="20260101T000000Z-abc1234",version="{Config().version}"}} 1.0' in text
    assert "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text


def test_build_info_shows_only_the_running_release() -> None:
    create_app(Config(release="r1"))
    create_app(Config(release="r2"))
    assert sample("app_build_info", version=Config().version, release="r2") == 1
    assert sample("app_build_info", version=Config().version, release="r1") == 0


def test_access_log_is_json(client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    from webapp import logs

    logs.configure()
    client.get("/health", headers={"User-Agent": "probe", "X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    access = [line for line in lines if line["logger"] == "webapp.access"]
    assert access, lines
    entry = access[-1]
    assert entry["status"] == 200
    assert entry["route"] == "/health"
    assert entry["method"] == "GET"
    assert entry["remote_addr"] == "203.0.113.9"
    assert entry["user_agent"] == "probe"
    assert {"ts", "level", "msg", "duration_ms", "request_id", "path"} <= set(entry)


def test_request_id_is_echoed(client: FlaskClient) -> None:
    assert client.get("/", headers={"X-Request-ID": "abc"}).headers["X-Request-ID"] == "abc"
    assert len(client.get("/").headers["X-Request-ID"]) == 32
