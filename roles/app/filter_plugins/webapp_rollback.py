"""Filter: the one release a rollback sends every app host to, from what each host holds."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any


def _built_at(release: str) -> float:
    """The UTC build time a release id starts with (<YYYYMMDDTHHMMSSZ>-<revision>), 0 if none."""
    try:
        return datetime.strptime(release.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


def _order(states: dict[str, dict[str, Any]]) -> list[str]:
    """Releases in the order the fleet was deployed to them: each at its latest deploy
    time on any host, a release no deploy recorded at its build time."""
    when: dict[str, float] = {}
    for state in states.values():
        for release in state.get("releases", []):
            when.setdefault(release, 0.0)
        for record in state.get("deployed", []):
            release = record.get("release", "")
            when[release] = max(when.get(release, 0.0), float(record.get("epoch", 0) or 0))
    return sorted(when, key=lambda r: (when[r] or _built_at(r), r))


def webapp_rollback_plan(states: dict[str, dict[str, Any]], release: str = "") -> dict[str, Any]:
    """Plan a rollback of the hosts in `states` (host -> webapp_releases result).

    `release` names the target; empty means: the release of an unfinished rollback when
    one is recorded, else the newest release the fleet was deployed to before the newest
    release any host serves, skipping releases marked failed or rolled back.
    Returns target, why, from (the releases hosts leave) and errors (one line a host
    that cannot go to the target; empty when every host can).
    """
    bad = {r for s in states.values() for r in s.get("marked_failed", [])}
    bad |= {r for s in states.values() for r in s.get("rolled_back", {})}
    currents = {s.get("current", "") for s in states.values()} - {""}
    order = _order(states)
    unfinished = sorted((s["rollback"] for s in states.values() if s.get("rollback", {}).get("target")),
                        key=lambda r: float(r.get("epoch", 0) or 0))
    if release:
        target, why = release, "named with -e release"
    elif unfinished:
        target, why = unfinished[-1]["target"], "finishing the rollback started by {} at {}".format(
            unfinished[-1].get("by", "?"), unfinished[-1].get("at", "?"))
    elif not currents:
        target, why = "", "no host has a current release"
    else:
        newest = max(currents, key=lambda r: order.index(r) if r in order else -1)
        before = order[: order.index(newest)] if newest in order else []
        good = [r for r in before if r not in bad]
        target = good[-1] if good else ""
        why = f"the release the fleet was deployed to before {newest}" if target else \
            f"nothing good was deployed before {newest}"
    errors = []
    for host, state in sorted(states.items()):
        held = ", ".join(state.get("releases", [])) or "none"
        if not target:
            errors.append(f"{host}: nothing to roll back to ({why}); it holds: {held}")
        elif target not in state.get("releases", []):
            errors.append(f"{host}: release {target} does not exist (complete) there; it holds: {held}")
        elif target in state.get("marked_failed", []):
            errors.append(f"{host}: release {target} is marked failed there; it holds: {held}")
    leave = sorted(currents - {target}) if target else []
    return {"target": target, "why": why, "from": leave, "errors": errors}


def webapp_release_lines(state: dict[str, Any]) -> list[str]:
    """One line per release of a host (a webapp_releases result), oldest first: current, failed,
    rolled back by whom, when and to which release, and when the fleet was deployed to it."""
    lines = []
    deployed: dict[str, Any] = {}
    for record in state.get("deployed", []):
        deployed.setdefault(record.get("release"), record)
    for release in state.get("releases", []):
        line = release
        if release == state.get("current"):
            line += " current"
        if release in state.get("marked_failed", []):
            line += " failed"
        mark = state.get("rolled_back", {}).get(release)
        if mark is not None:
            line += " rolled back by {} at {} to {}".format(mark.get("by", "?"), mark.get("at", "?"), mark.get("to", "?"))
        if release in deployed:
            line += " (deployed {})".format(deployed[release].get("at", "?"))
        lines.append(line)
    return lines or ["no release"]


def webapp_rollback_records(plan: dict[str, Any], state: dict[str, Any], record: dict[str, Any],
                            layout: dict[str, Any]) -> list[dict[str, Any]]:
    """The files a rollback writes on a host before any instance moves (webapp_state's files):
    the note of the rollback under way (when the host moves or the fleet leaves releases), and
    a rolled-back mark (by, at, to) of each release the fleet leaves."""
    files = []
    if state.get("current", "") != plan["target"] or plan["from"]:
        files.append({"path": layout["rollback_note"],
                      "replace": state.get("rollback", {}).get("target", "") != plan["target"],
                      "content": json.dumps({**record, "target": plan["target"], "from": plan["from"]}) + "\n"})
    for release in plan["from"]:
        files.append({"path": f"{layout['rolled_back']}/{release}",
                      "content": json.dumps({**record, "to": plan["target"]}) + "\n"})
    return files


class FilterModule:
    """webapp_rollback_plan, webapp_release_lines, webapp_rollback_records"""

    def filters(self) -> dict[str, Any]:
        return {"webapp_rollback_plan": webapp_rollback_plan, "webapp_release_lines": webapp_release_lines,
                "webapp_rollback_records": webapp_rollback_records}
