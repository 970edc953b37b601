#!/usr/bin/env python3
"""The local lab's hosts, in the order lab/lab gives them addresses (host i of the list: .(11+i)
of LAB_NET; .10 is the load balancers' floating address): lb1, app1, app2, mon1, lb2, then
app3..appN for LAB_APP_HOSTS=N (default 2; 1 leaves app2 out). The one list of the lab's
hosts: lab/lab prints it (`python3 lab/hosts.py`), the lab inventory's plugin
(inventory_plugins/lab_hosts.py) reads it.

Each host's Debian release (suite), as a fleet in the middle of an upgrade has them: lb1, app1
and mon1 on Debian 13 (trixie), lb2 and app2 on Debian 12 (bookworm), app3.. alternating
(odd trixie, even bookworm). LAB_SUITE=<suite> gives every host one release; LAB_SUITES="lb1=trixie
app2=bookworm ..." sets single hosts over either. `python3 lab/hosts.py --suites [NAME...]` prints
`name=suite` lines for lab/lab (names not in the list take LAB_SUITE, else the first default).
"""

from __future__ import annotations

import os
import re
import sys

GROUPS = {"lb": "lb", "app": "app", "mon": "monitoring"}
# The Debian releases the roles support, newest first (each role's meta/main.yml names them).
SUITES = ("trixie", "bookworm")
_DEFAULT_SUITES = {"lb1": "trixie", "app1": "trixie", "mon1": "trixie", "lb2": "bookworm", "app2": "bookworm"}


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


def default_suite(name: str) -> str:
    """The release a host gets when nothing is set: the mixed fleet above."""
    if name in _DEFAULT_SUITES:
        return _DEFAULT_SUITES[name]
    number = re.fullmatch(r"app(\d+)", name)
    if number:
        return SUITES[0] if int(number.group(1)) % 2 else SUITES[1]
    return SUITES[0]


def _check_suite(suite: str, where: str) -> str:
    if suite not in SUITES:
        raise ValueError(f"{where}: release {suite!r} is not one the lab makes ({', '.join(SUITES)})")
    return suite


def suites(names: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """Each host's release: LAB_SUITES' own setting, else LAB_SUITE, else the default mix; checked."""
    env = os.environ if environ is None else environ
    every = env.get("LAB_SUITE", "")
    found = {name: _check_suite(every, "LAB_SUITE") if every else default_suite(name) for name in names}
    for item in env.get("LAB_SUITES", "").split():
        name, sep, suite = item.partition("=")
        if not sep or name not in found:
            raise ValueError(f"LAB_SUITES: {item!r} is not HOST=SUITE for a host of this lab ({' '.join(names)})")
        found[name] = _check_suite(suite, f"LAB_SUITES {item!r}")
    return found


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["--suites"]:
            names = sys.argv[2:] or [name for name, _, _ in hosts(app_hosts())]
            print("\n".join(f"{name}={suite}" for name, suite in suites(names).items()))
        else:
            print(" ".join(name for name, _, _ in hosts(app_hosts())))
    except ValueError as err:
        sys.exit(str(err))
