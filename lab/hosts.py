#!/usr/bin/env python3
"""The local lab's hosts, in the order lab/lab gives them addresses (host i of the list: .(11+i)
of LAB_NET; .10 is the load balancers' floating address): lb1, app1, app2, mon1, lb2, then
app3..appN for LAB_APP_HOSTS=N (default 2; 1 leaves app2 out). The one list of the lab's
hosts: lab/lab prints it (`python3 lab/hosts.py`), the lab inventory's plugin
(inventory_plugins/lab_hosts.py) reads it.
"""

from __future__ import annotations

import os
import sys

GROUPS = {"lb": "lb", "app": "app", "mon": "monitoring"}


def app_hosts(environ: dict[str, str] | None = None) -> int:
    """LAB_APP_HOSTS from the environment (default 2), checked."""
    raw = (os.environ if environ is None else environ).get("LAB_APP_HOSTS", "") or "2"
    if not raw.isdigit() or not 1 <= int(raw) <= 40:
        raise ValueError(f"LAB_APP_HOSTS must be a number of app hosts from 1 to 40, is {raw!r}")
    return int(raw)


def hosts(apps: int) -> list[tuple[str, str, int]]:
    """(name, group, last octet) of every lab host, in address order."""
    names = ["lb1", "app1", "app2", "mon1", "lb2"] + [f"app{n}" for n in range(3, apps + 1)]
    if apps < 2:
        names.remove("app2")
    return [(name, GROUPS[name.rstrip("0123456789")], 11 + i) for i, name in enumerate(names)]


if __name__ == "__main__":
    try:
        print(" ".join(name for name, _, _ in hosts(app_hosts())))
    except ValueError as err:
        sys.exit(str(err))
