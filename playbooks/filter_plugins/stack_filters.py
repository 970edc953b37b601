"""The fleet's facts, computed once from the inventory (ansible.cfg names this folder).

Every value a play derives from several hosts of the inventory lives here, unit-tested in
tests/test_fleet.py: the app instances, the load balancers' upstreams, what listens on each
host and who may connect to it (preflight's port-clash check, the firewall's rules), the
scrape targets, the Fluent Bit settings of a host. The plays only call these filters.

A setting a host does not set in the inventory is its role's default, read here from the
roles' defaults/main.yml (the one place each default, a port for instance, is written).
The functions take `hostvars` and `groups` as the plays have them (mappings; a play's
hostvars templates a value when it is read).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

# The repository's roles, beside this folder's parent (playbooks/): the roles_path of ansible.cfg.
ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"

# Who may connect, as the services table says it: any address, the inventory's admin_networks,
# every host of the inventory, or a group's hosts; an empty list means loopback only.
ANY = "any"
ADMIN = "admin"


def app_ports(base: object, instances: object) -> list[int]:
    """The ports of an app host's instances: `instances` ports from `base` on.

    `{{ app_base_port | app_ports(app_instances) }}` -> [8000, 8001]
    """
    first, count = int(str(base)), int(str(instances))
    if count < 0:
        raise ValueError(f"app_instances must not be negative, got {count}")
    return list(range(first, first + count))


@functools.cache
def role_defaults(roles_dir: str = str(ROLES_DIR)) -> dict[str, Any]:
    """Every variable of every role's defaults/main.yml (role names are their prefixes, so none clash)."""
    found: dict[str, Any] = {}
    for path in sorted(Path(roles_dir).glob("*/defaults/main.yml")):
        found.update(yaml.safe_load(path.read_text()) or {})
    return found


def setting(host_vars: Mapping[str, Any], name: str, defaults: Mapping[str, Any] | None = None) -> Any:
    """A host's value of a role variable: the inventory's, else the role's default.

    `{{ hostvars[inventory_hostname] | stack_setting('prometheus_port') }}` -> 9090
    """
    if name in host_vars:
        return host_vars[name]
    defaults = role_defaults() if defaults is None else defaults
    if name not in defaults:
        raise KeyError(f"{name} is neither set in the inventory nor a default of a role")
    return defaults[name]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)


def _members(groups: Mapping[str, Sequence[str]], group: str) -> list[str]:
    return list(groups.get(group) or [])


def _switch(host_vars: Mapping[str, Any], name: str) -> bool:
    """An inventory switch that is on unless the inventory turns it off (grafana_enabled, loki_enabled)."""
    return _truthy(host_vars.get(name, True))


