#!/usr/bin/python
"""Ansible module: what each webapp instance on this host actually serves."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_instances
short_description: Observe the app's instances and say which must restart
description:
  - Reads, for every instance port, its systemd service and socket units and asks its
    health path (I(path)) which release it serves: the runner's C(X-Release) header, on an
    answer whose status is one of I(statuses).
  - An instance is stale when its service is not active, its socket unit is not listening,
    it does not answer with I(release), or it started before any path in I(watch) (or its
    socket before any path in I(socket_watch)) last changed.
  - With I(converge), observes every port and restarts each stale one (its socket anew
    first when that is stale), one at a time, each health-gated by I(wait); an
    instance that does not come up fails the task with the last I(journal_lines) lines of its
    unit's journal that match I(journal_filter). Then every port must answer with I(release).
  - With I(converge) and I(link), first points the C(current) link at I(release)'s folder
    under I(releases_dir) (a new link renamed over the old one: atomic). When an instance does
    not come up on I(release): marks the release failed (I(failed_marker) in its folder),
    points the link back at I(fallback), converges every instance onto it and fails naming both
    releases. On success, a failed mark of I(release) is cleared.
  - With I(converge), first makes I(folders), writes I(records) and removes I(records_absent)
    (the app's state records, as webapp_state does: a rollback's note and marks), before the
    link moves; and once every instance answers with I(release), gives back the host's release
    lock named in I(unlock) (as webapp_lock C(state=absent), removing its C(remove) files
    first): a rollback's record, switch and unlock in one module run. A failed switch keeps the lock and
    the records (a re-run finishes it).
  - A start systemd could not carry out for the host's reasons (exit status 219/CGROUP, or the
    result C(resources): the process never ran the release) is no crash of the release: the
    wait goes on for the unit's C(Restart=).
  - Before each restart the unit's failed state is reset, so systemd's start limit never
    refuses the restart of a switch-back.
  - With I(wait), polls until every port answers with I(release) or the time is up, and
    fails naming the instances that did not.
  - A health probe that fails in any way (refused, reset, timed out, a malformed or cut answer)
    counts as an unhealthy answer with its reason, never as an error of the module.
  - Without I(converge), never changes anything. The pre-check of a release on a spare port is
    webapp_precheck's.
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
  converge: {description: Restart the stale instances one at a time, health-gated; needs I(wait)., type: bool, default: false}
  journal_lines: {description: Lines of a failing instance's journal to show., type: int, default: 40}
  journal_filter: {description: Regular expression (journalctl --grep) the journal lines shown must match; empty shows all., type: str, default: ""}
  link: {description: "The C(current) link to point at I(release) before converging (empty: leave it).", type: path, default: ""}
  releases_dir: {description: Folder of the releases the link points into; required with I(link)., type: path, default: ""}
  fallback: {description: "Release to go back to when I(release) fails (empty: none; with I(link)).", type: str, default: ""}
  failed_marker: {description: Name of the file that marks a release failed., type: str, default: .failed}
  host: {description: "How messages name this host (the inventory name; empty: the host name).", type: str, default: ""}
  path: {description: The app's health path each instance is asked., type: str, default: /health}
  statuses: {description: HTTP statuses of the health path that count as healthy., type: list, elements: int, default: [200]}
  folders: {description: "With I(converge): folders made (root, 0755) or given that owner and mode, before I(records) are written (the state folders they go into).", type: list, elements: path, default: []}
  records: {description: "With I(converge): files written (root, 0644) before the link moves, each C(path), C(content), C(replace) (default false).", type: list, elements: dict, default: []}
  records_absent: {description: "With I(converge): files removed before the link moves.", type: list, elements: path, default: []}
  unlock:
    description: "With I(converge): the release lock given back once every instance answers with I(release): C(path), C(owner) (the run's record, with C(run_id)) and C(remove) (files removed first)."
    type: dict
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
restarted:
  description: Ports restarted by I(converge), in order.
  type: list
  returned: with I(converge)
disabled:
  description: Units of I(ports) (socket and service) that are not enabled.
  type: list
  returned: with I(converge)
extra:
  description: Instance units loaded for ports not in I(ports).
  type: list
  returned: with I(converge)
switched:
  description: Whether the link was pointed at I(release) (or back at I(fallback)).
  type: bool
  returned: with I(converge)
written: {description: "Folders made or given their owner and mode, and records written (or that would be, in check mode).", type: list, returned: with I(converge)}
removed: {description: "Records removed (or that would be, in check mode).", type: list, returned: with I(converge)}
unlocked: {description: "Whether this run gave the lock of I(unlock) back.", type: bool, returned: with I(converge)}
"""

