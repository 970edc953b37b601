#!/usr/bin/python
"""Ansible module: the releases on this host and what the deploys recorded about them."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_releases
short_description: Read the app's releases, marks and deploy history on a host
description:
  - Reads, in one pass, which release C(current) points at, which releases are complete,
    which a deploy marked failed, which a rollback marked rolled back (with who and when),
    when each release was deployed, and an unfinished rollback's record.
  - Never changes anything.
options:
  layout:
    description:
      - "The app's layout (the role's _app_layout): folders C(base), C(releases), C(artifacts), C(state),
        C(deployed), C(rolled_back), C(shared), the C(current) link, the C(rollback_note) file and the names of the
        C(complete_marker) and C(failed_marker) files."
    type: dict
    required: true
"""

RETURN = r"""
current: {description: Release id C(current) points at; empty when none., type: str, returned: always}
releases: {description: Complete release ids, oldest first., type: list, returned: always}
marked_failed: {description: Release ids a deploy marked failed (not "failed", which Ansible reads as the task failing)., type: list, returned: always}
folders: {description: Every folder under releases/, complete or not., type: list, returned: always}
artifacts: {description: Release ids whose artifact is under artifacts/., type: list, returned: always}
rolled_back: {description: Release id to the record of the rollback away from it., type: dict, returned: always}
deployed: {description: Deploy records (release, epoch, at, by, from), oldest first., type: list, returned: always}
rollback: {description: The record of a rollback not yet finished on this host, or an empty dict., type: dict, returned: always}
dirs: {description: "The app's folders (base, releases/, artifacts/, state/, state/deployed, state/rolled-back) that exist as root:root 0755.", type: list, returned: always}
"""

import json
import os
import stat

from ansible.module_utils.basic import AnsibleModule


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


def main() -> None:
    module = AnsibleModule(
        argument_spec={"layout": {"type": "dict", "required": True,
                                  "options": {k: {"type": "str", "required": True} for k in LAYOUT_KEYS}}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **read(module.params["layout"]))


if __name__ == "__main__":
    main()
