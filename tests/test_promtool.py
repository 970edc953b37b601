"""The alert rules, rendered as the role renders them, checked and unit-tested by promtool."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ENV, ROOT, render

ROLE = ROOT / "roles" / "prometheus"
PROMTOOL = shutil.which("promtool", path=f"{BIN}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert PROMTOOL, "promtool is missing: ./stack deps puts it in .venv/bin"
    out = tmp_path_factory.mktemp("rules")
    subprocess.run(
        [str(BIN / "ansible"), "localhost", "-c", "local", "-m", "ansible.builtin.template",
         "-a", f"src={ROLE}/templates/webapp.rules.yml.j2 dest={out}/webapp.rules.yml mode=0644",
         "-e", f"@{ROLE}/defaults/main.yml", "-e", f"@{ROLE}/vars/main.yml",
         "-e", f"@{ROOT}/tests/promtool/vars.yml"],
        check=True, capture_output=True, text=True, env=ENV, cwd=ROOT,
    )
    shutil.copy(ROOT / "tests" / "promtool" / "webapp.rules_test.yml", out)
    return out


def test_rules_pass_promtool_check(rendered: Path) -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(rendered / "webapp.rules.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests(rendered: Path) -> None:
    result = subprocess.run([PROMTOOL, "test", "rules", "webapp.rules_test.yml"],
                            capture_output=True, text=True, cwd=rendered)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_rule_has_a_unit_test(rendered: Path) -> None:
    rules = yaml.safe_load((rendered / "webapp.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((rendered / "webapp.rules_test.yml").read_text())["tests"]
    tested = {t["alertname"] for g in tests for t in g.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alerts == tested


def test_every_rule_has_a_severity_and_a_runbook_that_exists(rendered: Path) -> None:
    """Alertmanager routes on severity; every alert's runbook_url is a section of docs/runbooks.md."""
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbooks, re.M)}
    rules = [r for g in yaml.safe_load((rendered / "webapp.rules.yml").read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("docs/runbooks.md#") and url.split("#", 1)[1] in anchors, f"{rule['alert']}: {url}"


@pytest.mark.parametrize("remote_write", [
    [],
    [{"url": "https://metrics.example.invalid/api/v1/write", "basic_auth": {"username": "prom", "password": "s3cr3t"},
      "queue_config": {"max_samples_per_send": 2000}}],
])
def test_prometheus_yml_with_alerting_and_remote_write_passes_promtool(tmp_path: Path, remote_write: list) -> None:
    """prometheus.yml as the role writes it for the lab, with its Alertmanagers and, for a
    long-term store, remote write endpoints: promtool check config takes it."""
    text = render(tmp_path / "prometheus.yml", "lab", "prometheus", "prometheus.yml.j2",
                  "-e", "@tests/promtool/vars.yml",
                  "-e", json.dumps({"prometheus_alertmanagers": ["10.0.0.4:9093"], "prometheus_remote_write": remote_write}))
    config = yaml.safe_load(text)
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["10.0.0.4:9093"]
    assert config.get("remote_write", []) == remote_write
    (tmp_path / "rules").mkdir()
    result = subprocess.run([PROMTOOL, "check", "config", "--syntax-only", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
