"""Checks of the logging roles that need no lab and no vendor binary.

The Loki and Fluent Bit configurations are rendered for every host of every inventory by
tests/logging/render.yml, with the same vars files as playbooks/logging.yml and after the
roles' own preflight checks, then parsed and checked for what `loki -verify-config` and
`fluent-bit --dry-run` cannot see (those run on the hosts, before a restart). The dashboards'
LogQL queries and the Explore query of docs/monitoring.md are parsed with Grafana's own LogQL grammar
(tests/logql, installed by ./stack deps) and must select streams by labels that the rendered
Fluent Bit output sets.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import shlex
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ENV, ROOT  # also puts playbooks/filter_plugins on the path
from tests.test_repo import LOKI_VAULT, preflight

from stack_filters import app_ports  # noqa: I001 (after tests.conftest)

INVENTORIES = ["staging", "production", "lab"]
DASHBOARDS = sorted((ROOT / "roles" / "grafana" / "files" / "dashboards").glob("*.json"))
LOGQL = ROOT / "tests" / "logql"
# The labels the issue allows: few and low-cardinality; everything else stays in the line
# (job: the tag a forwarded message names, a plain token of at most 64 characters).
ALLOWED_LABELS = {"env", "host", "service", "level", "job"}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """env -> folder of that inventory's rendered configurations (the three rendered at once)."""
    base = tmp_path_factory.mktemp("logging")
    runs = {
        env: subprocess.Popen(
            [str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / env),
             str(ROOT / "tests" / "logging" / "render.yml"), "-e", f"logging_render_dir={base / env}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT,
        )
        for env in INVENTORIES
    }
    for env, run in runs.items():
        output, _ = run.communicate()
        assert run.returncode == 0, f"rendering for {env} failed:\n{output[-4000:]}"
    return {env: base / env for env in INVENTORIES}


def inventory(env: str) -> dict:
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(ROOT / "inventories" / env), "--list"],
                         check=True, capture_output=True, text=True, env=ENV, cwd=ROOT).stdout
    return json.loads(out)


def hosts_of(env: str, group: str) -> list[str]:
    inv = inventory(env)
    return sorted(inv["_meta"]["hostvars"]) if group == "all" else sorted(inv[group]["hosts"])


def fluent_bit(rendered: dict[str, Path], env: str) -> dict[str, dict]:
    """host -> the parsed fluent-bit.yaml of that host."""
    return {p.parent.name: yaml.safe_load(p.read_text()) for p in sorted(rendered[env].glob("*/fluent-bit.yaml"))}


def loki_output(config: dict) -> dict:
    outputs = [o for o in config["pipeline"]["outputs"] if o["name"] == "loki"]
    assert len(outputs) == 1, config["pipeline"]["outputs"]
    return outputs[0]


def stream_labels(config: dict) -> dict[str, str | None]:
    """label -> fixed value, or None for a label taken from each record (label_keys)."""
    out = loki_output(config)
    labels: dict[str, str | None] = {}
    for item in str(out.get("labels", "")).split(","):
        key, sep, value = item.strip().partition("=")
        assert sep and key and value, f"labels entry {item!r} is not key=value"
        labels[key] = value
    for key in str(out.get("label_keys", "")).split(","):
        assert key.startswith("$"), f"label_keys entry {key!r} is not a record accessor"
        labels[key[1:]] = None
    return labels


def service_values(config: dict) -> set[str]:
    """The values the modify filters give the service key."""
    values = set()
    for f in config["pipeline"].get("filters", []):
        if f["name"] == "modify":
            for rule in f.get("set", []) or []:
                key, _, value = rule.partition(" ")
                if key == "service":
                    values.add(value)
    return values


def input_tags(config: dict) -> list[str]:
    return [i.get("tag") or (i["tag_prefix"] + "x") for i in config["pipeline"]["inputs"]]


# --- Loki ------------------------------------------------------------------------------


