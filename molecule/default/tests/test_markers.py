"""Deploy markers: the converge's first deploy wrote one line to Loki (release, from, by whom,
result), and the app dashboard's annotation query finds it. Rollbacks and failed deploys:
molecule/releases/tests/test_releases.py."""

from __future__ import annotations

import json
import time

from conftest import PROJECT, app_instances, deploy_markers, hostvars, hosts, instance_release

ANNOTATIONS = json.loads((PROJECT / "roles" / "grafana" / "files" / "dashboards" / "app.json").read_text())["annotations"]


def test_the_deploy_that_made_the_lab_wrote_one_marker():
    """Written into mon1's journal before Fluent Bit or Loki ran there (site.yml deploys first),
    shipped once they did."""
    serving = {instance_release(h, p) for h, p in app_instances()}
    assert len(serving) == 1, serving
    deadline = time.monotonic() + 60
    while not (found := [m for m in deploy_markers() if m["event"] == "deploy" and m["release"] in serving]):
        assert time.monotonic() < deadline, deploy_markers()
        time.sleep(2)
    marker = found[-1]
    assert marker["result"] == "ok" and marker["by"] not in ("", "unknown"), marker
    assert sorted(marker["hosts"]) == hosts("app"), marker
    assert marker["from"] != marker["release"]


def test_the_dashboards_annotation_query_finds_the_markers():
    [annotation] = [a for a in ANNOTATIONS["list"] if a["datasource"]["type"] == "loki"]
    expr = annotation["expr"].replace("$env", hostvars(hosts("monitoring")[0])["deploy_env"])
    assert deploy_markers(expr) == deploy_markers()
    assert deploy_markers(expr)
