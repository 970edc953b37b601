"""The app's layout on a host, read in one pass (webapp_releases, and webapp_lock under the lock):
which release `current` points at, which releases are complete, marked failed or rolled back,
the deploy history, an unfinished rollback's note and which of the app's folders exist."""

from __future__ import annotations

import json
import os
import stat


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _records(folder: str) -> dict[str, dict]:
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return {name: _read_json(os.path.join(folder, name)) for name in names}


def _root_folder(path: str) -> bool:
    """Whether path is a folder (not a link) owned by root:root with mode 0755."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and st.st_gid == 0 and stat.S_IMODE(st.st_mode) == 0o755


LAYOUT_KEYS = ("base", "releases", "artifacts", "current", "state", "deployed", "rolled_back", "rollback_note",
               "shared", "complete_marker", "failed_marker")
# An artifact's file name: webapp-<release id>.tar.gz (scripts/build_release.py).
ARTIFACT_PREFIX, ARTIFACT_SUFFIX = "webapp-", ".tar.gz"


def read(layout: dict) -> dict:
    """Everything webapp_releases returns (its RETURN documents each key)."""
    releases_dir, artifacts_dir, link = layout["releases"], layout["artifacts"], layout["current"]
    current = os.path.basename(os.readlink(link)) if os.path.islink(link) else ""
    names = sorted(os.listdir(releases_dir)) if os.path.isdir(releases_dir) else []
    releases = [n for n in names if os.path.exists(os.path.join(releases_dir, n, layout["complete_marker"]))]
    failed = [n for n in names if os.path.exists(os.path.join(releases_dir, n, layout["failed_marker"]))]
    deployed = [{"release": name, **record} for name, record in _records(layout["deployed"]).items()]
    deployed.sort(key=lambda r: (float(r.get("epoch", 0) or 0), r["release"]))
    artifacts = sorted(n[len(ARTIFACT_PREFIX):-len(ARTIFACT_SUFFIX)]
                       for n in (os.listdir(artifacts_dir) if os.path.isdir(artifacts_dir) else [])
                       if n.startswith(ARTIFACT_PREFIX) and n.endswith(ARTIFACT_SUFFIX))
    folders = (layout["base"], releases_dir, artifacts_dir, layout["state"], layout["deployed"], layout["rolled_back"])
    return {"current": current, "releases": releases, "marked_failed": failed, "folders": names, "artifacts": artifacts,
            "rolled_back": _records(layout["rolled_back"]), "deployed": deployed,
            "rollback": _read_json(layout["rollback_note"]), "dirs": [d for d in folders if _root_folder(d)]}