@pytest.mark.parametrize("env", INVENTORIES)
def test_loki_config_is_rendered_for_every_monitoring_host(rendered, env):
    found = sorted(p.parent.name for p in rendered[env].glob("*/loki.yml"))
    assert found == hosts_of(env, "monitoring")


@pytest.mark.parametrize("env", INVENTORIES)
def test_loki_runs_single_binary_on_the_internal_address(rendered, env):
    for path in rendered[env].glob("*/loki.yml"):
        config = yaml.safe_load(path.read_text())
        assert config["target"] == "all", path
        assert config["auth_enabled"] is False, path
        server = config["server"]
        assert server["http_listen_address"] not in ("", "0.0.0.0", "::"), f"{path}: Loki must listen on the internal address"
        assert 1 <= int(server["http_listen_port"]) <= 65535
        assert server["grpc_listen_address"] == "127.0.0.1", path
        assert config["common"]["replication_factor"] == 1
        assert config["common"]["ring"]["kvstore"]["store"] == "inmemory"


@pytest.mark.parametrize("env", INVENTORIES)
def test_loki_stores_on_the_filesystem_with_the_tsdb_v13_schema(rendered, env):
    for path in rendered[env].glob("*/loki.yml"):
        config = yaml.safe_load(path.read_text())
        periods = config["schema_config"]["configs"]
        current = max(periods, key=lambda p: p["from"])
        assert (current["store"], current["schema"], current["object_store"]) == ("tsdb", "v13", "filesystem"), path
        assert current["index"]["period"] == "24h"
        datetime.strptime(current["from"], "%Y-%m-%d")
        fs = config["common"]["storage"]["filesystem"]
        data = config["common"]["path_prefix"]
        dirs = [fs["chunks_directory"], fs["rules_directory"], config["compactor"]["working_directory"],
                *config["storage_config"]["tsdb_shipper"].values()]
        assert all(d.startswith(data + "/") for d in dirs), f"{path}: every data folder under {data}: {dirs}"


@pytest.mark.parametrize("env", INVENTORIES)
def test_loki_retention_is_enforced_by_the_compactor(rendered, env):
    for path in rendered[env].glob("*/loki.yml"):
        config = yaml.safe_load(path.read_text())
        assert config["compactor"]["retention_enabled"] is True, path
        assert config["compactor"]["delete_request_store"] == "filesystem", "retention needs a delete request store"
        period = config["limits_config"]["retention_period"]
        assert re.fullmatch(r"\d+h", period) and int(period[:-1]) % 24 == 0 and int(period[:-1]) >= 24, period


def test_loki_and_grafana_write_the_same_apt_source(rendered):
    # Both roles write /etc/apt/sources.list.d/grafana.sources: any difference would make them
    # undo each other's change on every run, and a second Signed-By would break apt.
    for env in INVENTORIES:
        apt = rendered[env] / "apt"
        assert (apt / "grafana.sources").read_text() == (apt / "loki.sources").read_text()


def test_preflight_refuses_grafana_and_loki_disagreeing_on_their_shared_repository():
    ok = preflight("staging", "-e", "vault_grafana_admin_password=x", *LOKI_VAULT, "-e",
                   json.dumps({"grafana_apt_repository_url": "https://mirror.example.invalid/grafana",
                               "loki_apt_repository_url": "https://mirror.example.invalid/grafana"}))
    assert ok.returncode == 0, ok.stdout[-3000:]
    proc = preflight("staging", "-e", "vault_grafana_admin_password=x",
                     "-e", "loki_apt_repository_url=https://mirror.example.invalid/grafana")
    assert proc.returncode != 0
    assert "Grafana and Loki both install from Grafana's apt repository" in proc.stdout, proc.stdout[-3000:]
    assert "https://mirror.example.invalid/grafana" in proc.stdout


# --- the vendors' packages ---------------------------------------------------------------


