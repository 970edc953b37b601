#!/usr/bin/python
"""Ansible module: a service enabled, started and ready, or a failure with its journal, in one step."""

from __future__ import annotations

DOCUMENTATION = r"""
module: systemd_ready
short_description: Enable and start a systemd service and wait until it is ready
description:
  - Runs C(systemctl daemon-reload) when systemd says the unit's files changed since it read them
    (a drop-in written by an interrupted run), enables the unit when it is not, starts it when
    it is not active, then waits for it to be ready - its I(url) answers 200 with a body
    matching I(body), or, without a URL, the unit is active - probing up to I(retries) more
    times, I(delay) seconds apart. A service that does not become ready fails the task with
    the last I(journal_lines) lines of its journal.
  - One module run for what a systemd_service task and a uri (or systemctl is-active) task do.
    The probe is the host's own request to itself: certificates are not checked (readiness is).
  - In check mode, says what it would enable or start and probes nothing.
options:
  name: {description: The unit (nginx.service)., type: str, required: true}
  url: {description: "The readiness URL (empty: the unit being active is enough).", type: str, default: ""}
  body: {description: "A regular expression the answer's body must match (empty: any).", type: str, default: ""}
  retries: {description: Probes after the first before the service counts as failed., type: int, default: 30}
  delay: {description: Seconds between two probes., type: float, default: 1}
  timeout: {description: Seconds one probe may take., type: float, default: 5}
  journal_lines: {description: Lines of the journal shown on failure., type: int, default: 40}
  host: {description: "How the message names this host (the inventory name).", type: str, default: ""}
"""

RETURN = r"""
enabled: {description: Whether the unit was enabled by this run., type: bool, returned: always}
started: {description: Whether the unit was started by this run., type: bool, returned: always}
reloaded: {description: Whether systemd re-read the unit files., type: bool, returned: always}
probes: {description: Probes made until the service was ready., type: int, returned: always}
"""

import re
import socket
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stack_http import get


def systemctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


def show(name: str) -> dict[str, str]:
    out = systemctl("show", name, "--property=LoadState,ActiveState,NeedDaemonReload").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def answer(url: str, body: str, timeout: float) -> str:
    """Why the URL does not show the service ready ('' when it does)."""
    got = get(url, timeout, insecure=True)
    if got.error:
        return got.error
    if got.status != 200:
        return f"answered {got.status}"
    if body and not re.search(body, got.body):
        return f"answered without a body matching {body}"
    return ""


def ready(p: dict) -> str:
    """Why the service is not ready after every probe ('' once it is), and the probes made."""
    why = ""
    for probe in range(p["retries"] + 1):
        if probe:
            time.sleep(p["delay"])
        if p["url"]:
            why = answer(p["url"], p["body"], p["timeout"])
        else:
            state = systemctl("is-active", p["name"]).stdout.strip()
            why = "" if state == "active" else f"is {state or 'unknown'}"
        if not why:
            p["probes"] = probe + 1
            return ""
    p["probes"] = p["retries"] + 1
    return why


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "url": {"type": "str", "default": ""},
            "body": {"type": "str", "default": ""},
            "retries": {"type": "int", "default": 30},
            "delay": {"type": "float", "default": 1},
            "timeout": {"type": "float", "default": 5},
            "journal_lines": {"type": "int", "default": 40},
            "host": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    p["host"] = p["host"] or socket.gethostname()
    unit = show(p["name"])
    if unit.get("LoadState") != "loaded":
        module.fail_json(msg=f"{p['name']} on {p['host']}: no such unit (systemd says {unit.get('LoadState') or 'nothing'})")
    result = {"reloaded": unit.get("NeedDaemonReload") == "yes",
              "enabled": systemctl("is-enabled", p["name"]).returncode != 0,
              "started": unit.get("ActiveState") not in ("active", "activating", "reloading"), "probes": 0}
    changed = result["enabled"] or result["started"]
    if module.check_mode:
        module.exit_json(changed=changed, **result)
    for wanted, args in (("reloaded", ["daemon-reload"]), ("enabled", ["enable", p["name"]]),
                         ("started", ["start", p["name"]])):
        if result[wanted]:
            done = systemctl(*args)
            if done.returncode != 0:
                module.fail_json(msg=f"systemctl {' '.join(args)} on {p['host']} failed: "
                                     f"{done.stderr.strip() or done.stdout.strip()}", changed=changed, **result)
    why = ready(p)
    result["probes"] = p["probes"]
    if why:
        journal = subprocess.run(["journalctl", "--unit", p["name"], "--lines", str(p["journal_lines"]), "--no-pager",
                                  "--output", "cat"], capture_output=True, text=True, check=False).stdout
        what = f"did not answer {p['url']}" + (f" with a body matching {p['body']}" if p["body"] else "") \
            if p["url"] else "did not become active"
        module.fail_json(msg=f"{p['name']} on {p['host']} {what} after {p['probes']} probes ({why}). Its journal:\n{journal}",
                         changed=changed, **result)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
