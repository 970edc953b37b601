"""systemd's watchdog, fed only while the instance answers a request.

When systemd starts the instance with `WatchdogSec=`, it sets WATCHDOG_USEC (and
WATCHDOG_PID). A thread of the instance then GETs its own /health on its own socket every
PROBE_FRACTION of that time and, each time the answer is 200, sends `WATCHDOG=1` to
$NOTIFY_SOCKET. A process frozen (SIGSTOP), or one whose every worker thread hangs, sends
nothing: systemd kills it once WatchdogSec passes without a ping and starts it again.
"""

from __future__ import annotations

import http.client
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Mapping

# Probes per watchdog period: several chances to answer before systemd gives up.
PROBE_FRACTION = 1 / 6
# The probes carry this process's own secret token in this header: the app counts and logs
# them nowhere (a probe a second per instance would drown the access log), and no client can
# pass its own requests off as one.
PROBE_HEADER = "X-Webapp-Watchdog"
TOKEN = secrets.token_hex(16)


def is_probe(headers: Mapping[str, str]) -> bool:
    """Whether a request is this process's own watchdog probe."""
    return secrets.compare_digest(headers.get(PROBE_HEADER, ""), TOKEN)


def period(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog period in seconds systemd asks this process for, or None (no watchdog)."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if env.get("WATCHDOG_PID") not in (None, "", str(os.getpid() if pid is None else pid)):
        return None  # set for another process (the one that started this one)
    return int(usec) / 1_000_000


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `message` (READY=1, WATCHDOG=1, ...) to systemd's notification socket; False without one."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError:
            return False
    return True


def answers(host: str, port: int, timeout: float) -> bool:
    """Whether GET /health on host:port answers 200 within `timeout` seconds (each step)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/health", headers={"User-Agent": "webapp-watchdog", PROBE_HEADER: TOKEN})
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Watchdog(threading.Thread):
    """Pings systemd's watchdog after every answered probe of the instance's own /health."""

    def __init__(self, host: str, port: int, seconds: float,
                 send: Callable[[str], bool] = notify, probe: Callable[[str, int, float], bool] = answers) -> None:
        super().__init__(name="webapp-watchdog", daemon=True)
        self.host, self.port = host, port
        self.every = seconds * PROBE_FRACTION
        self._send, self._probe = send, probe
        self._stopped = threading.Event()

    def run(self) -> None:
        log = logging.getLogger("webapp.watchdog")
        missed = 0
        while not self._stopped.is_set():
            if self._probe(self.host, self.port, self.every):
                self._send("WATCHDOG=1")
                missed = 0
            else:
                missed += 1
                if missed == 1:
                    log.warning("health probe unanswered: the watchdog is not fed", extra={"port": self.port})
            self._stopped.wait(self.every)

    def stop(self) -> None:
        self._stopped.set()


def probe_host(bound: str) -> str:
    """Where the instance reaches itself: its bound address, loopback for a wildcard."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound, bound)
