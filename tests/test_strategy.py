"""The repository's strategy plugin: Mitogen's linear strategy, offered by ansible.cfg."""

from __future__ import annotations

import configparser
import importlib.util
import ansible.plugins.strategy.linear
import ansible_mitogen.strategy

from tests.conftest import ROOT


def config() -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "ansible.cfg")
    return parser["defaults"]


def test_ansible_cfg_offers_mitogen_linear_and_keeps_ansibles_own_strategy_the_default():
    assert "strategy" not in config(), "Mitogen's strategy is not the default until ./stack test passes with it"
    assert (ROOT / config()["strategy_plugins"] / "mitogen_linear.py").is_file()


def test_the_strategy_is_ansibles_linear_run_through_mitogen():
    spec = importlib.util.spec_from_file_location("mitogen_linear", ROOT / "strategy_plugins" / "mitogen_linear.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mro = module.StrategyModule.__mro__
    assert ansible_mitogen.strategy.StrategyMixin in mro
    assert ansible.plugins.strategy.linear.StrategyModule in mro
