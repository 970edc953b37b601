from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from runner_support import BufferedClient, make_flask_app, plain_app, serve


@pytest.fixture
def client() -> BufferedClient:
    return serve(make_flask_app())


@pytest.fixture
def plain() -> BufferedClient:
    return serve(plain_app)


@pytest.fixture
def json_logs() -> Iterator[None]:
    """Let a test call logs.configure(); put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
