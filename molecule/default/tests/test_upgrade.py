"""A rolling OS upgrade, host by host, as operators move a fleet from Debian 12 to Debian 13: an
app host on Debian 12 is replaced under load by a fresh Debian 13 host of the same name and address
(`lab/lab rebuild`, as a rebuild from a new image does), then `site.yml` brings it back into service
with the fleet's current release, built for its Python 3.13 from the same artifact, with no failed
request through the load balancers. Runs after every other test (it leaves that host on Debian 13).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import (PROJECT, address, app_ports, get_from, hosts, instance_release, journal, playbook, recap,
                      release, served_by, steady_load)

LBS = hosts("lb")
FROM, TO = "bookworm", "trixie"
PYTHONS = {"bookworm": "3.11", "trixie": "3.13"}


@pytest.mark.disruptive(100)
def test_an_app_host_rebuilt_on_debian_13_under_load_rejoins_with_the_current_release(infra):
    olds = [h for h in hosts("app") if release(h) == FROM]
    if not olds:
        pytest.skip(f"no app host on {FROM} in this lab (LAB_SUITE/LAB_SUITES)")
    victim = olds[-1]
    others = [h for h in hosts("app") if h != victim]
    current = {instance_release(h, p) for h in others for p in app_ports(h)}
    assert len(current) == 1, f"the other app hosts serve different releases: {current}"
    current = current.pop()
    backends = {f"{address(victim)}:{p}" for p in app_ports(victim)}

    load = steady_load(max_seconds=1500).start()
    try:
        time.sleep(3)
        rebuilt = subprocess.run([str(PROJECT / "lab" / "lab"), "rebuild", victim, TO], env=os.environ,
                                 capture_output=True, text=True, timeout=600)
        assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
        release.cache_clear()  # a new host under the old name
        assert release(victim) == TO
        site = playbook("site.yml", timeout=1800)
        assert site.returncode == 0, site.stdout[-6000:] + site.stderr[-2000:]
        rejoined = served_by(infra, backends)
        time.sleep(2)
    finally:
        result = load.stop()
    print(f"{victim} rebuilt on {TO} and brought back by site.yml under load: {result.summary()}; "
          f"site.yml recap {recap(site.stdout).get(victim)}")
    assert backends <= rejoined, f"{victim}'s instances {backends - rejoined} are not in the load balancers again"
    assert result.requests > 1000, result.summary()
    assert result.failures == [], result.summary()

    # The fleet's current release, installed for the new host's own Python from the same artifact.
    host = infra(victim)
    for p in app_ports(victim):
        assert instance_release(victim, p) == current, journal(host, f"webapp@{p}")
        assert get_from(LBS[0], f"http://{address(victim)}:{p}/health").status == 200
    python = host.check_output("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    assert python == PYTHONS[TO]
    folder = host.check_output("readlink -f /opt/webapp/current")
    assert host.file(f"{folder}/venv/lib/python{python}").is_directory, host.check_output(f"ls {folder}/venv/lib")
    assert json.loads(host.file(f"{folder}/release.json").content_string)["release_id"] == current
