from __future__ import annotations

import sys

import pytest
from flask.testing import FlaskClient
from prometheus_client import CONTENT_TYPE_LATEST

from conftest import RELEASE, sample
from webapp import __version__
from webapp.app import create_app
from webapp.config import Config


def test_requests_are_counted_by_method_route_and_status(client: FlaskClient) -> None:
    before = sample("flask_http_request_total", method="GET", route="/", status="200")
    client.get("/")
    assert sample("flask_http_request_total", method="GET", route="/", status="200") == before + 1


def test_unknown_paths_count_as_unmatched(client: FlaskClient) -> None:
    before = sample("flask_http_request_total", method="GET", route="unmatched", status="404")
    client.get("/no/such/page")
    client.get("/another/one")
    assert sample("flask_http_request_total", method="GET", route="unmatched", status="404") == before + 2


def test_odd_methods_are_one_label(client: FlaskClient) -> None:
    before = sample("flask_http_request_total", method="other", route="unmatched", status="405")
    assert client.open("/", method="BREW").status_code == 405
    assert sample("flask_http_request_total", method="other", route="unmatched", status="405") == before + 1


def test_server_errors_are_counted() -> None:
    app = create_app(Config())

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    before = sample("flask_http_request_total", method="GET", route="/boom", status="500")
    assert app.test_client().get("/boom").status_code == 500
    assert sample("flask_http_request_total", method="GET", route="/boom", status="500") == before + 1


def test_duration_histogram(client: FlaskClient) -> None:
    labels = {"method": "GET", "route": "/health"}
    count = sample("flask_http_request_duration_seconds_count", **labels)
    inf = sample("flask_http_request_duration_seconds_bucket", le="+Inf", **labels)
    client.get("/health")
    assert sample("flask_http_request_duration_seconds_count", **labels) == count + 1
    assert sample("flask_http_request_duration_seconds_bucket", le="+Inf", **labels) == inf + 1
    assert sample("flask_http_request_duration_seconds_sum", **labels) > 0


def test_metrics_endpoint(client: FlaskClient) -> None:
    client.get("/")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = r.get_data(as_text=True)
    assert 'flask_http_request_total{method="GET",route="/",status="200"}' in text
    assert "# TYPE flask_http_request_duration_seconds histogram" in text
    assert 'flask_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/"}' in text
    assert f'app_build_info{{release="{RELEASE}",version="{__version__}"}} 1.0' in text
    assert "python_info" in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process_* metrics are Linux-only")
def test_process_metrics_are_exported(client: FlaskClient) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    assert "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text


def test_build_info_shows_only_the_running_release() -> None:
    create_app(Config(release="r1"))
    create_app(Config(release="r2"))
    assert sample("app_build_info", version=__version__, release="r2") == 1
    assert sample("app_build_info", version=__version__, release="r1") == 0
