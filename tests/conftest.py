"""Shared helpers of the repository tests (tests/ is a package: import them as tests.conftest,
so they never clash with app/tests/conftest.py in one pytest run)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

# tests/fixtures/apps/*: operator's apps the lab tests build and deploy, each a project with its
# own tests (run against its installed wheel, not from here): not the repository's tests.
collect_ignore_glob = ["fixtures/*"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtual environment's commands (ansible-playbook, promtool)
ENV = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
# The plays' own filters (app_ports: the one definition of an app host's ports), for the tests.
sys.path.insert(0, str(ROOT / "playbooks" / "filter_plugins"))
import stack_filters  # noqa: E402
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())


def _module_utils() -> None:
    """The modules' shared code (module_utils/, then each role's), importable as Ansible ships it
    with a module: ansible.module_utils.<name>, so the modules' unit tests import them unchanged."""
    for folder in [ROOT / "module_utils", *sorted((ROOT / "roles").glob("*/module_utils"))]:
        for path in sorted(folder.glob("*.py")):
            name = f"ansible.module_utils.{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            sys.modules[name] = module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)


_module_utils()


def load_yaml(path: Path):
    """A YAML file's data ({} for an empty file)."""
    return yaml.safe_load(path.read_text()) or {}


# Every variable of every role's defaults/main.yml: the plays' own reader (stack_filters).
role_defaults = stack_filters.role_defaults


def inventory(env: str) -> dict:
    """ansible-inventory --list of one of inventories/<env>."""
    out = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(ROOT / "inventories" / env), "--list"],
        check=True, capture_output=True, text=True, env=ENV, cwd=ROOT,
    ).stdout
    return json.loads(out)


def render(dest: Path, env: str, role: str, template: str, *extra: str, group: str = "monitoring") -> str:
    """A role's template as the role writes it for the inventory's first host of `group`: the role's
    defaults and constants, the inventory's group settings over them (the later -e wins), then
    `extra` (-e arguments: vault values, overrides). Returns the file's text."""
    host = inventory(env)[group]["hosts"][0]
    proc = subprocess.run(
        [str(BIN / "ansible"), "-i", str(ROOT / "inventories" / env), host, "--connection", "local",
         "-m", "ansible.builtin.template", "-a", f"src=roles/{role}/templates/{template} dest={dest} mode=0600",
         "-e", f"@roles/{role}/defaults/main.yml", "-e", f"@roles/{role}/vars/main.yml",
         "-e", f"@inventories/{env}/group_vars/{group}/main.yml", *extra,
         "-e", "ansible_python_interpreter=" + str(BIN / "python")],
        capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return dest.read_text()
