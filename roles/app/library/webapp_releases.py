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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.webapp_layout import LAYOUT_KEYS, read


def main() -> None:
    module = AnsibleModule(
        argument_spec={"layout": {"type": "dict", "required": True,
                                  "options": {k: {"type": "str", "required": True} for k in LAYOUT_KEYS}}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **read(module.params["layout"]))


if __name__ == "__main__":
    main()
