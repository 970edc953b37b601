"""systemd's watchdog, fed only while the instance answers a request.

When systemd starts the instance with `WatchdogSec=`, it sets WATCHDOG_USEC (and
WATCHDOG_PID). A thread of the instance then GETs its own health path (STACK_HEALTH_PATH) on
its own socket every PROBE_FRACTION of that time (each probe waiting up to PROBE_PATIENCE of it
for the answer) and, each time the answer's status is one of
STACK_HEALTH_STATUSES, sends `WATCHDOG=1` to $NOTIFY_SOCKET. A process frozen (SIGSTOP), or one
whose every worker thread hangs, sends nothing: systemd kills it once WatchdogSec passes
without a ping and starts it again.

systemd counts WatchdogSec from the process's start (the unit is Type=simple), and loading an
app (its imports, its factory, its database) can take longer than that on a busy host. So the
runner first stretches the timeout to STACK_START_SECONDS (`WATCHDOG_USEC=`, systemd 236 and
later), and the first healthy answer puts systemd's own period back: an instance has that long to
load and answer once, then WatchdogSec between answers.
"""

from __future__ import annotations

import http.client
import logging
import secrets
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from stack_runner.sd_notify import allow_start, notify, period  # noqa: F401 - this module's interface too

# Probes per watchdog period: several chances to answer before systemd gives up.
PROBE_FRACTION = 1 / 6
# How long one probe waits for its answer, as a part of the period: an instance that answers
# slowly (a host whose CPU is taken by others) still answers, and is still fed; one that answers
# nothing within the period is not. A probe sent a fraction after a ping and answered within
# half the period pings before systemd's deadline.
PROBE_PATIENCE = 1 / 2
# The probes carry this process's own secret token in this header: the runner counts and logs
# them nowhere (a probe a second per instance would drown the access log), and no client can
# pass its own requests off as one. The app still answers them.
PROBE_HEADER = "X-Stack-Watchdog"
PROBE_ENVIRON_KEY = "HTTP_" + PROBE_HEADER.upper().replace("-", "_")
TOKEN = secrets.token_hex(16)
NO_ANSWER = 0


def is_probe(environ: Mapping[str, Any]) -> bool:
    """Whether a request (its WSGI environ) is this process's own watchdog probe."""
    return secrets.compare_digest(str(environ.get(PROBE_ENVIRON_KEY, "")), TOKEN)


def status_of(host: str, port: int, path: str, timeout: float) -> int:
    """The status GET `path` on host:port answers within `timeout` seconds (each step), or NO_ANSWER."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "stack-runner-watchdog", PROBE_HEADER: TOKEN})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return NO_ANSWER
    finally:
        conn.close()


class Watchdog(threading.Thread):
    """Pings systemd's watchdog after every healthy answer of the instance to its own probe."""

    def __init__(self, host: str, port: int, seconds: float, path: str = "/health",
                 statuses: Collection[int] = frozenset({200}), send: Callable[[str], bool] = notify,
                 probe: Callable[[str, int, str, float], int] = status_of) -> None:
        super().__init__(name="stack-runner-watchdog", daemon=True)
        self.host, self.port, self.path, self.statuses = host, port, path, frozenset(statuses)
        self.every = seconds * PROBE_FRACTION
        self.patience = seconds * PROBE_PATIENCE
        self.usec = round(seconds * 1_000_000)
        self._send, self._probe = send, probe
        self._stopped = threading.Event()

    def run(self) -> None:
        log = logging.getLogger("webapp.watchdog")
        missed = 0
        started = False
        while not self._stopped.is_set():
            status = self._probe(self.host, self.port, self.path, self.patience)
            if status in self.statuses:
                if not started:  # the first healthy answer: systemd's own period again (allow_start)
                    self._send(f"WATCHDOG_USEC={self.usec}")
                    started = True
                self._send("WATCHDOG=1")
                missed = 0
            else:
                missed += 1
                if missed == 1:
                    log.warning("health probe unanswered or unhealthy: the watchdog is not fed",
                                extra={"port": self.port, "path": self.path, "status": status})
            self._stopped.wait(self.every)

    def stop(self) -> None:
        self._stopped.set()


def probe_host(bound: str) -> str:
    """Where the instance reaches itself: its bound address, loopback for a wildcard."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound, bound)