@functools.cache
def lab_deb_files() -> dict[str, list[str]]:
    """role -> the .deb files the lab installs it from (inventories/lab: LAB_*_DEBS, else ../shared/vendor)."""
    expr = "{{ {'loki': loki_deb_files, 'fluent_bit': fluent_bit_deb_files} }}"
    out = subprocess.run([str(BIN / "ansible"), "-i", str(ROOT / "inventories" / "lab"), hosts_of("lab", "monitoring")[0],
                          "--one-line", "-m", "ansible.builtin.debug", "-a", f"msg={expr}"],
                         check=True, capture_output=True, text=True, env={**ENV, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
                         cwd=ROOT).stdout
    return json.JSONDecoder().raw_decode(out.partition(" => ")[2])[0]["msg"]


def deb_contents(deb: str) -> tuple[dict[str, str], set[str]]:
    """The package's control fields and the paths it installs."""
    fields = subprocess.run(["dpkg-deb", "--field", deb, "Package", "Version"], check=True, capture_output=True,
                            text=True).stdout
    listing = subprocess.run(["dpkg-deb", "--contents", deb], check=True, capture_output=True, text=True).stdout
    paths = {line.split()[-1].lstrip(".").rstrip("/") for line in listing.splitlines() if line.strip()}
    return dict(line.split(": ", 1) for line in fields.splitlines()), paths


@pytest.mark.parametrize(("role", "files"), [("loki", ["_loki_binary", "_loki_config"]), ("fluent_bit", ["_fluent_bit_binary"])])
def test_role_uses_the_vendor_packages_paths(role, files):
    # The binary that validates the configuration, the configuration the unit reads and the
    # unit itself are where the vendor's package puts them (else validate: never runs).
    debs = lab_deb_files()[role]
    if not debs:
        pytest.skip(f"no {role} .deb files for the lab (LAB_VENDOR_DIR, ../shared/vendor, or LAB_*_DEBS)")
    constants = yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text())
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    (fields, paths), = [deb_contents(d) for d in debs if deb_contents(d)[0]["Package"] == constants[f"_{role}_package"]]
    assert fields["Version"] == defaults[f"{role}_version"], f"the lab's package is not the version the role pins: {fields}"
    for key in files:
        assert constants[key] in paths, f"{key} {constants[key]} is not in {role}'s package"
    unit = f"{constants[f'_{role}_service']}.service"
    assert {f"/etc/systemd/system/{unit}", f"/lib/systemd/system/{unit}", f"/usr/lib/systemd/system/{unit}"} & paths


@pytest.fixture(scope="session")
def vendor_checkers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """role -> its validate: command (%s the file), run with the binary of the lab's package
    unpacked on the controller."""
    base = tmp_path_factory.mktemp("vendor")
    checkers = {}
    for role, debs in lab_deb_files().items():
        if not debs:
            pytest.skip(f"no {role} .deb files for the lab (LAB_VENDOR_DIR, ../shared/vendor, or LAB_*_DEBS)")
        for deb in debs:
            subprocess.run(["dpkg-deb", "--extract", deb, str(base / role)], check=True)
        constants = yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text())
        command = constants[{"loki": "_loki_verify_config", "fluent_bit": "_fluent_bit_dry_run"}[role]]
        binary = f"{{{{ _{role}_binary }}}}"
        assert command.startswith(binary + " "), command
        checkers[role] = command.replace(binary, str(base / role) + constants[f"_{role}_binary"])
    return checkers


@pytest.mark.parametrize("env", INVENTORIES)
def test_rendered_configurations_pass_the_vendors_checkers(rendered, vendor_checkers, env):
    # The roles' own validate: commands, with the vendors' binaries, on every host's file.
    for role, pattern in (("loki", "*/loki.yml"), ("fluent_bit", "*/fluent-bit.yaml")):
        files = sorted(rendered[env].glob(pattern))
        assert files, f"{env}: nothing rendered for {role}"
        for path in files:
            result = subprocess.run(shlex.split(vendor_checkers[role].replace("%s", str(path))), capture_output=True,
                                    text=True, timeout=120, check=False)
            assert result.returncode == 0, f"{path}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"


# --- Fluent Bit ------------------------------------------------------------------------


@pytest.mark.parametrize("env", INVENTORIES)
def test_fluent_bit_config_is_rendered_for_every_host(rendered, env):
    assert sorted(fluent_bit(rendered, env)) == hosts_of(env, "all")


