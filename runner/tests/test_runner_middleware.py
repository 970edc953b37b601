from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from runner_support import RELEASE, BufferedClient, make_flask_app, plain_app, serve
from stack_runner import logs, middleware


@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/nope", 404), ("/teapot", 418), ("/boom", 500),
                                              ("/metrics", 200)])
def test_every_answer_of_a_flask_app_carries_the_release(client: BufferedClient, path: str, status: int) -> None:
    r = client.get(path)
    assert r.status_code == status
    assert r.headers["X-Release"] == RELEASE
    assert r.headers["X-Request-ID"]


@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/missing", 404), ("/boom", 500), ("/metrics", 200)])
def test_every_answer_of_a_plain_app_carries_the_release(plain: BufferedClient, path: str, status: int) -> None:
    r = plain.get(path, headers={"X-Request-ID": "rid-7"})
    assert r.status_code == status
    assert (r.headers["X-Release"], r.headers["X-Request-ID"]) == (RELEASE, "rid-7")


@pytest.mark.usefixtures("json_logs")
def test_an_exception_of_the_app_is_logged_and_answered_500(plain: BufferedClient,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    r = plain.get("/boom", headers={"X-Request-ID": "rid-boom"})
    assert r.status_code == 500
    assert r.mimetype == "text/plain"
    assert r.get_data(as_text=True) == "Internal Server Error\n"
    assert (r.headers["X-Release"], r.headers["X-Request-ID"]) == (RELEASE, "rid-boom")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [error] = [line for line in lines if line["level"] == "error"]
    assert (error["logger"], error["request_id"], error["path"]) == (middleware.ERROR_LOGGER, "rid-boom", "/boom")
    assert "RuntimeError: plain boom" in error["exc"]
    [entry] = [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]
    assert (entry["status"], entry["request_id"]) == (500, "rid-boom")


def test_the_apps_own_release_and_request_id_headers_are_replaced() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("x-release", "mine"), ("X-Request-Id", "mine"), ("X-Other", "kept")])
        return [b""]

    r = serve(app).get("/", headers={"X-Request-ID": "rid-1"})
    assert r.headers.getlist("X-Release") == [RELEASE]
    assert r.headers.getlist("X-Request-ID") == ["rid-1"]
    assert r.headers["X-Other"] == "kept"


def test_metrics_are_answered_by_the_runner_and_never_reach_the_app() -> None:
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append(environ["PATH_INFO"])
        start_response("404 Not Found", [])
        return [b""]

    client = serve(app)
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert "flask_http_request_total" in r.get_data(as_text=True)
    head = client.head("/metrics")
    assert (head.status_code, head.data) == (200, b"")
    assert seen == []
    assert client.post("/metrics").status_code == 404  # not the runner's: the app's
    assert seen == ["/metrics"]


def test_a_flask_app_with_its_own_metrics_route_is_not_asked() -> None:
    app = make_flask_app()
    app.add_url_rule("/metrics", "own", lambda: "the app's own")
    assert "flask_http_request_total" in serve(app).get("/metrics").get_data(as_text=True)


def test_the_app_sees_the_request_id(plain: BufferedClient) -> None:
    assert plain.get("/x", headers={"X-Request-ID": "abc-123"}).get_data(as_text=True) == "/x abc-123"
    r = plain.get("/x", headers={"X-Request-ID": "has space"})
    generated = r.headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert r.get_data(as_text=True) == f"/x {generated}"
    r = plain.get("/x")
    assert r.get_data(as_text=True) == f"/x {r.headers['X-Request-ID']}"


class Body:
    """An app's answer that records whether it was closed."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks, self.fail_after, self.closed = chunks, fail_after, False

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_after:
                raise RuntimeError("mid-body")
            yield chunk

    def close(self) -> None:
        self.closed = True


def run(app: Any, path: str = "/") -> tuple[list[Any], list[bytes], Any]:
    """Call the wrapped app as a server would: start_response calls, the body, the answer (closed)."""
    calls: list[Any] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": "192.0.2.1"}
    answer = serve(app).application(environ, lambda *args: calls.append(args))
    try:
        chunks = list(answer)
    finally:
        answer.close()
    return calls, chunks, answer


@pytest.mark.usefixtures("json_logs")
def test_the_access_line_comes_once_the_body_is_sent_and_the_apps_answer_is_closed(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    body = Body([b"a", b"b"])

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("201 Created", [])
        return body

    calls = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "192.0.2.1"}
    answer = serve(app).application(environ, lambda *args: calls.append(args))
    assert list(answer) == [b"a", b"b"]
    assert capsys.readouterr().out == "", "logged before the server closed the answer"
    answer.close()
    answer.close()
    assert body.closed
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (entry["status"], entry["route"]) == (201, "*")
    assert calls[0][0] == "201 Created"


def test_an_app_failing_before_its_body_starts_is_answered_500() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "application/json")])
        return Body([b"never"], fail_after=0)

    calls, chunks, _ = run(app)
    assert chunks == [b"Internal Server Error\n"]
    status, headers, exc_info = calls[-1]
    assert status.startswith("500") and exc_info[0] is RuntimeError  # replaces the 200 not yet sent
    assert ("X-Release", RELEASE) in headers


def test_a_generator_app_raising_before_start_response_is_answered_500() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        raise RuntimeError("lazy")
        yield b""  # a generator: the exception comes at the first next()

    calls, chunks, _ = run(app)
    assert chunks == [b"Internal Server Error\n"]
    [(status, headers)] = calls
    assert status.startswith("500") and ("X-Release", RELEASE) in headers


def test_an_app_failing_mid_body_is_cut_and_counted_as_500() -> None:
    from runner_support import sample

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body([b"first", b"second"], fail_after=1)

    before = sample("flask_http_request_total", method="GET", route="*", status="500")
    with pytest.raises(RuntimeError, match="mid-body"):
        run(app)
    assert sample("flask_http_request_total", method="GET", route="*", status="500") == before + 1


def test_the_route_hook_runs_first_and_once() -> None:
    app = make_flask_app()
    middleware.wrap(app, serve(plain_app).application.config)
    middleware.wrap(app, serve(plain_app).application.config)
    assert app.before_request_funcs[None].count(middleware.flask_route) == 1
    assert app.before_request_funcs[None][0] is middleware.flask_route


def test_an_app_that_is_not_flask_gets_no_hook() -> None:
    assert not middleware.wrap(plain_app, serve(plain_app).application.config).flask
