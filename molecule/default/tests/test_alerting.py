"""Alerts reach a person: Prometheus sends to Alertmanager, Alertmanager mails the lab's local
mailbox, and the blackbox exporter probes the app as its users reach it (the floating address
over TLS, and each load balancer)."""

from __future__ import annotations

import json
import re
import shlex
import time
import urllib.parse

import pytest
from conftest import address, app_ports, blackbox_probe, client_url, instance_release, get, get_from, hosts, hostvars, journal, mail_unit, port

MONITORING = hosts("monitoring")
MON = MONITORING[0]


def alertmanager_url(name: str = MON) -> str:
    return f"http://{address(name)}:{port(name, 'alertmanager_port')}"


def prometheus_query(expr: str, name: str = MON) -> list[dict]:
    answer = get(f"http://{address(name)}:{port(name, 'prometheus_port')}/api/v1/query?"
                 + urllib.parse.urlencode({"query": expr}))
    body = json.loads(answer.body)
    assert answer.status == 200 and body["status"] == "success", body
    return body["data"]["result"]


def mailbox(infra, name: str = MON) -> str:
    """The lab's alert mailbox on the monitoring host (empty before the first message)."""
    box = f"/var/mail/{hostvars(name)['local_mail_mailboxes'][0]}"
    return infra(name).run(f"cat {box} 2>/dev/null || true").stdout


@pytest.mark.parametrize("name", MONITORING)
@pytest.mark.parametrize("unit", ["prometheus-alertmanager", "local_mail", "prometheus-blackbox-exporter"])
def test_alerting_service_is_running(infra, name, unit):
    unit = mail_unit(name) if unit == "local_mail" else unit
    assert infra(name).service(unit).is_running, journal(infra(name), unit)


@pytest.mark.parametrize("name", MONITORING)
def test_alertmanager_answers_on_the_internal_address(name):
    answer = get(f"{alertmanager_url(name)}/-/ready")
    assert answer.status == 200, answer.body


@pytest.mark.parametrize("name", MONITORING)
def test_mail_and_prober_listen_on_loopback_only(infra, name):
    host = infra(name)
    smtp_port = int(hostvars(name)["alertmanager_smtp_smarthost"].rsplit(":", 1)[1])
    assert host.socket(f"tcp://127.0.0.1:{smtp_port}").is_listening, journal(host, mail_unit(name))
    assert not host.socket(f"tcp://{address(name)}:{smtp_port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{smtp_port}").is_listening
    bb = port(name, "blackbox_exporter_port")
    assert host.socket(f"tcp://127.0.0.1:{bb}").is_listening, journal(host, "prometheus-blackbox-exporter")
    assert not host.socket(f"tcp://{address(name)}:{bb}").is_listening


@pytest.mark.parametrize("name", MONITORING)
def test_prometheus_sends_its_alerts_to_every_alertmanager(name):
    answer = get(f"http://{address(name)}:{port(name, 'prometheus_port')}/api/v1/alertmanagers")
    active = {a["url"] for a in json.loads(answer.body)["data"]["activeAlertmanagers"]}
    assert active == {f"{alertmanager_url(m)}/api/v2/alerts" for m in MONITORING}


@pytest.mark.parametrize("name", MONITORING)
def test_the_mail_server_relays_nothing(infra, name):
    """The mail server delivers locally and relays nothing: mail to another domain bounces at once."""
    host = infra(name)
    smtp_port = int(hostvars(name)["alertmanager_smtp_smarthost"].rsplit(":", 1)[1])
    script = (
        "import smtplib,sys\n"
        f"s=smtplib.SMTP('127.0.0.1',{smtp_port},timeout=10)\n"
        "code,_=s.docmd('MAIL FROM:<probe@localhost>')\n"
        "code2,msg=s.docmd('RCPT TO:<someone@example.invalid>')\n"
        "print(code2, msg.decode())\n"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)}")
    assert out.startswith("5"), out


def test_the_public_url_probe_finds_the_app_over_tls():
    found = blackbox_probe(client_url("/"))
    assert found.get("probe_success") == 1, found
    assert found.get("probe_http_status_code") == 200, found
    assert found.get("probe_http_ssl") == 1, found
    assert found.get("probe_ssl_earliest_cert_expiry", 0) > time.time() + 14 * 86400, found


def test_a_page_without_the_app_message_fails_the_blackbox_probe():
    """The probe checks the body, not only the status: Prometheus's own page answers 200 and still fails."""
    found = blackbox_probe(f"http://{address(MON)}:{port(MON, 'prometheus_port')}/-/ready")
    assert found.get("probe_http_status_code") == 200, found
    assert found.get("probe_success") == 0, found


def test_prometheus_probes_the_public_url_and_each_load_balancer():
    deadline = time.monotonic() + 60
    want = {("probe_public", "public")} | {("probe_lb", lb) for lb in hosts("lb")}
    while True:
        found = {(r["metric"]["job"], r["metric"]["host"]): r["value"][1]
                 for r in prometheus_query('probe_success{job=~"probe_.*"}')}
        if set(found) >= want and all(found[k] == "1" for k in want):
            break
        assert time.monotonic() < deadline, f"probe_success: {found}, want 1 for {sorted(want)}"
        time.sleep(3)


@pytest.mark.disruptive(85)
def test_app2_down_is_mailed_within_the_rules_for_plus_a_minute_then_resolved(infra):
    """app2's instances stopped: InstanceDown is active in Alertmanager and its email is in the
    mailbox within the rule's `for:` plus a minute; once they are back, the resolved email follows."""
    app = hosts("app")[-1]
    # The sockets too: a listening socket would start its instance again at the next scrape.
    units = " ".join(f"webapp@{p}.socket webapp@{p}.service" for p in app_ports(app))
    for_seconds = int(re.fullmatch(r"(\d+)m", str(hostvars(MON).get("prometheus_alert_instance_down_for") or "1m")).group(1)) * 60
    before = len(mailbox(infra))
    host = infra(app)
    assert host.run(f"systemctl stop {units}").rc == 0
    stopped = time.monotonic()
    try:
        deadline = stopped + for_seconds + 60
        active = mail = None
        while not (active and mail):
            alerts = json.loads(get(f"{alertmanager_url()}/api/v2/alerts?" + urllib.parse.urlencode(
                [("filter", 'alertname="InstanceDown"'), ("filter", f'host="{app}"'), ("active", "true")])).body)
            active = active or alerts
            new = mailbox(infra)[before:]
            mail = mail or re.search(rf"^Subject: \[FIRING:\d+\] InstanceDown .*{app}", new, re.M)
            assert time.monotonic() < deadline, (
                f"after {time.monotonic() - stopped:.0f} s: alert active {bool(active)}, email {bool(mail)}\n"
                + journal(infra(MON), "prometheus-alertmanager", 20))
            time.sleep(3)
        took = time.monotonic() - stopped
    finally:
        host.run(f"systemctl start {units}")
    # Back: every instance answers again, and the resolved email arrives.
    deadline = time.monotonic() + 120
    while not re.search(rf"^Subject: \[RESOLVED\] InstanceDown .*{app}", mailbox(infra)[before:], re.M):
        assert time.monotonic() < deadline, "no resolved email:\n" + mailbox(infra)[before:][-2000:]
        time.sleep(3)
    assert took <= for_seconds + 60
    assert "<no answer>" not in [instance_release(app, p) for p in app_ports(app)]
