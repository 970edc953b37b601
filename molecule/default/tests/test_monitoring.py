"""Monitoring on the lab: every target up, exporters on internal addresses, and every
PromQL expression of every dashboard and alert rule answering with data."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT, address, app_instances, get, get_from, hosts, hostvars, journal, lb_url, port

MONITORING = hosts("monitoring")
DASHBOARDS = sorted((PROJECT / "roles" / "grafana" / "files" / "dashboards").glob("*.json"))
# Grafana's variables as the dashboards use them, replaced by what selects everything.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$env": ".*", "$host": ".*"}


def expected_targets() -> list[tuple[str, str]]:
    targets = [("node", f"{h}:{port(h, 'node_exporter_port')}") for h in hosts("all")]
    targets += [("app", f"{h}:{p}") for h, p in app_instances()]
    targets += [("nginx", f"{h}:{port(h, 'nginx_exporter_port')}") for h in hosts("lb")]
    targets += [("prometheus", f"{h}:{port(h, 'prometheus_port')}") for h in MONITORING]
    targets += [("alertmanager", f"{h}:{port(h, 'alertmanager_port')}") for h in MONITORING]
    return targets


def prometheus_url(name: str) -> str:
    return f"http://{address(name)}:{port(name, 'prometheus_port')}"


def query(name: str, expr: str) -> list[dict]:
    answer = get(f"{prometheus_url(name)}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    body = json.loads(answer.body)
    assert answer.status == 200 and body["status"] == "success", f"{expr}: {body.get('error', answer.body)}"
    return body["data"]["result"]


def dashboard_exprs() -> list[tuple[str, str]]:
    found = []

    def walk(panels: list[dict], dashboard: str) -> None:
        for panel in panels:
            walk(panel.get("panels", []), dashboard)
            for target in panel.get("targets", []):
                # LogQL targets go to Loki, not Prometheus (test_logging.py checks them).
                if (target.get("datasource") or panel.get("datasource") or {}).get("type") == "loki":
                    continue
                if target.get("expr"):
                    found.append((f"{dashboard}: {panel.get('title', '?')}", target["expr"]))

    for path in DASHBOARDS:
        walk(json.loads(path.read_text()).get("panels", []), path.stem)
    return found


def substitute(expr: str) -> str:
    for var, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def instant(text: str) -> float:
    """An RFC 3339 time as Prometheus writes it (nanoseconds, Z or an offset), as a Unix time."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")).timestamp()


def wait_for_scrapes(name: str, after: float, count: int = 2, timeout: float = 120) -> None:
    """Wait until Prometheus on `name` has scraped every active target `count` times since `after`
    (a Unix time): a series that first appeared then has the samples a rate() needs. Fails at
    the deadline naming the targets it has not."""
    scrapes: dict[str, set[str]] = {}
    deadline = time.monotonic() + timeout
    while True:
        body = json.loads(get(f"{prometheus_url(name)}/api/v1/targets?state=active").body)
        for t in body["data"]["activeTargets"]:
            key = f"{t['labels']['job']} {t['labels']['instance']}"
            scrapes.setdefault(key, set())
            if instant(t["lastScrape"]) > after:
                scrapes[key].add(t["lastScrape"])
        behind = sorted(k for k, seen in scrapes.items() if len(seen) < count)
        if scrapes and not behind:
            return
        assert time.monotonic() < deadline, (
            f"Prometheus on {name} has not scraped these targets {count} times in {timeout} s: {behind or 'no target'}")
        time.sleep(1)


@pytest.fixture(scope="module")
def traffic() -> None:
    """A short burst through every load balancer, then two scrapes of every target after it on
    every Prometheus."""
    for name in hosts("lb"):
        for _ in range(50):
            get(lb_url(name))
    after = time.time()
    for name in MONITORING:
        wait_for_scrapes(name, after)


