"""Loading the WSGI app STACK_WSGI names: `module:attr` or `module:factory()`."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from stack_runner.config import WSGI_VARIABLE

WSGIApp = Callable[..., Any]

_NAME = r"[A-Za-z_]\w*"
_SPEC = re.compile(rf"(?P<module>{_NAME}(?:\.{_NAME})*):(?P<attr>{_NAME}(?:\.{_NAME})*)(?P<call>\(\))?")


class LoadError(Exception):
    """STACK_WSGI names no WSGI app; the message says so, naming the variable and its origin."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(f"{WSGI_VARIABLE} (the inventory's app_wsgi) {spec!r}: {reason}")


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _attribute(spec: str, module: object, dotted: str) -> object:
    found = module
    for i, part in enumerate(dotted.split(".")):
        try:
            found = getattr(found, part)
        except AttributeError:
            where = ".".join(dotted.split(".")[:i]) or "the module"
            raise LoadError(spec, f"{where} has no attribute {part!r}") from None
    return found


def load(spec: str) -> WSGIApp:
    """The WSGI callable `spec` names; any failure raises LoadError (its cause: the app's exception).

    `module:attr` takes an attribute of the module (dotted: `module:obj.app`); `module:factory()`
    calls it with no arguments and takes what it returns.
    """
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise LoadError(spec, "must be module:attribute or module:factory() (e.g. webapp.app:create_app())")
    module_name, dotted = match["module"], match["attr"]
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise LoadError(spec, f"cannot import module {module_name!r}: {_reason(err)}") from err
    found = _attribute(spec, module, dotted)
    if match["call"]:
        try:
            found = found()  # type: ignore[operator]
        except Exception as err:
            raise LoadError(spec, f"{module_name}:{dotted}() raised {_reason(err)}") from err
    if not callable(found):
        raise LoadError(spec, f"is not a WSGI app: a {type(found).__name__} is not callable")
    return found
