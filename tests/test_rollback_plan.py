"""The rule that picks the one release a rollback sends every app host to
(roles/app/filter_plugins/webapp_rollback.py), on the states hosts report."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "roles" / "app" / "filter_plugins"))
from webapp_rollback import webapp_rollback_plan as plan  # noqa: E402

R1, R2, R3 = "20261101T000000Z-aaa", "20261102T000000Z-bbb", "20261103T000000Z-ccc"
EPOCH = 1_790_000_000.0


def host(current: str, deployed: list[str], **extra: object) -> dict:
    return {"current": current, "releases": [R1, R2, R3],
            "deployed": [{"release": r, "epoch": EPOCH + i} for i, r in enumerate(deployed)], **extra}


def test_the_release_deployed_before_the_newest_one_served():
    result = plan({"app1": host(R3, [R1, R2, R3]), "app2": host(R3, [R1, R2, R3])})
    assert (result["target"], result["from"], result["errors"]) == (R2, [R3], [])


def test_a_mixed_fleet_goes_to_one_release():
    # a deploy of R3 stopped after app1: app1 on R3, app2 on R2
    result = plan({"app1": host(R3, [R1, R2, R3]), "app2": host(R2, [R1, R2])})
    assert (result["target"], result["from"], result["errors"]) == (R2, [R3], [])


def test_a_release_rolled_back_or_failed_is_skipped():
    marks = {"rolled_back": {R2: {"to": R1}}}
    assert plan({"app1": host(R3, [R1, R2, R3], **marks)})["target"] == R1
    assert plan({"app1": host(R3, [R1, R2, R3], marked_failed=[R2])})["target"] == R1


def test_an_unfinished_rollback_is_finished():
    note = {"rollback": {"target": R2, "by": "root@ci", "at": "then", "epoch": EPOCH}}
    result = plan({"app1": host(R2, [R1, R2, R3]), "app2": host(R3, [R1, R2, R3], **note)})
    assert result["target"] == R2 and "finishing the rollback" in result["why"]


def test_a_named_release_wins_and_a_host_without_it_refuses_naming_its_releases():
    lacking = {**host(R3, [R1, R2, R3]), "releases": [R2, R3]}
    result = plan({"app1": host(R3, [R1, R2, R3]), "app2": lacking}, R1)
    assert result["target"] == R1
    assert result["errors"] == [f"app2: release {R1} does not exist (complete) there; it holds: {R2}, {R3}"]


def test_nothing_before_the_first_release_refuses():
    result = plan({"app1": host(R1, [R1])})
    assert result["target"] == "" and result["errors"] and "nothing to roll back to" in result["errors"][0]


def test_hosts_without_deploy_records_order_releases_by_build_time():
    result = plan({"app1": {"current": R3, "releases": [R1, R2, R3]}})
    assert result["target"] == R2
