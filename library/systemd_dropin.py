#!/usr/bin/python
"""Ansible module: one systemd drop-in file, its folder created when missing, in one step."""

from __future__ import annotations

DOCUMENTATION = r"""
module: systemd_dropin
short_description: Write a unit's drop-in file, creating the unit's drop-in folder
description:
  - Writes I(content) to I(path) (a file in a unit's C(.d) folder) atomically (a temporary file
    renamed over it), owned by root, mode 0644, when the file is missing or differs; creates
    its folder (root, mode 0755) when missing. Modes and owners of an unchanged file are set
    right too.
  - One module run for what a file task and a template task (a stat and a copy) do.
  - Supports check mode and diff mode; never runs C(systemctl daemon-reload) (the caller's
    handler does, with the restart its change needs).
options:
  path: {description: The drop-in file (/etc/systemd/system/<unit>.d/<name>.conf)., type: path, required: true}
  content: {description: The file's content., type: str, required: true}
"""

RETURN = r"""
path: {description: The drop-in file., type: str, returned: always}
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stack_files import replace_file


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _owned(path: str, mode: int) -> bool:
    """Whether path is root's with this mode (False when missing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_uid == 0 and st.st_gid == 0 and stat.S_IMODE(st.st_mode) == mode


def converge(path: str, content: str, check_mode: bool) -> tuple[bool, dict]:
    """(changed, diff) after making path hold content, its folder created."""
    folder = os.path.dirname(path)
    old = _read(path)
    changed = old != content or not _owned(path, 0o644) or not _owned(folder, 0o755)
    diff = {"before_header": path, "after_header": path, "before": old or "", "after": content}
    if check_mode or not changed:
        return changed, diff
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o755, exist_ok=True)
    os.chown(folder, 0, 0)
    os.chmod(folder, 0o755)
    if old != content:
        replace_file(path, content, 0o644)
    else:
        os.chown(path, 0, 0)
        os.chmod(path, 0o644)
    return True, diff


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}, "content": {"type": "str", "required": True}},
        supports_check_mode=True,
    )
    changed, diff = converge(module.params["path"], module.params["content"], module.check_mode)
    module.exit_json(changed=changed, path=module.params["path"], **({"diff": diff} if changed and module._diff else {}))


if __name__ == "__main__":
    main()
