"""Lookup: who this ansible-playbook run is, and whether a lock's run is gone."""

from __future__ import annotations

DOCUMENTATION = r"""
name: webapp_run
short_description: This run's owner record for the release lock, or whether a holder is abandoned
description:
  - "C(owner) returns this run's record (run_id, user, controller, pid, started, command).
    The run is the ansible-playbook process (the parent of the worker running the lookup)."
  - "C(abandoned), with a holder record and a number of seconds, returns true when that
    run was started on this controller and its process is gone (or is another process
    now), or when it started more than that many seconds ago."
"""

import getpass
import os
import socket
import time
from datetime import datetime, timezone
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase


def _proc(pid: int) -> tuple[str, str] | None:
    """(start time in clock ticks since boot, command line) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, IndexError):
        return None
    return fields[19], command


def _playbook_pid() -> int:
    """The ansible-playbook process: this worker's parent when it is one, else this process."""
    parent = os.getppid()
    found = _proc(parent)
    return parent if found and "ansible" in found[1] else os.getpid()


def owner() -> dict[str, Any]:
    pid = _playbook_pid()
    ticks, command = _proc(pid) or ("0", "")
    controller = socket.gethostname()
    started = time.time()
    try:
        with open("/proc/uptime", encoding="utf-8") as handle:
            boot = time.time() - float(handle.read().split()[0])
        started = boot + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    return {
        "run_id": f"{controller}:{pid}:{ticks}",
        "user": getpass.getuser(),
        "controller": controller,
        "pid": pid,
        "epoch": round(started, 3),
        "started": datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command[:500],
    }


def abandoned(holder: dict[str, Any], stale_after: float) -> bool:
    if not holder.get("run_id"):
        return False
    if time.time() - float(holder.get("epoch", 0) or 0) > float(stale_after):
        return True
    controller, _, rest = str(holder["run_id"]).partition(":")
    if controller != socket.gethostname():
        return False
    pid, _, ticks = rest.partition(":")
    found = _proc(int(pid)) if pid.isdigit() else None
    return found is None or found[0] != ticks


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        if not terms or terms[0] not in ("owner", "abandoned"):
            raise AnsibleError("webapp_run takes 'owner' or 'abandoned', HOLDER, SECONDS")
        if terms[0] == "owner":
            return [owner()]
        holder, stale_after = terms[1], terms[2]
        return [abandoned(holder, stale_after)]
