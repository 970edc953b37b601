"""The app's own configuration (APP_MESSAGE), read once from the environment into a frozen dataclass.

How the app is served (address, port, release, logs, metrics) is the runner's: STACK_* variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from webapp import __version__


@dataclass(frozen=True)
class Config:
    """The message `GET /` answers and the installed version; immutable once loaded."""

    message: str = "Hello, World!"
    version: str = __version__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Load from `env` (default: os.environ)."""
        env = os.environ if env is None else env
        return cls(message=env.get("APP_MESSAGE", cls.message))
