#!/usr/bin/python
"""Ansible module: the app's environment files, written beside the live ones, then put in place."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_env
short_description: Write the app's environment files beside the live ones (.next), then put them in place
description:
  - With I(state=next) (the stage play and each switch batch), makes I(folder) root's, of
    I(group), mode 0750, and writes each file of I(files) as C(<path>.next), root's, of
    I(group), mode 0640, atomically (a temporary file renamed over it) when its content, owner
    or mode differs. Returns I(pending), whether any live file's content differs from its
    C(.next) (read from the files, so a re-run of an interrupted deploy sees it too).
  - With I(state=live) (once the pre-check passed), makes each live file hold its C(.next)
    content, root's, of I(group), mode 0640, in one rename; a missing C(.next) is an error.
  - One module run for what was a folder, a template per file, a stat of the live files and a
    copy per file. In check mode nothing is touched; a I(group) that does not exist yet (a first
    run in check mode) counts as a change.
options:
  folder: {description: The configuration folder the files live in., type: path, required: true}
  group: {description: The app's group, which may read the files., type: str, required: true}
  files:
    description: The live files, each C(path) and (for I(state=next)) C(content).
    type: list
    elements: dict
    required: true
  secret_files:
    description: >-
      Files like I(files) whose content is secret (the module's no_log option: Ansible masks it in
      every output); written the same way, but never shown in a diff. One module run for both kinds.
    type: list
    elements: dict
    default: []
  state: {description: C(next) writes the .next files, C(live) puts them in place., type: str, choices: [next, live], default: next}
"""

RETURN = r"""
written: {description: Paths written or given their owner and mode (or that would be, in check mode)., type: list, returned: always}
pending: {description: Whether a live file differs from its .next (state=next)., type: bool, returned: always}
"""

import grp

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stack_files import converge_file, converge_folder, read_text

FILE_MODE = 0o640
FOLDER_MODE = 0o750
NEXT = ".next"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "folder": {"type": "path", "required": True},
            "group": {"type": "str", "required": True},
            "files": {"type": "list", "elements": "dict", "required": True,
                      "options": {"path": {"type": "path", "required": True},
                                  "content": {"type": "str"}}},
            "secret_files": {"type": "list", "elements": "dict", "default": [],
                             "options": {"path": {"type": "path", "required": True},
                                         "content": {"type": "str", "no_log": True}}},
            "state": {"type": "str", "choices": ["next", "live"], "default": "next"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        gid = grp.getgrnam(p["group"]).gr_gid
    except KeyError:
        if not module.check_mode:
            module.fail_json(msg=f"webapp_env: the group {p['group']!r} (app_group) does not exist on this host")
        gid = -1  # a first run in check mode: the group comes with the install
    written: list[str] = []
    diff: list[dict] = []
    pending = False
    shown = {f["path"] for f in p["files"]}
    files = p["files"] + p["secret_files"]
    if p["state"] == "next":
        missing = [f["path"] for f in files if f["content"] is None]
        if missing:
            module.fail_json(msg=f"webapp_env: no content for {', '.join(missing)}")
        try:
            if converge_folder(p["folder"], FOLDER_MODE, module.check_mode, 0, gid):
                written.append(p["folder"])
        except ValueError as err:
            module.fail_json(msg=f"webapp_env: {err} (app_config_dir)")
        for item in files:
            changed, change = converge_file(item["path"] + NEXT, item["content"], FILE_MODE, module.check_mode,
                                            gid=gid)
            if changed:
                written.append(item["path"] + NEXT)
                diff += [change] if item["path"] in shown else []
            pending = pending or read_text(item["path"]) != item["content"]
    else:
        for item in files:
            content = read_text(item["path"] + NEXT)
            if content is None:
                module.fail_json(msg=f"webapp_env: {item['path']}{NEXT} is missing: state=next writes it first")
            changed, change = converge_file(item["path"], content, FILE_MODE, module.check_mode, gid=gid)
            if changed:
                written.append(item["path"])
                diff += [change] if item["path"] in shown else []
    result = {"changed": bool(written), "written": written, "pending": pending}
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
