"""The canary analysis (roles/app/library/webapp_canary.py): its queries, its verdict on given
numbers, a whole judgement against a stand-in Prometheus on loopback (the one HTTP call), an
unreachable Prometheus as a failed verdict; and the settings the preflight refuses."""

from __future__ import annotations

import json
import socket
import sys
import urllib.parse

import pytest

from tests.conftest import ROOT
from tests.loopback import Loopback
from tests.test_app_modules import run

sys.path.insert(0, str(ROOT / "roles" / "app" / "library"))
sys.path.insert(0, str(ROOT / "roles" / "app" / "filter_plugins"))
sys.path.insert(0, str(ROOT / "playbooks" / "filter_plugins"))
import stack_filters  # noqa: E402
import webapp_canary  # noqa: E402
import webapp_settings  # noqa: E402

P = {"env": "lab", "release": "r2", "health_path": "/health", "quantile": 0.9, "max_error_ratio": 0.05,
     "max_latency_ratio": 1.5, "min_requests": 50, "low_traffic": "continue", "seconds": 30.0,
     "scrape_interval": "15s", "timeout": 2.0}


def test_the_queries_compare_the_release_with_every_other_release_of_the_env():
    found = webapp_canary.queries(P, 45)
    assert found["release_requests"] == ('sum(increase(flask_http_request_total{job="app",env="lab",release="r2",'
                                         'route!="/metrics",route!="/health"}[45s]))')
    assert 'release!="r2"' in found["others_errors"] and 'status=~"5.."' in found["others_errors"]
    assert found["release_latency"].startswith("histogram_quantile(0.9, sum by (le) (rate(")


@pytest.mark.parametrize(("numbers", "result", "words"), [
    ({"release_requests": 200, "release_errors": 60, "others_requests": 400, "others_errors": 0,
      "release_latency": 0.01, "others_latency": 0.01}, "fail", ["error ratio", "0.300", "app_canary_max_error_ratio"]),
    ({"release_requests": 200, "release_errors": 2, "others_requests": 400, "others_errors": 0,
      "release_latency": 0.01, "others_latency": 0.01}, "pass", []),
    ({"release_requests": 200, "release_errors": 0, "others_requests": 400, "others_errors": 0,
      "release_latency": 0.05, "others_latency": 0.01}, "fail", ["latency p90", "5.00 times", "app_canary_max_latency_ratio"]),
    ({"release_requests": 200, "release_errors": 30, "others_requests": 400, "others_errors": 40,
      "release_latency": 0.01, "others_latency": None}, "pass", []),
    ({"release_requests": 10, "release_errors": 10, "others_requests": 400, "others_errors": 0}, "no-traffic",
     ["fewer than app_canary_min_requests"]),
    ({"release_requests": 200, "release_errors": 20, "others_requests": None, "others_errors": None}, "fail",
     ["0.100 on the release against none"]),
], ids=["errors", "within", "slow", "others-fail-too", "few", "no-others"])
def test_the_verdict(numbers, result, words):
    got, reasons = webapp_canary.verdict(numbers, P)
    assert got == result, reasons
    for word in words:
        assert word in " ".join(reasons), reasons


class Prometheus(Loopback):
    """A stand-in Prometheus on loopback: /api/v1/query answers each query from `values`."""

    def __init__(self, values: dict[str, float | None]) -> None:
        self.asked: list[str] = []

        def answer(path: str) -> tuple[int, dict[str, str], bytes]:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["query"][0]
            self.asked.append(query)
            value = next((v for k, v in values.items() if k in query), None)
            result = [] if value is None else [{"metric": {}, "value": [0, str(value)]}]
            return 200, {}, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()

        super().__init__(answer)


def answers(release_errors: float) -> dict[str, float | None]:
    """What the stand-in answers: keyed by a piece of each query (errors before totals)."""
    return {'release="r2",route!="/metrics",route!="/health",status': release_errors,
            'release!="r2",route!="/metrics",route!="/health",status': 0,
            'histogram_quantile': 0.01,
            'release="r2"': 300, 'release!="r2"': 600}


def test_a_judgement_waits_for_the_window_and_a_scrape_then_asks(capsys):
    prom = Prometheus(answers(release_errors=90))
    waited = []
    result = webapp_canary.judge({**P, "prometheus": prom.url()},
                                 sleep=waited.append, clock=lambda: 1000.0)
    prom.shutdown()
    assert waited == [45.0] and len(prom.asked) == 6
    assert result["verdict"] == "fail" and result["numbers"]["release_errors"] == 90, result