def host_ports(host_vars: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> list[int]:
    """An app host's instance ports, from its app_base_port and app_instances (or their defaults)."""
    return app_ports(setting(host_vars, "app_base_port", defaults), setting(host_vars, "app_instances", defaults))


def instances(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
              defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every app instance of the fleet: host, internal address and port, in inventory order.

    `{{ hostvars | stack_instances(groups) }}`
    """
    found = []
    for host in _members(groups, "app"):
        hv = hostvars[host]
        for port in host_ports(hv, defaults):
            found.append({"host": host, "address": str(hv["internal_address"]), "port": port})
    return found


def upstreams(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
              defaults: Mapping[str, Any] | None = None) -> list[str]:
    """The load balancers' backends: "address:port" of every app instance ([address]:port for IPv6)."""
    return [host_port(i["address"], i["port"]) for i in instances(hostvars, groups, defaults)]


def floating_address(host_vars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> bool:
    """Whether the load balancers share a floating address (VRRP): always with more than one of
    them, and with one when the inventory gives it the address."""
    return len(_members(groups, "lb")) > 1 or len(str(host_vars.get("keepalived_virtual_address") or "")) > 0


def services(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]], host: str,
             defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """What listens on a host, on which port, and who may connect to it.

    Each entry: name, port (or protocol "vrrp", which has none), and "from": any, admin (the
    inventory's admin_networks), all (every host of the inventory), a group; empty: loopback only.
    Loki (its gateway): every host pushes its lines, admin_networks query them, the monitoring hosts
    scrape its metrics; Grafana reads Loki on its own host. Fluent Bit's monitoring API: the
    monitoring hosts (Prometheus).
    """
    hv = hostvars[host]

    def port(name: str) -> int:
        return int(setting(hv, name, defaults))

    found: list[dict[str, Any]] = [{"name": "node_exporter", "port": port("node_exporter_port"), "from": ["monitoring"]}]
    if _switch(hv, "fluent_bit_enabled"):
        found.append({"name": "fluent_bit", "port": port("fluent_bit_http_port"), "from": ["monitoring"]})
    if host in _members(groups, "app"):
        for p in host_ports(hv, defaults):
            found.append({"name": f"app instance {p}", "port": p, "from": ["lb", "monitoring"]})
        found.append({"name": "app pre-check", "port": port("app_spare_port"), "from": []})
    if host in _members(groups, "lb"):
        found.append({"name": "nginx http", "port": port("nginx_listen_port"), "from": [ANY]})
        if str(setting(hv, "nginx_tls_certificate", defaults)):
            found.append({"name": "nginx https", "port": port("nginx_tls_port"), "from": [ANY]})
        if floating_address(hv, groups):
            found.append({"name": "vrrp", "protocol": "vrrp", "from": ["lb"]})
        found.append({"name": "nginx stub_status", "port": port("nginx_stub_status_port"), "from": []})
        if _truthy(setting(hv, "nginx_exporter_enabled", defaults)):
            found.append({"name": "nginx exporter", "port": port("nginx_exporter_port"), "from": ["monitoring"]})
    if host in _members(groups, "monitoring"):
        found.append({"name": "prometheus", "port": port("prometheus_port"), "from": [ADMIN, "monitoring"]})
        if _switch(hv, "grafana_enabled"):
            found.append({"name": "grafana", "port": port("grafana_port"), "from": [ADMIN]})
        if _switch(hv, "loki_enabled"):
            found.append({"name": "loki", "port": port("loki_http_port"), "from": ["all", ADMIN]})
        if _switch(hv, "alertmanager_enabled"):
            found.append({"name": "alertmanager", "port": port("alertmanager_port"), "from": [ADMIN, "monitoring"]})
            if len(_members(groups, "monitoring")) > 1:
                for protocol in ("tcp", "udp"):
                    found.append({"name": f"alertmanager cluster {protocol}", "port": port("alertmanager_cluster_port"),
                                  "protocol": protocol, "from": ["monitoring"]})
        if _switch(hv, "blackbox_exporter_enabled"):
            found.append({"name": "blackbox exporter", "port": port("blackbox_exporter_port"), "from": []})
    return found


def port_clashes(table: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ports more than one service of a host listens on, each as "port (service, service)"."""
    by_port: dict[tuple[int, str], list[str]] = {}
    for service in table:
        if "port" in service:
            key = (int(service["port"]), str(service.get("protocol", "tcp")))
            by_port.setdefault(key, []).append(str(service["name"]))
    return [f"{p}{'' if proto == 'tcp' else '/' + proto} ({', '.join(names)})"
            for (p, proto), names in by_port.items() if len(names) > 1]


def firewall_rules(table: Iterable[Mapping[str, Any]], hostvars: Mapping[str, Mapping[str, Any]],
                   groups: Mapping[str, Sequence[str]], admin_networks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The services table with each "from" turned into addresses (the firewall role's firewall_services).

    A service that no address may reach (a group with no host, admin with no admin_networks)
    and that is not open to any address gets no rule: it stays loopback-only.
    """
    rules = []
    for service in table:
        sources: list[str] = []
        for source in service["from"]:
            if source == ADMIN:
                sources += [str(a) for a in admin_networks or []]
            elif source != ANY:
                sources += addresses(hostvars, groups, source)
        from_any = ANY in service["from"]
        if from_any or sources:
            rules.append({"name": service["name"], "protocol": service.get("protocol", "tcp"),
                          "port": int(service.get("port", 0)), "from_any": from_any,
                          "sources": list(dict.fromkeys(sources))})
    return rules


def _groups_of(groups: Mapping[str, Sequence[str]], host: str) -> list[str]:
    return sorted(g for g, members in groups.items() if g not in ("all", "ungrouped") and host in (members or []))


def scrape_jobs(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]], env: str,
                defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Prometheus's scrape jobs: every target of the inventory, labelled env, group, host and
    instance (<host>:<port>), and the path where it is not /metrics. Jobs without a target are
    left out. Fluent Bit (every host that runs it) and Loki (through its gateway) are scraped
    for the log path's own health: records dropped or retried, lines Loki refused."""
    jobs: dict[str, list[dict[str, Any]]] = {"node": [], "app": [], "nginx": [], "prometheus": [], "fluent_bit": [],
                                             "loki": [], "alertmanager": [], "probe_public": [], "probe_lb": []}
    paths = {"fluent_bit": "/api/v2/metrics/prometheus", "probe_public": "/probe", "probe_lb": "/probe"}

    def target(job: str, host: str, port: object, group: str | None = None) -> None:
        hv = hostvars[host]
        labels = {"env": env, "group": group or (_groups_of(groups, host) or ["ungrouped"])[0], "host": host,
                  "instance": f"{host}:{port}"}
        jobs[job].append({"address": host_port(hv["internal_address"], port), "labels": labels})

    for host in sorted(_members(groups, "all")):
        hv = hostvars[host]
        target("node", host, setting(hv, "node_exporter_port", defaults))
        if host in _members(groups, "app"):
            for p in host_ports(hv, defaults):
                target("app", host, p, "app")
        if host in _members(groups, "lb") and _truthy(setting(hv, "nginx_exporter_enabled", defaults)):
            target("nginx", host, setting(hv, "nginx_exporter_port", defaults), "lb")
        if host in _members(groups, "monitoring"):
            target("prometheus", host, setting(hv, "prometheus_port", defaults))
            if _switch(hv, "loki_enabled"):
                target("loki", host, setting(hv, "loki_http_port", defaults))
            if _switch(hv, "alertmanager_enabled"):
                target("alertmanager", host, setting(hv, "alertmanager_port", defaults))
        if _switch(hv, "fluent_bit_enabled"):
            target("fluent_bit", host, setting(hv, "fluent_bit_http_port", defaults))
    monitoring = _members(groups, "monitoring")
    if monitoring and _switch(hostvars[monitoring[0]], "blackbox_exporter_enabled"):
        # Each Prometheus asks the exporter on its own host (it listens there only), with the
        # probe's URL and module as the scrape's parameters.
        hv = hostvars[monitoring[0]]
        exporter = host_port(setting(hv, "blackbox_exporter_listen_address", defaults),
                             setting(hv, "blackbox_exporter_port", defaults))
        module = str(setting(hv, "blackbox_exporter_app_module", defaults))
        for probe in probes(hostvars, groups, defaults):
            jobs[probe["job"]].append({"address": exporter, "labels": {
                "env": env, "group": "lb", "host": probe["host"], "instance": probe["url"],
                "__param_target": probe["url"], "__param_module": module}})
    return [{"job_name": name, "targets": targets, **({"metrics_path": paths[name]} if name in paths else {})}
            for name, targets in jobs.items() if targets]


def public_url(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
               defaults: Mapping[str, Any] | None = None) -> str:
    """The URL the app's users reach it at: the inventory's public_url (on the load balancers), else
    the floating address (or the one load balancer's address), over HTTPS when the load balancers
    have a certificate.

    `{{ hostvars | stack_public_url(groups) }}` -> "https://10.77.0.10/"
    """
    lbs = _members(groups, "lb")
    if not lbs:
        raise ValueError("no load balancer in the inventory: the public URL is theirs")
    hv = hostvars[lbs[0]]
    if str(hv.get("public_url") or ""):
        return str(hv["public_url"])
    address = str(hv.get("keepalived_virtual_address") or "") if floating_address(hv, groups) else ""
    address = address or str(hv["internal_address"])
    host = url_host(address)
    if str(setting(hv, "nginx_tls_certificate", defaults)):
        port, scheme, usual = int(setting(hv, "nginx_tls_port", defaults)), "https", 443
    else:
        port, scheme, usual = int(setting(hv, "nginx_listen_port", defaults)), "http", 80
    return f"{scheme}://{host}{'' if port == usual else f':{port}'}/"


def probes(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
           defaults: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """What the blackbox exporter probes: the public URL (job probe_public, host "public") and each
    load balancer directly at its internal address (job probe_lb), with the public URL's scheme,
    port and path."""
    public = public_url(hostvars, groups, defaults)
    found = [{"job": "probe_public", "host": "public", "url": public}]
    parts = urlsplit(public)
    for lb in _members(groups, "lb"):
        address = str(hostvars[lb]["internal_address"])
        host = url_host(address)
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        found.append({"job": "probe_lb", "host": lb, "url": urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))})
    return found


def alertmanagers(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
                  defaults: Mapping[str, Any] | None = None) -> list[str]:
    """Where Prometheus sends its alerts: the Alertmanager of every monitoring host, "address:port"."""
    return [host_port(hostvars[h]["internal_address"], setting(hostvars[h], "alertmanager_port", defaults))
            for h in _members(groups, "monitoring") if _switch(hostvars[h], "alertmanager_enabled")]


def alertmanager_peers(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]], host: str,
                       defaults: Mapping[str, Any] | None = None) -> list[str]:
    """The other monitoring hosts' Alertmanagers, "address:cluster_port", that one gossips with (none with one host)."""
    return [host_port(hostvars[h]["internal_address"], setting(hostvars[h], "alertmanager_cluster_port", defaults))
            for h in _members(groups, "monitoring") if h != host and _switch(hostvars[h], "alertmanager_enabled")]


