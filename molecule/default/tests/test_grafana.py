"""Grafana on the lab's monitoring hosts: health, provisioning, dashboards, sign-in.

Grafana's package comes only from Grafana's apt repository (or .deb files an operator
supplies), so a lab whose machine cannot reach that repository has no Grafana; every
test here then skips with the reason, rather than failing. Deployment is detected by the
grafana-server unit on the monitoring host.

Settings (environment):
  LAB_GRAFANA_ADMIN_PASSWORD  the admin password; without it, the password Ansible
                              resolves for the host from the lab inventory
                              (grafana_admin_password; the lab's default is
                              lab-admin-password, from this same variable)
  LAB_GRAFANA_ADMIN_USER      the admin login; without it, grafana_admin_user (admin)
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from conftest import PROJECT, Answer, address, basic_auth, get, hosts, hostvars, journal, port

MONITORING = hosts("monitoring")
UNIT = "grafana-server"
DASHBOARDS = sorted((PROJECT / "roles" / "grafana" / "files" / "dashboards").glob("*.json"))
DATASOURCE_UID = "prometheus"
LOKI_DATASOURCE_UID = "loki"
NOT_DEPLOYED = (
    "Grafana is not deployed on {name} in this lab: its package comes only from Grafana's apt repository, "
    "which this machine cannot reach; set LAB_GRAFANA_DEBS=/path/to/grafana_<ver>_amd64.deb to run these tests"
)


def base_url(name: str) -> str:
    """Grafana as admin_networks reach it: HTTPS when the inventory gives it a certificate."""
    scheme = "https" if hostvars(name)["grafana_tls_certificate"] else "http"
    return f"{scheme}://{address(name)}:{port(name, 'grafana_port')}"


def admin(name: str) -> tuple[str, str]:
    user = os.environ.get("LAB_GRAFANA_ADMIN_USER") or hostvars(name)["grafana_admin_user"]
    password = os.environ.get("LAB_GRAFANA_ADMIN_PASSWORD") or hostvars(name)["grafana_admin_password"]
    assert password, "no admin password: set LAB_GRAFANA_ADMIN_PASSWORD or grafana_admin_password in the lab inventory"
    return user, password


def post(url: str, body: dict, headers: dict[str, str] | None = None, timeout: float = 5) -> Answer:
    return get(url, {"Content-Type": "application/json", **(headers or {})}, timeout, "POST", json.dumps(body).encode())


@pytest.fixture
def grafana(infra, name):
    """The monitoring host's testinfra host, or a skip when Grafana is not deployed there."""
    host = infra(name)
    units = host.run(f"systemctl list-unit-files --no-legend --no-pager {UNIT}.service").stdout
    if UNIT not in units:
        pytest.skip(NOT_DEPLOYED.format(name=name))
    return host


@pytest.mark.parametrize("name", MONITORING)
def test_grafana_unit_is_enabled_and_running(grafana, name):
    service = grafana.service(UNIT)
    assert service.is_enabled, journal(grafana, UNIT)
    assert service.is_running, journal(grafana, UNIT)


@pytest.mark.parametrize("name", MONITORING)
def test_health_answers_database_ok(grafana, name):
    answer = get(f"{base_url(name)}/api/health")
    assert answer.status == 200, journal(grafana, UNIT)
    assert json.loads(answer.body)["database"] == "ok"


@pytest.mark.parametrize("name", MONITORING)
def test_prometheus_datasource_is_provisioned(grafana, name):
    answer = get(f"{base_url(name)}/api/datasources/uid/{DATASOURCE_UID}", headers=basic_auth(*admin(name)))
    assert answer.status == 200, answer.body
    datasource = json.loads(answer.body)
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["type"] == "prometheus"


@pytest.mark.parametrize("name", MONITORING)
def test_prometheus_datasource_answers_queries(grafana, name):
    answer = get(
        f"{base_url(name)}/api/datasources/proxy/uid/{DATASOURCE_UID}/api/v1/query?query=up",
        headers=basic_auth(*admin(name)), timeout=10,
    )
    assert answer.status == 200, answer.body
    result = json.loads(answer.body)
    assert result["status"] == "success"
    assert result["data"]["result"], "Prometheus answered through Grafana, but with no up series"


@pytest.mark.parametrize("name", MONITORING)
def test_loki_datasource_is_provisioned(grafana, name):
    answer = get(f"{base_url(name)}/api/datasources/uid/{LOKI_DATASOURCE_UID}", headers=basic_auth(*admin(name)))
    assert answer.status == 200, answer.body
    datasource = json.loads(answer.body)
    assert (datasource["uid"], datasource["type"]) == (LOKI_DATASOURCE_UID, "loki")


@pytest.mark.parametrize("name", MONITORING)
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_provisioned(grafana, name, path):
    shipped = json.loads(path.read_text())
    answer = get(f"{base_url(name)}/api/dashboards/uid/{shipped['uid']}", headers=basic_auth(*admin(name)))
    assert answer.status == 200, answer.body
    found = json.loads(answer.body)
    assert found["dashboard"]["title"] == shipped["title"]
    assert found["meta"]["provisioned"] is True


@pytest.mark.parametrize("name", MONITORING)
def test_anonymous_access_is_refused(grafana, name):
    uid = json.loads(DASHBOARDS[0].read_text())["uid"]
    assert get(f"{base_url(name)}/api/dashboards/uid/{uid}").status == 401


@pytest.mark.parametrize("name", MONITORING)
def test_sign_up_is_refused(grafana, name):
    email = f"signup-{uuid.uuid4().hex[:12]}@example.invalid"
    answer = post(f"{base_url(name)}/api/user/signup", {"email": email, "username": email, "password": uuid.uuid4().hex})
    assert answer.status >= 400, answer.body


@pytest.mark.parametrize("name", MONITORING)
def test_admin_password_works(grafana, name):
    user, password = admin(name)
    answer = get(f"{base_url(name)}/api/user", headers=basic_auth(user, password))
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["login"] == user


@pytest.mark.parametrize("name", MONITORING)
def test_wrong_admin_password_is_refused(grafana, name):
    user, password = admin(name)
    answer = get(f"{base_url(name)}/api/user", headers=basic_auth(user, password + "-wrong"))
    assert answer.status == 401
