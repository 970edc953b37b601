"""One HTTP GET as the stack's modules probe a service on its own host (library/systemd_ready,
roles/app's health probes): the answer whatever its status, or why none came."""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from typing import Any, NamedTuple


class Answer(NamedTuple):
    """status 0 and `error` when no answer came; `headers` looks names up in any case."""

    status: int
    headers: Any
    body: str
    error: str


def get(url: str, timeout: float, insecure: bool = False) -> Answer:
    """GET `url` within `timeout` seconds a step; `insecure` takes any TLS certificate (the host's
    own service, reached by address). A failure of any kind (refused, reset, timed out, a cut body, a
    malformed status line, too many headers, not a URL) is an Answer with its reason, never raised."""
    context = None
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310 (the host itself)
            return Answer(resp.status, resp.headers, resp.read().decode(errors="replace"), "")
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.headers or {}, "", "")
    except (OSError, ValueError, http.client.HTTPException) as err:
        cause = err.reason if isinstance(getattr(err, "reason", None), BaseException) else err  # URLError wraps it
        return Answer(0, {}, "", f"{type(cause).__name__}: {cause}")