@pytest.mark.parametrize("env", INVENTORIES)
def test_fluent_bit_has_the_expected_inputs_per_group(rendered, env):
    app, lb, marker = set(hosts_of(env, "app")), set(hosts_of(env, "lb")), hosts_of(env, "monitoring")[0]
    for host, config in fluent_bit(rendered, env).items():
        names = sorted(i["name"] for i in config["pipeline"]["inputs"])
        expected = sorted(["forward", "udp"] + (["systemd"] if host in app else []) + (["tail", "tail"] if host in lb else [])
                          + (["systemd"] if host == marker else []))
        assert names == expected, host


@pytest.mark.parametrize("env", INVENTORIES)
def test_fluent_bit_journald_filters_every_app_unit(rendered, env):
    inv = inventory(env)
    for host, config in fluent_bit(rendered, env).items():
        for source in (i for i in config["pipeline"]["inputs"] if i["name"] == "systemd" and i["tag"] == "webapp.app"):
            filters = source["systemd_filter"]
            assert filters and all(re.fullmatch(r"_SYSTEMD_UNIT=webapp@\d+\.service", f) for f in filters), filters
            assert source.get("systemd_filter_type") == "or", "several units need an or filter"
            vars_ = {**inv["all"].get("vars", {}), **inv["_meta"]["hostvars"][host]}
            if "app_base_port" in vars_ and "app_instances" in vars_:
                ports = app_ports(vars_["app_base_port"], vars_["app_instances"])
                assert filters == [f"_SYSTEMD_UNIT=webapp@{p}.service" for p in ports], host


@pytest.mark.parametrize("env", INVENTORIES)
def test_only_the_marker_host_reads_the_deploy_markers_from_the_journals_start(rendered, env):
    for host, config in fluent_bit(rendered, env).items():
        markers = [i for i in config["pipeline"]["inputs"] if i["name"] == "systemd" and i["tag"] != "webapp.app"]
        if host != hosts_of(env, "monitoring")[0]:
            assert markers == [], host
            continue
        [source] = markers
        assert source["systemd_filter"] == ["SYSLOG_IDENTIFIER=webapp-deploy"]
        assert source["read_from_tail"] is False and source["db"] != "/var/lib/fluent-bit/journald.db"


@pytest.mark.parametrize("env", INVENTORIES)
def test_fluent_bit_buffers_on_disk_and_keeps_positions(rendered, env):
    for host, config in fluent_bit(rendered, env).items():
        service = config["service"]
        assert str(service["storage.path"]).startswith("/"), host
        for source in config["pipeline"]["inputs"]:
            assert source.get("storage.type") == "filesystem", f"{host}: {source['name']} input is not buffered on disk"
            if source["name"] in ("tail", "systemd"):
                assert str(source.get("db", "")).startswith("/"), f"{host}: {source['name']} input has no position database"
        dbs = [s["db"] for s in config["pipeline"]["inputs"] if "db" in s]
        assert len(dbs) == len(set(dbs)), f"{host}: inputs share a position database: {dbs}"


@pytest.mark.parametrize("env", INVENTORIES)
def test_fluent_bit_retries_without_limit_and_soon(rendered, env):
    for host, config in fluent_bit(rendered, env).items():
        out = loki_output(config)
        assert str(out["retry_limit"]).lower() in ("no_limits", "false", "off"), f"{host}: {out['retry_limit']}"
        assert re.fullmatch(r"\d+[KMG]", str(out["storage.total_limit_size"])), host
        assert int(config["service"]["scheduler.cap"]) <= 60, f"{host}: a retry may wait too long after Loki is back"
        assert int(config["service"]["grace"]) >= 5, host


@pytest.mark.parametrize("env", INVENTORIES)
def test_fluent_bit_forward_input_is_on_loopback(rendered, env):
    for host, config in fluent_bit(rendered, env).items():
        forward = [i for i in config["pipeline"]["inputs"] if i["name"] == "forward"]
        assert len(forward) == 1, host
        assert forward[0]["listen"] == "127.0.0.1" and int(forward[0]["port"]) == 24224, host


