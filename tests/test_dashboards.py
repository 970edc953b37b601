"""Checks of the Grafana dashboards the grafana role provisions; no lab needed.

The lab's own tests evaluate every expression against a real Prometheus after substituting
the only variables the dashboards may use ($env and $host by ".*", $__rate_interval by
"1m"); these checks make sure that substitution is all an expression needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

ROLE = ROOT / "roles" / "grafana"
DASHBOARDS = sorted((ROLE / "files" / "dashboards").glob("*.json"))
EXPECTED_UIDS = {"webapp-app", "webapp-hosts", "webapp-lb", "webapp-logs"}
VARIABLES = {"$env": ".*", "$host": ".*", "$__rate_interval": "1m", "$status": ".*"}
TEMPLATE_VARIABLES = {"env": "label_values(up, env)", "host": 'label_values(up{env=~"$env"}, host)'}
# Variables a dashboard may have besides env and host: name -> (type, custom values).
EXTRA_VARIABLES = {"status": ("custom", "2,3,4,5")}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict):
    """Every panel, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(kind: str | None = "prometheus"):
    """(file name, panel title, expr) of every target of every dashboard on a data source of
    that type (None: all); Loki's LogQL targets are checked by tests/test_logging.py."""
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for target in panel.get("targets", []):
                ds = target.get("datasource", panel.get("datasource")) or {}
                if kind is None or ds.get("type") == kind:
                    yield path.name, panel.get("title", ""), target.get("expr")


def substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of every data source the provisioning templates define, uids resolved from defaults."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())

    def resolve(value: str) -> str:
        var = re.fullmatch(r"\{\{\s*(\w+)(?:\s*\|\s*to_json)?\s*\}\}", value.strip())
        return str(defaults[var.group(1)]) if var else str(yaml.safe_load(value))

    found = {}
    for template in sorted((ROLE / "templates").glob("*datasource*")):
        text = template.read_text()
        for item in re.split(r"^\s*- ", text, flags=re.M)[1:]:
            uid = re.search(r"^\s*uid:\s*(.+?)\s*$", item, re.M)
            kind = re.search(r"^\s*type:\s*(.+?)\s*$", item, re.M)
            if uid and kind:
                found[resolve(uid.group(1))] = resolve(kind.group(1))
    return found


PROVISIONED = provisioned_datasources()


def test_there_are_dashboards_and_a_datasource():
    assert DASHBOARDS, "no roles/grafana/files/dashboards/*.json"
    assert PROVISIONED == {"prometheus": "prometheus", "loki": "loki"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_json(path):
    dashboard = json.loads(path.read_text())
    assert isinstance(dashboard, dict)
    assert dashboard.get("uid") and dashboard.get("title")
    assert dashboard.get("schemaVersion", 0) >= 36
    assert dashboard.get("id") is None, "a provisioned dashboard must not carry a database id"


def test_dashboard_uids_are_unique_and_fixed():
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert [u for u, n in Counter(uids).items() if n > 1] == []
    assert set(uids) == EXPECTED_UIDS
    titles = [load(p)["title"] for p in DASHBOARDS]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panel_ids_are_unique(path):
    ids = [p["id"] for p in panels(load(path))]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_uses_a_provisioned_datasource(path):
    for panel in panels(load(path)):
        if panel["type"] == "row" and "datasource" not in panel:
            continue
        ds = panel.get("datasource")
        assert isinstance(ds, dict), f"panel {panel.get('title')!r} names no data source"
        assert PROVISIONED.get(ds.get("uid")) == ds.get("type"), f"panel {panel.get('title')!r}: {ds} is not provisioned"
        for target in panel.get("targets", []):
            tds = target.get("datasource", ds)
            assert PROVISIONED.get(tds.get("uid")) == tds.get("type"), f"panel {panel.get('title')!r}: {tds} is not provisioned"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_variable_uses_a_provisioned_datasource(path):
    variables = load(path)["templating"]["list"]
    assert variables
    for var in variables:
        if var.get("type") == "query":
            ds = var.get("datasource")
            assert isinstance(ds, dict) and PROVISIONED.get(ds.get("uid")) == ds.get("type"), f"${var['name']}: {ds}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_env_and_host_variables(path):
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    assert set(TEMPLATE_VARIABLES) <= set(variables) <= set(TEMPLATE_VARIABLES) | set(EXTRA_VARIABLES)
    for name in set(variables) - set(TEMPLATE_VARIABLES):
        kind, values = EXTRA_VARIABLES[name]
        assert variables[name]["type"] == kind and variables[name]["query"] == values, variables[name]
        assert variables[name]["allValue"] == ".*" and f"${name}" in VARIABLES
    for name, query in TEMPLATE_VARIABLES.items():
        var = variables[name]
        assert var["definition"] == query
        assert (var["query"]["query"] if isinstance(var["query"], dict) else var["query"]) == query
        assert var["multi"] is True and var["includeAll"] is True and var["allValue"] == ".*"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_target_has_an_expr(path):
    for panel in panels(load(path)):
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel.get('title')!r} has no targets"
        for target in panel["targets"]:
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), f"panel {panel.get('title')!r}"


@pytest.mark.parametrize(("name", "title", "expr"), list(dashboard_exprs(None)), ids=lambda v: str(v)[:40])
def test_expr_uses_only_substitutable_variables(name, title, expr):
    used = set(re.findall(r"\$\w+", expr))
    assert used <= set(VARIABLES), f"{name} / {title}: unknown variables {used - set(VARIABLES)}"
    # A variable stands for a regular expression (".*" for All): only =~ may compare a label with it.
    for matcher in re.findall(r'\w+\s*(?:!=|!~|=~|=)\s*"[^"]*\$\w+[^"]*"', expr):
        assert "=~" in matcher, f"{name} / {title}: {matcher} must use =~"
    assert "$" not in substituted(expr)


def test_exprs_parse_with_promtool(tmp_path):
    promtool = shutil.which("promtool", path=f"{Path(sys.executable).parent}:/usr/bin:/usr/local/bin")
    if promtool is None:
        pytest.skip("promtool is not installed (./stack deps unpacks it into .venv/bin)")
    rules = [{"record": f"dashboard:expr_{i}:check", "expr": substituted(expr)}
             for i, (_, _, expr) in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
