"""The alert rules, rendered as the role renders them, checked and unit-tested by promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, ENV, ROOT

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
    import yaml

    rules = yaml.safe_load((rendered / "webapp.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((rendered / "webapp.rules_test.yml").read_text())["tests"]
    tested = {t["alertname"] for g in tests for t in g.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alerts == tested