@pytest.fixture(scope="module")
def rules(infra) -> list[tuple[str, str]]:
    text = infra(MONITORING[0]).file("/etc/prometheus/rules/webapp.rules.yml").content_string
    return [(r["alert"], r["expr"]) for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


@pytest.mark.parametrize("name", MONITORING)
def test_prometheus_is_running(infra, name):
    assert infra(name).service("prometheus").is_running, journal(infra(name), "prometheus")


@pytest.mark.parametrize("name", MONITORING)
@pytest.mark.parametrize(("job", "instance"), expected_targets())
def test_target_is_up(name, job, instance):
    deadline = time.monotonic() + 60
    while True:
        body = json.loads(get(f"{prometheus_url(name)}/api/v1/targets?state=active").body)
        health = {(t["labels"]["job"], t["labels"]["instance"]): t for t in body["data"]["activeTargets"]}
        target = health.get((job, instance))
        assert target is not None, f"{job} {instance} is not a target of {name}: {sorted(health)}"
        if target["health"] == "up":
            break
        assert time.monotonic() < deadline, f"{job} {instance} is {target['health']}: {target['lastError']}"
        time.sleep(2)
    assert target["labels"]["env"] == hostvars(name)["deploy_env"]
    assert target["labels"]["host"] == instance.split(":")[0]
    assert target["labels"]["group"]


@pytest.mark.parametrize("name", hosts("all"))
def test_node_exporter_listens_on_the_internal_address_only(infra, name):
    host, p = infra(name), port(name, "node_exporter_port")
    assert host.socket(f"tcp://{address(name)}:{p}").is_listening, journal(host, "prometheus-node-exporter")
    assert not host.socket(f"tcp://0.0.0.0:{p}").is_listening
    assert not host.socket(f"tcp://127.0.0.1:{p}").is_listening


@pytest.mark.parametrize("name", hosts("lb"))
def test_nginx_exporter_reads_stub_status(name):
    # From a monitoring host: the firewall opens exporters to monitoring hosts only.
    text = get_from(MONITORING[0], f"http://{address(name)}:{port(name, 'nginx_exporter_port')}/metrics").body
    assert re.search(r"^nginx_up 1$", text, re.M), text[:500]


@pytest.mark.parametrize("name", MONITORING)
def test_every_alert_rule_query_returns_data(traffic, rules, name):
    # "<query> <op> <threshold>" evaluated as "<query> <op> bool <threshold>": a series
    # per input whether or not the alert fires.
    empty = []
    for alert, expr in rules:
        as_bool = re.sub(r"\s(==|!=|>=|<=|>|<)\s+([0-9.e+-]+)\s*$", r" \1 bool \2", expr.strip())
        assert as_bool != expr.strip(), f"{alert}: no trailing threshold comparison in {expr!r}"
        if not query(name, as_bool):
            empty.append(f"{alert}: {as_bool}")
    assert not empty, "alert queries with no series:\n" + "\n".join(empty)


@pytest.mark.parametrize("name", MONITORING)
def test_every_dashboard_query_returns_data(traffic, name):
    exprs = dashboard_exprs()
    assert exprs, f"no PromQL expressions found in {DASHBOARDS}"
    empty = [f"{where}: {expr}" for where, expr in exprs if not query(name, substitute(expr))]
    assert not empty, "dashboard queries with no series:\n" + "\n".join(empty)


@pytest.mark.parametrize("name", MONITORING)
def test_the_original_prometheus_step_answers_as_typed(traffic, name):
    """docs/monitoring.md's PromQL block (the original task's step, `flask_http_request_total`)
    answers with a series of every app instance."""
    blocks = re.findall(r"```promql\n(.+?)\n```", (PROJECT / "docs" / "monitoring.md").read_text(), re.S)
    assert "flask_http_request_total" in blocks, f"docs/monitoring.md shows no `flask_http_request_total` step: {blocks}"
    found = {r["metric"]["instance"] for r in query(name, "flask_http_request_total")}
    assert found >= {f"{h}:{p}" for h, p in app_instances()}, found
