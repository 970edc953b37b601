"""systemd's notification socket, with nothing but the standard library's os and socket: what
the runner tells systemd before it imports anything else (stack_runner.boot).

systemd counts `WatchdogSec=` from the process's start (the unit is Type=simple), and loading
the server, the metrics and the app can take longer than that on a busy host: a CI run saw an
instance killed by a 3 s watchdog again and again before it logged its first line, on a host at
load 25. So the very first thing the runner does is stretch the timeout to STACK_START_SECONDS
(`WATCHDOG_USEC=`, systemd 236 and later); its first healthy answer puts systemd's own period back
(stack_runner.watchdog).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

# Seconds an instance has from its start to its first healthy answer, unless STACK_START_SECONDS
# says otherwise (stack_runner.config validates it; a bad value is refused there, by name).
DEFAULT_START_SECONDS = 60
START_SECONDS_VARIABLE = "STACK_START_SECONDS"
START_SECONDS_RANGE = (1, 3600)


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


def allow_start(seconds: float, send: Callable[[str], bool] = notify) -> bool:
    """Stretch systemd's watchdog timeout to `seconds` while the app loads; False without systemd."""
    return send(f"WATCHDOG_USEC={round(seconds * 1_000_000)}")


def start_seconds(env: Mapping[str, str]) -> int:
    """STACK_START_SECONDS when it is a whole number of seconds from 1 to 3600, else the default."""
    value = env.get(START_SECONDS_VARIABLE, "")
    low, high = START_SECONDS_RANGE
    return int(value) if value.isdigit() and low <= int(value) <= high else DEFAULT_START_SECONDS


def stretch_for_start(env: Mapping[str, str] | None = None, send: Callable[[str], bool] | None = None) -> bool:
    """With a watchdog for this process, stretch it to the start's time; False without one."""
    env = os.environ if env is None else env
    every = period(env)
    if not every:
        return False
    return allow_start(max(start_seconds(env), every), send or (lambda message: notify(message, env)))
