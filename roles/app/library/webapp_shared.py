#!/usr/bin/python
"""Ansible module: what survives releases, kept once and linked into a release."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_shared
short_description: Keep the app's shared folders and files once, and link them into a release
description:
  - Makes each of I(paths) a folder under I(shared_dir) owned by I(owner):I(group) (mode 0750),
    its parents there root's (0755); writes each of I(files) there (root:I(group), mode 0640),
    replacing it atomically only when its content differs.
  - In I(release_dir), points each path at its shared copy with a symbolic link (a new link
    renamed over whatever was there; a folder the release brought itself at that place is
    removed first), making the link's parent folders (root's, 0755) when missing.
  - Never removes anything under I(shared_dir): data outlives releases, rollbacks and the
    clean-up of old releases.
options:
  shared_dir: {description: The folder of what survives releases., type: path, required: true}
  release_dir: {description: The release to link them into., type: path, required: true}
  paths: {description: Folders relative to the release., type: list, elements: str, default: []}
  files: {description: File path relative to the release -> its content., type: dict, default: {}}
  owner: {description: Owner of the shared folders (the app's user)., type: str, required: true}
  group: {description: Group of the shared folders and files (the app's group)., type: str, required: true}
"""

RETURN = r"""
made:
  description: Shared folders made and files written or replaced.
  type: list
  returned: always
linked:
  description: Paths in the release (re)pointed at their shared copy.
  type: list
  returned: always
"""

import grp
import os
import pwd
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stack_files import converge_file, converge_folder, point_link


def inside(base: str, relative: str) -> str:
    """base/relative, refusing any path that would leave base."""
    path = os.path.normpath(os.path.join(base, relative))
    if os.path.isabs(relative) or not path.startswith(base.rstrip("/") + "/"):
        raise ValueError(f"{relative!r} leaves {base}")
    return path


def parents(base: str, path: str, check: bool, made: list[str]) -> None:
    """Make the folders between base and path (root's, 0755)."""
    missing = []
    folder = os.path.dirname(path)
    while folder != base and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for folder in reversed(missing):
        made.append(folder)
        if not check:
            os.mkdir(folder, 0o755)
            os.chown(folder, 0, 0)


def folder(path: str, uid: int, gid: int, check: bool, made: list[str]) -> None:
    """A folder owned uid:gid, mode 0750 (made or put right)."""
    try:
        changed = converge_folder(path, 0o750, check, uid, gid)
    except ValueError:
        raise ValueError(f"{path} exists and is not a folder: move it away, a shared folder goes there") from None
    if changed:
        made.append(path)


def file(path: str, content: str, gid: int, check: bool, made: list[str]) -> None:
    """A file root:gid 0640 with `content`, replaced atomically when it differs."""
    if converge_file(path, content, 0o640, check, gid=gid)[0]:
        made.append(path)


def link(path: str, target: str, check: bool) -> bool:
    """Point path at target (a new link renamed over it; a real folder there removed first)."""
    if os.path.islink(path) and os.readlink(path) == target:
        return False
    if check:
        return True
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    return point_link(path, target)


def converge(p: dict, check: bool) -> dict:
    uid, gid = pwd.getpwnam(p["owner"]).pw_uid, grp.getgrnam(p["group"]).gr_gid
    shared, release = os.path.normpath(p["shared_dir"]), os.path.normpath(p["release_dir"])
    if not os.path.isdir(release):
        raise ValueError(f"the release folder {release} does not exist")
    made: list[str] = []
    linked: list[str] = []
    if not os.path.isdir(shared):
        made.append(shared)
        if not check:
            os.makedirs(shared, 0o755, exist_ok=True)
    items = [(path, None) for path in p["paths"]] + sorted(p["files"].items())
    for relative, content in items:
        relative = str(relative).rstrip("/")
        kept, there = inside(shared, relative), inside(release, relative)
        parents(shared, kept, check, made)
        if content is None:
            folder(kept, uid, gid, check, made)
        else:
            file(kept, str(content), gid, check, made)
        parents(release, there, check, made)
        if link(there, kept, check):
            linked.append(relative)
    return {"made": made, "linked": linked}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "shared_dir": {"type": "path", "required": True},
            "release_dir": {"type": "path", "required": True},
            "paths": {"type": "list", "elements": "str", "default": []},
            "files": {"type": "dict", "default": {}},
            "owner": {"type": "str", "required": True},
            "group": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    try:
        result = converge(module.params, module.check_mode)
    except (ValueError, KeyError, OSError) as err:
        module.fail_json(msg=f"shared paths of {module.params['release_dir']}: {err}")
    module.exit_json(changed=bool(result["made"] or result["linked"]), **result)


if __name__ == "__main__":
    main()
