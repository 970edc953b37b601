from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from stack_runner.loader import LoadError, load

_names = itertools.count()

APP = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain"]


class Holder:
    app = staticmethod(app)


holder = Holder()


def create_app():
    return app


def broken_factory():
    raise RuntimeError("no database")


not_callable = 42


def returns_nothing():
    return None
'''


def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str = APP) -> str:
    """A throwaway module of `source` importable under a fresh name; its name."""
    name = f"tiny_wsgi_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("attr", ["app", "create_app()", "holder.app", "Holder.app"])
def test_loads_an_attribute_a_factory_or_a_dotted_attribute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            attr: str) -> None:
    name = module(tmp_path, monkeypatch)
    loaded = load(f"{name}:{attr}")
    assert loaded({}, lambda *a: None) == [b"plain"]


def test_loads_from_a_package_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tinypkg").mkdir()
    (tmp_path / "tinypkg" / "__init__.py").write_text("")
    (tmp_path / "tinypkg" / "wsgi.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load(" tinypkg.wsgi:create_app() ")({}, lambda *a: None) == [b"plain"]


def test_a_flask_factory() -> None:
    from flask import Flask
    assert isinstance(load("flask:Flask"), type)  # a class is callable: the loader does not judge further
    assert isinstance(load("runner_support:make_flask_app()"), Flask)


@pytest.mark.parametrize(("attr", "reason"), [
    ("", "must be module:attribute or module:factory()"),
    ("nocolon", "must be module:attribute or module:factory()"),
    ("{module}:app()x", "must be module:attribute or module:factory()"),
    ("{module}:create_app(1)", "must be module:attribute or module:factory()"),
    ("{module}:", "must be module:attribute or module:factory()"),
    ("no_such_module_anywhere:app", "cannot import module 'no_such_module_anywhere': ModuleNotFoundError"),
    ("{module}:missing", "the module has no attribute 'missing'"),
    ("{module}:holder.missing", "holder has no attribute 'missing'"),
    ("{module}:broken_factory()", "raised RuntimeError: no database"),
    ("{module}:not_callable", "a int is not callable"),
    ("{module}:not_callable()", "raised TypeError"),
    ("{module}:returns_nothing()", "a NoneType is not callable"),
])
def test_each_failure_names_stack_wsgi_and_app_wsgi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   attr: str, reason: str) -> None:
    spec = attr.format(module=module(tmp_path, monkeypatch))
    with pytest.raises(LoadError) as caught:
        load(spec)
    message = str(caught.value)
    assert message.startswith(f"STACK_WSGI (the inventory's app_wsgi) {spec!r}: ")
    assert reason in message


def test_a_module_failing_at_import_gives_its_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = module(tmp_path, monkeypatch, "import no_such_dependency_anywhere\n")
    with pytest.raises(LoadError, match="ModuleNotFoundError: No module named 'no_such_dependency_anywhere'") as caught:
        load(f"{name}:app")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
