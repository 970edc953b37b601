"""Checks of the repository itself that need no lab: role interfaces and inventories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())
BIN = Path(sys.executable).parent  # the virtual environment's ansible commands
ENV = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def load(path: Path):
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_specs_match_defaults_key_for_key(role):
    defaults = load(role / "defaults" / "main.yml")
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    required = {k for k, v in options.items() if v.get("required")}
    assert set(defaults) == set(options) - required, "defaults and argument_specs differ"
    for key, value in defaults.items():
        assert options[key].get("default") == value, f"{key}: default differs from argument_specs"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_public_variables_are_prefixed_and_documented(role):
    lines = (role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-")) and ":" in line:
            key = line.split(":", 1)[0]
            assert key.startswith(f"{role.name}_"), f"{key} is not prefixed with {role.name}_"
            assert lines[i - 1].startswith("# "), f"{key} has no comment line"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_constants_are_private(role):
    path = role / "vars" / "main.yml"
    if path.is_file():
        assert all(k.startswith(f"_{role.name}_") for k in load(path)), "vars/main.yml names must start with _<role>_"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_main_is_a_table_of_contents(role):
    tasks = load(role / "tasks" / "main.yml")
    assert [t["ansible.builtin.import_tasks"] for t in tasks][:3] == ["preflight.yml", "install.yml", "configure.yml"]
    for task, part in zip(tasks, ["preflight", "install", "configure"]):
        assert {role.name, f"{role.name}_{part}"} <= set(task["tags"])


def inventory(env: str) -> dict:
    out = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(ROOT / "inventories" / env), "--list"],
        check=True, capture_output=True, text=True, env=ENV, cwd=ROOT,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize(("env", "counts"), [
    ("staging", {"lb": 1, "app": 2, "monitoring": 1}),
    ("production", {"lb": 2, "app": 4, "monitoring": 1}),
    ("lab", {"lb": 1, "app": 2, "monitoring": 1}),
])
def test_inventory_groups(env, counts):
    inv = inventory(env)
    assert {g: len(inv[g]["hosts"]) for g in counts} == counts


@pytest.mark.parametrize("env", ["staging", "production"])
def test_remote_inventories_hold_placeholders_only(env):
    inv = inventory(env)
    names = inv["_meta"]["hostvars"].keys()
    assert names and all(n.endswith(f".{env}.example.invalid") for n in names)
    for n in names:
        assert inv["_meta"]["hostvars"][n]["deploy_env"] == env


@pytest.mark.parametrize("env", ["staging", "production", "lab"])
def test_site_lists_hosts(env):
    out = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / env), "site.yml", "--list-hosts"],
        check=True, capture_output=True, text=True, env=ENV, cwd=ROOT,
    ).stdout
    inv = inventory(env)
    for group in ("app", "lb"):
        for host in inv[group]["hosts"]:
            assert host in out