def probe_address(listen: Any) -> str:
    """Where the host itself reaches a service that listens on `listen`: loopback for a wildcard
    (or no address), else that address.

    `{{ prometheus_listen_address | stack_probe_address }}` -> "127.0.0.1" for "0.0.0.0"
    """
    text = str(listen or "").strip()
    return "127.0.0.1" if text in ("", "0.0.0.0", "::", "*", "[::]") else text


def url_host(address: Any) -> str:
    """An address as the host part of a URL or of host:port: an IPv6 address in brackets."""
    text = str(address).strip()
    return f"[{text}]" if ":" in text and not text.startswith("[") else text


def host_port(address: Any, port: Any) -> str:
    """"address:port" as listeners, scrapers and URLs take it: an IPv6 address in brackets.

    `{{ prometheus_listen_address | stack_host_port(prometheus_port) }}` -> "10.0.0.1:9090", "[::1]:9090"
    """
    return f"{url_host(address)}:{port}"


def port_problems(ports: Mapping[str, Any] | Iterable[Mapping[str, Any]], lowest: int = 1) -> list[str]:
    """What is wrong with some ports, each naming its variable; [] when nothing is. `ports` maps
    variable names to ports, or lists services (name, port) as firewall_services does. A port
    must be a whole number within `lowest`-65535.

    `{{ {'loki_http_port': loki_http_port, 'loki_grpc_port': loki_grpc_port} | stack_port_problems }}`
    -> ["loki_http_port must be a port within 1-65535, is 70000"]
    """
    if isinstance(ports, Mapping):
        named = [(str(name), value) for name, value in ports.items()]
    else:
        named = [(f"the port of firewall_services entry {str(s.get('name'))!r}", s.get("port")) for s in ports]
    found = []
    for name, value in named:
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or not int(lowest) <= int(text) <= 65535:
            found.append(f"{name} must be a port within {int(lowest)}-65535, is {value!r}")
    return found