import os
import socket
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stack_files import converge_folder, converge_records, point_link
from ansible.module_utils.webapp_lockfile import attempt
from ansible.module_utils.webapp_probe import host_fault, journal, observe, service_state, stale_message, systemctl, wait


def units(p: dict) -> tuple[list[str], list[str]]:
    """The wanted units that are not enabled, and the instance units loaded for other ports."""
    wanted = [f"{p['unit']}@{port}.{kind}" for port in p["ports"] for kind in ("socket", "service")]
    disabled = [u for u in wanted if subprocess.run(["systemctl", "is-enabled", u], capture_output=True, text=True,
                                                    check=False).stdout.strip() != "enabled"]
    loaded = subprocess.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager",
                             f"{p['unit']}@*.socket", f"{p['unit']}@*.service"],
                            capture_output=True, text=True, check=False).stdout
    extra = [line.split()[0] for line in loaded.splitlines() if line.split() and line.split()[0] not in wanted]
    return disabled, extra


def restart(module: AnsibleModule, p: dict, port: int, remake_socket: bool) -> tuple[list[dict], list[int]]:
    """Restart one instance (its socket anew first when asked) and wait for its health."""
    service = f"{p['unit']}@{port}.service"
    socket_unit = f"{p['unit']}@{port}.socket"
    # A release that crashed at start may have reached the start limit: forget it, or the restart is refused.
    subprocess.run(["systemctl", "reset-failed", service, socket_unit], capture_output=True, check=False)
    if remake_socket:
        systemctl(module, "stop", service)
        systemctl(module, "restart", socket_unit)
    # A restart systemd could not carry out for the host's reasons is waited for (its Restart=).
    systemctl(module, "restart", service, excused=lambda: bool(host_fault(service_state(service))))
    # After the restart returned: the old process's exit is older than this, a crash of the new one newer.
    return wait({**p, "since": time.monotonic()}, [port], crash_ends=True)


class Failed(Exception):
    """An instance did not come up: the message, and what was observed."""

    def __init__(self, msg: str, result: dict) -> None:
        super().__init__(msg)
        self.msg, self.result = msg, result


def settle(module: AnsibleModule, p: dict) -> dict:
    """Restart each stale instance, one at a time, health-gated; then check every one. Raises Failed."""
    found = observe(p)
    stale = [i for i in found if i["stale"]]
    result: dict = {"instances": found, "stale": [i["port"] for i in stale], "restarted": []}
    if module.check_mode or not stale:  # nothing stale: every instance already answers as wanted
        return result
    for inst in stale:
        port = inst["port"]
        seen, still = restart(module, p, port, inst["socket_stale"])
        result["restarted"].append(port)
        if still:
            reasons = ", ".join(seen[0]["reasons"])
            raise Failed(f"{p['unit']}@{port} did not answer its health endpoint with release {p['release']} within "
                         f"{p['wait']} s ({reasons}). Its journal:\n{journal(p, port)}", {**result, "instances": seen})
    found, still = wait(p, p["ports"])
    if still:
        raise Failed(stale_message(p, found), {**result, "instances": found, "stale": still})
    return {**result, "instances": found}


