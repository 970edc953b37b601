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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stack_files import converge_file, root_owned


def converge(path: str, content: str, check_mode: bool) -> tuple[bool, dict]:
    """(changed, diff) after making path hold content, its folder created."""
    folder = os.path.dirname(path)
    folder_changed = not root_owned(folder, 0o755)
    if folder_changed and not check_mode:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        os.chown(folder, 0, 0)
        os.chmod(folder, 0o755)
    changed, diff = converge_file(path, content, 0o644, check_mode)
    return changed or folder_changed, diff


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}, "content": {"type": "str", "required": True}},
        supports_check_mode=True,
    )
    changed, diff = converge(module.params["path"], module.params["content"], module.check_mode)
    module.exit_json(changed=changed, path=module.params["path"], **({"diff": diff} if changed and module._diff else {}))


if __name__ == "__main__":
    main()
