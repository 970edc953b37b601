#!/usr/bin/python
"""Ansible module: the per-host lock that deploys and rollbacks hold while they change a host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_lock
short_description: Take, take over or give back the host's release lock
description:
  - The lock is a JSON file (owner, command, start time, run id, when it was taken) created
    atomically (O_EXCL), readable by root only (mode 0600). Every read-modify-write happens
    under an exclusive flock of a guard file (module_utils/webapp_lockfile.py, which
    webapp_instances uses to give the lock back at the end of a rollback's switch).
  - C(state=present) takes the lock, waiting up to I(wait) seconds for another holder to
    give it back; when another run holds it, returns C(acquired=false) and the holder.
    With I(take_over) set to the holder's run id (the caller found that run dead), the
    lock passes to I(owner) only if that run still holds it.
  - C(state=absent) gives the lock back when I(owner)'s run holds it, first removing the files
    named in I(remove) (the note of a rollback under way), so the run's last change and the
    lock's release are one step; a lock another run holds leaves them alone.
  - With I(layout), a lock taken (or already held) also returns the host's releases as
    webapp_releases reads them, read under the lock in the same module run: a run that waited
    for another reads what that run left.
  - In check mode the lock is neither taken nor given back; with I(layout) the releases are read.
options:
  path: {description: The lock file., type: path, required: true}
  state: {description: Take or give back., type: str, choices: [present, absent], default: present}
  owner: {description: "The holder's record; must have C(run_id)."  , type: dict, required: true}
  wait: {description: Seconds to wait for another holder., type: float, default: 0}
  take_over: {description: Run id of a dead holder whose lock may be taken over., type: str, default: ""}
  remove: {description: "With C(state=absent): files removed (when present) before the lock is given back.", type: list, elements: path, default: []}
  layout: {description: "With C(state=present): the app's layout (as webapp_releases takes it), read once the lock is held.", type: dict}
"""

RETURN = r"""
acquired: {description: Whether I(owner) holds the lock now., type: bool, returned: state=present}
holder: {description: The record of the run that holds the lock (I(owner) when acquired)., type: dict, returned: always}
releases: {description: "What webapp_releases returns, read under the lock.", type: dict, returned: "with I(layout), when acquired or in check mode"}
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.webapp_layout import LAYOUT_KEYS, read
from ansible.module_utils.webapp_lockfile import attempt, read_holder


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "dict", "required": True},
            "wait": {"type": "float", "default": 0},
            "take_over": {"type": "str", "default": ""},
            "remove": {"type": "list", "elements": "path", "default": []},
            "layout": {"type": "dict", "options": {k: {"type": "str", "required": True} for k in LAYOUT_KEYS}},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["owner"].get("run_id"):
        module.fail_json(msg="owner must have a run_id")
    if module.check_mode:
        result = {"changed": False, "acquired": False, "holder": read_holder(p["path"])}
        if p["layout"] and p["state"] == "present":
            result["releases"] = read(p["layout"])
        module.exit_json(**result)
    os.makedirs(os.path.dirname(p["path"]), exist_ok=True)
    deadline = time.monotonic() + p["wait"]
    while True:
        changed, acquired, holder = attempt(p["path"], p["state"], p["owner"], p["take_over"], tuple(p["remove"]))
        if p["state"] == "absent" or acquired or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    result = {"changed": changed, "acquired": acquired, "holder": holder}
    if p["layout"] and acquired:
        result["releases"] = read(p["layout"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
