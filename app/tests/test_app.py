from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from webapp import __version__
from webapp.app import create_app
from webapp.config import Config

# As conftest's app fixture sets it (not imported: runner/tests has a conftest too).
RELEASE = "20260101T000000Z-abc1234"


def test_index_returns_the_default_message() -> None:
    r = create_app(Config.from_env({})).test_client().get("/")
    assert r.status_code == 200
    assert r.get_data(as_text=True) == "Hello, World!"
    assert r.mimetype == "text/plain"


def test_index_returns_a_configured_message() -> None:
    r = create_app(Config.from_env({"APP_MESSAGE": "Bonjour, monde"})).test_client().get("/")
    assert r.get_data(as_text=True) == "Bonjour, monde"


def test_the_factory_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_MESSAGE", "from the environment")
    assert create_app().test_client().get("/").get_data(as_text=True) == "from the environment"


def test_health(client: FlaskClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    assert r.get_json() == {"status": "ok", "version": __version__, "release": RELEASE}


def test_health_release_is_the_runners(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_RELEASE", "r-env")
    assert client.get("/health").get_json()["release"] == "r-env"
    monkeypatch.delenv("STACK_RELEASE")
    assert client.get("/health").get_json()["release"] == "unknown"


def test_unknown_path_is_404(client: FlaskClient) -> None:
    assert client.get("/no/such/page").status_code == 404


def test_metrics_are_not_the_apps(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 404  # the runner answers /metrics


def test_served_by_the_runner() -> None:
    """Under stack-runner (installed beside the app in every release and in the build's tests):
    X-Release, the route labels, /metrics."""
    from prometheus_client import REGISTRY
    from werkzeug.test import Client

    from stack_runner import middleware
    from stack_runner.config import Config as RunnerConfig
    from stack_runner.loader import load

    client = Client(middleware.wrap(load("webapp.app:create_app()"), RunnerConfig(release=RELEASE)))
    labels = {"method": "GET", "route": "/health", "status": "200", "release": RELEASE}
    before = REGISTRY.get_sample_value("flask_http_request_total", labels) or 0.0
    r = client.get("/health", buffered=True)
    assert (r.status_code, r.headers["X-Release"]) == (200, RELEASE)
    assert REGISTRY.get_sample_value("flask_http_request_total", labels) == before + 1
    assert "flask_http_request_total" in client.get("/metrics", buffered=True).get_data(as_text=True)
