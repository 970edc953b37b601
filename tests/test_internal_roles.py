"""The internal roles (vendor_package, service_ready) and the roles that import them.

An internal role has no tasks/main.yml: each of its task files is an entry point, typed by its
meta/argument_specs.yml, that other roles import with their own values. These checks need no
lab: every entry point has a spec, every import passes exactly the options of its entry
point (and vendor_package's dict exactly its keys), and a wrong install setting is refused
naming the calling role's own variables.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import ROOT
from tests.conftest import load_yaml as load
from tests.test_repo import run_role

INTERNAL = sorted(p for p in (ROOT / "roles").iterdir()
                  if (p / "meta" / "argument_specs.yml").is_file() and not (p / "tasks" / "main.yml").is_file())
VENDOR_ROLES = ["grafana", "loki", "fluent_bit"]


def specs(role: str) -> dict:
    return load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]


def tasks_of(path) -> list[dict]:
    """Every task of a task file, blocks included."""
    found = []
    for task in yaml.safe_load(path.read_text()) or []:
        found.append(task)
        for key in ("block", "rescue", "always"):
            found += task.get(key, [])
    return found


def imports() -> list[tuple[str, str, dict]]:
    """(calling role, task file, task) of every import or include of an internal role."""
    names = {p.name for p in INTERNAL}
    found = []
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        for task in tasks_of(path):
            for action in ("ansible.builtin.import_role", "ansible.builtin.include_role"):
                if task.get(action, {}).get("name") in names:
                    found.append((path.parts[-3], path.name, task))
    return found


def test_the_internal_roles_exist():
    assert {p.name for p in INTERNAL} >= {"vendor_package", "service_ready"}


@pytest.mark.parametrize("role", INTERNAL, ids=lambda p: p.name)
def test_every_entry_point_has_an_argument_spec(role):
    entries = specs(role.name)
    assert set(entries) == {p.stem for p in (role / "tasks").glob("*.yml")}
    for entry in entries.values():
        assert entry["short_description"].startswith("Internal")
        for name, option in entry["options"].items():
            assert name.startswith(f"{role.name}_"), name
            assert option.get("description") and option.get("required") is True, name


@pytest.mark.parametrize(("caller", "file", "task"), imports(), ids=lambda v: v if isinstance(v, str) else None)
def test_imports_pass_exactly_the_entry_points_options(caller, file, task):
    action = task.get("ansible.builtin.import_role") or task["ansible.builtin.include_role"]
    options = specs(action["name"])[action["tasks_from"]]["options"]
    assert set(task.get("vars", {})) == set(options), f"{caller}/tasks/{file}: {task['name']}"
    for name, option in options.items():
        if option.get("type") == "dict":
            # "{{ _<caller>_vendor_package }}": the dict in the calling role's vars/main.yml
            (ref,) = re.fullmatch(r"\{\{ (\w+) \}\}", task["vars"][name]).groups()
            value = load(ROOT / "roles" / caller / "vars" / "main.yml")[ref]
            assert set(value) == set(option["options"]), f"{caller}: {ref}"


@pytest.mark.parametrize("role", VENDOR_ROLES)
def test_vendor_roles_install_through_vendor_package_only(role):
    (task,) = yaml.safe_load((ROOT / "roles" / role / "tasks" / "install.yml").read_text())
    assert task["ansible.builtin.import_role"] == {"name": "vendor_package", "tasks_from": "install"}
    assert not list((ROOT / "roles" / role / "templates").glob("*.sources.j2")), "the source file is vendor_package's"


@pytest.mark.parametrize(("variables", "words"), [
    ({"install_method": "deb"}, ["_install_method must be auto, repo or deb (is deb)", "_deb_files"]),
    ({"deb_files": ["/nonexistent/package.deb"]}, ["_deb_files", "/nonexistent/package.deb"]),
    ({"install_method": "repo", "version": "latest"}, ["_version", "(is latest)"]),
])
@pytest.mark.parametrize("role", VENDOR_ROLES)
def test_wrong_install_settings_fail_preflight_naming_the_roles_variables(tmp_path, role, variables, words):
    given = {f"{role}_{k}": v for k, v in variables.items()}
    # The settings each role needs besides, so only the install method's check can fail.
    given.update({"fluent_bit": {"fluent_bit_loki_host": "192.0.2.14"},
                  "grafana": {"grafana_admin_password": "a-test-password"}}.get(role, {}))
    proc = run_role(tmp_path, role, given, "--check", "--tags", f"{role}_preflight")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert re.search(r"TASK \[vendor_package : Check the install method\][^\n]*\n(?:(?!TASK \[).)*?fatal", out, re.S), out[-3000:]
    for word in words:
        assert (f"{role}{word}" if word.startswith("_") else word) in out, out[-3000:]