@pytest.mark.parametrize("env", INVENTORIES)
def test_fluent_bit_udp_input_takes_json_on_loopback_on_the_forward_port(rendered, env):
    # The original task's check: echo '{"tag": ..., "message": ...}' | nc -u -w1 localhost 24224
    for host, config in fluent_bit(rendered, env).items():
        forward = next(i for i in config["pipeline"]["inputs"] if i["name"] == "forward")
        udp = [i for i in config["pipeline"]["inputs"] if i["name"] == "udp"]
        # 127.0.0.1 always, ::1 where the host has it (rendered here without facts: 127.0.0.1 only).
        assert [i["listen"] for i in udp] == ["127.0.0.1"], host
        assert all(int(i["port"]) == int(forward["port"]) and i["format"] == "json" for i in udp), host


@pytest.mark.parametrize("env", INVENTORIES)
def test_fluent_bit_labels_are_few_and_fixed(rendered, env):
    deploy_env = {"staging": "staging", "production": "production", "lab": "lab"}[env]
    for host, config in fluent_bit(rendered, env).items():
        labels = stream_labels(config)
        assert set(labels) == ALLOWED_LABELS, f"{host}: {labels}"
        assert labels["env"] == deploy_env and labels["host"] == host, f"{host}: {labels}"
        assert labels["service"] is None and labels["level"] is None and labels["job"] is None
        out = loki_output(config)
        assert out["match"] == "*" and out["line_format"] == "json", host


@pytest.mark.parametrize("env", INVENTORIES)
def test_every_input_gets_a_service_label(rendered, env):
    for host, config in fluent_bit(rendered, env).items():
        for tag in input_tags(config):
            setters = [f for f in config["pipeline"]["filters"]
                       if f["name"] == "modify" and fnmatch.fnmatchcase(tag, f["match"])
                       and any(r.startswith("service ") for r in f.get("set", []) or [])]
            assert setters, f"{host}: lines tagged {tag} get no service label"
        for f in config["pipeline"]["filters"]:
            assert any(fnmatch.fnmatchcase(t, f["match"]) for t in input_tags(config)), f"{host}: filter {f} matches no input"


@pytest.mark.parametrize("env", INVENTORIES)
def test_every_parser_is_defined_and_compiles(rendered, env):
    for host, config in fluent_bit(rendered, env).items():
        parsers = {p["name"]: p for p in config["parsers"]}
        used = [i["parser"] for i in config["pipeline"]["inputs"] if "parser" in i]
        used += [f["parser"] for f in config["pipeline"]["filters"] if f["name"] == "parser"]
        assert set(used) <= set(parsers), f"{host}: undefined parsers {set(used) - set(parsers)}"
        for parser in parsers.values():
            assert parser["format"] in ("json", "regex"), parser
            if parser["format"] == "regex":
                groups = re.compile(python_regex(parser["regex"])).groupindex
                assert parser.get("time_key", "time") in groups, parser["name"]
            if "time_format" in parser:
                # Every directive is one Python's strptime knows too (the lab tests parse real lines).
                assert set(re.findall(r"%.", parser["time_format"])) <= {"%Y", "%m", "%d", "%H", "%M", "%S", "%z"}


def python_regex(onigmo: str) -> str:
    """Fluent Bit's (Onigmo) named groups (?<name>...) as Python's (?P<name>...)."""
    return re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", onigmo)


# --- LogQL -----------------------------------------------------------------------------


def loki_targets() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        def walk(panels):
            for panel in panels:
                walk(panel.get("panels", []))
                for target in panel.get("targets", []):
                    ds = target.get("datasource", panel.get("datasource")) or {}
                    if ds.get("type") == "loki":
                        found.append((f"{path.name}: {panel.get('title')}", target.get("expr", "")))
        walk(json.loads(path.read_text()).get("panels", []))
    return found