def regex_literal(text: Any) -> str:
    """A regular expression (RE2, Go's, as the blackbox exporter's) that matches `text` literally."""
    return "".join("\\" + c if c in _RE2_SPECIAL else c for c in str(text))


_RE2_SPECIAL = set("\\.+*?()|[]{}^$")


def loki_endpoint(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
                  defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where the hosts push their lines: Loki's gateway on the first monitoring host (host, port,
    and the user name of the push credentials, whose password is the vault's)."""
    monitoring = _members(groups, "monitoring")
    if not monitoring:
        raise ValueError("no monitoring host in the inventory: Loki runs on the first one")
    hv = hostvars[monitoring[0]]
    return {"host": str(hv["internal_address"]), "port": int(setting(hv, "loki_http_port", defaults)),
            "user": str(setting(hv, "loki_gateway_push_username", defaults))}


def journald_units(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]], host: str,
                   defaults: Mapping[str, Any] | None = None) -> list[str]:
    """The app instances' units of a host, whose journal Fluent Bit ships (none off the app hosts)."""
    if host not in _members(groups, "app"):
        return []
    return [f"webapp@{p}.service" for p in host_ports(hostvars[host], defaults)]


def addresses(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]], group: str) -> list[str]:
    """The internal addresses of a group's hosts, in inventory order."""
    return [str(hostvars[h]["internal_address"]) for h in _members(groups, group)]


# What systemd's environment-file parser reads specially inside double quotes (as a shell does).
_ENV_ESCAPED = '"\\`$'


