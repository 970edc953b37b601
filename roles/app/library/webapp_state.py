#!/usr/bin/python
"""Ansible module: write and remove the app's small state records in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_state
short_description: Write and remove the app's state records (deploy history, rollback notes and marks)
description:
  - Writes each file of I(files) atomically (a temporary file renamed over it), root-owned,
    mode 0644, when it is missing, or when its content differs and I(replace) is true; an
    existing file of another owner or mode is given root and 0644 (its content kept unless
    replaced); then removes each path of I(absent) that exists.
  - One task for what would otherwise be several copy, template and file tasks; with --diff it
    shows each file's change.
options:
  files:
    description: Files to write, each C(path), C(content) and C(replace) (default false, keep an existing file).
    type: list
    elements: dict
    default: []
  absent: {description: Files to remove., type: list, elements: path, default: []}
"""

RETURN = r"""
written: {description: Paths written or given root and 0644 (or that would be, in check mode)., type: list, returned: always}
removed: {description: Paths removed (or that would be, in check mode)., type: list, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stack_files import converge_records


MODE = 0o644


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "default": [],
                      "options": {"path": {"type": "path", "required": True},
                                  "content": {"type": "str", "required": True},
                                  "replace": {"type": "bool", "default": False}}},
            "absent": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    written, removed, diff = converge_records(module.params["files"], module.params["absent"], module.check_mode, MODE)
    result = {"changed": bool(written or removed), "written": written, "removed": removed}
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