def converge(module: AnsibleModule, p: dict) -> None:
    """Point the link at the release (when asked), converge the instances on it; on failure, go
    back to the fallback release and fail."""
    disabled, extra = units(p)
    made: list[str] = []
    try:
        for path in p["folders"]:
            if converge_folder(path, 0o755, module.check_mode):
                made.append(path)
    except ValueError as error:
        module.fail_json(msg=f"{error}: a state folder of the app must be a folder; no instance was touched",
                         changed=bool(made), written=made)
    written, removed, diff = converge_records(p["records"], p["records_absent"], module.check_mode)
    written = made + written
    recorded = {"written": written, "removed": removed, **({"diff": diff} if module._diff else {})}
    target_dir = os.path.join(p["releases_dir"], p["release"]) if p["link"] else ""
    switched = point_link(p["link"], target_dir, module.check_mode) if p["link"] else False
    try:
        result = settle(module, p)
    except Failed as failure:

        def fail(msg: str, went_back: bool, seen: dict) -> None:
            module.fail_json(msg=f"Release {p['release']} failed on {p['host']}{msg}", changed=True,
                             switched=switched or went_back, disabled=disabled, extra=extra, unlocked=False,
                             **recorded, **seen)

        if not (p["fallback"] and p["fallback"] != p["release"] and p["link"]):
            fail(f"; there was no other release to go back to. Hosts not yet reached keep their release.\n{failure.msg}",
                 False, failure.result)
        with open(os.path.join(target_dir, p["failed_marker"]), "w", encoding="utf-8") as marker:
            marker.write(f"health check failed after the switch from {p['fallback']}\n")
        point_link(p["link"], os.path.join(p["releases_dir"], p["fallback"]))
        try:
            settle(module, {**p, "release": p["fallback"]})
        except Failed as again:
            fail(f", and going back to {p['fallback']} failed too: {again.msg}\nThe first failure: {failure.msg}",
                 True, again.result)
        fail(f"; current is back at {p['fallback']} and every instance answers with it. Hosts not yet reached keep "
             f"their release.\n{failure.msg}", True, failure.result)
    marker = os.path.join(target_dir, p["failed_marker"]) if target_dir else ""
    cleared = bool(marker) and os.path.lexists(marker)
    if cleared and not module.check_mode:
        os.unlink(marker)
    unlocked = False
    if p["unlock"] and not module.check_mode:
        unlocked = attempt(p["unlock"]["path"], "absent", p["unlock"]["owner"], "", tuple(p["unlock"]["remove"]))[0]
    changed = switched or cleared or bool(result["stale"]) or bool(written or removed)
    module.exit_json(changed=changed, switched=switched, disabled=disabled, extra=extra, unlocked=unlocked,
                     **recorded, **result)


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
            "converge": {"type": "bool", "default": False},
            "journal_lines": {"type": "int", "default": 40},
            "journal_filter": {"type": "str", "default": ""},
            "link": {"type": "path", "default": ""},
            "releases_dir": {"type": "path", "default": ""},
            "fallback": {"type": "str", "default": ""},
            "failed_marker": {"type": "str", "default": ".failed"},
            "host": {"type": "str", "default": ""},
            "path": {"type": "str", "default": "/health"},
            "statuses": {"type": "list", "elements": "int", "default": [200]},
            "folders": {"type": "list", "elements": "path", "default": []},
            "records": {"type": "list", "elements": "dict", "default": [],
                        "options": {"path": {"type": "path", "required": True},
                                    "content": {"type": "str", "required": True},
                                    "replace": {"type": "bool", "default": False}}},
            "records_absent": {"type": "list", "elements": "path", "default": []},
            "unlock": {"type": "dict", "options": {"path": {"type": "path", "required": True},
                                                   "owner": {"type": "dict", "required": True},
                                                   "remove": {"type": "list", "elements": "path", "default": []}}},
        },
        supports_check_mode=True,
    )
    p = module.params
    p["host"] = p["host"] or socket.gethostname()
    if p["link"] and not p["releases_dir"]:
        module.fail_json(msg="releases_dir is required with link")
    if (p["folders"] or p["records"] or p["records_absent"] or p["unlock"]) and not p["converge"]:
        module.fail_json(msg="folders, records, records_absent and unlock need converge")
    if p["unlock"] and not p["unlock"]["owner"].get("run_id"):
        module.fail_json(msg="unlock's owner must have a run_id")
    if p["converge"]:
        converge(module, p)
    found, stale = wait(p, p["ports"])
    if p["wait"] and stale:
        module.fail_json(msg=stale_message(p, found), changed=False, instances=found, stale=stale)
    module.exit_json(changed=False, instances=found, stale=stale)


if __name__ == "__main__":
    main()
