"""Alertmanager's configuration: the checks of the inventory's receivers and routes (unit
tests of playbooks/filter_plugins/alertmanager_filters.py), and alertmanager.yml as the role
writes it for every inventory, checked and route-tested by amtool (the Debian package's)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import BIN, render
from tests.test_repo import ALERTMANAGER_VAULT, LOKI_VAULT, preflight

import alertmanager_filters as af  # noqa: I001 (on the path tests.conftest sets)

AMTOOL = shutil.which("amtool", path=str(BIN))
SMTP = {"smarthost": "smtp.example.invalid:587", "from": "am@example.invalid", "auth_username": "",
        "auth_password": "", "require_tls": True}
GROUPING = {"group_by": ["alertname"], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            "resolve_timeout": "5m"}
MAIL = {"name": "mail", "email_to": ["ops@example.invalid"]}
HOOK = {"name": "pager", "webhook_urls": ["https://pager.example.invalid/hook/s3cr3t-token"]}
# The vault values the staging and production inventories read (their vault.yml is not in the repository).
VAULT = ALERTMANAGER_VAULT


def problems(receivers, default="mail", routes=(), smarthost=SMTP["smarthost"], sender=SMTP["from"]):
    return af.problems(receivers, default, list(routes), smarthost, sender)


def test_good_receivers_and_routes_have_no_problem():
    routes = [{"receiver": "pager", "matchers": ['severity="critical"'], "continue": True}]
    assert problems([MAIL, HOOK], routes=routes) == []


def test_webhooks_alone_need_no_smarthost():
    assert problems([HOOK], default="pager", smarthost="", sender="") == []


@pytest.mark.parametrize(("receivers", "kwargs", "words"), [
    ([{"name": "mail"}], {}, ["alertmanager_receivers[0] (mail) has no address"]),
    ([MAIL], {"smarthost": "smtp.example.invalid"}, ["alertmanager_smtp_smarthost must be host:port (with the port)"]),
    ([MAIL], {"smarthost": "smtp.example.invalid:99999"}, ["alertmanager_smtp_smarthost"]),
    ([MAIL], {"sender": "alertmanager"}, ["alertmanager_smtp_from must be an email address"]),
    ([MAIL], {"default": "nobody"}, ["alertmanager_default_receiver 'nobody' is none of"]),
    ([MAIL], {"routes": [{"receiver": "pager", "matchers": ["severity=\"critical\""]}]},
     ["alertmanager_routes[0] names receiver 'pager'"]),
    ([MAIL], {"routes": [{"receiver": "mail"}]}, ["alertmanager_routes[0] has no matchers"]),
    ([MAIL, {"name": "mail", "webhook_urls": ["https://x.invalid/"]}], {}, ["alertmanager_receivers[1] repeats the name"]),
    ([{"name": "mail", "email_to": ["ops"]}], {}, ["alertmanager_receivers[0] (mail) email_to entries [0]"]),
    ([{"name": "mail", "email": ["ops@example.invalid"]}], {}, ["unknown keys ['email']"]),
    ([], {}, ["alertmanager_receivers is empty"]),
])
def test_bad_receivers_are_named(receivers, kwargs, words):
    found = "; ".join(problems(receivers, **kwargs))
    for word in words:
        assert word in found, found


def test_a_problem_never_shows_a_webhook_url():
    found = "; ".join(problems([{"name": "pager", "webhook_urls": ["ftp://x.invalid/s3cr3t-token"]}], default="pager"))
    assert "webhook_urls entries [0] are not http(s) URLs" in found
    assert "s3cr3t" not in found


def test_config_tells_every_receiver_of_resolved_alerts_and_inhibits_by_host():
    inhibit = [{"source_matchers": ['alertname="HostDown"'], "target_matchers": ['alertname!="HostDown"'],
                "equal": ["env", "host"]}]
    config = af.config([MAIL, HOOK], "mail", [{"receiver": "pager", "matchers": ['severity="critical"'], "continue": True}],
                       GROUPING, SMTP, inhibit)
    assert config["receivers"] == [
        {"name": "mail", "email_configs": [{"to": "ops@example.invalid", "send_resolved": True}]},
        {"name": "pager", "webhook_configs": [{"url": HOOK["webhook_urls"][0], "send_resolved": True}]},
    ]
    assert config["route"]["routes"] == [{"receiver": "pager", "matchers": ['severity="critical"'], "continue": True}]
    assert config["global"]["smtp_smarthost"] == SMTP["smarthost"] and "smtp_auth_password" not in config["global"]
    assert config["inhibit_rules"] == inhibit


def test_config_without_email_has_no_smtp_settings():
    config = af.config([HOOK], "pager", [], GROUPING, SMTP, [])
    assert not any(k.startswith("smtp_") for k in config["global"])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    """alertmanager.yml of every inventory, as the role writes it."""
    assert AMTOOL, "amtool is missing: ./stack deps puts it in .venv/bin"
    out = tmp_path_factory.mktemp("alertmanager")
    return {env: str(out / f"{env}.yml") for env in ["lab", "staging", "production"]
            if render(out / f"{env}.yml", env, "alertmanager", "alertmanager.yml.j2", *VAULT)}


@pytest.mark.parametrize("env", ["lab", "staging", "production"])
def test_every_inventory_passes_amtool_check_config(rendered, env):
    proc = subprocess.run([AMTOOL, "check-config", rendered[env]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("env", "labels", "receivers"), [
    ("lab", ["severity=critical", "alertname=InstanceDown"], "oncall"),
    ("lab", ["severity=warning"], "oncall"),
    ("staging", ["severity=critical", "alertname=InstanceDown"], "ops-pager,ops-email"),
    ("production", ["severity=critical"], "ops-pager,ops-email"),
    ("production", ["severity=warning"], "ops-email"),
])
def test_routes_send_by_severity(rendered, env, labels, receivers):
    proc = subprocess.run([AMTOOL, "config", "routes", "test", "--config.file", rendered[env], *labels],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == receivers, proc.stdout + proc.stderr


@pytest.mark.parametrize("env", ["lab", "staging", "production"])
def test_host_down_inhibits_the_hosts_other_alerts(rendered, env):
    with open(rendered[env]) as f:
        config = yaml.safe_load(f)
    assert {"source_matchers": ['alertname="HostDown"'], "target_matchers": ['alertname!="HostDown"'],
            "equal": ["env", "host"]} in config["inhibit_rules"]


def test_the_rendered_secrets_come_from_the_vault(rendered):
    with open(rendered["production"]) as f:
        config = yaml.safe_load(f)
    assert config["global"]["smtp_auth_password"] == "a-real-smtp-secret"
    hooks = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert hooks == ["https://pager.example.invalid/hooks/a-real-token"]


@pytest.mark.parametrize(("override", "words"), [
    ({"alertmanager_receivers": [{"name": "ops-email"}]}, ["alertmanager_receivers[0] (ops-email) has no address"]),
    ({"alertmanager_smtp_smarthost": "smtp.staging.example.invalid"}, ["alertmanager_smtp_smarthost must be host:port"]),
])
def test_preflight_refuses_bad_receivers_before_any_change(override, words):
    proc = preflight("staging", "-e", "vault_grafana_admin_password=x", *LOKI_VAULT, "-e", json.dumps(override))
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stdout, proc.stdout[-3000:]
