"""Lookup: who this ansible-playbook run is, and whether a lock's run is gone."""

from __future__ import annotations

DOCUMENTATION = r"""
name: webapp_run
short_description: This run's owner record for the release lock, or whether a holder is abandoned
description:
  - "C(owner) returns this run's record: run_id (the controller and a random token), user,
    controller, pid and ticks (the ansible-playbook process and its start time), started, and
    command: the program, the playbooks and the --limit, never the extra vars (which may hold
    secrets). The run is the ansible-playbook process (the parent of the worker running the lookup);
    lock.yml asks once a run, so every host of the run holds the same record."
  - "C(abandoned), with a holder record and a number of seconds: liveness first. A run of this
    controller is abandoned when its process is gone (or is another process now), whatever its age;
    a run of another controller, whose process cannot be seen from here, when its lock was taken
    more than that many seconds ago."
"""

import getpass
import os
import secrets
import socket
import time
from datetime import datetime, timezone
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

# ansible-playbook's options that take a value (the value is not a playbook), besides --limit.
_VALUED = {"-i", "--inventory", "--inventory-file", "-e", "--extra-vars", "-t", "--tags", "--skip-tags", "-u", "--user",
           "-f", "--forks", "-c", "--connection", "-T", "--timeout", "--vault-id", "--vault-password-file",
           "--vault-pass-file", "-M", "--module-path", "--private-key", "--key-file", "--become-method", "--become-user",
           "--ssh-common-args", "--sftp-extra-args", "--scp-extra-args", "--ssh-extra-args", "--start-at-task",
           "--become-password-file", "--connection-password-file", "--flush-cache-file"}


def _proc(pid: int) -> tuple[str, list[str]] | None:
    """(start time in clock ticks since boot, argv) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except (OSError, IndexError):
        return None
    return fields[19], argv


def command(argv: list[str]) -> str:
    """What a lock shows of a run's command line: the program, its playbooks and its --limit.

    >>> command(["/venv/bin/python", "/venv/bin/ansible-playbook", "-i", "inv", "site.yml", "-e", "pw=x", "-l", "app1"])
    'ansible-playbook site.yml --limit app1'
    """
    words = list(argv)
    while words and "ansible" not in os.path.basename(words[0]):
        words.pop(0)  # the interpreter before the script
    if not words:
        return ""
    kept = [os.path.basename(words[0])]
    args = iter(words[1:])
    for arg in args:
        if arg in ("-l", "--limit"):
            kept += ["--limit", next(args, "")]
        elif arg.startswith("--limit="):
            kept += ["--limit", arg.split("=", 1)[1]]
        elif arg in _VALUED:
            next(args, None)
        elif not arg.startswith("-") and arg.endswith((".yml", ".yaml")):
            kept.append(arg)
    return " ".join(kept)[:500]


def _playbook_pid() -> int:
    """The ansible-playbook process: this worker's parent when it is one, else this process."""
    parent = os.getppid()
    found = _proc(parent)
    return parent if found and any("ansible" in a for a in found[1][:2]) else os.getpid()


def machine_id() -> str:
    """This controller's systemd machine id (two controllers may share a host name, never this)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            continue
    return ""


def owner() -> dict[str, Any]:
    pid = _playbook_pid()
    ticks, argv = _proc(pid) or ("0", [])
    controller = socket.gethostname()
    started = time.time()
    try:
        with open("/proc/uptime", encoding="utf-8") as handle:
            boot = time.time() - float(handle.read().split()[0])
        started = boot + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    return {
        "run_id": f"{controller}:{secrets.token_hex(8)}",
        "user": getpass.getuser(),
        "controller": controller,
        "machine": machine_id(),
        "pid": pid,
        "ticks": ticks,
        "epoch": round(started, 3),
        "started": datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command(argv),
    }


def abandoned(holder: dict[str, Any], stale_after: float, here: str | None = None, now: float | None = None) -> bool:
    """Whether a lock's holder run is gone: seen dead on this controller, or, from another, taken too long ago."""
    if not holder.get("run_id"):
        return False
    if holder.get("machine") and holder.get("machine") == (here if here is not None else machine_id()):
        found = _proc(int(holder["pid"])) if str(holder.get("pid", "")).isdigit() else None
        return found is None or found[0] != str(holder.get("ticks"))
    taken = float(holder.get("taken", 0) or holder.get("epoch", 0) or 0)
    return (now if now is not None else time.time()) - taken > float(stale_after)


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        if not terms or terms[0] not in ("owner", "abandoned"):
            raise AnsibleError("webapp_run takes 'owner' or 'abandoned', HOLDER, SECONDS")
        if terms[0] == "owner":
            return [owner()]
        holder, stale_after = terms[1], terms[2]
        return [abandoned(holder, stale_after)]
