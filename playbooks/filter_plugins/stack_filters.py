"""The stack's own Jinja filters, beside the plays that use them (ansible.cfg names this folder too).

app_ports is the one definition of an app host's instance ports: plays, vars files and the
tests (which import this module) all use it.
"""

from __future__ import annotations


def app_ports(base: object, instances: object) -> list[int]:
    """The ports of an app host's instances: `instances` ports from `base` on.

    `{{ app_base_port | app_ports(app_instances) }}` -> [8000, 8001]
    """
    first, count = int(str(base)), int(str(instances))
    if count < 0:
        raise ValueError(f"app_instances must not be negative, got {count}")
    return list(range(first, first + count))


class FilterModule:
    """Filters of this repository."""

    def filters(self) -> dict[str, object]:
        return {"app_ports": app_ports}
