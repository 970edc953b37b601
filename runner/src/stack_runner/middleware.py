"""The WSGI middleware around the app: /metrics, X-Release, X-Request-ID, metrics and the access log.

For every request it:
- answers GET (and HEAD) /metrics itself, from prometheus-client's default registry;
- gives the app the request's X-Request-ID (its own when sane, else a new one) in
  environ["HTTP_X_REQUEST_ID"], and sets X-Request-ID and X-Release on every answer;
- answers 500 text/plain itself when the app raises before its answer has begun;
- counts the request and writes its access line once the body has been sent (the server
  closes the answer), except for the process's own watchdog probes.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from stack_runner import logs, metrics, watchdog
from stack_runner.config import Config
from stack_runner.loader import WSGIApp

# The route label of the request, as a Flask app's before_request hook (flask_route) stores it.
ROUTE_KEY = "stack_runner.route"
METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"  # a Flask request no URL rule matched (404, 405)
OTHER_ROUTE = "*"  # any path of an app that is not Flask (but its health path and /metrics)
ERROR_LOGGER = "webapp.error"
_ERROR_BODY = b"Internal Server Error\n"

StartResponse = Callable[..., Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def flask_route() -> None:
    """A Flask before_request hook: the matched URL rule, or "unmatched", into the request's environ."""
    from flask import request  # only ever registered on a Flask app: flask is there

    request.environ[ROUTE_KEY] = request.url_rule.rule if request.url_rule is not None else UNMATCHED


def _is_flask(app: object) -> bool:
    """Whether `app` is a flask.Flask; flask is never imported here (an app of it already did)."""
    flask = sys.modules.get("flask")
    return flask is not None and isinstance(app, flask.Flask)


def _register_route_hook(app: Any) -> None:
    """Run flask_route before the app's own hooks (one of them may answer without its view)."""
    hooks = app.before_request_funcs.setdefault(None, [])
    if flask_route not in hooks:
        hooks.insert(0, flask_route)


def _asks_metrics(environ: dict[str, Any]) -> bool:
    """Whether the request is the runner's own: GET or HEAD /metrics."""
    return environ.get("REQUEST_METHOD") in ("GET", "HEAD") and logs.request_path(environ) == METRICS_PATH


def _status_code(status: str) -> int:
    try:
        return int(status.split(" ", 1)[0])
    except ValueError:
        return 500


class _Request:
    """One request's state: its id, its start, the status and route it ends with."""

    def __init__(self, environ: dict[str, Any], rid: str, probe: bool) -> None:
        self.environ, self.rid, self.probe = environ, rid, probe
        self.started = time.perf_counter()
        self.status = 500
        self.responded = False  # start_response called: a new one needs exc_info
        self.finished = False


class _Answer:
    """The app's answer as the server sends it; closing it (the server does, once sent) ends the request."""

    def __init__(self, middleware: StackMiddleware, request: _Request, body: Iterable[bytes],
                 start_response: StartResponse) -> None:
        self._middleware, self._request, self._body = middleware, request, body
        self._start_response = start_response
        self._sent_any = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._body:
                self._sent_any = self._sent_any or bool(chunk)
                yield chunk
        except Exception:
            if self._sent_any:
                self._middleware.log_error(self._request)
                self._request.status = 500
                raise  # the answer has begun: the server can only cut the connection
            yield self._middleware.error(self._request, self._start_response, sys.exc_info())

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._middleware.finish(self._request)


class StackMiddleware:
    """Wraps a WSGI app (see the module's docstring); `config` gives the release and trusted proxies."""

    def __init__(self, app: WSGIApp, config: Config) -> None:
        self.app, self.config = app, config
        self.flask = _is_flask(app)
        if self.flask:
            _register_route_hook(app)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rid = logs.request_id(str(environ.get("HTTP_X_REQUEST_ID", "")))
        environ["HTTP_X_REQUEST_ID"] = rid
        request = _Request(environ, rid, watchdog.is_probe(environ))
        answer = self._start_response(request, start_response)
        if _asks_metrics(environ):
            return _Answer(self, request, self._metrics(environ, answer), answer)
        try:
            body = self.app(environ, answer)
        except Exception:
            body = [self.error(request, answer, sys.exc_info())]
        return _Answer(self, request, body, answer)

    def _start_response(self, request: _Request, start_response: StartResponse) -> StartResponse:
        """The server's start_response with X-Release and X-Request-ID set, noting the status."""

        def answer(status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
            request.status, request.responded = _status_code(status), True
            ours = {"x-release", "x-request-id"}
            headers = [(k, v) for k, v in headers if k.lower() not in ours]
            headers += [("X-Release", self.config.release), ("X-Request-ID", request.rid)]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return answer

    def _metrics(self, environ: dict[str, Any], answer: StartResponse) -> list[bytes]:
        body = metrics.exposition()
        answer("200 OK", [("Content-Type", metrics.CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def error(self, request: _Request, answer: StartResponse, exc_info: Any) -> bytes:
        """Log the app's exception and start a 500 text/plain answer; its body."""
        self.log_error(request, exc_info)
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(_ERROR_BODY)))]
        # exc_info only when the app has started its answer: the server then replaces it, or
        # raises when its headers are sent already (PEP 3333).
        answer("500 Internal Server Error", headers, exc_info if request.responded else None)
        return _ERROR_BODY

    def log_error(self, request: _Request, exc_info: Any = True) -> None:
        environ = request.environ
        logging.getLogger(ERROR_LOGGER).error(
            "the app raised an exception", exc_info=exc_info,
            extra={"method": logs.clip(str(environ.get("REQUEST_METHOD", ""))),
                   "path": logs.clip(logs.request_path(environ)), "request_id": request.rid},
        )

    def route(self, environ: dict[str, Any]) -> str:
        """The route label: a Flask app's matched rule, else the health path, /metrics or "*"."""
        found = environ.get(ROUTE_KEY)
        if isinstance(found, str):
            return found
        if self.flask:
            return UNMATCHED  # the hook did not run (the app answered before it)
        path = logs.request_path(environ)
        return path if path in (self.config.health_path, METRICS_PATH) else OTHER_ROUTE

    def finish(self, request: _Request) -> None:
        """Count and log the request once (not the watchdog's probes)."""
        if request.finished:
            return
        request.finished = True
        if request.probe:
            return
        seconds = time.perf_counter() - request.started
        environ = request.environ
        route = METRICS_PATH if _asks_metrics(environ) else self.route(environ)
        metrics.observe(str(environ.get("REQUEST_METHOD", "")), route, request.status, seconds, self.config.release)
        logs.access(environ, route, request.status, seconds, request.rid, self.config.trusted_proxies)


def wrap(app: WSGIApp, config: Config) -> StackMiddleware:
    """`app` behind the runner's middleware."""
    return StackMiddleware(app, config)