def env_value(value: Any) -> str:
    """A value for a systemd EnvironmentFile that the process receives byte for byte: in double
    quotes, with the characters systemd would read specially escaped; UTF-8 as it is. A newline
    cannot be carried (systemd reads it as the end of the value, or a line continuation).

    `{{ app_message | stack_env_value }}` (the app's message, Fluent Bit's push password)
    """
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError(f"an environment value cannot hold a newline, carriage return or NUL: {text!r}")
    return '"' + "".join("\\" + c if c in _ENV_ESCAPED else c for c in text) + '"'


def env_lines(env: Mapping[str, Any] | None) -> str:
    """The lines NAME="value" of a systemd EnvironmentFile, sorted by name, each value as
    env_value writes it; "" for none. The names are checked before (the app role's preflight).

    `{{ app_env | stack_env_lines }}`
    """
    return "".join(f"{key}={env_value(value if value is not None else '')}\n"
                   for key, value in sorted((env or {}).items(), key=lambda kv: str(kv[0])))


def deploy_marker(hostvars: Mapping[str, Mapping[str, Any]], hosts: Sequence[str], event: str, result: str,
                  by: str) -> dict[str, Any]:
    """A deploy's or rollback's marker: one JSON line (event, release, from, by, result, hosts),
    from the one fact the app role publishes on each host, app_moving (from, to: what the host
    leaves and the release it goes to, set once, under the host's lock, when the run chose the
    release: a deploy's preflight, a rollback's plan). `changed` says whether any host goes to
    another release: a run that changes none writes no marker. `release` and `from` are one id
    when the hosts agree, else a sorted list.

    `{{ hostvars | stack_deploy_marker(ansible_play_batch, 'deploy', 'ok', app_marker_by) }}`
    """
    if event not in ("deploy", "rollback") or result not in ("ok", "failed"):
        raise ValueError(f"a marker is a deploy or rollback that is ok or failed, not {event!r} {result!r}")
    moved, targets, sources = [], set(), set()
    for host in hosts:
        moving = hostvars[host].get("app_moving") or {}
        before, target = str(moving.get("from") or ""), str(moving.get("to") or "")
        if target and target != before:
            moved.append(host)
            targets.add(target)
            sources.add(before)

    def one(values: set[str]) -> str | list[str]:
        return next(iter(values)) if len(values) == 1 else sorted(values)

    line = {"event": event, "release": one(targets), "from": one(sources), "by": str(by), "result": result,
            "hosts": moved}
    return {"changed": bool(moved), "line": line, "message": json.dumps(line, sort_keys=True)}


def prometheus(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
               defaults: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The first monitoring host's Prometheus as a deploy asks it (the canary analysis): its URL
    at the host's internal address, and its scrape interval; an empty URL without a monitoring host.

    `{{ (hostvars | stack_prometheus(groups)).url }}` -> "http://10.0.0.5:9090"
    """
    monitoring = _members(groups, "monitoring")
    if not monitoring:
        return {"url": "", "scrape_interval": str(setting({}, "prometheus_scrape_interval", defaults))}
    hv = hostvars[monitoring[0]]
    address = str(hv["internal_address"])
    host = f"[{address}]" if ":" in address else address
    return {"url": f"http://{host}:{setting(hv, 'prometheus_port', defaults)}",
            "scrape_interval": str(setting(hv, "prometheus_scrape_interval", defaults))}


def marker_host(groups: Mapping[str, Sequence[str]]) -> str:
    """The host whose journal gets the deploy and rollback markers, and whose Fluent Bit ships them:
    the first monitoring host (Loki's)."""
    monitoring = _members(groups, "monitoring")
    if not monitoring:
        raise ValueError("no monitoring host in the inventory: the deploy markers go to the first one")
    return monitoring[0]


def deploy_serial(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
                  defaults: Mapping[str, Any] | None = None) -> list[Any]:
    """The deploy's serial: app_deploy_batches of the first app host (where the inventory's
    group_vars put it), else the app role's default - also where there is no host at all, as
    when a play's keywords are checked without an inventory (--syntax-check, ansible-lint).

    `{{ (hostvars | default({})) | stack_deploy_serial(groups) }}` -> [1, "100%"]
    """
    app = _members(groups, "app")
    host_vars = hostvars.get(app[0], {}) if app else {}
    return list(setting(host_vars, "app_deploy_batches", defaults))


def build_argv(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]], python: str,
               root: str, artifact: str = "", force: bool = False,
               defaults: Mapping[str, Any] | None = None) -> list[str]:
    """The build's command line (scripts/build_release.py) from the app settings of the first app
    host (where the inventory's group_vars and any -e put them), else the app role's defaults:
    app_source (relative to the repository's root `root`), app_test_command, app_build_tests,
    app_pythons. With `artifact`, the artifact built before is described instead.

    `{{ hostvars | stack_build_argv(groups, ansible_playbook_python, playbook_dir ~ '/..') }}`
    """
    app = _members(groups, "app")
    host_vars = hostvars.get(app[0], {}) if app else {}
    script = str(Path(root) / "scripts" / "build_release.py")
    if artifact:
        return [python, script, "--artifact", str(artifact)]
    source = str(setting(host_vars, "app_source", defaults))
    pythons = setting(host_vars, "app_pythons", defaults)
    argv = [python, script, "--project", str(root), "--source", str(Path(root) / source)]
    if isinstance(pythons, str):
        pythons = [pythons]
    if pythons:
        argv += ["--python", ",".join(str(p) for p in pythons)]
    if not _truthy(setting(host_vars, "app_build_tests", defaults)):
        argv.append("--no-tests")
    elif setting(host_vars, "app_test_command", defaults):
        argv += ["--test-command", str(setting(host_vars, "app_test_command", defaults))]
    return argv + (["--force"] if _truthy(force) else [])


