#!/usr/bin/python
"""Ansible module: a release pre-checked on a spare port before any instance switches to it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_precheck
short_description: Start a release on a spare port, wait for its health, stop it
description:
  - Starts the template unit C(unit@release.service), which serves I(release) on I(address):I(port)
    without a socket unit, after stopping any C(unit@*.service) an interrupted run left running;
    waits up to I(wait) seconds for its health path (I(path)) to answer one of I(statuses) with
    the runner's C(X-Release) header naming I(release); then stops it whatever happened.
  - When it does not come up, marks I(release) failed (I(failed_marker) in its folder under
    I(releases_dir); not with I(mark_failed) false, when only the settings are new) and fails
    with its journal, naming I(fallback) as the release still current. Nothing that serves
    traffic changes.
options:
  address: {description: Address the pre-check listens on., type: str, default: 127.0.0.1}
  port: {description: The spare port., type: int, required: true}
  unit: {description: Name of the pre-check's template unit., type: str, required: true}
  release: {description: Release to pre-check., type: str, required: true}
  releases_dir: {description: Folder of the releases., type: path, required: true}
  failed_marker: {description: Name of the file that marks a release failed., type: str, default: .failed}
  mark_failed: {description: Whether a failure marks I(release) failed., type: bool, default: true}
  fallback: {description: "The release still current, as the failure names it (empty: none).", type: str, default: ""}
  wait: {description: Seconds the release has to answer., type: float, required: true}
  interval: {description: Seconds between two probes., type: float, default: 0.1}
  timeout: {description: Seconds one health request may take., type: float, default: 2}
  path: {description: The app's health path., type: str, default: /health}
  statuses: {description: HTTP statuses of the health path that count as healthy., type: list, elements: int, default: [200]}
  journal_lines: {description: Lines of the unit's journal shown on failure., type: int, default: 40}
  journal_filter: {description: Regular expression (journalctl --grep) the lines shown must match., type: str, default: ""}
  host: {description: "How messages name this host (the inventory name; empty: the host name).", type: str, default: ""}
"""

RETURN = r"""
leftovers:
  description: Pre-check units an interrupted run left running, stopped by this one.
  type: list
  returned: always
instances:
  description: What the spare port answered.
  type: list
  returned: always
stale:
  description: The spare port when it did not answer as wanted.
  type: list
  returned: always
"""

import os
import socket
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.webapp_probe import journal, systemctl, wait


def precheck(module: AnsibleModule, p: dict) -> None:
    """Start the release on the spare port beside the instances, wait for its health, stop it; fail
    (the release marked failed) with its journal when it does not come up."""
    unit = f"{p['unit']}@{p['release']}.service"
    listed = subprocess.run(["systemctl", "list-units", "--state=active", "--plain", "--no-legend", "--no-pager",
                             f"{p['unit']}@*.service"], capture_output=True, text=True, check=False).stdout
    leftovers = [line.split()[0] for line in listed.splitlines() if line.split()]
    if module.check_mode:
        module.exit_json(changed=True, leftovers=leftovers, instances=[], stale=[])
    for left in leftovers:
        systemctl(module, "stop", left)
    subprocess.run(["systemctl", "reset-failed", unit], capture_output=True, check=False)
    try:
        started = subprocess.run(["systemctl", "start", unit], capture_output=True, text=True, check=False)
        if started.returncode == 0:
            found, stale = wait(p, p["ports"])
            why = ", ".join(r for i in found for r in i["reasons"])
        else:
            found, stale = [], p["ports"]
            why = f"systemctl start {unit}: {started.stderr.strip() or started.stdout.strip()}"
        log = journal(p, p["release"], p["unit"]) if stale else ""
    finally:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, check=False)
    if stale:
        if p["mark_failed"]:
            with open(os.path.join(p["releases_dir"], p["release"], p["failed_marker"]), "w", encoding="utf-8") as marker:
                marker.write(f"pre-check on {p['address']}:{p['ports'][0]} failed\n")
        module.fail_json(msg=f"Release {p['release']} did not answer its health endpoint on {p['address']}:{p['ports'][0]} "
                             f"on {p['host']} within {p['wait']} s ({why}) with the settings this run brings "
                             f"(app_wsgi, app_env, app_secret_env, ...); no instance was switched to it or to those "
                             f"settings, current is still {p['fallback'] or 'unset'}. Its journal:\n{log}",
                         changed=True, leftovers=leftovers, instances=found, stale=stale)
    module.exit_json(changed=True, leftovers=leftovers, instances=found, stale=[])



def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "required": True},
            "unit": {"type": "str", "required": True},
            "release": {"type": "str", "required": True},
            "releases_dir": {"type": "path", "required": True},
            "failed_marker": {"type": "str", "default": ".failed"},
            "mark_failed": {"type": "bool", "default": True},
            "fallback": {"type": "str", "default": ""},
            "wait": {"type": "float", "required": True},
            "interval": {"type": "float", "default": 0.1},
            "timeout": {"type": "float", "default": 2},
            "path": {"type": "str", "default": "/health"},
            "statuses": {"type": "list", "elements": "int", "default": [200]},
            "journal_lines": {"type": "int", "default": 40},
            "journal_filter": {"type": "str", "default": ""},
            "host": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = dict(module.params)
    if p["wait"] <= 0:
        module.fail_json(msg="wait must be above 0 seconds: a pre-check waits for the release's health")
    # What webapp_probe's observe and wait read: one port, asked only its health (no socket unit).
    p.update(host=p["host"] or socket.gethostname(), ports=[p["port"]], check_units=False, watch=[], socket_watch=[])
    precheck(module, p)


if __name__ == "__main__":
    main()
