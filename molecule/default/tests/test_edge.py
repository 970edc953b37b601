"""The edge on the lab: the load balancer's security headers, the client address the app
logs (a client cannot choose it), and the sandboxes of the package units we do not own."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from conftest import exposure, get, hosts, journal, lb_url

LBS = hosts("lb")
APP = hosts("app")
SPOOFED = "6.6.6.6"

# Each package unit with the group it runs on and the highest `systemd-analyze security`
# exposure its drop-in (roles/systemd_service) may leave: the scores measured when the seven
# sandbox templates became one, which a change may only lower (the packages' own units: nginx
# 9.6, the exporters 9.2, prometheus 3.9, loki and fluent-bit about 9.6, keepalived 9.6).
SANDBOXED = [
    ("lb", "nginx.service", 2.6),
    ("lb", "prometheus-nginx-exporter.service", 1.1),
    ("lb", "keepalived.service", 2.8),
    ("all", "prometheus-node-exporter.service", 1.5),
    ("monitoring", "prometheus.service", 1.1),
    ("monitoring", "loki.service", 1.1),
    ("all", "fluent-bit.service", 1.8),
]
# Loki and Fluent Bit come only from their vendors' packages (LAB_LOKI_DEBS, LAB_FLUENT_BIT_DEBS).
OPTIONAL = {"loki.service": "LAB_LOKI_DEBS", "fluent-bit.service": "LAB_FLUENT_BIT_DEBS"}


@pytest.mark.parametrize("name", LBS)
@pytest.mark.parametrize("path", ["/", "/health", "/no-such-page"])
def test_lb_sends_the_security_headers(name, path):
    headers = {k.lower(): v for k, v in get(lb_url(name, path)).headers.items()}
    assert headers.get("x-content-type-options") == "nosniff", headers
    frame = headers.get("x-frame-options", "").upper() in ("DENY", "SAMEORIGIN")
    assert frame or "frame-ancestors" in headers.get("content-security-policy", ""), headers
    assert headers.get("referrer-policy") in ("no-referrer", "same-origin", "strict-origin",
                                              "strict-origin-when-cross-origin"), headers


@pytest.mark.parametrize("name", LBS)
def test_lb_does_not_tell_its_version(name):
    assert get(lb_url(name)).headers.get("Server") == "nginx"


def marked_request(infra, name: str, headers: dict[str, str]) -> tuple[dict, dict]:
    """(Nginx's access line, the app's access line) of one request through the load balancer `name`."""
    marker = f"edge-{uuid.uuid4().hex}"
    assert get(lb_url(name), headers={**headers, "X-Request-ID": marker}).status == 200
    deadline = time.monotonic() + 15
    while True:
        nginx = [json.loads(line) for line in infra(name).file("/var/log/nginx/access.log")
                 .content_string.splitlines() if marker in line]
        app = [json.loads(line) for h in APP for line in infra(h).run(
            f"journalctl --no-pager --output cat --since -10min --unit 'webapp@*' --grep {marker}").stdout.splitlines()
            if line.startswith("{")]
        if (nginx and app) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(nginx) == 1 and len(app) == 1, (nginx, app)
    return nginx[0], app[0]


SPOOFS = [{"X-Forwarded-For": SPOOFED}, {"X-Forwarded-For": f"{SPOOFED}, 10.0.0.1"}, {"X-Real-IP": SPOOFED},
          {"Forwarded": f"for={SPOOFED}"}]


@pytest.mark.parametrize("name", LBS)
@pytest.mark.parametrize("spoof", SPOOFS, ids=lambda h: "-".join(h))
def test_a_spoofed_client_address_stays_out_of_the_app_log(infra, name, spoof):
    nginx, app = marked_request(infra, name, spoof)
    assert SPOOFED not in json.dumps(app), app
    assert nginx["remote_addr"] != SPOOFED, nginx


@pytest.mark.parametrize("name", LBS)
def test_the_app_logs_the_client_the_load_balancer_saw(infra, name):
    # The load balancer is a trusted proxy of the app (APP_TRUSTED_PROXIES): the app logs the
    # address Nginx saw, the controller's, not the load balancer's own nor what the client wrote.
    nginx, app = marked_request(infra, name, {"X-Forwarded-For": SPOOFED})
    assert app["remote_addr"] == nginx["remote_addr"], (nginx, app)


def sandboxed_units() -> list[tuple[str, str, float]]:
    return [(h, unit, limit) for group, unit, limit in SANDBOXED for h in hosts(group)]


def skip_unless_deployed(host, name: str, unit: str) -> None:
    if unit in OPTIONAL and host.run(f"systemctl cat {unit}").rc != 0:
        pytest.skip(f"{unit} is not deployed on {name}: give its .deb with {OPTIONAL[unit]} to deploy it in the lab")


@pytest.mark.parametrize(("name", "unit", "limit"), sandboxed_units())
def test_package_unit_is_sandboxed(infra, name, unit, limit):
    host = infra(name)
    skip_unless_deployed(host, name, unit)
    score, report = exposure(host, unit)
    assert score <= limit, report


@pytest.mark.parametrize(("name", "unit"), [(h, unit) for h, unit, _ in sandboxed_units()])
def test_sandboxed_unit_still_runs(infra, name, unit):
    host = infra(name)
    skip_unless_deployed(host, name, unit)
    assert host.service(unit.removesuffix(".service")).is_running, journal(host, unit)