def batch_problems(batches: Any) -> list[str]:
    """What is wrong with app_deploy_batches (playbooks/deploy.yml's serial), naming it; [] when nothing is."""
    if not isinstance(batches, (list, tuple)) or not batches:
        return [f"app_deploy_batches must be a list of at least one batch, is {batches!r}"]
    found = []
    for i, batch in enumerate(batches):
        text = str(batch).strip()
        if isinstance(batch, bool) or not (text.isdigit() and int(text) >= 1
                                           or text.endswith("%") and text[:-1].isdigit() and 1 <= int(text[:-1]) <= 100):
            found.append(f"app_deploy_batches[{i}] must be a number of hosts (1 or more) or a percentage (1%-100%), is {batch!r}")
    return found


def batch_sizes(batches: Sequence[Any], hosts: int) -> list[int]:
    """The batches Ansible runs for `hosts` app hosts with app_deploy_batches as serial: a
    percentage of all the hosts rounded down (at least 1), the last batch repeated until every
    host had its turn. The largest is the forks a deploy needs.

    `{{ app_deploy_batches | stack_batch_sizes(groups['app'] | length) }}` -> [1, 3]
    """
    problems = batch_problems(list(batches))
    if problems:
        raise ValueError("; ".join(problems))
    sizes, left, i = [], int(hosts), 0
    while left > 0:
        text = str(batches[min(i, len(batches) - 1)]).strip()
        size = max(1, int(hosts) * int(text[:-1]) // 100) if text.endswith("%") else int(text)
        sizes.append(min(size, left))
        left -= sizes[-1]
        i += 1
    return sizes


class FilterModule:
    """Filters of this repository."""

    def filters(self) -> dict[str, object]:
        return {
            "app_ports": app_ports,
            "stack_setting": setting,
            "stack_instances": instances,
            "stack_upstreams": upstreams,
            "stack_floating_address": floating_address,
            "stack_services": services,
            "stack_port_clashes": port_clashes,
            "stack_firewall_rules": firewall_rules,
            "stack_scrape_jobs": scrape_jobs,
            "stack_loki_endpoint": loki_endpoint,
            "stack_journald_units": journald_units,
            "stack_addresses": addresses,
            "stack_env_value": env_value,
            "stack_env_lines": env_lines,
            "stack_public_url": public_url,
            "stack_probes": probes,
            "stack_alertmanagers": alertmanagers,
            "stack_alertmanager_peers": alertmanager_peers,
            "stack_regex_literal": regex_literal,
            "stack_probe_address": probe_address,
            "stack_host_port": host_port,
            "stack_port_problems": port_problems,
            "stack_deploy_marker": deploy_marker,
            "stack_marker_host": marker_host,
            "stack_deploy_serial": deploy_serial,
            "stack_batch_problems": batch_problems,
            "stack_batch_sizes": batch_sizes,
            "stack_build_argv": build_argv,
            "stack_prometheus": prometheus,
        }

