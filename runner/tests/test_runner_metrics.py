from __future__ import annotations


import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from runner_support import RELEASE, VERSION, BufferedClient, make_flask_app, sample, serve
from stack_runner import metrics


def test_requests_are_counted_by_method_route_and_status(client: BufferedClient) -> None:
    before = sample("flask_http_request_total", method="GET", route="/", status="200")
    client.get("/")
    assert sample("flask_http_request_total", method="GET", route="/", status="200") == before + 1


def test_a_flask_route_is_its_url_rule(client: BufferedClient) -> None:
    before = sample("flask_http_request_total", method="GET", route="/items/<int:n>", status="200")
    client.get("/items/1")
    client.get("/items/2")
    assert sample("flask_http_request_total", method="GET", route="/items/<int:n>", status="200") == before + 2


def test_unknown_paths_count_as_unmatched(client: BufferedClient) -> None:
    before = sample("flask_http_request_total", method="GET", route="unmatched", status="404")
    client.get("/no/such/page")
    client.get("/another/one")
    assert sample("flask_http_request_total", method="GET", route="unmatched", status="404") == before + 2


def test_odd_methods_are_one_label(client: BufferedClient) -> None:
    before = sample("flask_http_request_total", method="other", route="unmatched", status="405")
    assert client.open("/", method="BREW").status_code == 405
    assert sample("flask_http_request_total", method="other", route="unmatched", status="405") == before + 1


def test_a_before_request_answer_of_the_app_still_has_its_route() -> None:
    app = make_flask_app()
    app.before_request(lambda: ("maintenance", 503))
    before = sample("flask_http_request_total", method="GET", route="/items/<int:n>", status="503")
    assert serve(app).get("/items/3").status_code == 503
    assert sample("flask_http_request_total", method="GET", route="/items/<int:n>", status="503") == before + 1


def test_server_errors_are_counted(client: BufferedClient) -> None:
    before = sample("flask_http_request_total", method="GET", route="/boom", status="500")
    assert client.get("/boom").status_code == 500
    assert sample("flask_http_request_total", method="GET", route="/boom", status="500") == before + 1


@pytest.mark.parametrize(("path", "route", "status"), [
    ("/health", "/health", "200"), ("/metrics", "/metrics", "200"), ("/", "*", "200"),
    ("/some/page/42", "*", "200"), ("/missing", "*", "404"), ("/boom", "*", "500"),
])
def test_a_plain_wsgi_app_counts_its_health_path_metrics_and_the_rest(plain: BufferedClient, path: str,
                                                                      route: str, status: str) -> None:
    before = sample("flask_http_request_total", method="GET", route=route, status=status)
    plain.get(path)
    assert sample("flask_http_request_total", method="GET", route=route, status=status) == before + 1


def test_the_health_path_of_a_plain_app_is_the_configured_one() -> None:
    from runner_support import plain_app

    before = sample("flask_http_request_total", method="GET", route="/-/ready", status="200")
    serve(plain_app, health_path="/-/ready").get("/-/ready")
    assert sample("flask_http_request_total", method="GET", route="/-/ready", status="200") == before + 1


def test_duration_histogram(client: BufferedClient) -> None:
    labels = {"method": "GET", "route": "/health"}
    count = sample("flask_http_request_duration_seconds_count", **labels)
    inf = sample("flask_http_request_duration_seconds_bucket", le="+Inf", **labels)
    client.get("/health")
    assert sample("flask_http_request_duration_seconds_count", **labels) == count + 1
    assert sample("flask_http_request_duration_seconds_bucket", le="+Inf", **labels) == inf + 1
    assert sample("flask_http_request_duration_seconds_sum", **labels) > 0


def test_metrics_endpoint(client: BufferedClient) -> None:
    metrics.set_build_info(VERSION, RELEASE)
    client.get("/")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = r.get_data(as_text=True)
    assert f'flask_http_request_total{{method="GET",release="{RELEASE}",route="/",status="200"}}' in text
    assert "# TYPE flask_http_request_duration_seconds histogram" in text
    assert f'flask_http_request_duration_seconds_bucket{{le="0.005",method="GET",release="{RELEASE}",route="/"}}' in text
    assert f'app_build_info{{release="{RELEASE}",version="{VERSION}"}} 1.0' in text
    assert "python_info" in text


def test_process_metrics_are_exported(client: BufferedClient) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    assert "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text


def test_build_info_shows_only_the_running_release() -> None:
    metrics.set_build_info("1.0", "r1")
    metrics.set_build_info("1.0", "r2")
    assert sample("app_build_info", version="1.0", release="r2") == 1
    assert sample("app_build_info", version="1.0", release="r1") == 0


@pytest.mark.parametrize(("method", "label"), [("GET", "GET"), ("PATCH", "PATCH"), ("BREW", "other"),
                                               ("get", "other")])
def test_method_label(method: str, label: str) -> None:
    assert metrics.method_label(method) == label
