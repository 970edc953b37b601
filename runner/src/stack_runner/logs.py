"""JSON logs: one object per line on stdout (journald keeps them), and the access log."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from stack_runner.config import Network

ACCESS_LOGGER = "webapp.access"
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII, no spaces, bounded
# What a client writes (its path, its User-Agent) is logged up to this many characters, then cut
# with CUT_MARKER: an access line stays far below journald's line limit (48 KiB, past which it
# would split the line) and Fluent Bit's buffers.
FIELD_MAX_LENGTH = 1024
CUT_MARKER = "...[truncated]"

Environ = Mapping[str, Any]


class JsonFormatter(logging.Formatter):
    """ts (ISO-8601 UTC), level, logger, msg, then any `extra=` fields of the record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log record, as JSON, to `stream` (default: stdout) and nowhere else."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" under load


def _trusted(addr: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_addr(environ: Environ, trusted: tuple[Network, ...] = ()) -> str:
    """The client's address: the peer's (REMOTE_ADDR), unless the peer is a trusted proxy.

    From a trusted proxy, the nearest X-Forwarded-For hop that is not itself a trusted
    proxy (hops are read from the right: the left ones are whatever the client sent);
    the peer's own address when the header has no such valid hop. Nothing else
    (X-Real-IP, Forwarded) is read.
    """
    peer = str(environ.get("REMOTE_ADDR") or "")
    if not _trusted(peer, trusted):
        return peer
    for hop in reversed(str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")):
        hop = hop.strip()
        if _trusted(hop, trusted):
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            break
    return peer


def request_id(given: str) -> str:
    """The caller's X-Request-ID when it is sane, else a new uuid4 hex."""
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def request_path(environ: Environ) -> str:
    """The request's path as Werkzeug gives it: PATH_INFO as UTF-8, with one leading "/"."""
    raw = str(environ.get("PATH_INFO", ""))
    try:
        raw = raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        pass  # already text beyond latin-1: not from a WSGI server, keep it
    return "/" + raw.lstrip("/")


def clip(value: str, limit: int = FIELD_MAX_LENGTH) -> str:
    """`value`, or its first `limit` characters and CUT_MARKER when it is longer."""
    return value if len(value) <= limit else value[:limit] + CUT_MARKER


def access(environ: Environ, route: str, status: int, seconds: float, rid: str,
           trusted: tuple[Network, ...] = ()) -> None:
    """Log the access line of one answered request; `trusted`: the proxies client_addr believes."""
    method, path = clip(str(environ.get("REQUEST_METHOD", ""))), clip(request_path(environ))
    logging.getLogger(ACCESS_LOGGER).info(
        "%s %s %s", method, path, status,
        extra={
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "remote_addr": client_addr(environ, trusted),
            "user_agent": clip(str(environ.get("HTTP_USER_AGENT", ""))),
            "request_id": rid,
        },
    )