def test_the_module_fails_naming_the_metric(monkeypatch, capsys):
    prom = Prometheus(answers(release_errors=90))
    monkeypatch.setattr(webapp_canary.time, "sleep", lambda s: None)
    rc, res = run(webapp_canary, {**P, "prometheus": prom.url()}, capsys)
    prom.shutdown()
    assert rc == 1 and "failed its canary analysis" in res["msg"] and "error ratio" in res["msg"], res
    assert res["verdict"] == "fail"


def test_a_healthy_release_passes(monkeypatch, capsys):
    prom = Prometheus(answers(release_errors=0))
    monkeypatch.setattr(webapp_canary.time, "sleep", lambda s: None)
    rc, res = run(webapp_canary, {**P, "prometheus": prom.url()}, capsys)
    prom.shutdown()
    assert rc == 0 and res["verdict"] == "pass", res


@pytest.mark.parametrize(("low_traffic", "rc"), [("continue", 0), ("stop", 1)])
def test_too_little_traffic_does_what_the_operator_chose(monkeypatch, capsys, low_traffic, rc):
    prom = Prometheus({"release=": 3, "release!=": 600})
    monkeypatch.setattr(webapp_canary.time, "sleep", lambda s: None)
    got, res = run(webapp_canary, {**P, "low_traffic": low_traffic,
                                   "prometheus": prom.url()}, capsys)
    prom.shutdown()
    assert got == rc and res["verdict"] == "no-traffic" and f"app_canary_low_traffic is {low_traffic}" in str(res), res


def test_an_unreachable_prometheus_is_a_failed_verdict(monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(webapp_canary.time, "sleep", lambda s: None)
    rc, res = run(webapp_canary, {**P, "prometheus": f"http://127.0.0.1:{port}"}, capsys)
    assert rc == 1 and res["verdict"] == "fail" and "did not answer" in res["msg"], res


def test_a_duration_is_read_as_prometheus_writes_it():
    assert [webapp_canary.seconds(d) for d in ("15s", "1m", "500ms", "1.5s")] == [15, 60, 0.5, 1.5]
    with pytest.raises(ValueError):
        webapp_canary.seconds("15")


GOOD = {"app_canary_seconds": 30, "app_canary_max_error_ratio": 0.05, "app_canary_max_latency_ratio": 1.5,
        "app_canary_latency_quantile": 0.9, "app_canary_min_requests": 50, "app_canary_low_traffic": "continue",
        "app_canary_prometheus_url": "http://10.0.0.5:9090"}


@pytest.mark.parametrize(("name", "value"), [
    ("app_canary_seconds", 5), ("app_canary_seconds", -1), ("app_canary_seconds", "x"),
    ("app_canary_max_error_ratio", 1.5), ("app_canary_max_latency_ratio", 0.5), ("app_canary_latency_quantile", 1),
    ("app_canary_min_requests", 0), ("app_canary_low_traffic", "maybe"), ("app_canary_prometheus_url", ""),
])
def test_canary_bounds_out_of_range_are_refused_naming_the_variable(name, value):
    found = webapp_settings.canary_problems({**GOOD, name: value})
    assert len(found) == 1 and found[0].startswith(name), found


def test_a_canary_that_is_off_needs_nothing_else():
    assert webapp_settings.canary_problems({"app_canary_seconds": 0, "app_canary_prometheus_url": ""}) == []
    assert webapp_settings.canary_problems(GOOD) == []


def test_the_canary_asks_the_first_monitoring_hosts_prometheus():
    defaults = stack_filters.role_defaults()
    hostvars = {"mon1": {"internal_address": "10.0.0.5", "prometheus_scrape_interval": "5s"},
                "mon2": {"internal_address": "fd00::6"}}
    assert stack_filters.prometheus(hostvars, {"monitoring": ["mon1", "mon2"]}, defaults) == {
        "url": "http://10.0.0.5:9090", "scrape_interval": "5s"}
    assert stack_filters.prometheus(hostvars, {"monitoring": ["mon2"]}, defaults)["url"] == "http://[fd00::6]:9090"
    assert stack_filters.prometheus({}, {}, defaults)["url"] == ""
