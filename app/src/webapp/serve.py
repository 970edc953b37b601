"""`webapp-serve`: run the app under Waitress, configured by the environment."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from types import FrameType

import waitress

from webapp import logs, watchdog
from webapp.app import create_app
from webapp.config import Config

# systemd's socket activation hands the listening sockets over from this descriptor on.
SD_LISTEN_FDS_START = 3


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


def main() -> None:
    """Load the Config, log JSON to stdout, serve until SIGTERM or SIGINT (exit 0)."""
    logs.configure()
    log = logging.getLogger("webapp")
    try:
        config = Config.from_env()
        sock = inherited_socket()
    except ValueError as err:
        log.error("bad configuration: %s", err)
        raise SystemExit(2) from None
    every = watchdog.period()
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(name, None)  # not for child processes
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bind, port = sock.getsockname()[:2] if sock else (config.bind, config.port)
    log.info("starting", extra={"bind": bind, "port": port, "threads": config.threads,
                                "socket": "systemd" if sock else "own",
                                "version": config.version, "release": config.release})
    app = create_app(config)
    if every:
        # Fed only while this instance answers its own /health (systemd's WatchdogSec).
        watchdog.Watchdog(watchdog.probe_host(str(bind)), int(port), every).start()
    # Waitress would drop X-Forwarded-For from every peer (it trusts at most one proxy
    # address); the app itself believes it only from config.trusted_proxies (logs.client_addr).
    if sock is not None:
        waitress.serve(app, sockets=[sock], threads=config.threads, ident=None, clear_untrusted_proxy_headers=False)
    else:
        waitress.serve(app, host=config.bind, port=config.port, threads=config.threads, ident=None,
                       clear_untrusted_proxy_headers=False)


if __name__ == "__main__":
    main()
