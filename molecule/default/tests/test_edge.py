"""The edge on the lab: the load balancer's security headers, the client address the app
logs (a client cannot choose it), and the sandboxes of the package units we do not own."""

from __future__ import annotations

import json
import re
import selectors
import socket
import time
import uuid

import pytest
from conftest import address, exposure, get, hosts, hostvars, journal, lb_port, lb_url, mail_unit

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
    ("monitoring", "loki-gateway.service", 2.4),
    ("all", "fluent-bit.service", 1.8),
    ("monitoring", "prometheus-alertmanager.service", 1.2),
    ("monitoring", "prometheus-blackbox-exporter.service", 1.1),
    ("monitoring", "local_mail", 2.9),  # Postfix's default instance: its unit differs by release (mail_unit)
]
# Loki and Fluent Bit come only from their vendors' packages (LAB_LOKI_DEBS, LAB_FLUENT_BIT_DEBS).
OPTIONAL = {"loki.service": "LAB_LOKI_DEBS", "loki-gateway.service": "LAB_LOKI_DEBS", "fluent-bit.service": "LAB_FLUENT_BIT_DEBS"}


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
    # The load balancer is a trusted proxy of the app (STACK_TRUSTED_PROXIES): the app logs the
    # address Nginx saw, the controller's, not the load balancer's own nor what the client wrote.
    nginx, app = marked_request(infra, name, {"X-Forwarded-For": SPOOFED})
    assert app["remote_addr"] == nginx["remote_addr"], (nginx, app)


def sandboxed_units() -> list[tuple[str, str, float]]:
    return [(h, f"{mail_unit(h)}.service" if unit == "local_mail" else unit, limit)
            for group, unit, limit in SANDBOXED for h in hosts(group)]


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


def seconds(duration: str) -> float:
    """An Nginx duration of the inventory (10s, 500ms, 1m) in seconds."""
    value, unit = re.fullmatch(r"([0-9]+)(ms|s|m)?", duration).groups()
    return int(value) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[unit]


SLOW_CLIENTS = 300  # bounded: this many sockets, to one lab load balancer, for at most 40 s


def test_slow_clients_are_closed_while_a_normal_client_is_answered():
    """Clients whose headers never end are each closed within 30 s (at client_header_timeout),
    while a normal client is answered every time meanwhile."""
    name = LBS[0]
    timeout = seconds(hostvars(name)["nginx_client_header_timeout"])
    assert timeout <= 30, "the inventory lets a slow client hold a connection longer than 30 s"
    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection((address(name), lb_port(name)), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-Slow: ")  # never ends its headers
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        opened[sock] = time.monotonic()
    closed_after: list[float] = []
    answers: list[int] = []
    deadline = time.monotonic() + 40
    next_normal = time.monotonic()
    try:
        while opened and time.monotonic() < deadline:
            if time.monotonic() >= next_normal:
                answers.append(get(lb_url(name)).status)
                next_normal = time.monotonic() + 1
            for key, _ in sel.select(timeout=0.2):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if not data:
                    closed_after.append(time.monotonic() - opened.pop(sock))
                    sel.unregister(sock)
                    sock.close()
    finally:
        for sock in opened:
            sock.close()
    assert not opened, f"{len(opened)} of {SLOW_CLIENTS} slow clients still open after 40 s"
    assert max(closed_after) <= 30, max(closed_after)
    assert min(closed_after) >= timeout - 1, "closed before the header timeout: not the timeout's doing"
    assert answers and set(answers) == {200}, answers


@pytest.mark.parametrize("request_id", ['forged" "status":200', "x" * 200, "id with spaces"], ids=["quotes", "long", "spaces"])
def test_a_request_id_that_is_not_a_plain_token_is_replaced(infra, request_id):
    """What a client writes in X-Request-ID reaches the logs only when it is a plain token of at most 128."""
    name = LBS[0]
    marker = f"edge-{uuid.uuid4().hex}"
    assert get(lb_url(name, f"/?{marker}"), headers={"X-Request-ID": request_id}).status == 200
    deadline = time.monotonic() + 15
    lines: list[dict] = []
    while not lines and time.monotonic() < deadline:
        lines = [json.loads(line) for line in infra(name).file("/var/log/nginx/access.log").content_string.splitlines()
                 if marker in line]
        time.sleep(0.5)
    assert len(lines) == 1, lines
    assert lines[0]["request_id"] != request_id and re.fullmatch(r"[0-9a-f]{32}", lines[0]["request_id"]), lines[0]
