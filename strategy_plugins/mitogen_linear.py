"""Mitogen's `mitogen_linear` strategy, from the `mitogen` package that requirements.txt pins
(ansible.cfg's strategy_plugins; chosen with ANSIBLE_STRATEGY=mitogen_linear).

Ansible's own `linear` order, with each host's tasks run inside one Python interpreter that
Mitogen starts on the host per run, over the run's one SSH connection (through sudo when the
inventory's user is not root), instead of a new interpreter and module upload per task: on the
lab, a no-change `site.yml` used 43 % less CPU (docs/performance.md). Not the default: the whole
`./stack test` has not passed with it yet.

The class is Mitogen's own, imported under its real module name, as the plugin file that Mitogen
ships does (loaded twice under two names, its types would not be one).
"""

from __future__ import annotations

import ansible_mitogen.loaders
import ansible_mitogen.strategy

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):  # type: ignore[misc,valid-type]
    """Ansible's linear strategy, run through Mitogen."""
