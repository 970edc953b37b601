"""`stack-runner`: serve the WSGI app STACK_WSGI names under Waitress, configured by STACK_* variables.

Exit status: 0 on SIGTERM or SIGINT, 2 for a bad configuration (a STACK_* value, the socket
systemd passed), 3 when STACK_WSGI names no loadable WSGI app.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from types import FrameType

import waitress

from stack_runner import __version__, logs, metrics, middleware, watchdog
from stack_runner.config import RELEASE_VARIABLE, Config
from stack_runner.loader import LoadError, WSGIApp, load

# systemd's socket activation hands the listening sockets over from this descriptor on.
SD_LISTEN_FDS_START = 3
CONFIG_ERROR = 2
LOAD_ERROR = 3
# What systemd set for this process only: never for the app or its child processes.
SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")


def _stop(signum: int, _frame: FrameType | None) -> None:
    logging.getLogger("webapp").info("stopping", extra={"signal": signal.Signals(signum).name})
    sys.exit(0)  # unwinds out of waitress.serve() in the main thread


def inherited_socket(env: Mapping[str, str] | None = None, pid: int | None = None) -> socket.socket | None:
    """The listening socket systemd passed (socket activation), or None when it passed none.

    A socket unit keeps listening while the service restarts, so connections wait in the
    backlog for the next process instead of being refused.
    """
    env = os.environ if env is None else env
    if env.get("LISTEN_PID") != str(os.getpid() if pid is None else pid):
        return None
    count = env.get("LISTEN_FDS", "0")
    if count != "1":
        if count == "0":
            return None
        raise ValueError(f"LISTEN_FDS must be 1 (one listening socket per instance), got {count!r}")
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError("the socket passed by systemd is not a TCP stream socket")
    return sock


def _configuration(log: logging.Logger) -> tuple[Config, socket.socket | None]:
    try:
        return Config.from_env(), inherited_socket()
    except ValueError as err:
        log.error("bad configuration: %s", err)
        raise SystemExit(CONFIG_ERROR) from None


def _load(log: logging.Logger, spec: str) -> WSGIApp:
    try:
        return load(spec)
    except LoadError as err:
        cause = err.__cause__
        log.error("cannot load the app: %s", err, exc_info=cause if cause is not None else None)
        raise SystemExit(LOAD_ERROR) from None


def _serve(app: WSGIApp, config: Config, sock: socket.socket | None) -> None:
    # Waitress would drop X-Forwarded-For from every peer (it trusts at most one proxy
    # address); the runner believes it only from config.trusted_proxies (logs.client_addr).
    options = {"threads": config.threads, "ident": None, "clear_untrusted_proxy_headers": False}
    if sock is not None:
        waitress.serve(app, sockets=[sock], **options)
    else:
        waitress.serve(app, host=config.bind, port=config.port, **options)


def main() -> None:
    """Log JSON to stdout, load the configuration and the app, serve until SIGTERM or SIGINT (exit 0)."""
    logs.configure()  # before the app is imported: its own logging is JSON too
    log = logging.getLogger("webapp")
    config, sock = _configuration(log)
    # The watchdog was stretched for the start already, before any import (stack_runner.boot).
    every = watchdog.period()
    for name in SYSTEMD_VARIABLES:
        os.environ.pop(name, None)
    os.environ[RELEASE_VARIABLE] = config.release  # the app may read it
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bind, port = sock.getsockname()[:2] if sock else (config.bind, config.port)
    log.info("starting", extra={"bind": bind, "port": port, "threads": config.threads,
                                "socket": "systemd" if sock else "own", "version": config.version,
                                "release": config.release, "wsgi": config.wsgi, "runner": __version__})
    app = middleware.wrap(_load(log, config.wsgi), config)
    metrics.set_build_info(config.version, config.release)
    if every:
        # Fed only while this instance answers its own health path (systemd's WatchdogSec).
        watchdog.Watchdog(watchdog.probe_host(str(bind)), int(port), every,
                          config.health_path, config.health_statuses).start()
    _serve(app, config, sock)

