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
  base_dir: {description: The app's base folder (releases/, state/ and the current link)., type: path, required: true}
  failed_marker: {description: Name of the file that marks a release failed., type: str, default: .failed}
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


def read(base_dir: str, failed_marker: str) -> dict:
    releases_dir = os.path.join(base_dir, "releases")
    state_dir = os.path.join(base_dir, "state")
    link = os.path.join(base_dir, "current")
    current = os.path.basename(os.readlink(link)) if os.path.islink(link) else ""
    names = sorted(os.listdir(releases_dir)) if os.path.isdir(releases_dir) else []
    releases = [n for n in names if os.path.exists(os.path.join(releases_dir, n, ".complete"))]
    failed = [n for n in names if os.path.exists(os.path.join(releases_dir, n, failed_marker))]
    deployed = [{"release": name, **record} for name, record in _records(os.path.join(state_dir, "deployed")).items()]
    deployed.sort(key=lambda r: (float(r.get("epoch", 0)), r["release"]))
    rollback = _read_json(os.path.join(state_dir, "rollback.json"))
    artifacts_dir = os.path.join(base_dir, "artifacts")
    artifacts = sorted(n[len("webapp-"):-len(".tar.gz")] for n in (os.listdir(artifacts_dir) if os.path.isdir(artifacts_dir) else [])
                       if n.startswith("webapp-") and n.endswith(".tar.gz"))
    return {"current": current, "releases": releases, "marked_failed": failed, "folders": names, "artifacts": artifacts,
            "rolled_back": _records(os.path.join(state_dir, "rolled-back")), "deployed": deployed, "rollback": rollback,
            "dirs": [d for d in (base_dir, releases_dir, artifacts_dir, state_dir, os.path.join(state_dir, "deployed"),
                                 os.path.join(state_dir, "rolled-back")) if _root_folder(d)]}


def main() -> None:
    module = AnsibleModule(
        argument_spec={"base_dir": {"type": "path", "required": True},
                       "failed_marker": {"type": "str", "default": ".failed"}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **read(module.params["base_dir"], module.params["failed_marker"]))


if __name__ == "__main__":
    main()
