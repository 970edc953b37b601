"""The walking skeleton on the lab: app instances, their health, the load balancer."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest
from conftest import (address, app_instances, exposure, get, hosts, hostvars, instance_health, journal, lb_message, lb_url,
                      release)

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


# The fleet operators run (lab/hosts.py, lab/lab): Debian 13 and 12 side by side, reached as an
# unprivileged user whose sudo every play's become and every test command goes through.
ALL = hosts("all")


def lab_env() -> dict[str, str]:
    """lab/lab's record of the lab (its lab.env): each host's address and release."""
    state = os.environ.get("LAB_STATE") or f"/var/lib/webapp-lab/{os.environ.get('LAB_NAME', 'lab')}"
    lines = Path(state, "lab.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize("name", ALL)
def test_each_host_runs_the_release_the_lab_made_it_with(name):
    assert release(name) == lab_env()[f"LAB_SUITE_{name}"]


def test_the_default_lab_mixes_debian_12_and_13():
    if os.environ.get("LAB_SUITE") or os.environ.get("LAB_SUITES"):
        pytest.skip("LAB_SUITE/LAB_SUITES chose the hosts' releases")
    assert {release(name) for name in ALL} == {"bookworm", "trixie"}


@pytest.mark.parametrize("name", ALL)
def test_the_tests_log_in_as_the_deploy_user_and_act_through_sudo(infra, name):
    assert hostvars(name)["ansible_user"] == "deploy"
    assert infra(name).check_output("echo $SUDO_USER:$(id -un)") == "deploy:root"
    assert infra(name).file("/root").mode == 0o700  # root's files stay root's: reading them needs sudo


@pytest.mark.parametrize("name", hosts("app"))
def test_each_app_host_runs_the_release_with_its_own_python(infra, name):
    expected = {"bookworm": "3.11", "trixie": "3.13"}[release(name)]
    host = infra(name)
    assert host.check_output("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'") == expected
    venv = host.check_output("readlink -f /opt/webapp/current")
    assert host.file(f"{venv}/venv/lib/python{expected}").is_directory, host.check_output(f"ls {venv} {venv}/venv/lib")
