from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from webapp.app import create_app
from webapp.config import Config

RELEASE = "20260101T000000Z-abc1234"


def sample(name: str, **labels: str) -> float:
    """A sample of the global registry, 0.0 when the series does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def app() -> Flask:
    return create_app(Config(message="Hello, World!", release=RELEASE))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def json_logs() -> Iterator[None]:
    """Let a test call logs.configure(); put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
