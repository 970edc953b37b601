"""The lab inventory's hosts (inventories/lab/lab_hosts.yml): lb1, lb2, app1..appN (LAB_APP_HOSTS)
and mon1, each at the address lab/lab gives it, from lab/hosts.py, the one list of the lab's hosts."""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.template import trust_as_template

DOCUMENTATION = r"""
name: lab_hosts
short_description: The local lab's hosts, as many app hosts as LAB_APP_HOSTS says
description:
  - Adds lb1, lb2, app1..appN (N from the environment's LAB_APP_HOSTS, default 2) and mon1 in the
    groups lb, app and monitoring, each with ansible_host "{{ lab_net }}.<octet>" in lab/lab's order.
options:
  plugin:
    description: The name of this plugin.
    required: true
    choices: [lab_hosts]
"""

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import hosts as lab_hosts  # noqa: E402


class InventoryModule(BaseInventoryPlugin):
    NAME = "lab_hosts"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and Path(path).name in ("lab_hosts.yml", "lab_hosts.yaml")

    def parse(self, inventory, loader, path, cache=True):  # noqa: ANN001 (Ansible's signature)
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            found = lab_hosts.hosts(lab_hosts.app_hosts())
        except ValueError as err:
            raise AnsibleParserError(str(err)) from err
        for group in ("lb", "app", "monitoring"):
            inventory.add_group(group)
        for name, group, octet in found:
            inventory.add_host(name, group=group)
            # A template of this repository's own, not data from outside: lab_net is group_vars/all/lab.yml's.
            inventory.set_variable(name, "ansible_host", trust_as_template("{{ lab_net }}.%d" % octet))
