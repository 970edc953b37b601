#!/usr/bin/python
"""Ansible module: what each webapp instance on this host actually serves."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_instances
short_description: Observe the app's instances and say which must restart
description:
  - Reads, for every instance port, its systemd service and socket units and asks its
    C(/health) endpoint which release it serves.
  - An instance is stale when its service is not active, its socket unit is not listening,
    it does not answer with I(release), or it started before any path in I(watch) (or its
    socket before any path in I(socket_watch)) last changed.
  - With I(wait), polls until every port answers with I(release) or the time is up, and
    fails naming the instances that did not.
  - Never changes anything.
options:
  address: {description: Address the instances listen on., type: str, required: true}
  ports: {description: Instance ports., type: list, elements: int, required: true}
  unit: {description: "Name of the template units (C(unit@port.service) and C(unit@port.socket))", type: str, default: webapp}
  release: {description: Release every instance must answer with; empty accepts any., type: str, default: ""}
  watch: {description: Files whose change requires a restart (symbolic links are not followed)., type: list, elements: path, default: []}
  socket_watch: {description: Files whose change requires the socket to be made anew., type: list, elements: path, default: []}
  wait: {description: Seconds to wait for every port to answer with I(release); 0 only observes., type: float, default: 0}
  interval: {description: Seconds between two probes while waiting., type: float, default: 0.1}
  timeout: {description: Seconds one health request may take., type: float, default: 2}
  check_units: {description: Whether the units count too; false asks only the health endpoint (a pre-check)., type: bool, default: true}
"""

RETURN = r"""
instances:
  description: One entry a port, with its state and why it is stale.
  type: list
  returned: always
stale:
  description: Ports whose instance must restart.
  type: list
  returned: always
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule


def _show(unit: str, props: list[str]) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, "--property=" + ",".join(props)],
                         capture_output=True, text=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _started(values: dict[str, str], prop: str) -> float | None:
    """Wall-clock time (s) at which a unit's monotonic timestamp was taken, or None."""
    mono = int(values.get(prop) or 0)
    if not mono:
        return None
    return time.time() - (time.monotonic() - mono / 1e6)


def _changed_at(paths: list[str]) -> tuple[float, str]:
    newest, which = 0.0, ""
    for path in paths:
        try:
            mtime = os.lstat(path).st_mtime
        except FileNotFoundError:
            continue
        if mtime > newest:
            newest, which = mtime, path
    return newest, which


def _health(url: str, timeout: float) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (the host's own instances)
            body = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as err:
        return err.code, "", f"answered {err.code}"
    except (OSError, ValueError) as err:
        return 0, "", str(getattr(err, "reason", err))
    try:
        release = str(json.loads(body).get("release", ""))
    except (ValueError, AttributeError):
        return status, "", "answered no JSON"
    return status, release, ""


def observe(p: dict) -> list[dict]:
    host = f"[{p['address']}]" if ":" in p["address"] else p["address"]
    watched, watched_path = _changed_at(p["watch"])
    sock_watched, sock_path = _changed_at(p["socket_watch"])
    found = []
    for port in p["ports"]:
        service = f"{p['unit']}@{port}.service"
        socket_unit = f"{p['unit']}@{port}.socket"
        if p["check_units"]:
            svc = _show(service, ["ActiveState", "ExecMainStartTimestampMonotonic"])
            sock = _show(socket_unit, ["ActiveState", "ActiveEnterTimestampMonotonic"])
        else:
            svc = sock = {"ActiveState": "active"}
        started = _started(svc, "ExecMainStartTimestampMonotonic")
        sock_started = _started(sock, "ActiveEnterTimestampMonotonic")
        status, release, error = _health(f"http://{host}:{port}/health", p["timeout"])
        reasons = []
        socket_stale = sock.get("ActiveState") != "active" or (
            sock_watched and (sock_started is None or sock_started < sock_watched))
        if sock.get("ActiveState") != "active":
            reasons.append(f"socket {sock.get('ActiveState', 'unknown')}")
        elif socket_stale:
            reasons.append(f"socket older than {sock_path}")
        if svc.get("ActiveState") != "active":
            reasons.append(f"service {svc.get('ActiveState', 'unknown')}")
        elif watched and (started is None or started < watched):
            reasons.append(f"started before {watched_path} changed")
        if status != 200:
            reasons.append(f"health: {error or status}")
        elif p["release"] and release != p["release"]:
            reasons.append(f"serves {release or 'no release'}, not {p['release']}")
        found.append({"port": port, "service": svc.get("ActiveState", ""), "socket": sock.get("ActiveState", ""),
                      "socket_stale": bool(socket_stale), "status": status, "release": release,
                      "stale": bool(reasons), "reasons": reasons})
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "ports": {"type": "list", "elements": "int", "required": True},
            "unit": {"type": "str", "default": "webapp"},
            "release": {"type": "str", "default": ""},
            "watch": {"type": "list", "elements": "path", "default": []},
            "socket_watch": {"type": "list", "elements": "path", "default": []},
            "wait": {"type": "float", "default": 0},
            "interval": {"type": "float", "default": 0.1},
            "timeout": {"type": "float", "default": 2},
            "check_units": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    deadline = time.monotonic() + p["wait"]
    while True:
        found = observe(p)
        stale = [i["port"] for i in found if i["stale"]]
        if not stale or not p["wait"] or time.monotonic() >= deadline:
            break
        time.sleep(p["interval"])
    result = {"changed": False, "instances": found, "stale": stale}
    if p["wait"] and stale:
        detail = "; ".join(f"{i['port']}: {', '.join(i['reasons'])}" for i in found if i["stale"])
        module.fail_json(msg=f"not every instance answers with release {p['release']} after {p['wait']} s ({detail})",
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
