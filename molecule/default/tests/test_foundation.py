"""The walking skeleton on the lab: app instances, their health, the load balancer."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from conftest import address, app_instances, exposure, get, hosts, instance_health, journal, lb_message, lb_url

APP_INSTANCES = app_instances()
LBS = hosts("lb")


@pytest.mark.parametrize(("name", "port"), APP_INSTANCES)
def test_app_unit_is_enabled(infra, name, port):
    service = infra(name).service(f"webapp@{port}")
    assert service.is_enabled, journal(infra(name), f"webapp@{port}")


@pytest.mark.parametrize(("name", "port"), APP_INSTANCES)
def test_app_unit_is_running(infra, name, port):
    service = infra(name).service(f"webapp@{port}")
    assert service.is_running, journal(infra(name), f"webapp@{port}")


@pytest.mark.parametrize(("name", "port"), APP_INSTANCES)
def test_app_instance_listens_on_its_port(infra, name, port):
    assert infra(name).socket(f"tcp://{address(name)}:{port}").is_listening


@pytest.mark.parametrize(("name", "port"), APP_INSTANCES)
def test_app_instance_answers_health(infra, name, port):
    health = instance_health(name, port)
    assert health is not None, journal(infra(name), f"webapp@{port}")
    assert health["status"] == "ok"
    assert health["version"]
    release = infra(name).file("/opt/webapp/current/release.json").content_string
    assert health["release"] == json.loads(release)["release_id"]


@pytest.mark.parametrize(("name", "port"), APP_INSTANCES)
def test_app_runs_as_its_own_user(infra, name, port):
    host = infra(name)
    pid = host.check_output(f"systemctl show --property MainPID --value webapp@{port}")
    assert pid not in ("", "0"), journal(host, f"webapp@{port}")
    user = host.check_output(f"ps -o user= -p {pid}")
    assert user == "webapp"


@pytest.mark.parametrize("name", LBS)
def test_nginx_is_running(infra, name):
    assert infra(name).service("nginx").is_running, journal(infra(name), "nginx")


@pytest.mark.parametrize("name", LBS)
def test_lb_returns_the_message(name):
    answer = get(lb_url(name))
    assert answer.status == 200
    assert answer.body == lb_message()


@pytest.mark.parametrize("name", LBS)
@pytest.mark.parametrize("path", ["/metrics", "/health", "/metrics/", "/health?x=1"])
def test_internal_paths_are_not_reachable_through_lb(name, path):
    answer = get(lb_url(name, path))
    assert answer.status == 404
    assert "flask_http_request_total" not in answer.body


@pytest.mark.parametrize("name", LBS)
def test_lb_spreads_requests_over_every_instance(infra, name):
    marker = f"spread-{uuid.uuid4().hex}"
    for _ in range(100):
        assert get(lb_url(name), headers={"User-Agent": marker}).status == 200
    log = infra(name).file("/var/log/nginx/access.log").content_string
    served = {
        json.loads(line)["upstream_addr"]
        for line in log.splitlines()
        if marker in line
    }
    expected = {f"{address(h)}:{p}" for h, p in APP_INSTANCES}
    assert served == expected


@pytest.mark.parametrize(("name", "port"), APP_INSTANCES)
def test_app_unit_is_sandboxed(infra, name, port):
    score, report = exposure(infra(name), f"webapp@{port}.service")
    assert score <= 1.1, report  # measured when its sandbox moved into roles/systemd_service's drop-in