def loki_annotations() -> list[tuple[str, str]]:
    """The dashboards' annotation queries on Loki (the deploy markers)."""
    return [(f"{path.name}: {a.get('name')}", a["expr"]) for path in DASHBOARDS
            for a in json.loads(path.read_text()).get("annotations", {}).get("list", [])
            if (a.get("datasource") or {}).get("type") == "loki"]


# The operator's page on logs, whose examples the tests run as written.
LOGGING_DOC = ROOT / "docs" / "monitoring.md"


def readme_logql() -> list[str]:
    return re.findall(r"```logql\n(.+?)\n```", LOGGING_DOC.read_text(), re.S)


@pytest.fixture(scope="session")
def parsed_logql() -> dict[str, dict]:
    node = shutil.which("node")
    assert node, "node is missing: ./stack deps installs nodejs and npm"
    assert (LOGQL / "node_modules" / "@grafana" / "lezer-logql").is_dir(), "run ./stack deps (npm ci in tests/logql)"
    queries = [expr for _, expr in loki_targets() + loki_annotations()] + readme_logql()
    result = subprocess.run([node, str(LOGQL / "parse.mjs")], input=json.dumps(queries), capture_output=True, text=True,
                            check=False, cwd=LOGQL)
    assert result.returncode == 0, result.stderr
    return {r["query"]: r for r in json.loads(result.stdout)}


def test_the_grammar_rejects_a_broken_query(parsed_logql):
    # The checks below rely on the parser reporting errors; make sure it does.
    node = shutil.which("node")
    result = subprocess.run([node, str(LOGQL / "parse.mjs")], input=json.dumps(['{service="webapp" | json', '{} |= "x"']),
                            capture_output=True, text=True, check=True, cwd=LOGQL)
    assert all(r["errors"] for r in json.loads(result.stdout))


def test_there_are_log_panels_and_an_explore_query():
    where = {w.split(":")[0] for w, _ in loki_targets()}
    assert {"app.json", "logs.json"} <= where
    assert readme_logql(), "docs/monitoring.md shows no ```logql block (the Explore query for the app's logs)"


@pytest.mark.parametrize(("where", "expr"), loki_targets() + loki_annotations() + [("docs/monitoring.md", q) for q in readme_logql()],
                         ids=lambda v: str(v)[:50])
def test_logql_is_a_stream_selector_over_shipped_labels(rendered, parsed_logql, where, expr):
    configs = fluent_bit(rendered, "lab")
    labels = set().union(*(stream_labels(c) for c in configs.values()))
    services = set().union(*(service_values(c) for c in configs.values()))
    parsed = parsed_logql[expr]
    assert not parsed["errors"], f"{where}: {expr!r} does not parse: {parsed['errors']}"
    assert parsed["kind"] == "LogExpr", f"{where}: {expr!r} is not a log query"
    assert len(parsed["selectors"]) == 1, f"{where}: {expr!r}"
    matchers = parsed["selectors"][0]
    unknown = {m[0] for m in matchers} - labels
    assert not unknown, f"{where}: {expr!r} selects on labels Fluent Bit does not set: {unknown} (it sets {labels})"
    assert any(op == "=" and value for _, op, value in matchers), f"{where}: Loki needs one non-empty = matcher"
    for label, op, value in matchers:
        if label == "service" and op == "=":
            assert value in services, f"{where}: no line has service={value!r} (services: {services})"


def test_the_deploy_markers_are_an_annotation_of_the_app_dashboard_over_what_the_marker_host_ships(rendered):
    """The markers (roles/app's marker.yml, into the first monitoring host's journal) are shipped
    as service="deploy" by that host's Fluent Bit only; the app dashboard's annotation selects them
    (parsed, with the other queries, by test_logql_is_a_stream_selector_over_shipped_labels)."""
    assert "app.json: Deploys and rollbacks" in dict(loki_annotations())
    for env in INVENTORIES:
        shipping = {host for host, config in fluent_bit(rendered, env).items() if "deploy" in service_values(config)}
        assert shipping == {hosts_of(env, "monitoring")[0]}, (env, shipping)
